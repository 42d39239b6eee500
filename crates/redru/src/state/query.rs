//! Queries: conditions joined by `and`, parsed from text people type, and a
//! planner that uses a hash index for an equality when one exists.
//!
//! Pure: no I/O. A query is evaluated against the in-memory state under the
//! read lock; the result says which plan ran (`explain`).
//!
//! ```text
//! name = Alice
//! name Alice                          (shorthand for name = Alice)
//! age >= 30 and address.city = Oslo
//! exists email and name != "Bob Smith"
//! prefix user: and tags.0 = "admin"
//! $ = {"a": 1}                        (the whole value)
//! ```

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::state::doc::Doc;
use crate::state::index::{FieldPath, ValueDigest};
use crate::state::store::State;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=` (or `==`): equal JSON values; numbers by value (`1` = `1.0`).
    Eq,
    /// `!=`: the field exists and is not equal.
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        })
    }
}

/// One condition of a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `field op value`.
    Compare {
        /// The field path.
        field: FieldPath,
        /// The operator.
        op: CmpOp,
        /// The value compared with.
        value: Value,
    },
    /// `exists field`: the value has the field (even if it is `null`).
    Exists(FieldPath),
    /// `prefix text`: the key starts with `text`.
    KeyPrefix(String),
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Compare { field, op, value } => write!(f, "{field} {op} {value}"),
            Condition::Exists(field) => write!(f, "exists {field}"),
            Condition::KeyPrefix(p) => write!(f, "prefix {}", Value::String(p.clone())),
        }
    }
}

/// Conditions that must all hold.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Query {
    /// The conditions, joined by `and`.
    pub conditions: Vec<Condition>,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conditions.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Query {
    type Err = Error;
    fn from_str(s: &str) -> Result<Query> {
        Query::parse(s)
    }
}

/// How a query was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Candidates came from the hash index on `field`, then the other
    /// conditions were checked on each.
    IndexLookup {
        /// The indexed field used.
        field: String,
        /// Keys the index returned.
        candidates: usize,
    },
    /// Every key (or every key with the prefix) was examined.
    Scan {
        /// Keys examined.
        examined: usize,
        /// The key prefix that narrowed the scan, if any.
        prefix: Option<String>,
    },
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::IndexLookup { field, candidates } => {
                write!(f, "index lookup on `{field}` ({candidates} candidate keys), then filter")
            }
            Plan::Scan { examined, prefix: None } => {
                write!(f, "full scan ({examined} keys examined; no index applies)")
            }
            Plan::Scan { examined, prefix: Some(p) } => {
                write!(f, "scan of keys with prefix {p:?} ({examined} keys examined)")
            }
        }
    }
}

/// The matches of a query, sorted by key, and the plan that found them.
#[derive(Clone, Debug)]
pub struct QueryResult {
    /// Matching keys and their values.
    pub entries: Vec<(String, Doc)>,
    /// How they were found.
    pub plan: Plan,
}

/// Parses a value as commands do: JSON when the text is JSON, otherwise the text as a string.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    /// A JSON token (a quoted string, an object or an array), already parsed.
    Json(Value),
    Op(CmpOp),
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let bad = |reason: String| Error::InvalidQuery { query: String::new(), reason };
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if matches!(c, '=' | '!' | '<' | '>') {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let (op, len) = match two.as_str() {
                "==" => (CmpOp::Eq, 2),
                "!=" => (CmpOp::Ne, 2),
                "<=" => (CmpOp::Le, 2),
                ">=" => (CmpOp::Ge, 2),
                _ => match c {
                    '=' => (CmpOp::Eq, 1),
                    '<' => (CmpOp::Lt, 1),
                    '>' => (CmpOp::Gt, 1),
                    _ => return Err(bad("`!` must be followed by `=` (write `!=`)".into())),
                },
            };
            tokens.push(Token::Op(op));
            i += len;
        } else if matches!(c, '"' | '{' | '[') {
            let end = json_end(&chars, i).ok_or_else(|| {
                bad(format!("unclosed {} starting at character {}", if c == '"' { "quote" } else { "bracket" }, i + 1))
            })?;
            let raw: String = chars[i..end].iter().collect();
            let value: Value = serde_json::from_str(&raw).map_err(|e| bad(format!("invalid JSON `{raw}`: {e}")))?;
            tokens.push(Token::Json(value));
            i = end;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '=' | '!' | '<' | '>') {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(tokens)
}

/// The end (exclusive) of the JSON string, object or array starting at `start`.
fn json_end(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate().skip(start) {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

impl Query {
    /// Parses the query language (module docs): conditions joined by `and`.
    pub fn parse(text: &str) -> Result<Query> {
        // The helpers leave the query out of their errors; it is filled in here.
        let with_query = |e: Error| match e {
            Error::InvalidQuery { reason, .. } => Error::InvalidQuery { query: text.to_owned(), reason },
            other => other,
        };
        let tokens = tokenize(text).map_err(with_query)?;
        if tokens.is_empty() {
            return Err(with_query(Error::InvalidQuery {
                query: String::new(),
                reason: "empty query: write a condition such as `name = Alice`".into(),
            }));
        }
        let mut conditions = Vec::new();
        for clause in tokens.split(|t| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case("and"))) {
            conditions.push(parse_clause(clause).map_err(with_query)?);
        }
        Ok(Query { conditions })
    }

    /// A single equality condition.
    pub fn eq(field: &str, value: Value) -> Result<Query> {
        Ok(Query { conditions: vec![Condition::Compare { field: FieldPath::parse(field)?, op: CmpOp::Eq, value }] })
    }
}

fn value_of(token: &Token) -> Option<Value> {
    match token {
        Token::Word(w) => Some(parse_value(w)),
        Token::Json(v) => Some(v.clone()),
        Token::Op(_) => None,
    }
}

fn parse_clause(clause: &[Token]) -> Result<Condition> {
    let bad = |reason: String| Error::InvalidQuery { query: String::new(), reason };
    let usage = "write `field = value`, `field < value` (= != < <= > >=), `exists field` or `prefix text`";
    match clause {
        [] => Err(bad(format!("empty condition around `and`: {usage}"))),
        [Token::Word(kw), Token::Word(field)] if kw.eq_ignore_ascii_case("exists") => {
            Ok(Condition::Exists(FieldPath::parse(field)?))
        }
        [Token::Word(kw), rest] if kw.eq_ignore_ascii_case("prefix") => match rest {
            Token::Word(p) => Ok(Condition::KeyPrefix(p.clone())),
            Token::Json(Value::String(p)) => Ok(Condition::KeyPrefix(p.clone())),
            _ => Err(bad("`prefix` takes a key prefix (a word or a quoted string)".into())),
        },
        [Token::Word(field), Token::Op(op), value] => {
            let value = value_of(value).ok_or_else(|| bad(format!("expected a value after `{field} {op}`")))?;
            if matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge) && !(value.is_number() || value.is_string())
            {
                return Err(bad(format!("`{op}` compares numbers or strings, not {value}")));
            }
            Ok(Condition::Compare { field: FieldPath::parse(field)?, op: *op, value })
        }
        // Shorthand: `name Alice` means `name = Alice`.
        [Token::Word(field), value @ (Token::Word(_) | Token::Json(_))] => Ok(Condition::Compare {
            field: FieldPath::parse(field)?,
            op: CmpOp::Eq,
            value: value_of(value).unwrap_or(Value::Null),
        }),
        [Token::Word(field)] => Err(bad(format!("`{field}` needs an operator and a value: {usage}"))),
        [Token::Word(field), Token::Op(op)] => Err(bad(format!("expected a value after `{field} {op}`"))),
        _ => Err(bad(format!("cannot read this condition: {usage}; join conditions with `and`"))),
    }
}

impl Condition {
    /// Whether `key`/`value` satisfies the condition.
    pub fn matches(&self, key: &str, value: &Value) -> bool {
        match self {
            Condition::Exists(field) => field.resolve(value).is_some(),
            Condition::KeyPrefix(p) => key.starts_with(p.as_str()),
            Condition::Compare { field, op, value: wanted } => {
                let Some(have) = field.resolve(value) else { return false };
                match op {
                    CmpOp::Eq => ValueDigest::of(have) == ValueDigest::of(wanted),
                    CmpOp::Ne => ValueDigest::of(have) != ValueDigest::of(wanted),
                    _ => match order(have, wanted) {
                        Some(ord) => match op {
                            CmpOp::Lt => ord == Ordering::Less,
                            CmpOp::Le => ord != Ordering::Greater,
                            CmpOp::Gt => ord == Ordering::Greater,
                            _ => ord != Ordering::Less,
                        },
                        None => false,
                    },
                }
            }
        }
    }
}

/// Orders two numbers by value or two strings by code point; other pairs do not compare.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Runs `query` against `state`.
pub fn run(state: &State, query: &Query) -> QueryResult {
    // The smallest candidate set among indexed equalities, if any.
    let best = query
        .conditions
        .iter()
        .filter_map(|c| match c {
            Condition::Compare { field, op: CmpOp::Eq, value } => state.index(field).map(|idx| (idx, value)),
            _ => None,
        })
        .map(|(idx, value)| {
            let digest = ValueDigest::of(value);
            (idx, digest, idx.lookup(&digest).count())
        })
        .min_by_key(|(_, _, n)| *n);
    // Conditions on the key alone need no parse of the value.
    let on_values = query.conditions.iter().any(|c| !matches!(c, Condition::KeyPrefix(_)));
    let keep = |key: &str, doc: &Doc| {
        let value = if on_values { doc.to_value() } else { Value::Null };
        query.conditions.iter().all(|c| c.matches(key, &value))
    };
    let mut entries: Vec<(String, Doc)>;
    let plan = if let Some((idx, digest, candidates)) = best {
        entries = idx
            .lookup(&digest)
            .filter_map(|k| state.map.get(k).map(|v| (k, v)))
            .filter(|(k, v)| keep(k, v))
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Plan::IndexLookup { field: idx.path().to_string(), candidates }
    } else {
        let prefix = query.conditions.iter().find_map(|c| match c {
            Condition::KeyPrefix(p) => Some(p.clone()),
            _ => None,
        });
        let mut examined = 0;
        entries = state
            .map
            .iter()
            .filter(|(k, _)| prefix.as_deref().is_none_or(|p| k.starts_with(p)))
            .inspect(|_| examined += 1)
            .filter(|(k, v)| keep(k, v))
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Plan::Scan { examined, prefix }
    };
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    QueryResult { entries, plan }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::change::{Record, Seq};
    use serde_json::json;

    fn state() -> State {
        let mut s = State::default();
        let rows = [
            ("u1", json!({"name": "Alice", "age": 30, "address": {"city": "Oslo"}, "tags": ["admin"]})),
            ("u2", json!({"name": "Bob", "age": 25.0, "address": {"city": "Bergen"}})),
            ("u3", json!({"name": "Alice", "age": 41, "email": null})),
            ("x1", json!("Alice")),
        ];
        for (i, (k, v)) in rows.into_iter().enumerate() {
            s.apply(Seq(i as u64 + 1), &Record::Set(k.into(), crate::Doc::from(v)));
        }
        s
    }

    fn keys(s: &State, q: &str) -> Result<Vec<String>> {
        Ok(run(s, &Query::parse(q)?).entries.into_iter().map(|(k, _)| k).collect())
    }

    #[test]
    fn parses_what_people_type() -> Result<()> {
        let q = Query::parse(r#"name = "Alice Smith" and age>=30 AND exists address.city and prefix user:"#)?;
        assert_eq!(q.conditions.len(), 4);
        assert_eq!(q.to_string(), r#"name = "Alice Smith" and age >= 30 and exists address.city and prefix "user:""#);
        assert_eq!(Query::parse("name Alice")?, Query::eq("name", json!("Alice"))?);
        assert_eq!(Query::parse(r#"$ = {"a": [1, "x y"]}"#)?.conditions.len(), 1);
        assert_eq!(Query::parse("n == 1")?, Query::eq("n", json!(1))?);
        for bad in ["", "name", "name =", "name = 1 and", "age ! 3", "a = {\"x\":", "age < {}", "a..b = 1", "x = 1 y"] {
            assert!(Query::parse(bad).is_err(), "{bad:?} should be refused");
        }
        Ok(())
    }

    #[test]
    fn conditions_filter_exactly() -> Result<()> {
        let s = state();
        assert_eq!(keys(&s, "name = Alice")?, ["u1", "u3"]);
        assert_eq!(keys(&s, "name != Alice")?, ["u2"]);
        assert_eq!(keys(&s, "age >= 30")?, ["u1", "u3"]);
        assert_eq!(keys(&s, "age < 30")?, ["u2"]);
        assert_eq!(keys(&s, "age = 25")?, ["u2"], "25 matches 25.0");
        assert_eq!(keys(&s, "age > 26 and age <= 41 and name = Alice")?, ["u1", "u3"]);
        assert_eq!(keys(&s, "name > B")?, ["u2"]);
        assert_eq!(keys(&s, "exists email")?, ["u3"]);
        assert_eq!(keys(&s, "tags.0 = admin")?, ["u1"]);
        assert_eq!(keys(&s, "address.city = Oslo")?, ["u1"]);
        assert_eq!(keys(&s, "$ = Alice")?, ["x1"]);
        assert_eq!(keys(&s, "prefix u and age > 100")?, Vec::<String>::new());
        assert_eq!(keys(&s, "prefix x and exists $")?, ["x1"]);
        assert_eq!(keys(&s, "age > Alice")?, Vec::<String>::new(), "a number never compares with a string");
        Ok(())
    }

    #[test]
    fn the_planner_uses_an_index_for_equality() -> Result<()> {
        let mut s = state();
        s.apply(Seq(10), &Record::CreateIndex { field: "name".into(), unique: false });
        let r = run(&s, &Query::parse("age > 35 and name = Alice")?);
        assert_eq!(r.plan, Plan::IndexLookup { field: "name".into(), candidates: 2 });
        assert_eq!(r.entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["u3"]);
        let r = run(&s, &Query::parse("age > 35")?);
        assert_eq!(r.plan, Plan::Scan { examined: 4, prefix: None });
        let r = run(&s, &Query::parse("prefix u and age > 35")?);
        assert_eq!(r.plan, Plan::Scan { examined: 3, prefix: Some("u".into()) });
        assert!(r.plan.to_string().contains("prefix"));
        Ok(())
    }
}
