//! Guards hash indexes and queries end to end: `find` stays exact through
//! updates, deletes, restarts and compaction; unique indexes refuse
//! duplicates without logging anything; a query answers the same with and
//! without an index, and says which plan it used.

use crate::util::TestResult;
use proptest::prelude::*;
use redru::{Batch, Db, Durability, Error, Options, Plan, Query, Value, json};

#[test]
fn find_stays_exact_through_updates_restarts_and_compaction() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.set("user:1", json!({"name": "Alice", "age": 30, "address": {"city": "Oslo"}}))?;
    db.set("user:2", json!({"name": "Bob", "age": 25, "address": {"city": "Oslo"}}))?;
    db.create_index("name")?;
    db.create_index("address.city")?;
    assert_eq!(db.find("name", &json!("Alice"))?, ["user:1"]);
    assert_eq!(db.find("address.city", &json!("Oslo"))?, ["user:1", "user:2"]);
    db.set("user:1", json!({"name": "Alicia", "address": {"city": "Bergen"}}))?;
    assert!(db.find("name", &json!("Alice"))?.is_empty());
    assert_eq!(db.find("address.city", &json!("Oslo"))?, ["user:2"]);
    db.set("user:3", json!({"name": "Alice"}))?;
    assert!(db.delete("user:2")?);
    assert!(db.find("address.city", &json!("Oslo"))?.is_empty());
    drop(db);

    let db = Db::open(dir.path())?; // from the log alone
    assert_eq!(db.find("name", &json!("Alice"))?, ["user:3"]);
    assert_eq!(db.find("address.city", &json!("Bergen"))?, ["user:1"]);
    db.save()?;
    db.set("user:4", json!({"name": "Alice", "address": {"city": "Bergen"}}))?;
    drop(db);

    let db = Db::open(dir.path())?; // snapshot + log
    assert_eq!(db.find("name", &json!("Alice"))?, ["user:3", "user:4"]);
    let entries = db.find_entries("address.city", &json!("Bergen"))?;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].1, json!({"name": "Alice", "address": {"city": "Bergen"}}));
    let infos = db.indexes();
    assert_eq!(
        infos.iter().map(|i| (i.field.as_str(), i.distinct_values, i.entries)).collect::<Vec<_>>(),
        [("address.city", 1, 2), ("name", 2, 3)]
    );
    db.drop_index("address.city")?;
    assert!(matches!(db.find("address.city", &json!("Bergen")), Err(Error::NoIndex { .. })));
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(db.indexes().len(), 1);
    Ok(())
}

#[test]
fn numbers_match_by_value_and_whole_values_can_be_indexed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.create_index("n")?;
    db.create_index("$")?;
    db.set("a", json!({"n": 1}))?;
    db.set("b", json!({"n": 1.0}))?;
    db.set("c", serde_json::from_str::<Value>(r#"{"y": [1, {"q": "é"}], "x": 2}"#)?)?;
    assert_eq!(db.find("n", &json!(1))?, ["a", "b"]);
    assert_eq!(db.find("n", &json!(1e0))?, ["a", "b"]);
    let same_value_other_order: Value = serde_json::from_str(r#"{"x": 2.0, "y": [1.0, {"q": "\u00e9"}]}"#)?;
    assert_eq!(db.find("$", &same_value_other_order)?, ["c"]);
    Ok(())
}

#[test]
fn unique_index_refuses_duplicates_and_logs_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.set("a", json!({"email": "x@y"}))?;
    db.set("b", json!({"email": "x@y"}))?;
    assert!(matches!(db.create_unique_index("email"), Err(Error::UniqueViolation { .. })));
    db.delete("b")?;
    db.create_unique_index("email")?;
    let before = db.stats();
    let err = db.set("c", json!({"email": "x@y"})).err().ok_or("duplicate accepted")?;
    assert!(err.to_string().contains("unique index on `email`"), "{err}");
    assert!(db.batch(Batch::new().set("d", json!({"email": "1"})).set("e", json!({"email": "1"}))).is_err());
    let after = db.stats();
    assert_eq!((after.last_seq, after.wal_bytes, after.keys), (before.last_seq, before.wal_bytes, before.keys));
    // Moving a value from one key to another in one batch is allowed.
    db.batch(Batch::new().delete("a").set("c", json!({"email": "x@y"})))?;
    assert_eq!(db.find("email", &json!("x@y"))?, ["c"]);
    drop(db);
    let db = Db::open(dir.path())?;
    assert!(db.indexes()[0].unique);
    assert!(db.set("z", json!({"email": "x@y"})).is_err());
    Ok(())
}

#[test]
fn explain_says_which_plan_ran() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Options::new().durability(Durability::Never).open(dir.path())?;
    for i in 0..1000 {
        db.set(format!("user:{i}"), json!({"name": format!("n{}", i % 100), "age": i % 30}))?;
    }
    let q = Query::parse("name = n7 and age >= 20")?;
    let scan = db.query(&q)?;
    assert_eq!(scan.plan, Plan::Scan { examined: 1000, prefix: None });
    db.create_index("name")?;
    let indexed = db.query(&q)?;
    assert_eq!(indexed.plan, Plan::IndexLookup { field: "name".into(), candidates: 10 });
    assert_eq!(indexed.entries, scan.entries);
    assert_eq!(indexed.entries.len(), 3, "users 207, 507 and 807");
    Ok(())
}

type Entries = Vec<(String, redru::Doc)>;

fn record() -> impl Strategy<Value = Value> {
    (0u8..5, 0u8..40, prop::option::of(0u8..3)).prop_map(|(n, age, city)| match city {
        Some(c) => json!({"name": format!("n{n}"), "age": age, "city": format!("c{c}")}),
        None => json!({"name": format!("n{n}"), "age": age as f64}),
    })
}

fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..5).prop_map(|n| format!("name = n{n}")),
        (0u8..5).prop_map(|n| format!("name != n{n}")),
        (0u8..40, 0usize..4).prop_map(|(a, op)| format!("age {} {a}", ["<", "<=", ">", ">="][op])),
        (0u8..3).prop_map(|c| format!("city = c{c}")),
        Just("exists city".to_string()),
        (0u8..3).prop_map(|p| format!("prefix k{p}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The same query over the same data answers the same with indexes and without.
    #[test]
    fn indexes_never_change_answers(
        rows in prop::collection::vec((0u8..30, record()), 0..60),
        conds in prop::collection::vec(condition(), 1..4),
    ) {
        let run = || -> redru::Result<(Entries, Entries)> {
            let dir = tempfile::tempdir()
                .map_err(|source| Error::Io { action: "creating", path: "a temporary directory".into(), source })?;
            let db = Options::new().durability(Durability::Never).open(dir.path())?;
            for (k, v) in &rows {
                db.set(format!("k{k}"), v.clone())?;
            }
            let q = Query::parse(&conds.join(" and "))?;
            let plain = db.query(&q)?.entries;
            db.create_index("name")?;
            db.create_index("city")?;
            let indexed = db.query(&q)?.entries;
            // And a brute-force filter agrees with both.
            let brute: Vec<_> = db.scan_prefix("").into_iter()
                .filter(|(k, v)| q.conditions.iter().all(|c| c.matches(k, &v.to_value())))
                .collect();
            assert_eq!(brute, plain);
            Ok((plain, indexed))
        };
        let (plain, indexed) = run().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(plain, indexed);
    }
}
