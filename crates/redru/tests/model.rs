//! Guards the engine against a plain HashMap model: random sets, deletes,
//! batches, clears, index changes (hash and ordered), saves and reopens, and
//! after each step the data and every index must equal the model and a
//! brute-force scan; ordered indexes also answer ranges and walks as a scan.

use std::collections::BTreeMap;

use crate::util::dump;
use proptest::prelude::*;
use redru::{Batch, Db, Durability, IndexKind, Options, Query, Value, json};

#[derive(Clone, Debug)]
enum Op {
    Set(u8, Value),
    Delete(u8),
    Batch(Vec<(u8, Option<Value>)>),
    Clear,
    /// A field, and whether the index is ordered.
    CreateIndex(&'static str, bool),
    DropIndex(&'static str),
    Save,
    Reopen,
}

const FIELDS: [&str; 3] = ["name", "address.city", "$"];

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u8..4).prop_map(|n| json!({"name": format!("n{n}"), "address": {"city": format!("c{}", n % 2)}})),
        (0u8..3).prop_map(|n| json!({"name": n as f64})),
        (0u8..3).prop_map(|n| json!(n)),
        Just(json!({"other": true})),
        Just(json!(null)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12, value()).prop_map(|(k, v)| Op::Set(k, v)),
        3 => (0u8..12).prop_map(Op::Delete),
        2 => prop::collection::vec((0u8..12, prop::option::of(value())), 0..5).prop_map(Op::Batch),
        1 => Just(Op::Clear),
        1 => (0usize..3, any::<bool>()).prop_map(|(i, ordered)| Op::CreateIndex(FIELDS[i], ordered)),
        1 => (0usize..3).prop_map(|i| Op::DropIndex(FIELDS[i])),
        1 => Just(Op::Save),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> String {
    format!("key{k}")
}

fn check(db: &Db, model: &BTreeMap<String, Value>, indexes: &BTreeMap<&str, bool>) -> Result<(), TestCaseError> {
    let expected: Vec<(String, Value)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    prop_assert_eq!(dump(db), expected);
    let infos = db.indexes();
    let kinds: BTreeMap<&str, bool> = infos.iter().map(|i| (i.field.as_str(), i.kind == IndexKind::Ordered)).collect();
    prop_assert_eq!(&kinds, indexes);
    for (field, ordered) in indexes {
        if *ordered {
            check_ordered(db, model, field)?;
        }
        let path = redru::FieldPath::parse(field).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for probe in model.values().filter_map(|v| path.resolve(v)) {
            let brute: Vec<String> = model
                .iter()
                .filter(|(_, v)| path.resolve(v).is_some_and(|x| same(x, probe)))
                .map(|(k, _)| k.clone())
                .collect();
            let found = db.find(field, probe).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&found, &brute, "find {} {}", field, probe);
        }
        let entries = model.values().filter(|v| path.resolve(v).is_some()).count();
        let info = infos.iter().find(|i| i.field == *field).ok_or_else(|| TestCaseError::fail("missing index"))?;
        prop_assert_eq!(info.entries, entries);
    }
    Ok(())
}

/// An ordered index's ranges equal the model's filter, and its walk equals a scan's sort.
fn check_ordered(db: &Db, model: &BTreeMap<String, Value>, field: &str) -> Result<(), TestCaseError> {
    let fail = |e: redru::Error| TestCaseError::fail(e.to_string());
    let keys = |q: &str| -> Result<Vec<String>, TestCaseError> {
        let r = db.query(&Query::parse(q).map_err(fail)?).map_err(fail)?;
        Ok(r.entries.into_iter().map(|(k, _)| k).collect())
    };
    let path = redru::FieldPath::parse(field).map_err(fail)?;
    for probe in model.values().filter_map(|v| path.resolve(v)) {
        let at_least = |x: &Value| match (x, probe) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() >= b.as_f64(),
            (Value::String(a), Value::String(b)) => a >= b,
            _ => false,
        };
        if !(probe.is_number() || probe.is_string()) {
            continue;
        }
        let brute: Vec<String> =
            model.iter().filter(|(_, v)| path.resolve(v).is_some_and(at_least)).map(|(k, _)| k.clone()).collect();
        prop_assert_eq!(keys(&format!("{field} >= {probe}"))?, brute, "{} >= {}", field, probe);
    }
    // `or prefix "~"` (no key has it) keeps the filter's meaning but not its
    // implying the field exists: the second query scans and sorts.
    for desc in ["", " desc"] {
        let walked = keys(&format!("exists {field} sort by {field}{desc} limit 3"))?;
        let scanned = keys(&format!("(exists {field} or prefix \"~\") sort by {field}{desc} limit 3"))?;
        prop_assert_eq!(walked, scanned, "sort by {}{}", field, desc);
    }
    Ok(())
}

/// JSON equality with numbers compared by value (1 == 1.0), as the index does.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn run(ops: Vec<Op>, durability: Durability) -> Result<(), TestCaseError> {
    let fail = |e: redru::Error| TestCaseError::fail(e.to_string());
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let open = || Options::new().durability(durability).auto_compact_min_bytes(2048).open(dir.path());
    let mut db = open().map_err(fail)?;
    let mut model: BTreeMap<String, Value> = BTreeMap::new();
    let mut indexes: BTreeMap<&str, bool> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Set(k, v) => {
                db.set(key(k), v.clone()).map_err(fail)?;
                model.insert(key(k), v);
            }
            Op::Delete(k) => {
                let existed = db.delete(&key(k)).map_err(fail)?;
                prop_assert_eq!(existed, model.remove(&key(k)).is_some());
            }
            Op::Batch(ops) => {
                let mut batch = Batch::new();
                for (k, v) in ops {
                    match v {
                        Some(v) => {
                            batch.push_set(key(k), v.clone());
                            model.insert(key(k), v);
                        }
                        None => {
                            batch.push_delete(key(k));
                            model.remove(&key(k));
                        }
                    }
                }
                db.batch(batch).map_err(fail)?;
            }
            Op::Clear => {
                prop_assert_eq!(db.clear().map_err(fail)?, model.len());
                model.clear();
            }
            Op::CreateIndex(f, ordered) => {
                let result = if ordered { db.create_ordered_index(f) } else { db.create_index(f) };
                let new = !indexes.contains_key(f);
                if new {
                    indexes.insert(f, ordered);
                }
                prop_assert_eq!(result.is_ok(), new, "create {}", f);
            }
            Op::DropIndex(f) => {
                let result = db.drop_index(f);
                prop_assert_eq!(result.is_ok(), indexes.remove(f).is_some(), "drop {}", f);
            }
            Op::Save => {
                db.save().map_err(fail)?;
            }
            Op::Reopen => {
                drop(db);
                db = open().map_err(fail)?;
            }
        }
        check(&db, &model, &indexes)?;
    }
    drop(db);
    let db = open().map_err(fail)?;
    check(&db, &model, &indexes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_a_hashmap_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops, Durability::Never)?;
    }

    #[test]
    fn engine_matches_the_model_with_fsync(ops in prop::collection::vec(op(), 1..25)) {
        run(ops, Durability::Always)?;
    }
}
