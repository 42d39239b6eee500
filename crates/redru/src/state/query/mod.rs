//! Queries: the language people type and the planner that answers it.
//!
//! Pure: no I/O. A query is a filter (conditions joined by `and`, `or`,
//! `not` and parentheses), then an optional order, page and projection. The
//! planner answers equalities and `in` lists on indexed fields through their
//! hash indexes, intersecting several under `and` and uniting them under
//! `or`; a key prefix narrows a scan; otherwise every key is examined. The
//! result says which plan ran (`explain`). The grammar is in docs/design.md.
//!
//! ```text
//! name = Alice                         name Alice (the same)
//! age >= 30 and address.city = Oslo    age between 20 and 30
//! (city = Oslo or city = Bergen) and not exists deleted
//! tags contains admin                  name prefix Al          role in ["admin", "owner"]
//! prefix user: and age > 20 sort by age desc, name limit 10 offset 20 fields name, age
//! $ = {"a": 1}                         (the whole value)
//! ```

mod parse;
mod run;
mod text;

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::state::doc::Doc;
use crate::state::index::{FieldPath, ValueDigest, compare_numbers, compare_values};

#[cfg(test)]
pub use run::run;
pub use run::{run_indexed, scan};

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
#[non_exhaustive]
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
    /// `field in [v1, v2]`: the field equals one of the values.
    In {
        /// The field path.
        field: FieldPath,
        /// The values.
        values: Vec<Value>,
    },
    /// `field contains value`: the field is an array with a member equal to the value.
    Contains {
        /// The field path.
        field: FieldPath,
        /// The member looked for.
        value: Value,
    },
    /// `field prefix text`: the field is a string starting with `text`.
    StartsWith {
        /// The field path.
        field: FieldPath,
        /// The start looked for.
        prefix: String,
    },
    /// `field between low and high`: `low <= field <= high` (numbers or strings).
    Between {
        /// The field path.
        field: FieldPath,
        /// The lower bound, included.
        low: Value,
        /// The upper bound, included.
        high: Value,
    },
}

fn quoted(text: &str) -> Value {
    Value::String(text.to_owned())
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Compare { field, op, value } => write!(f, "{field} {op} {value}"),
            Condition::Exists(field) => write!(f, "exists {field}"),
            Condition::KeyPrefix(p) => write!(f, "prefix {}", quoted(p)),
            Condition::In { field, values } => write!(f, "{field} in {}", Value::Array(values.clone())),
            Condition::Contains { field, value } => write!(f, "{field} contains {value}"),
            Condition::StartsWith { field, prefix } => write!(f, "{field} prefix {}", quoted(prefix)),
            Condition::Between { field, low, high } => write!(f, "{field} between {low} and {high}"),
        }
    }
}

/// A query's filter: conditions combined with `and`, `or` and `not`.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// One condition.
    Cond(Condition),
    /// Every part holds (an empty `And` holds for every entry).
    And(Vec<Filter>),
    /// At least one part holds.
    Or(Vec<Filter>),
    /// The part does not hold.
    Not(Box<Filter>),
}

impl Default for Filter {
    fn default() -> Filter {
        Filter::And(Vec::new())
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Filter], word: &str| -> fmt::Result {
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {word} ")?;
                }
                match part {
                    Filter::And(_) | Filter::Or(_) => write!(f, "({part})")?,
                    _ => write!(f, "{part}")?,
                }
            }
            Ok(())
        };
        match self {
            Filter::Cond(c) => write!(f, "{c}"),
            Filter::And(parts) => join(f, parts, "and"),
            Filter::Or(parts) => join(f, parts, "or"),
            Filter::Not(part) => match **part {
                Filter::Cond(_) | Filter::Not(_) => write!(f, "not {part}"),
                _ => write!(f, "not ({part})"),
            },
        }
    }
}

/// One key of `sort by`.
#[derive(Clone, Debug, PartialEq)]
pub struct SortKey {
    /// The field sorted on.
    pub field: FieldPath,
    /// `desc`.
    pub descending: bool,
}

/// A parsed query: what to match, in which order, which page, which fields.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Query {
    /// Which entries match.
    pub filter: Filter,
    /// `sort by`: entries ordered by these fields (then by key); by key without it.
    pub sort: Vec<SortKey>,
    /// `limit N`: at most this many entries.
    pub limit: Option<usize>,
    /// `offset N`: skip this many first.
    pub offset: usize,
    /// `fields a, b.c`: each value reduced to an object of these paths.
    pub fields: Option<Vec<FieldPath>>,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if self.filter != Filter::default() {
            write!(f, "{}", self.filter)?;
            sep = " ";
        }
        if !self.sort.is_empty() {
            f.write_str(sep)?;
            f.write_str("sort by ")?;
            for (i, key) in self.sort.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{}{}", key.field, if key.descending { " desc" } else { "" })?;
            }
            sep = " ";
        }
        if let Some(limit) = self.limit {
            write!(f, "{sep}limit {limit}")?;
            sep = " ";
        }
        if self.offset > 0 {
            write!(f, "{sep}offset {}", self.offset)?;
            sep = " ";
        }
        if let Some(fields) = &self.fields {
            let list: Vec<String> = fields.iter().map(ToString::to_string).collect();
            write!(f, "{sep}fields {}", list.join(", "))?;
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

impl Query {
    /// Parses the query language (module docs, docs/design.md). A malformed
    /// query is [`Error::InvalidQuery`], saying what was expected at which character.
    pub fn parse(text: &str) -> Result<Query> {
        parse::parse(text).map_err(|reason| Error::InvalidQuery { query: text.to_owned(), reason })
    }

    /// A single equality condition.
    pub fn eq(field: &str, value: Value) -> Result<Query> {
        let field = FieldPath::parse(field)?;
        Ok(Query { filter: Filter::Cond(Condition::Compare { field, op: CmpOp::Eq, value }), ..Query::default() })
    }

    /// Whether `key` with `value` passes the filter.
    pub fn matches(&self, key: &str, value: &Value) -> bool {
        self.filter.matches(key, value)
    }
}

impl Filter {
    /// Whether `key`/`value` passes.
    pub fn matches(&self, key: &str, value: &Value) -> bool {
        match self {
            Filter::Cond(c) => c.matches(key, value),
            Filter::And(parts) => parts.iter().all(|p| p.matches(key, value)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches(key, value)),
            Filter::Not(part) => !part.matches(key, value),
        }
    }
}

/// How a query was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Plan {
    /// Candidates came from the hash index on `field`, then the other
    /// conditions were checked on each.
    IndexLookup {
        /// The indexed field used.
        field: String,
        /// Keys the index returned.
        candidates: usize,
    },
    /// Candidates came from several index lookups: intersected under `and`,
    /// united under `or` and `in`; then every condition was checked on each.
    Indexes {
        /// How the lookups combined, e.g. `name ∩ (city ∪ city)`.
        combined: String,
        /// Keys the combination returned.
        candidates: usize,
    },
    /// Candidates came from a range of the ordered index on `field` (the
    /// range `<`, `<=`, `>`, `>=` or `between` bound), then every condition
    /// was checked on each.
    IndexRange {
        /// The indexed field used.
        field: String,
        /// Keys in the range.
        candidates: usize,
    },
    /// `sort by FIELD ... limit N`: the ordered index on `field` was walked
    /// in order (within the filter's range on it, if any), checking the
    /// filter on each key, until the page was full.
    OrderedWalk {
        /// The indexed field walked.
        field: String,
        /// Walked from the largest value down.
        descending: bool,
        /// Keys examined.
        examined: usize,
        /// Whether the walk stopped before the end of the index (then
        /// [`QueryResult::total`] counts only the matches it examined).
        stopped_early: bool,
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
        let keys = |n: usize| if n == 1 { "1 key".to_owned() } else { format!("{n} keys") };
        let candidates = |n: usize| if n == 1 { "1 candidate key".to_owned() } else { format!("{n} candidate keys") };
        match self {
            Plan::IndexLookup { field, candidates: n } => {
                write!(f, "index lookup on `{field}` ({}), then filter", candidates(*n))
            }
            Plan::Indexes { combined, candidates: n } => {
                write!(f, "index lookups {combined} ({}), then filter", candidates(*n))
            }
            Plan::IndexRange { field, candidates: n } => {
                write!(f, "index range on `{field}` ({}), then filter", candidates(*n))
            }
            Plan::OrderedWalk { field, descending, examined, stopped_early } => {
                let order = if *descending { "descending" } else { "ascending" };
                let end = if *stopped_early { "stopped when the page was full" } else { "to the end" };
                write!(f, "ordered index walk on `{field}`, {order} ({} examined, {end})", keys(*examined))
            }
            Plan::Scan { examined, prefix: None } => {
                write!(f, "full scan ({} examined; no index applies)", keys(*examined))
            }
            Plan::Scan { examined, prefix: Some(p) } => {
                write!(f, "scan of keys with prefix {p:?} ({} examined)", keys(*examined))
            }
        }
    }
}

/// The matches of a query, in order, and the plan that found them.
#[derive(Clone, Debug)]
pub struct QueryResult {
    /// Matching keys and their values (projected with `fields`), sorted by
    /// key or by `sort by`, the page `offset`/`limit` chose.
    pub entries: Vec<(String, Doc)>,
    /// How many entries matched before `offset` and `limit`; after an
    /// ordered walk that stopped early ([`Plan::OrderedWalk`]), how many of
    /// the keys it examined matched (at least the page, at most the total).
    pub total: usize,
    /// How they were found.
    pub plan: Plan,
}

/// Parses a value as commands do: JSON when the text is JSON, otherwise the text as a string.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
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
                    CmpOp::Eq => equal(have, wanted),
                    CmpOp::Ne => !equal(have, wanted),
                    _ => order(have, wanted).is_some_and(|ord| holds(*op, ord)),
                }
            }
            Condition::In { field, values } => {
                field.resolve(value).is_some_and(|have| values.iter().any(|v| equal(have, v)))
            }
            Condition::Contains { field, value: wanted } => match field.resolve(value) {
                Some(Value::Array(items)) => items.iter().any(|item| equal(item, wanted)),
                _ => false,
            },
            Condition::StartsWith { field, prefix } => {
                matches!(field.resolve(value), Some(Value::String(s)) if s.starts_with(prefix.as_str()))
            }
            Condition::Between { field, low, high } => field.resolve(value).is_some_and(|have| {
                order(have, low).is_some_and(|o| o != Ordering::Less)
                    && order(have, high).is_some_and(|o| o != Ordering::Greater)
            }),
        }
    }
}

/// Whether `have` `op` `wanted` holds, given how `have` orders against `wanted`
/// (for `<`, `<=`, `>`, `>=`; equality is [`equal`]'s).
fn holds(op: CmpOp, ord: Ordering) -> bool {
    match op {
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
    }
}

/// Equal as the hash indexes see it: numbers by value (`1` = `1.0`), objects
/// whatever their member order.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => ValueDigest::of(a) == ValueDigest::of(b),
    }
}

/// Orders two numbers by value or two strings by code point; other pairs do not compare.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        // Exactly as ordered indexes order them, so an index range holds every match.
        (Value::Number(x), Value::Number(y)) => Some(compare_numbers(x, y)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// The order of `sort by`, total across types: a missing field first, then
/// the order of ordered indexes ([`compare_values`]: null, false, true,
/// numbers by exact value, strings by code point, arrays element by
/// element, objects by their canonical JSON text).
pub fn sort_order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => compare_values(x, y),
        _ => a.is_some().cmp(&b.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::change::{Record, Seq};
    use crate::state::index::IndexKind;
    use crate::state::store::State;
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
        assert!(matches!(&q.filter, Filter::And(parts) if parts.len() == 4));
        assert_eq!(q.to_string(), r#"name = "Alice Smith" and age >= 30 and exists address.city and prefix "user:""#);
        assert_eq!(Query::parse("name Alice")?, Query::eq("name", json!("Alice"))?);
        assert!(matches!(Query::parse(r#"$ = {"a": [1, "x y"]}"#)?.filter, Filter::Cond(_)));
        assert_eq!(Query::parse("n == 1")?, Query::eq("n", json!(1))?);
        let q = Query::parse(
            "(a = 1 or not b in [1, \"x\"]) and c contains 3 and d prefix x and e between 1 and 5 sort by a desc, b limit 10 offset 5 fields a, b.c",
        )?;
        assert_eq!(
            q.to_string(),
            r#"(a = 1 or not b in [1,"x"]) and c contains 3 and d prefix "x" and e between 1 and 5 sort by a desc, b limit 10 offset 5 fields a, b.c"#
        );
        assert_eq!(Query::parse(&q.to_string())?, q, "the display parses back to the same query");
        assert_eq!(Query::parse("sort by age limit 3")?.limit, Some(3));
        assert!(
            matches!(Query::parse("sort = 1")?.filter, Filter::Cond(Condition::Compare { .. })),
            "a field named sort"
        );
        for bad in [
            "",
            "name",
            "name =",
            "name = 1 and",
            "age ! 3",
            "a = {\"x\":",
            "age < {}",
            "a..b = 1",
            "x = 1 y",
            "(a = 1",
            "a = 1)",
            "a in 3",
            "a between 1",
            "a between 1 and {}",
            "sort age",
            "limit x",
            "limit 1 limit 2",
            "not",
            "a = 1 or",
            "fields",
        ] {
            assert!(Query::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let deep = format!("{}a = 1{}", "(".repeat(100), ")".repeat(100));
        assert!(Query::parse(&deep).is_err(), "nesting is bounded");
        Ok(())
    }

    #[test]
    fn errors_say_where() {
        let reason = |q: &str| match Query::parse(q) {
            Err(Error::InvalidQuery { reason, .. }) => reason,
            other => format!("not an InvalidQuery: {other:?}"),
        };
        assert_eq!(
            reason("age > 3 and"),
            "at the end (character 12): expected a field path such as `name`, `address.city` or `tags.0`, found the end of the query"
        );
        assert!(reason("age >").starts_with("at the end (character 6): expected a value after `age >`"));
        assert!(
            reason("a = 1 b = 2").starts_with("at character 7: expected `and`, `or` or the end of the query"),
            "{}",
            reason("a = 1 b = 2")
        );
        assert!(reason("(a = 1").starts_with("at the end (character 7): expected `)`"));
        assert!(reason("a in 3").starts_with("at character 6: expected a JSON array"));
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
        assert_eq!(keys(&s, "name = Bob or age > 40")?, ["u2", "u3"]);
        assert_eq!(keys(&s, "not name = Alice")?, ["u2", "x1"]);
        assert_eq!(keys(&s, "tags contains admin")?, ["u1"]);
        assert_eq!(keys(&s, "name prefix Al")?, ["u1", "u3"]);
        assert_eq!(keys(&s, "age between 25 and 30")?, ["u1", "u2"]);
        assert_eq!(keys(&s, "name in [\"Bob\", \"Carol\"]")?, ["u2"]);
        assert_eq!(keys(&s, "exists age sort by age desc")?, ["u3", "u1", "u2"]);
        assert_eq!(keys(&s, "exists age sort by age limit 2 offset 1")?, ["u1", "u3"]);
        assert_eq!(keys(&s, "sort by name desc limit 1")?, ["u2"], "missing fields sort first, desc last");
        let r = run(&s, &Query::parse("prefix u sort by age fields name, address.city limit 2")?);
        assert_eq!(r.total, 3);
        let got: Vec<String> = r.entries.iter().map(|(k, v)| format!("{k} {}", v.as_str())).collect();
        assert_eq!(
            got,
            [r#"u2 {"address.city":"Bergen","name":"Bob"}"#, r#"u1 {"address.city":"Oslo","name":"Alice"}"#]
        );
        Ok(())
    }

    #[test]
    fn the_planner_uses_an_index_for_equality() -> Result<()> {
        let mut s = state();
        s.apply(Seq(10), &Record::CreateIndex { field: "name".into(), unique: false, kind: IndexKind::Hash });
        let r = run(&s, &Query::parse("age > 35 and name = Alice")?);
        assert_eq!(r.plan, Plan::IndexLookup { field: "name".into(), candidates: 2 });
        assert_eq!(r.entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["u3"]);
        let r = run(&s, &Query::parse("age > 35")?);
        assert_eq!(r.plan, Plan::Scan { examined: 4, prefix: None });
        let r = run(&s, &Query::parse("prefix u and age > 35")?);
        assert_eq!(r.plan, Plan::Scan { examined: 3, prefix: Some("u".into()) });
        assert!(r.plan.to_string().contains("prefix"));
        s.apply(Seq(11), &Record::CreateIndex { field: "address.city".into(), unique: false, kind: IndexKind::Hash });
        let r = run(&s, &Query::parse("name = Alice and address.city = Oslo")?);
        assert!(matches!(&r.plan, Plan::Indexes { candidates: 1, .. }), "{}", r.plan);
        assert_eq!(r.entries.len(), 1);
        let r = run(&s, &Query::parse("name = Bob or address.city = Oslo")?);
        assert!(matches!(&r.plan, Plan::Indexes { candidates: 2, .. }), "{}", r.plan);
        let r = run(&s, &Query::parse("name = Bob or age > 40")?);
        assert!(matches!(r.plan, Plan::Scan { .. }), "an `or` with an unindexed side scans");
        let r = run(&s, &Query::parse("name in [\"Bob\", \"Alice\"] and not age < 30")?);
        assert!(matches!(&r.plan, Plan::Indexes { candidates: 3, .. }), "{}", r.plan);
        assert_eq!(r.entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["u1", "u3"]);
        Ok(())
    }

    fn ordered(field: &str) -> Record {
        Record::CreateIndex { field: field.into(), unique: false, kind: IndexKind::Ordered }
    }

    /// Ages across the number edges, and values of other types.
    fn ages() -> State {
        let mut s = State::default();
        let rows: [(&str, Value); 12] = [
            ("a", json!({"age": 1})),
            ("b", json!({"age": 1.0})),
            ("c", json!({"age": -0.0})),
            ("d", json!({"age": 0})),
            ("e", json!({"age": 1.5})),
            ("f", json!({"age": 9_007_199_254_740_993_u64})),
            ("g", json!({"age": 9_007_199_254_740_992.0})),
            ("h", json!({"age": "30"})),
            ("i", json!({"age": null})),
            ("j", json!({"age": true})),
            ("k", json!({"other": 1})),
            ("l", json!({"age": [1]})),
        ];
        for (i, (k, v)) in rows.into_iter().enumerate() {
            s.apply(Seq(i as u64 + 1), &Record::Set(k.into(), crate::Doc::from(v)));
        }
        s
    }

    #[test]
    fn ranges_through_an_ordered_index_answer_as_a_scan() -> Result<()> {
        let mut s = ages();
        let queries = [
            "age < 1",
            "age <= 1",
            "age > 1",
            "age >= 0",
            "age <= -0.0",
            "age between 0 and 1",
            "age between 1 and 0",
            "age between 1.5 and 1.5",
            "age > 9007199254740992",
            "age >= 9007199254740992.0",
            "age < \"4\"",
            "age >= \"\"",
            "age between 0 and \"z\"",
            "age > 0 and age < 2",
            "age > 0 or name = x",
            "age >= 1 and age <= 1 and age > 0",
            "age > 1 and age < \"z\"",
            "age >= 0 and age < 1.5 sort by age desc limit 2",
            "exists age sort by age limit 3",
            "exists age sort by age desc limit 3 offset 1",
            "age >= 0 sort by age desc limit 2",
            "age < 2 sort by age limit 2",
            "sort by age limit 2",
        ];
        let plain: Vec<_> = queries.iter().map(|q| keys(&s, q)).collect::<Result<_>>()?;
        s.apply(Seq(100), &ordered("age"));
        for (q, want) in queries.iter().zip(&plain) {
            assert_eq!(&keys(&s, q)?, want, "{q}");
        }
        assert_eq!(plain[0], ["c", "d"], "-0.0 and 0 are below 1");
        assert_eq!(plain[4], ["c", "d"], "-0.0 = 0");
        assert_eq!(plain[8], ["f"], "2^53 + 1 is above the float 2^53, exactly");
        assert_eq!(plain[9], ["f", "g"]);
        assert_eq!(plain[10], ["h"], "strings compare with strings only");
        let plan = |q: &str| Query::parse(q).map(|q| run(&s, &q).plan);
        assert_eq!(plan("age between 0 and 1")?, Plan::IndexRange { field: "age".into(), candidates: 4 });
        assert_eq!(plan("age between 1 and 0")?, Plan::IndexRange { field: "age".into(), candidates: 0 });
        assert_eq!(plan("age between 0 and \"z\"")?, Plan::IndexRange { field: "age".into(), candidates: 0 });
        assert_eq!(plan("age >= \"\"")?, Plan::IndexRange { field: "age".into(), candidates: 1 });
        // Ranges on one field under `and` make one range.
        assert_eq!(plan("age > 0 and age < 2")?, Plan::IndexRange { field: "age".into(), candidates: 3 });
        assert_eq!(plan("age >= 1 and age <= 1 and age > 0")?, Plan::IndexRange { field: "age".into(), candidates: 2 });
        assert_eq!(plan("age > 1 and age < \"z\"")?, Plan::IndexRange { field: "age".into(), candidates: 0 });
        assert!(matches!(plan("sort by age limit 2")?, Plan::Scan { .. }), "missing ages sort first: no walk");
        assert_eq!(
            plan("exists age sort by age desc limit 3 offset 1")?,
            Plan::OrderedWalk { field: "age".into(), descending: true, examined: 4, stopped_early: true }
        );
        assert!(plan("exists age sort by age limit 3")?.to_string().starts_with("ordered index walk on `age`"));
        Ok(())
    }

    #[test]
    fn a_walk_stops_early_and_a_range_bounds_it() -> Result<()> {
        let mut s = State::default();
        s.apply(Seq(1), &ordered("n"));
        for i in 0..1000u64 {
            s.apply(Seq(i + 2), &Record::Set(format!("k{i:04}"), crate::Doc::from(json!({"n": i % 100, "m": i}))));
        }
        let r = run(&s, &Query::parse("n >= 50 sort by n limit 15")?);
        assert_eq!(
            r.plan,
            Plan::OrderedWalk { field: "n".into(), descending: false, examined: 20, stopped_early: true }
        );
        assert_eq!(r.entries.first().map(|e| e.0.as_str()), Some("k0050"));
        assert_eq!(r.entries.last().map(|e| e.0.as_str()), Some("k0451"), "ties by key");
        // A second sort key: the walk finishes the group of equal values it is in.
        let r = run(&s, &Query::parse("n >= 50 sort by n, m desc limit 11")?);
        assert!(matches!(r.plan, Plan::OrderedWalk { examined: 20, .. }), "{}", r.plan);
        assert_eq!(r.entries.last().map(|e| e.0.as_str()), Some("k0951"));
        let r = run(&s, &Query::parse("n between 10 and 20 and n != 15")?);
        assert_eq!(r.plan, Plan::IndexRange { field: "n".into(), candidates: 110 });
        assert_eq!(r.total, 100);
        Ok(())
    }
}
