//! The planner and the executor: which keys to examine (index lookups and
//! ranges combined, an ordered index walked in `sort by` order until the
//! page is full, a key prefix, or all), the filter on each, then the order,
//! the page and the projection. Indexes only choose which keys to examine:
//! every examined key is checked against the whole filter.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::ops::Bound;

use serde_json::Value;

use super::{CmpOp, Condition, Filter, Plan, Query, QueryResult, sort_order};
use crate::state::doc::Doc;
use crate::state::index::{FieldPath, Index, IndexKind, Wanted, compare_values};
use crate::state::key::Key;
use crate::state::store::{Map, State};

/// Keys some index lookups found, and how they were combined (for `explain`).
struct Candidates<'s> {
    keys: HashSet<&'s Key>,
    how: String,
    /// Single lookups used (1: `Plan::IndexLookup` or `Plan::IndexRange`).
    lookups: usize,
    /// For a single lookup, its field and whether it was a range.
    single: Option<(String, bool)>,
}

/// A range of an ordered index: its bounds, or `None` when nothing can match.
type Range<'q> = Option<(Bound<&'q Value>, Bound<&'q Value>)>;

// The edges of the number and string bands of the order across types
// (`compare_values`): numbers lie after `true` and before the empty string,
// strings from the empty string to before the empty array. `<` and `>`
// compare only numbers with numbers and strings with strings, so a range
// stays inside its bound's band.
static TRUE: Value = Value::Bool(true);
static EMPTY_STRING: Value = Value::String(String::new());
static EMPTY_ARRAY: Value = Value::Array(Vec::new());

/// The band of values `<`/`>` can match against `bound`, or `None` for a
/// bound of another type (nothing matches).
fn band(bound: &Value) -> Option<(Bound<&'static Value>, Bound<&'static Value>)> {
    match bound {
        Value::Number(_) => Some((Bound::Excluded(&TRUE), Bound::Excluded(&EMPTY_STRING))),
        Value::String(_) => Some((Bound::Included(&EMPTY_STRING), Bound::Excluded(&EMPTY_ARRAY))),
        _ => None,
    }
}

/// The range of field values a condition accepts, if it is a range condition.
fn range_of(cond: &Condition) -> Option<(&FieldPath, Range<'_>)> {
    match cond {
        Condition::Compare { field, op, value } => {
            let range = band(value).map(|(low, high)| match op {
                CmpOp::Lt => (low, Bound::Excluded(value)),
                CmpOp::Le => (low, Bound::Included(value)),
                CmpOp::Gt => (Bound::Excluded(value), high),
                _ => (Bound::Included(value), high),
            });
            matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge).then_some((field, range))
        }
        Condition::Between { field, low, high } => {
            let same_band = band(low).is_some() && std::mem::discriminant(low) == std::mem::discriminant(high);
            Some((field, same_band.then_some((Bound::Included(low), Bound::Included(high)))))
        }
        _ => None,
    }
}

/// The ordered index on `field`, if it has one.
fn ordered<'s>(state: &'s State, field: &FieldPath) -> Option<&'s Index> {
    state.index(field).filter(|i| i.kind() == IndexKind::Ordered)
}

/// The keys an index can give for `filter`, if every key that passes the
/// filter is among them (a superset: the filter still runs on each).
/// With `ranges` false, range conditions are left to the filter.
fn candidates<'s>(state: &'s State, filter: &Filter, ranges: bool) -> Option<Candidates<'s>> {
    match filter {
        Filter::Cond(Condition::Compare { field, op: CmpOp::Eq, value }) => {
            let index = state.index(field)?;
            let keys = index.find(value).collect();
            Some(Candidates { keys, how: format!("`{field}`"), lookups: 1, single: Some((field.to_string(), false)) })
        }
        Filter::Cond(cond) if ranges && range_of(cond).is_some() => {
            let (field, range) = range_of(cond)?;
            range_candidates(state, field, range)
        }
        Filter::Cond(Condition::In { field, values }) => {
            let index = state.index(field)?;
            let mut keys = HashSet::new();
            for value in values {
                keys.extend(index.find(value));
            }
            Some(Candidates {
                keys,
                how: format!("`{field}` in {} values", values.len()),
                lookups: values.len().max(2),
                single: None,
            })
        }
        Filter::And(parts) => {
            // Every answerable part narrows; the others are checked afterwards.
            // Range conditions on one ordered field make one range (`n >= 5
            // and n < 9` reads 4 values, not two half-indexes to intersect).
            let mut found: Vec<Candidates> = Vec::new();
            let mut fields_done: Vec<&FieldPath> = Vec::new();
            for part in parts {
                let range_field = match part {
                    Filter::Cond(c) if ranges => range_of(c).map(|(f, _)| f).filter(|f| ordered(state, f).is_some()),
                    _ => None,
                };
                match range_field {
                    Some(field) if fields_done.contains(&field) => {}
                    Some(field) => {
                        fields_done.push(field);
                        found.extend(range_candidates(state, field, combined_range(parts, field)));
                    }
                    None => found.extend(candidates(state, part, ranges)),
                }
            }
            found.sort_by_key(|c| c.keys.len());
            let mut iter = found.into_iter();
            let first = iter.next()?;
            Some(iter.fold(first, |acc, next| Candidates {
                keys: acc.keys.intersection(&next.keys).copied().collect(),
                how: format!("{} ∩ {}", acc.how, next.how),
                lookups: acc.lookups + next.lookups,
                single: None,
            }))
        }
        Filter::Or(parts) => {
            // Only if every alternative is answerable: otherwise any key may pass.
            let found: Option<Vec<Candidates>> = parts.iter().map(|p| candidates(state, p, ranges)).collect();
            let found = found?;
            let how = found.iter().map(|c| c.how.clone()).collect::<Vec<_>>().join(" ∪ ");
            let lookups = found.iter().map(|c| c.lookups).sum();
            let keys = found.into_iter().flat_map(|c| c.keys).collect();
            Some(Candidates { keys, how: format!("({how})"), lookups, single: None })
        }
        _ => None,
    }
}

/// The keys of a range of the ordered index on `field`.
fn range_candidates<'s>(state: &'s State, field: &FieldPath, range: Range<'_>) -> Option<Candidates<'s>> {
    let index = ordered(state, field)?;
    let keys = match range {
        Some((low, high)) => index.range(low, high, false).flatten().collect(),
        None => HashSet::new(),
    };
    Some(Candidates { keys, how: format!("`{field}` range"), lookups: 1, single: Some((field.to_string(), true)) })
}

/// The intersection of the ranges the top-level conditions `parts` put on
/// `field` (every value, when none does; `None` when one is empty).
fn combined_range<'q>(parts: &'q [Filter], field: &FieldPath) -> Range<'q> {
    let mut low: Bound<&Value> = Bound::Unbounded;
    let mut high: Bound<&Value> = Bound::Unbounded;
    for part in parts {
        let Filter::Cond(c) = part else { continue };
        let Some((f, range)) = range_of(c) else { continue };
        if f != field {
            continue;
        }
        let (l, h) = range?;
        low = tighter(low, l, Ordering::Greater);
        high = tighter(high, h, Ordering::Less);
    }
    Some((low, high))
}

/// Of two bounds on one side, the narrower: the one further in the
/// direction `inward` (Greater for a low bound), and Excluded on a tie.
fn tighter<'v>(a: Bound<&'v Value>, b: Bound<&'v Value>, inward: Ordering) -> Bound<&'v Value> {
    let value = |x: &Bound<&'v Value>| match x {
        Bound::Included(v) | Bound::Excluded(v) => Some(*v),
        Bound::Unbounded => None,
    };
    match (value(&a), value(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) => match compare_values(x, y) {
            Ordering::Equal if matches!(a, Bound::Excluded(_)) => a,
            Ordering::Equal => b,
            o if o == inward => a,
            _ => b,
        },
    }
}

/// A key prefix every passing key has, from `prefix` conditions under `and`.
fn key_prefix(filter: &Filter) -> Option<String> {
    match filter {
        Filter::Cond(Condition::KeyPrefix(p)) => Some(p.clone()),
        Filter::And(parts) => parts.iter().filter_map(key_prefix).max_by_key(String::len),
        _ => None,
    }
}

/// Runs `query` against `state` (the unit tests' entry; `Db::query` scans on a frozen copy).
#[cfg(test)]
pub fn run(state: &State, query: &Query) -> QueryResult {
    run_indexed(state, query, 0).unwrap_or_else(|| scan(&state.map, query, 0))
}

/// The filter on one entry, on its text ([`Filter::matches_text`]); for a
/// match, the parts of its value the sort and the projection read (`shown`,
/// from [`shown`]), or `Null` when neither reads any.
fn keep(query: &Query, shown: Option<&Wanted>, key: &Key, doc: &Doc) -> Option<Value> {
    if !query.filter.matches_text(key, doc.as_str()) {
        return None;
    }
    Some(shown.map_or(Value::Null, |w| w.extract(doc.as_str())))
}

/// Runs `query` through the indexes, or `None` when no index applies (the
/// caller then scans, possibly on a frozen copy of the map). Keys expired
/// at `now` (ms since the epoch) are left out: the indexes still list them
/// until the sweeper removes them.
pub fn run_indexed(state: &State, query: &Query, now: u64) -> Option<QueryResult> {
    if let Some(result) = walk(state, query, now) {
        return Some(result);
    }
    let found = candidates(state, &query.filter, true)?;
    let shown = shown(query);
    let mut matched: Vec<(&Key, &Doc, Value)> = Vec::new();
    for key in &found.keys {
        if let Some((key, doc)) = state.map.get_key_value(key, now)
            && let Some(value) = keep(query, shown.as_ref(), key, doc)
        {
            matched.push((key, doc, value));
        }
    }
    let candidates = found.keys.len();
    let plan = match found.single {
        Some((field, false)) if found.lookups == 1 => Plan::IndexLookup { field, candidates },
        Some((field, true)) if found.lookups == 1 => Plan::IndexRange { field, candidates },
        _ => Plan::Indexes { combined: found.how, candidates },
    };
    Some(finish(query, matched, plan))
}

/// Whether every key that passes `filter` has `field`.
fn implies_exists(filter: &Filter, field: &FieldPath) -> bool {
    match filter {
        Filter::Cond(cond) => match cond {
            Condition::Compare { field: f, .. }
            | Condition::Exists(f)
            | Condition::In { field: f, .. }
            | Condition::Contains { field: f, .. }
            | Condition::StartsWith { field: f, .. }
            | Condition::Between { field: f, .. } => f == field,
            Condition::KeyPrefix(_) => false,
        },
        Filter::And(parts) => parts.iter().any(|p| implies_exists(p, field)),
        Filter::Or(parts) => !parts.is_empty() && parts.iter().all(|p| implies_exists(p, field)),
        Filter::Not(_) => false,
    }
}

/// The range of `field` a filter's top-level conditions restrict it to, or
/// the whole index.
fn walk_range<'q>(filter: &'q Filter, field: &FieldPath) -> Range<'q> {
    let parts = match filter {
        Filter::And(parts) => parts.as_slice(),
        one => std::slice::from_ref(one),
    };
    combined_range(parts, field)
}

/// Equality lookups giving at most this many candidates per wanted entry
/// (plus a constant) beat walking the order: their keys are all read anyway.
const LOOKUP_PER_ENTRY: usize = 8;

/// `sort by FIELD ... limit N` with an ordered index on FIELD: walks the
/// index in the sort's direction, a group of equal values at a time, and
/// stops at the first group after the page (offset + limit) is full, since
/// every key after it sorts after every key already kept. Only when the
/// filter implies FIELD exists: keys without it are not in the index, and
/// they sort first. `None` when the walk does not apply, or when equality
/// lookups give few enough candidates to read them all instead.
fn walk(state: &State, query: &Query, now: u64) -> Option<QueryResult> {
    let limit = query.limit?;
    let first = query.sort.first()?;
    let index = ordered(state, &first.field)?;
    if !implies_exists(&query.filter, &first.field) {
        return None;
    }
    let want = query.offset.saturating_add(limit);
    if let Some(found) = candidates(state, &query.filter, false)
        && found.keys.len() <= want.saturating_mul(LOOKUP_PER_ENTRY).saturating_add(64)
    {
        return None;
    }
    let shown = shown(query);
    let mut matched: Vec<(&Key, &Doc, Value)> = Vec::new();
    let (mut examined, mut stopped_early) = (0, false);
    if let Some((low, high)) = walk_range(&query.filter, &first.field) {
        for group in index.range(low, high, first.descending) {
            if matched.len() >= want {
                stopped_early = true;
                break;
            }
            for key in group {
                examined += 1;
                if let Some((key, doc)) = state.map.get_key_value(key, now)
                    && let Some(value) = keep(query, shown.as_ref(), key, doc)
                {
                    matched.push((key, doc, value));
                }
            }
        }
    }
    let plan =
        Plan::OrderedWalk { field: first.field.to_string(), descending: first.descending, examined, stopped_early };
    Some(finish(query, matched, plan))
}

/// Runs `query` by examining every key of `map` (every key with the
/// filter's key prefix, when it has one) live at `now`.
///
/// The filter runs on each value's text ([`Filter::matches_text`]); only a
/// match is parsed, and only where the sort and the projection read it. A
/// scan that built values allocated for every key it examined, and those
/// allocations held glibc's arena lock often enough that a writer freeing a
/// replaced value into the same arena waited for it: 30-55 ms when the scan
/// built whole trees, up to 6 ms when it built the filter's paths (issue
/// 17, workload 10, traced with `perf sched`: the writer asleep in
/// `__lll_lock_wait_private`).
pub fn scan(map: &Map, query: &Query, now: u64) -> QueryResult {
    let prefix = key_prefix(&query.filter);
    let shown = shown(query);
    let mut examined = 0;
    let mut matched: Vec<(&Key, &Doc, Value)> = Vec::new();
    for (key, doc) in map.iter(now) {
        if prefix.as_deref().is_some_and(|p| !key.starts_with(p)) {
            continue;
        }
        examined += 1;
        if let Some(value) = keep(query, shown.as_ref(), key, doc) {
            matched.push((key, doc, value));
        }
    }
    finish(query, matched, Plan::Scan { examined, prefix })
}

/// The paths the sort and the projection read from a matching value, or
/// `None` when there are none. Each resolves in [`Wanted::extract`]'s
/// partial value exactly as in the whole one, so the sort and the
/// projection see what they would see in the whole value.
fn shown(query: &Query) -> Option<Wanted> {
    if query.sort.is_empty() && query.fields.is_none() {
        return None;
    }
    let paths = query.sort.iter().map(|k| &k.field).chain(query.fields.iter().flatten());
    Some(Wanted::of(paths))
}

fn finish(query: &Query, mut matched: Vec<(&Key, &Doc, Value)>, plan: Plan) -> QueryResult {
    let total = matched.len();
    order_and_page(query, &mut matched);
    let entries = matched.into_iter().map(|(key, doc, value)| (key.to_string(), project(query, doc, &value))).collect();
    QueryResult { entries, total, plan }
}

/// Sorts (by the sort keys, then by key) and keeps the page `offset`/`limit`.
/// With a limit, only the page's entries are fully sorted.
fn order_and_page(query: &Query, matched: &mut Vec<(&Key, &Doc, Value)>) {
    let compare = |a: &(&Key, &Doc, Value), b: &(&Key, &Doc, Value)| -> Ordering {
        for key in &query.sort {
            let o = sort_order(key.field.resolve(&a.2), key.field.resolve(&b.2));
            let o = if key.descending { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.0.cmp(b.0)
    };
    let end = query.limit.map_or(matched.len(), |l| query.offset.saturating_add(l)).min(matched.len());
    if end < matched.len() && end > 0 {
        matched.select_nth_unstable_by(end - 1, compare);
        matched.truncate(end);
    } else if end == 0 {
        matched.clear();
    }
    matched.sort_unstable_by(compare);
    matched.drain(..query.offset.min(matched.len()));
}

/// The value to return: the stored one, or with `fields` an object of the
/// requested paths (by path as written; missing ones left out).
fn project(query: &Query, doc: &Doc, value: &Value) -> Doc {
    match &query.fields {
        None => doc.clone(),
        Some(fields) => {
            let mut out = serde_json::Map::new();
            for field in fields {
                if let Some(found) = field.resolve(value) {
                    out.insert(field.to_string(), found.clone());
                }
            }
            Doc::from(Value::Object(out))
        }
    }
}
