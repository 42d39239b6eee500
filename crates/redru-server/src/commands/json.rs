//! RedisJSON's commands on the root and on simple paths: `$`, `$.a.b`,
//! `$.tags[0]`, `$['a b']` (JSONPath) and `.`, `.a.b`, `a.b` (the legacy
//! syntax). A JSONPath reads as a list of matches (`[value]`, `[]` when
//! nothing matches), a legacy path as the value itself, as in RedisJSON.
//! Wildcards, filters and recursive descent are refused with an error.

use redru::{Doc, Value};

use super::Ctx;
use crate::reply::Reply;

type R = Result<Reply, Reply>;

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Member(String),
    Index(i64),
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq)]
struct Path {
    /// JSONPath (`$...`) rather than legacy.
    dollar: bool,
    steps: Vec<Step>,
}

fn parse_path(text: &str) -> Result<Path, Reply> {
    let unsupported =
        || Reply::err(format!("unsupported path `{text}`: redru reads $, $.a.b, $.a[0], $['a'] and .a.b"));
    let (dollar, mut rest) = match text.strip_prefix('$') {
        Some(rest) => (true, rest),
        None if text == "." => (false, ""),
        None => (false, text),
    };
    let mut steps = Vec::new();
    let mut first = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(unsupported)?;
            let inner = &after[..end];
            let step = if let Some(quoted) = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            {
                Step::Member(quoted.to_owned())
            } else {
                Step::Index(inner.trim().parse().map_err(|_| unsupported())?)
            };
            steps.push(step);
            rest = &after[end + 1..];
        } else {
            let body = match rest.strip_prefix('.') {
                Some(body) => body,
                None if first && !dollar => rest,
                None => return Err(unsupported()),
            };
            let end = body.find(['.', '[']).unwrap_or(body.len());
            let name = &body[..end];
            if name.is_empty() || name == "*" || name.starts_with('.') {
                return Err(unsupported());
            }
            steps.push(Step::Member(name.to_owned()));
            rest = &body[end..];
        }
        first = false;
    }
    Ok(Path { dollar, steps })
}

fn index_of(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn lookup<'v>(value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    steps.iter().try_fold(value, |v, step| match (step, v) {
        (Step::Member(m), Value::Object(map)) => map.get(m),
        (Step::Index(i), Value::Array(items)) => index_of(items.len(), *i).map(|i| &items[i]),
        _ => None,
    })
}

fn lookup_mut<'v>(value: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    steps.iter().try_fold(value, |v, step| match (step, v) {
        (Step::Member(m), Value::Object(map)) => map.get_mut(m),
        (Step::Index(i), Value::Array(items)) => index_of(items.len(), *i).map(move |i| &mut items[i]),
        _ => None,
    })
}

fn text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What JSON.GET / JSON.MGET answer for one path of `value`.
fn read(value: &Value, path: &Path) -> Result<String, Reply> {
    let found = lookup(value, &path.steps);
    if path.dollar {
        Ok(text(&Value::Array(found.into_iter().cloned().collect())))
    } else {
        found.map(text).ok_or_else(|| Reply::err(format!("Path '{}' does not exist", display(path))))
    }
}

fn display(path: &Path) -> String {
    let mut out = String::from("$");
    for step in &path.steps {
        match step {
            Step::Member(m) => {
                out.push('.');
                out.push_str(m);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn value_of(c: &Ctx, key: &str) -> Option<Value> {
    c.tx.get(key).map(|d| d.to_value())
}

pub fn get(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    let paths: Vec<(String, Path)> = (2..c.args.len())
        .filter(|&i| !matches!(c.upper(i).as_str(), "INDENT" | "NEWLINE" | "SPACE"))
        .map(|i| Ok((c.text(i)?.to_owned(), parse_path(c.text(i)?)?)))
        .collect::<Result<_, Reply>>()?;
    let Some(value) = value_of(c, &key) else { return Ok(Reply::Nil) };
    match paths.as_slice() {
        [] => Ok(Reply::text(text(&value))),
        [(_, path)] => Ok(Reply::text(read(&value, path)?)),
        many => {
            let mut out = serde_json::Map::new();
            for (name, path) in many {
                let found: Value = serde_json::from_str(&read(&value, path)?).unwrap_or(Value::Null);
                out.insert(name.clone(), found);
            }
            Ok(Reply::text(text(&Value::Object(out))))
        }
    }
}

pub fn mget(c: &mut Ctx) -> R {
    let path = parse_path(c.text(c.args.len() - 1)?)?;
    let mut out = Vec::new();
    for i in 1..c.args.len() - 1 {
        let found = c.key(i).ok().and_then(|k| value_of(c, k)).map(|v| read(&v, &path));
        out.push(match found {
            Some(Ok(text)) => Reply::text(text),
            _ => Reply::Nil,
        });
    }
    Ok(Reply::Array(out))
}

pub fn set(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    let path = parse_path(c.text(2)?)?;
    let new = Doc::parse(c.text(3)?).map_err(|e| Reply::err(format!("expected a JSON value: {e}")))?;
    let (nx, xx) = match c.args.get(4).map(|_| c.upper(4)) {
        None => (false, false),
        Some(o) if o == "NX" && c.args.len() == 5 => (true, false),
        Some(o) if o == "XX" && c.args.len() == 5 => (false, true),
        Some(_) => return Err(Reply::err("syntax error")),
    };
    let current = value_of(c, &key);
    if path.steps.is_empty() {
        if nx && current.is_some() || xx && current.is_none() {
            return Ok(Reply::Nil);
        }
        c.tx.set_keep_ttl(&key, new);
        return Ok(Reply::ok());
    }
    let Some(mut root) = current else {
        return Err(Reply::err("new objects must be created at the root"));
    };
    let (last, parent_steps) = path.steps.split_last().ok_or_else(|| Reply::err("empty path"))?;
    let exists = lookup(&root, &path.steps).is_some();
    if nx && exists || xx && !exists {
        return Ok(Reply::Nil);
    }
    let new_value = new.to_value();
    let Some(parent) = lookup_mut(&mut root, parent_steps) else {
        return if path.dollar {
            Ok(Reply::Nil)
        } else {
            Err(Reply::err(format!("Path '{}' does not exist", display(&path))))
        };
    };
    match (last, parent) {
        (Step::Member(m), Value::Object(map)) => {
            map.insert(m.clone(), new_value);
        }
        (Step::Index(i), Value::Array(items)) => match index_of(items.len(), *i) {
            Some(i) => items[i] = new_value,
            None => return Err(Reply::err("array index out of range")),
        },
        _ => {
            return if path.dollar {
                Ok(Reply::Nil)
            } else {
                Err(Reply::err("the path's parent is not an object or array"))
            };
        }
    }
    let doc = Doc::from(&root);
    c.tx.set_keep_ttl(&key, doc);
    Ok(Reply::ok())
}

pub fn del(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    let path = match c.args.get(2) {
        Some(_) => parse_path(c.text(2)?)?,
        None => Path { dollar: true, steps: Vec::new() },
    };
    let Some(mut root) = value_of(c, &key) else { return Ok(Reply::Int(0)) };
    let Some((last, parent_steps)) = path.steps.split_last() else {
        c.tx.delete(&key);
        return Ok(Reply::Int(1));
    };
    let removed = match (last, lookup_mut(&mut root, parent_steps)) {
        (Step::Member(m), Some(Value::Object(map))) => map.remove(m).is_some(),
        (Step::Index(i), Some(Value::Array(items))) => match index_of(items.len(), *i) {
            Some(i) => {
                items.remove(i);
                true
            }
            None => false,
        },
        _ => false,
    };
    if removed {
        let doc = Doc::from(&root);
        c.tx.set_keep_ttl(&key, doc);
    }
    Ok(Reply::Int(i64::from(removed)))
}

pub fn type_(c: &mut Ctx) -> R {
    let key = c.key(1)?.to_owned();
    let path = match c.args.get(2) {
        Some(_) => parse_path(c.text(2)?)?,
        None => Path { dollar: false, steps: Vec::new() },
    };
    let Some(value) = value_of(c, &key) else { return Ok(Reply::Nil) };
    let found = lookup(&value, &path.steps);
    Ok(if path.dollar {
        Reply::Array(found.map(|v| Reply::text(type_name(v))).into_iter().collect())
    } else {
        found.map_or(Reply::Nil, |v| Reply::Simple(type_name(v).into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = |t: &str| parse_path(t).map_err(|_| t.to_owned());
        let m = |s: &str| Step::Member(s.into());
        assert_eq!(p("$"), Ok(Path { dollar: true, steps: vec![] }));
        assert_eq!(p("."), Ok(Path { dollar: false, steps: vec![] }));
        assert_eq!(p("$.a.b[2]"), Ok(Path { dollar: true, steps: vec![m("a"), m("b"), Step::Index(2)] }));
        assert_eq!(p(".a"), Ok(Path { dollar: false, steps: vec![m("a")] }));
        assert_eq!(p("a.b"), Ok(Path { dollar: false, steps: vec![m("a"), m("b")] }));
        assert_eq!(p("$['a b'][-1]"), Ok(Path { dollar: true, steps: vec![m("a b"), Step::Index(-1)] }));
        for bad in ["$..a", "$.*", "$[?(@.a)]", "$.a[", "$a"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }
}
