//! Strings and the keyspace: GET, SET and friends, DEL, EXISTS, KEYS, SCAN,
//! RENAME, counters.
//!
//! The value mapping: a plain SET stores its bytes as a JSON string (they
//! must be UTF-8: redru stores text), and GET returns exactly those bytes. A
//! value that is not a JSON string (set by JSON.SET, the shell or the
//! library) is returned by GET as its JSON text.

use redru::{Doc, Value};

use super::Ctx;
use crate::glob;
use crate::reply::Reply;

type R = Result<Reply, Reply>;

/// A SET value as the JSON string redru stores.
pub fn string_doc(bytes: &[u8]) -> Result<Doc, Reply> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Reply::err("the value is not valid UTF-8: redru stores text (use base64 for binary data)"))?;
    Ok(Doc::from(Value::String(text.to_owned())))
}

/// The string inside `doc` if it is a JSON string.
fn as_string(doc: &Doc) -> Option<String> {
    if doc.as_str().starts_with('"') { serde_json::from_str(doc.as_str()).ok() } else { None }
}

/// What GET returns for `doc`: a string's bytes, any other value's JSON text.
pub fn get_bytes(doc: &Doc) -> Vec<u8> {
    as_string(doc).unwrap_or_else(|| doc.as_str().to_owned()).into_bytes()
}

fn bulk_or_nil(doc: Option<Doc>) -> Reply {
    doc.map_or(Reply::Nil, |d| Reply::Bulk(get_bytes(&d)))
}

pub fn get(c: &mut Ctx) -> R {
    Ok(bulk_or_nil(c.tx.get(c.key(1)?)))
}

pub fn set(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    let value = string_doc(&c.args[2])?;
    let (mut nx, mut xx, mut get) = (false, false, false);
    for i in 3..c.args.len() {
        match c.upper(i).as_str() {
            "NX" if !xx => nx = true,
            "XX" if !nx => xx = true,
            "GET" => get = true,
            "EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL" => {
                return Err(Reply::err("expiry (EX, PX, EXAT, PXAT, KEEPTTL) is not supported by redru yet"));
            }
            _ => return Err(Reply::err("syntax error")),
        }
    }
    // The old value only when an option needs it: a plain SET reads nothing.
    let old = if nx || xx || get { c.tx.get(&key) } else { None };
    let allowed = !(nx && old.is_some() || xx && old.is_none());
    if allowed {
        c.tx.set(&key, value);
    }
    Ok(match (get, allowed) {
        (true, _) => bulk_or_nil(old),
        (false, true) => Reply::ok(),
        (false, false) => Reply::Nil,
    })
}

pub fn setnx(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    let value = string_doc(&c.args[2])?;
    if c.tx.contains(&key) {
        return Ok(Reply::Int(0));
    }
    c.tx.set(&key, value);
    Ok(Reply::Int(1))
}

pub fn getset(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    let value = string_doc(&c.args[2])?;
    let old = c.tx.get(&key);
    c.tx.set(&key, value);
    Ok(bulk_or_nil(old))
}

pub fn del(c: &mut Ctx) -> R {
    let mut n = 0;
    for i in 1..c.args.len() {
        let key = c.key(i)?.to_owned();
        n += i64::from(c.tx.delete(&key));
    }
    Ok(Reply::Int(n))
}

pub fn exists(c: &mut Ctx) -> R {
    let mut n = 0;
    for i in 1..c.args.len() {
        n += i64::from(c.tx.contains(c.key(i)?));
    }
    Ok(Reply::Int(n))
}

pub fn mget(c: &mut Ctx) -> R {
    // A key that is not UTF-8 cannot exist: nil, as for any missing key.
    Ok(Reply::Array(
        (1..c.args.len())
            .map(|i| c.key(i).ok().and_then(|k| c.tx.get(k)).map_or(Reply::Nil, |d| bulk_or_nil(Some(d))))
            .collect(),
    ))
}

fn pairs(c: &Ctx) -> Result<Vec<(String, Doc)>, Reply> {
    if c.args.len().is_multiple_of(2) {
        return Err(Reply::err(format!("wrong number of arguments for '{}' command", c.upper(0).to_ascii_lowercase())));
    }
    (1..c.args.len()).step_by(2).map(|i| Ok((c.key(i)?.to_owned(), string_doc(&c.args[i + 1])?))).collect()
}

pub fn mset(c: &mut Ctx) -> R {
    for (key, value) in pairs(c)? {
        c.tx.set(&key, value);
    }
    Ok(Reply::ok())
}

pub fn msetnx(c: &mut Ctx) -> R {
    let pairs = pairs(c)?;
    if pairs.iter().any(|(k, _)| c.tx.contains(k)) {
        return Ok(Reply::Int(0));
    }
    for (key, value) in pairs {
        c.tx.set(&key, value);
    }
    Ok(Reply::Int(1))
}

pub fn type_(c: &mut Ctx) -> R {
    Ok(Reply::Simple(
        match c.tx.get(c.key(1)?) {
            None => "none",
            Some(doc) if doc.as_str().starts_with('"') => "string",
            Some(_) => "ReJSON-RL",
        }
        .into(),
    ))
}

pub fn keys(c: &mut Ctx) -> R {
    let pattern = c.args[1].clone();
    Ok(Reply::Array(
        c.tx.keys()
            .into_iter()
            .filter(|k| glob::matches(&pattern, k.as_bytes()))
            .map(|k| Reply::Bulk(k.into_bytes()))
            .collect(),
    ))
}

pub fn scan(c: &mut Ctx) -> R {
    let cursor: u64 = c.text(1)?.parse().map_err(|_| Reply::err("invalid cursor"))?;
    let (mut pattern, mut count, mut kind) = (None, 10usize, None);
    let mut i = 2;
    while i < c.args.len() {
        let value = c.args.get(i + 1).ok_or_else(|| Reply::err("syntax error"))?;
        match c.upper(i).as_str() {
            "MATCH" => pattern = Some(value.clone()),
            "COUNT" => {
                count = c.int(i + 1).ok().filter(|n| *n >= 1).ok_or_else(|| Reply::err("syntax error"))? as usize;
            }
            "TYPE" => kind = Some(String::from_utf8_lossy(value).to_ascii_lowercase()),
            _ => return Err(Reply::err("syntax error")),
        }
        i += 2;
    }
    let after = if cursor == 0 {
        None
    } else {
        let taken = c.shared.cursors.lock().unwrap_or_else(|p| p.into_inner()).take(cursor);
        Some(taken.ok_or_else(|| Reply::err("invalid cursor (it expired or was already used up; start again at 0)"))?)
    };
    let listed = c.tx.keys_after(after.as_deref(), count);
    let mut page = Vec::new();
    for key in listed.items {
        if pattern.as_ref().is_some_and(|p| !glob::matches(p, key.as_bytes())) {
            continue;
        }
        let Some(doc) = c.tx.get(&key) else { continue };
        let is_string = doc.as_str().starts_with('"');
        if kind.as_deref().is_some_and(|k| k != if is_string { "string" } else { "rejson-rl" }) {
            continue;
        }
        page.push(Reply::Bulk(key.into_bytes()));
    }
    let next = match listed.next {
        Some(key) => c.shared.cursors.lock().unwrap_or_else(|p| p.into_inner()).open(key),
        None => 0,
    };
    Ok(Reply::Array(vec![Reply::Bulk(next.to_string().into_bytes()), Reply::Array(page)]))
}

fn rename_to(c: &mut Ctx, only_if_free: bool) -> R {
    let (from, to) = (c.key(1)?.to_owned(), c.key(2)?.to_owned());
    let value = c.tx.get(&from).ok_or_else(|| Reply::err("no such key"))?;
    if only_if_free && c.tx.contains(&to) {
        return Ok(Reply::Int(0));
    }
    if from != to {
        c.tx.delete(&from);
        c.tx.set(&to, value);
    }
    Ok(if only_if_free { Reply::Int(1) } else { Reply::ok() })
}

pub fn rename(c: &mut Ctx) -> R {
    rename_to(c, false)
}

pub fn renamenx(c: &mut Ctx) -> R {
    rename_to(c, true)
}

pub fn flushall(c: &mut Ctx) -> R {
    if c.args.len() > 2 || c.args.len() == 2 && !matches!(c.upper(1).as_str(), "ASYNC" | "SYNC") {
        return Err(Reply::err("syntax error"));
    }
    c.tx.clear();
    Ok(Reply::ok())
}

pub fn dbsize(c: &mut Ctx) -> R {
    Ok(Reply::Int(c.tx.len() as i64))
}

/// Adds `by` to the integer in `key` (a string of digits, or a JSON number).
fn add(c: &mut Ctx, by: i64) -> R {
    let key = c.key(1)?.to_owned();
    let current = match c.tx.get(&key) {
        None => 0,
        Some(doc) => {
            let text = as_string(&doc).unwrap_or_else(|| doc.as_str().to_owned());
            super::parse_int(text.as_bytes()).ok_or_else(|| Reply::err("value is not an integer or out of range"))?
        }
    };
    let next = current.checked_add(by).ok_or_else(|| Reply::err("increment or decrement would overflow"))?;
    c.tx.set(&key, Doc::from(Value::String(next.to_string())));
    Ok(Reply::Int(next))
}

pub fn incr(c: &mut Ctx) -> R {
    add(c, 1)
}

pub fn decr(c: &mut Ctx) -> R {
    add(c, -1)
}

pub fn incrby(c: &mut Ctx) -> R {
    let by = c.int(2)?;
    add(c, by)
}

pub fn decrby(c: &mut Ctx) -> R {
    let by = c.int(2)?.checked_neg().ok_or_else(|| Reply::err("decrement would overflow"))?;
    add(c, by)
}

pub fn append(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    let tail = std::str::from_utf8(&c.args[2]).map_err(|_| Reply::err("the value is not valid UTF-8"))?.to_owned();
    let mut text = match c.tx.get(&key) {
        None => String::new(),
        Some(doc) => as_string(&doc).ok_or_else(|| {
            Reply::Error("WRONGTYPE APPEND works on string values; this one is JSON (use JSON.SET)".into())
        })?,
    };
    text.push_str(&tail);
    let len = text.len();
    c.tx.set(&key, Doc::from(Value::String(text)));
    Ok(Reply::Int(len as i64))
}

pub fn strlen(c: &mut Ctx) -> R {
    Ok(Reply::Int(c.tx.get(c.key(1)?).map_or(0, |d| get_bytes(&d).len()) as i64))
}

pub fn ttl(c: &mut Ctx) -> R {
    Ok(Reply::Int(if c.tx.contains(c.key(1)?) { -1 } else { -2 }))
}

pub fn persist(c: &mut Ctx) -> R {
    let _ = c.key(1)?;
    Ok(Reply::Int(0))
}

pub fn expire(_: &mut Ctx) -> R {
    Err(Reply::err("expiry (EXPIRE) is not supported by redru yet"))
}
