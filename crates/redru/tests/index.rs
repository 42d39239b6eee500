//! Guards hash and ordered indexes and queries end to end: `find` and
//! ranges stay exact through updates, deletes, restarts, saves and
//! compaction; unique indexes refuse duplicates without logging anything; a
//! query answers the same with and without indexes, and says which plan it used.

use crate::util::TestResult;
use proptest::prelude::*;
use redru::{Batch, Db, Durability, Error, IndexKind, Options, Plan, Query, Value, json};

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

/// A scan of a large map runs on a thread of its own (db/read.rs); its
/// answer is the brute-force one, sorted, projected and paged, and a query
/// that reads nothing of the values works there too.
#[test]
fn a_long_scan_on_its_own_thread_answers_exactly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Options::new().durability(Durability::Never).open(dir.path())?;
    let mut batch = Batch::new();
    for i in 0..12_000u32 {
        batch = batch.set(format!("k:{i:05}"), json!({"n": i % 97, "name": format!("n{i}"), "tags": [i % 3]}));
    }
    db.batch(batch)?;
    let result = db.query(&Query::parse("n = 5 and tags contains 2 sort by name desc limit 3 fields name")?)?;
    let mut expected: Vec<u32> = (0..12_000).filter(|i| i % 97 == 5 && i % 3 == 2).collect();
    assert_eq!(result.total, expected.len());
    expected.sort_by_key(|i| std::cmp::Reverse(format!("n{i}")));
    let names: Vec<Value> = result.entries.iter().map(|(_, v)| v.to_value()).collect();
    let want: Vec<Value> = expected.iter().take(3).map(|i| json!({"name": format!("n{i}")})).collect();
    assert_eq!(names, want);
    assert!(matches!(result.plan, Plan::Scan { examined: 12_000, .. }), "{:?}", result.plan);
    assert_eq!(db.query(&Query::parse("prefix \"k:0001\"")?)?.total, 10);
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

#[test]
fn ordered_indexes_survive_reopen_save_compaction_verify_and_restore() -> TestResult {
    let dir = tempfile::tempdir()?;
    let keys = |db: &Db, q: &str| -> redru::Result<(Vec<String>, Plan)> {
        let r = db.query(&Query::parse(q)?)?;
        Ok((r.entries.into_iter().map(|(k, _)| k).collect(), r.plan))
    };
    let db = Db::open(dir.path())?;
    db.set("a", json!({"age": 30}))?;
    db.set("b", json!({"age": 25.5}))?;
    db.create_ordered_index("age")?;
    db.create_index("name")?;
    db.set("c", json!({"age": 41}))?;
    db.set("b", json!({"age": 35}))?;
    let (found, plan) = keys(&db, "age between 30 and 40")?;
    assert_eq!(found, ["a", "b"]);
    assert_eq!(plan, Plan::IndexRange { field: "age".into(), candidates: 2 });
    let kinds = |db: &Db| db.indexes().into_iter().map(|i| (i.field, i.kind)).collect::<Vec<_>>();
    let want = [("age".to_owned(), IndexKind::Ordered), ("name".to_owned(), IndexKind::Hash)];
    assert_eq!(kinds(&db), want);
    drop(db);

    let db = Db::open(dir.path())?; // from the log
    assert_eq!(kinds(&db), want);
    assert_eq!(keys(&db, "age > 31 sort by age desc limit 1")?.0, ["c"]);
    db.save()?;
    db.set("d", json!({"age": 32}))?;
    drop(db);

    let db = Db::open(dir.path())?; // snapshot + log
    assert_eq!(kinds(&db), want);
    let (found, plan) = keys(&db, "age >= 32 sort by age limit 2")?;
    assert_eq!(found, ["d", "b"]);
    assert!(matches!(plan, Plan::OrderedWalk { stopped_early: true, .. }), "{plan}");
    let backup = db.backup()?;
    drop(db);

    let report = redru::verify_dir(dir.path())?;
    assert!(report.is_clean() && report.indexes.contains(&"age".to_owned()), "{report:?}");
    redru::compact(dir.path())?;
    assert!(redru::verify_dir(dir.path())?.is_clean());
    let db = Db::open(dir.path())?; // compacted
    assert_eq!(kinds(&db), want);
    assert_eq!(keys(&db, "age < 33")?.0, ["a", "d"]);
    // Restore into a database whose `age` index is a hash index: it becomes ordered again.
    db.drop_index("age")?;
    db.create_index("age")?;
    db.restore(&backup.name)?;
    assert_eq!(kinds(&db), want);
    assert_eq!(keys(&db, "age < 33")?.1, Plan::IndexRange { field: "age".into(), candidates: 2 });
    Ok(())
}

type Entries = Vec<(String, redru::Doc)>;

fn record() -> impl Strategy<Value = Value> {
    (0u8..5, 0u8..40, prop::option::of(0u8..3), prop::collection::vec(0u8..4, 0..3)).prop_map(|(n, age, city, tags)| {
        let tags: Vec<String> = tags.iter().map(|t| format!("t{t}")).collect();
        match city {
            Some(c) => json!({"name": format!("n{n}"), "age": age, "city": format!("c{c}"), "tags": tags}),
            None if n == 4 => json!({"name": "n4"}),
            None => json!({"name": format!("n{n}"), "age": age as f64}),
        }
    })
}

/// A filter, as text and as the test's own evaluator (an oracle independent
/// of the engine's): fields `name`, `age`, `city`, `tags`, keys `k0`..`k29`.
#[derive(Clone, Debug)]
enum Expr {
    NameEq(u8),
    NameNe(u8),
    Age(usize, u8),
    CityEq(u8),
    CityIn(Vec<u8>),
    HasCity,
    HasAge,
    KeyPrefix(u8),
    TagsContain(u8),
    NamePrefix(u8),
    AgeBetween(u8, u8),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

impl Expr {
    fn text(&self) -> String {
        let join =
            |parts: &[Expr], word: &str| parts.iter().map(|p| format!("({})", p.text())).collect::<Vec<_>>().join(word);
        match self {
            Expr::NameEq(n) => format!("name = n{n}"),
            Expr::NameNe(n) => format!("name != n{n}"),
            Expr::Age(op, a) => format!("age {} {a}", ["<", "<=", ">", ">="][*op]),
            Expr::CityEq(c) => format!("city = c{c}"),
            Expr::CityIn(cs) => {
                format!("city in [{}]", cs.iter().map(|c| format!("\"c{c}\"")).collect::<Vec<_>>().join(", "))
            }
            Expr::HasCity => "exists city".into(),
            Expr::HasAge => "exists age".into(),
            Expr::KeyPrefix(p) => format!("prefix k{p}"),
            Expr::TagsContain(t) => format!("tags contains t{t}"),
            Expr::NamePrefix(n) => format!("name prefix n{n}"),
            Expr::AgeBetween(a, b) => format!("age between {a} and {b}"),
            Expr::And(parts) => join(parts, " and "),
            Expr::Or(parts) => join(parts, " or "),
            Expr::Not(part) => format!("not ({})", part.text()),
        }
    }

    fn eval(&self, key: &str, v: &Value) -> bool {
        let s = |f: &str| v.get(f).and_then(Value::as_str).map(str::to_owned);
        let age = v.get("age").and_then(Value::as_f64);
        match self {
            Expr::NameEq(n) => s("name") == Some(format!("n{n}")),
            Expr::NameNe(n) => s("name").is_some_and(|x| x != format!("n{n}")),
            Expr::Age(op, a) => age.is_some_and(|x| {
                let a = f64::from(*a);
                [x < a, x <= a, x > a, x >= a][*op]
            }),
            Expr::CityEq(c) => s("city") == Some(format!("c{c}")),
            Expr::CityIn(cs) => cs.iter().any(|c| s("city") == Some(format!("c{c}"))),
            Expr::HasCity => v.get("city").is_some(),
            Expr::HasAge => v.get("age").is_some(),
            Expr::KeyPrefix(p) => key.starts_with(&format!("k{p}")),
            Expr::TagsContain(t) => {
                v.get("tags").and_then(Value::as_array).is_some_and(|a| a.contains(&json!(format!("t{t}"))))
            }
            Expr::NamePrefix(n) => s("name").is_some_and(|x| x.starts_with(&format!("n{n}"))),
            Expr::AgeBetween(a, b) => age.is_some_and(|x| f64::from(*a) <= x && x <= f64::from(*b)),
            Expr::And(parts) => parts.iter().all(|p| p.eval(key, v)),
            Expr::Or(parts) => parts.iter().any(|p| p.eval(key, v)),
            Expr::Not(part) => !part.eval(key, v),
        }
    }
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        (0u8..5).prop_map(Expr::NameEq),
        (0u8..5).prop_map(Expr::NameNe),
        (0usize..4, 0u8..40).prop_map(|(op, a)| Expr::Age(op, a)),
        (0u8..3).prop_map(Expr::CityEq),
        prop::collection::vec(0u8..4, 1..3).prop_map(Expr::CityIn),
        Just(Expr::HasCity),
        Just(Expr::HasAge),
        (0u8..3).prop_map(Expr::KeyPrefix),
        (0u8..4).prop_map(Expr::TagsContain),
        (0u8..5).prop_map(Expr::NamePrefix),
        (0u8..40, 0u8..40).prop_map(|(a, b)| Expr::AgeBetween(a.min(b), a.max(b))),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The same query over the same data answers the same with indexes and
    /// without, and both equal the test's own filter, sort and page.
    #[test]
    fn indexes_never_change_answers(
        rows in prop::collection::vec((0u8..30, record()), 0..60),
        filter in expr(),
        page in prop::option::of((0usize..5, 0usize..8, any::<bool>())),
    ) {
        let mut text = filter.text();
        if let Some((offset, limit, desc)) = page {
            text.push_str(&format!(" sort by age{} limit {limit} offset {offset}", if desc { " desc" } else { "" }));
        }
        let run = || -> redru::Result<(Entries, Entries, Entries, (Entries, Entries))> {
            let dir = tempfile::tempdir()
                .map_err(|source| Error::Io { action: "creating", path: "a temporary directory".into(), source })?;
            let db = Options::new().durability(Durability::Never).open(dir.path())?;
            for (k, v) in &rows {
                db.set(format!("k{k}"), v.clone())?;
            }
            let q = Query::parse(&text)?;
            let plain = db.query(&q)?.entries;
            // The oracle: filter, then sort by age (missing first; ties by key), then page.
            let mut brute: Vec<_> = db.scan_prefix("").into_iter().filter(|(k, v)| filter.eval(k, &v.to_value())).collect();
            if let Some((offset, limit, desc)) = page {
                let age = |d: &redru::Doc| d.to_value().get("age").and_then(Value::as_f64);
                brute.sort_by(|a, b| {
                    let o = match (age(&a.1), age(&b.1)) {
                        (Some(x), Some(y)) => x.total_cmp(&y),
                        (x, y) => x.is_some().cmp(&y.is_some()),
                    };
                    (if desc { o.reverse() } else { o }).then_with(|| a.0.cmp(&b.0))
                });
                brute = brute.into_iter().skip(offset).take(limit).collect();
            }
            db.create_index("name")?;
            db.create_index("city")?;
            db.create_ordered_index("age")?;
            let indexed = db.query(&q)?.entries;
            // Kept exact by writes after its creation, too.
            for (k, v) in rows.iter().rev().take(10) {
                db.set(format!("k{k}"), v.clone())?;
            }
            if let Some((k, _)) = rows.first() {
                db.delete(&format!("k{k}"))?;
                db.set(format!("k{k}x"), json!({"name": "n1", "age": 7.5}))?;
            }
            let after = db.query(&q)?.entries;
            db.drop_index("age")?;
            db.drop_index("name")?;
            db.drop_index("city")?;
            let after_plain = db.query(&q)?.entries;
            Ok((plain, indexed, brute, (after, after_plain)))
        };
        let (plain, indexed, brute, (after, after_plain)) =
            run().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(after, after_plain, "after more writes: {}", text);
        prop_assert_eq!(&brute, &plain, "{}", text);
        prop_assert_eq!(plain, indexed, "{}", text);
    }
}
