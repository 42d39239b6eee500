//! Strings and the keyspace: GET, SET and friends, DEL, EXISTS, KEYS, SCAN,
//! RENAME, counters, and expiry (EXPIRE and friends, TTL, PERSIST).
//!
//! Expiry follows Redis: SET, GETSET and MSET remove a key's deadline;
//! INCR, APPEND, JSON.* changes and SET ... KEEPTTL keep it; RENAME moves it;
//! a deadline at or before now deletes the key.
//!
//! The value mapping: a plain SET stores its bytes as a JSON string (they
//! must be UTF-8: redru stores text), and GET returns exactly those bytes. A
//! value that is not a JSON string (set by JSON.SET, the shell or the
//! library) is returned by GET as its JSON text.

use redru::{Doc, Expiry, Value};

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

/// What a SET or GETEX does to the key's deadline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// SET: remove it; GETEX: leave it.
    Default,
    /// EX, PX, EXAT, PXAT: this one.
    At(Expiry),
    /// KEEPTTL: keep it (SET only).
    Keep,
    /// PERSIST: remove it (GETEX only).
    Persist,
}

/// The deadline `amount` names for option `unit` (EX, PX, EXAT, PXAT), or
/// Redis's error: not positive, or past what milliseconds can hold.
fn deadline(c: &Ctx, unit: &str, amount: i64, command: &str) -> Result<Expiry, Reply> {
    let invalid = || Reply::err(format!("invalid expire time in '{command}' command"));
    if amount <= 0 {
        return Err(invalid());
    }
    let now = c.tx.now() as i64;
    let ms = match unit {
        "EX" => amount.checked_mul(1000).and_then(|ms| ms.checked_add(now)),
        "PX" => amount.checked_add(now),
        "EXAT" => amount.checked_mul(1000),
        _ => Some(amount),
    };
    ms.and_then(|ms| u64::try_from(ms).ok()).map(Expiry).ok_or_else(invalid)
}

/// Reads `EX n | PX n | EXAT n | PXAT n` (and `KEEPTTL` / `PERSIST` when
/// `extra` names it) at argument `i`: the deadline and how many arguments it took.
fn expiry_option(c: &Ctx, i: usize, extra: &str, command: &str) -> Result<Option<(Deadline, usize)>, Reply> {
    let word = c.upper(i);
    Ok(match word.as_str() {
        "EX" | "PX" | "EXAT" | "PXAT" => {
            let amount = c.args.get(i + 1).ok_or_else(|| Reply::err("syntax error"))?;
            let amount =
                super::parse_int(amount).ok_or_else(|| Reply::err("value is not an integer or out of range"))?;
            Some((Deadline::At(deadline(c, &word, amount, command)?), 2))
        }
        "KEEPTTL" if extra == "KEEPTTL" => Some((Deadline::Keep, 1)),
        "PERSIST" if extra == "PERSIST" => Some((Deadline::Persist, 1)),
        _ => None,
    })
}

pub fn set(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    let value = string_doc(&c.args[2])?;
    let (mut nx, mut xx, mut get) = (false, false, false);
    let mut expiry = Deadline::Default;
    let mut i = 3;
    while i < c.args.len() {
        if let Some((option, took)) = expiry_option(c, i, "KEEPTTL", "set")? {
            if expiry != Deadline::Default {
                return Err(Reply::err("syntax error"));
            }
            expiry = option;
            i += took;
            continue;
        }
        match c.upper(i).as_str() {
            "NX" if !xx => nx = true,
            "XX" if !nx => xx = true,
            "GET" => get = true,
            _ => return Err(Reply::err("syntax error")),
        }
        i += 1;
    }
    // The old value only when an option needs it: a plain SET reads nothing.
    let old = if nx || xx || get { c.tx.get(&key) } else { None };
    let allowed = !(nx && old.is_some() || xx && old.is_none());
    if allowed {
        match expiry {
            Deadline::At(at) => c.tx.set_expiring(&key, value, at),
            Deadline::Keep => c.tx.set_keep_ttl(&key, value),
            Deadline::Default | Deadline::Persist => c.tx.set(&key, value),
        }
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
        // The deadline moves with the value, as in Redis.
        let at = c.tx.expiry(&from).flatten();
        c.tx.delete(&from);
        match at {
            Some(at) => c.tx.set_expiring(&to, value, at),
            None => c.tx.set(&to, value),
        }
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
    c.tx.set_keep_ttl(&key, Doc::from(Value::String(next.to_string())));
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
    c.tx.set_keep_ttl(&key, Doc::from(Value::String(text)));
    Ok(Reply::Int(len as i64))
}

pub fn strlen(c: &mut Ctx) -> R {
    Ok(Reply::Int(c.tx.get(c.key(1)?).map_or(0, |d| get_bytes(&d).len()) as i64))
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 no key, -1 no deadline, else
/// the time left (TTL rounds to the nearest second, as Redis does) or the deadline.
pub fn ttl(c: &mut Ctx) -> R {
    let command = c.upper(0);
    let now = c.tx.now();
    Ok(Reply::Int(match c.tx.expiry(c.key(1)?) {
        None => -2,
        Some(None) => -1,
        Some(Some(at)) => {
            let left = at.0.saturating_sub(now);
            let n = match command.as_str() {
                "TTL" => left.saturating_add(500) / 1000,
                "PTTL" => left,
                // Redis rounds the deadline to the nearest second too.
                "EXPIRETIME" => at.0.saturating_add(500) / 1000,
                _ => at.0,
            };
            i64::try_from(n).unwrap_or(i64::MAX)
        }
    }))
}

pub fn persist(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    if c.tx.expiry(&key).flatten().is_none() {
        return Ok(Reply::Int(0));
    }
    Ok(Reply::Int(i64::from(c.tx.expire(&key, None))))
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT with Redis 7's NX, XX, GT, LT: 1 if
/// the deadline was set (a time at or before now deletes the key), 0 if the
/// key does not exist or the condition did not hold.
pub fn expire(c: &mut Ctx) -> R {
    let command = c.upper(0);
    let key = c.key(1)?.to_owned();
    let amount = c.int(2)?;
    let name = command.to_ascii_lowercase();
    let invalid = || Reply::err(format!("invalid expire time in '{name}' command"));
    let now = c.tx.now() as i64;
    let ms = match command.as_str() {
        "EXPIRE" => amount.checked_mul(1000).and_then(|ms| ms.checked_add(now)),
        "PEXPIRE" => amount.checked_add(now),
        "EXPIREAT" => amount.checked_mul(1000),
        _ => Some(amount),
    }
    .ok_or_else(invalid)?;
    let mut flags = (false, false, false, false);
    for i in 3..c.args.len() {
        match c.upper(i).as_str() {
            "NX" => flags.0 = true,
            "XX" => flags.1 = true,
            "GT" => flags.2 = true,
            "LT" => flags.3 = true,
            _ => return Err(Reply::err(format!("Unsupported option {}", String::from_utf8_lossy(&c.args[i])))),
        }
    }
    let (nx, xx, gt, lt) = flags;
    if nx && (xx || gt || lt) {
        return Err(Reply::err("NX and XX, GT or LT options at the same time are not compatible"));
    }
    if gt && lt {
        return Err(Reply::err("GT and LT options at the same time are not compatible"));
    }
    let Some(current) = c.tx.expiry(&key) else { return Ok(Reply::Int(0)) };
    // No deadline counts as an infinite one for GT and LT.
    let holds = match current {
        None => !(xx || gt),
        Some(at) => !nx && (!gt || ms > at.0 as i64) && (!lt || ms < at.0 as i64),
    };
    if !holds {
        return Ok(Reply::Int(0));
    }
    // At or before now (negative included) the key goes, as in Redis.
    let at = Expiry(u64::try_from(ms).unwrap_or(0).max(1));
    Ok(Reply::Int(i64::from(c.tx.expire(&key, Some(at)))))
}

/// SETEX key seconds value, PSETEX key milliseconds value.
pub fn setex(c: &mut Ctx) -> R {
    let command = c.upper(0).to_ascii_lowercase();
    let key = c.key(1)?.to_owned();
    let amount = c.int(2)?;
    let unit = if command == "setex" { "EX" } else { "PX" };
    let at = deadline(c, unit, amount, &command)?;
    let value = string_doc(&c.args[3])?;
    c.tx.set_expiring(&key, value, at);
    Ok(Reply::ok())
}

/// GETEX key [EX n | PX n | EXAT n | PXAT n | PERSIST]: the value, and the deadline changed.
pub fn getex(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    let mut expiry = Deadline::Default;
    let mut i = 2;
    while i < c.args.len() {
        match expiry_option(c, i, "PERSIST", "getex")? {
            Some((option, took)) if expiry == Deadline::Default => {
                expiry = option;
                i += took;
            }
            _ => return Err(Reply::err("syntax error")),
        }
    }
    let value = c.tx.get(&key);
    if value.is_some() {
        match expiry {
            Deadline::At(at) => {
                c.tx.expire(&key, Some(at));
            }
            Deadline::Persist => {
                if c.tx.expiry(&key).flatten().is_some() {
                    c.tx.expire(&key, None);
                }
            }
            Deadline::Default | Deadline::Keep => {}
        }
    }
    Ok(bulk_or_nil(value))
}
