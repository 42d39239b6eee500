//! The planner and the executor: which keys to examine (index lookups
//! combined, a key prefix, or all), the filter on each, then the order, the
//! page and the projection.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde_json::Value;

use super::{CmpOp, Condition, Filter, Plan, Query, QueryResult, sort_order};
use crate::state::doc::Doc;
use crate::state::index::ValueDigest;
use crate::state::key::Key;
use crate::state::store::{Map, State};

/// Keys some index lookups found, and how they were combined (for `explain`).
struct Candidates<'s> {
    keys: HashSet<&'s Key>,
    how: String,
    /// Single lookups used (1: `Plan::IndexLookup`).
    lookups: usize,
}

/// The keys an index can give for `filter`, if every key that passes the
/// filter is among them (a superset: the filter still runs on each).
fn candidates<'s>(state: &'s State, filter: &Filter) -> Option<Candidates<'s>> {
    match filter {
        Filter::Cond(Condition::Compare { field, op: CmpOp::Eq, value }) => {
            let index = state.index(field)?;
            let keys = index.lookup(&ValueDigest::of(value)).collect();
            Some(Candidates { keys, how: format!("`{field}`"), lookups: 1 })
        }
        Filter::Cond(Condition::In { field, values }) => {
            let index = state.index(field)?;
            let mut keys = HashSet::new();
            for value in values {
                keys.extend(index.lookup(&ValueDigest::of(value)));
            }
            Some(Candidates {
                keys,
                how: format!("`{field}` in {} values", values.len()),
                lookups: values.len().max(2),
            })
        }
        Filter::And(parts) => {
            // Every answerable part narrows; the others are checked afterwards.
            let mut found: Vec<Candidates> = parts.iter().filter_map(|p| candidates(state, p)).collect();
            found.sort_by_key(|c| c.keys.len());
            let mut iter = found.into_iter();
            let first = iter.next()?;
            Some(iter.fold(first, |acc, next| Candidates {
                keys: acc.keys.intersection(&next.keys).copied().collect(),
                how: format!("{} ∩ {}", acc.how, next.how),
                lookups: acc.lookups + next.lookups,
            }))
        }
        Filter::Or(parts) => {
            // Only if every alternative is answerable: otherwise any key may pass.
            let found: Option<Vec<Candidates>> = parts.iter().map(|p| candidates(state, p)).collect();
            let found = found?;
            let how = found.iter().map(|c| c.how.clone()).collect::<Vec<_>>().join(" ∪ ");
            let lookups = found.iter().map(|c| c.lookups).sum();
            let keys = found.into_iter().flat_map(|c| c.keys).collect();
            Some(Candidates { keys, how: format!("({how})"), lookups })
        }
        _ => None,
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
    run_indexed(state, query).unwrap_or_else(|| scan(&state.map, query))
}

fn reads_values(query: &Query) -> bool {
    query.filter.reads_values() || !query.sort.is_empty() || query.fields.is_some()
}

/// The filter on one entry: its parsed value (when anything reads values) if it passes.
fn keep(query: &Query, key: &Key, doc: &Doc) -> Option<Value> {
    let value = if reads_values(query) { doc.to_value() } else { Value::Null };
    query.filter.matches(key, &value).then_some(value)
}

/// Runs `query` through the indexes, or `None` when no index applies (the
/// caller then scans, possibly on a frozen copy of the map).
pub fn run_indexed(state: &State, query: &Query) -> Option<QueryResult> {
    let found = candidates(state, &query.filter)?;
    let mut matched: Vec<(&Key, &Doc, Value)> = Vec::new();
    for key in &found.keys {
        if let Some((key, doc)) = state.map.get_key_value(key)
            && let Some(value) = keep(query, key, doc)
        {
            matched.push((key, doc, value));
        }
    }
    let plan = if found.lookups == 1 {
        Plan::IndexLookup { field: found.how.trim_matches('`').to_owned(), candidates: found.keys.len() }
    } else {
        Plan::Indexes { combined: found.how, candidates: found.keys.len() }
    };
    Some(finish(query, matched, plan))
}

/// Runs `query` by examining every key of `map` (every key with the
/// filter's key prefix, when it has one).
pub fn scan(map: &Map, query: &Query) -> QueryResult {
    let prefix = key_prefix(&query.filter);
    let mut examined = 0;
    let mut matched: Vec<(&Key, &Doc, Value)> = Vec::new();
    for (key, doc) in map.iter() {
        if prefix.as_deref().is_some_and(|p| !key.starts_with(p)) {
            continue;
        }
        examined += 1;
        if let Some(value) = keep(query, key, doc) {
            matched.push((key, doc, value));
        }
    }
    finish(query, matched, Plan::Scan { examined, prefix })
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
