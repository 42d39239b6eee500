//! Guards conditional writes: `update` is an atomic read-modify-write (no
//! lost increment across 16 threads), `compare_and_set` and a batch's
//! conditions change and log nothing when they fail and say which failed,
//! and each key's seq is exact, survives reopen, and stays safe after a save.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::util::{TestResult, dump};
use proptest::prelude::*;
use redru::{Batch, Db, Durability, Error, Options, Seq, Update, Value, json};

#[test]
fn sixteen_threads_incrementing_with_update_lose_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(Options::new().durability(Durability::Never).open(dir.path())?);
    const THREADS: i64 = 16;
    const EACH: i64 = 500;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || -> Result<(), Error> {
                for i in 0..EACH {
                    // Half through `update` itself, half through `incr` (built on it).
                    if (t + i) % 2 == 0 {
                        db.update("counter", |cur| {
                            let n = cur.and_then(|d| d.deserialize::<i64>().ok()).unwrap_or(0);
                            Update::Set(json!(n + 1).into())
                        })?;
                    } else {
                        db.incr("counter", 1)?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a thread panicked")??;
    }
    assert_eq!(db.get_value("counter"), Some(json!(THREADS * EACH)));
    drop(db);
    let db = Db::open(dir.path())?;
    assert_eq!(db.get_value("counter"), Some(json!(THREADS * EACH)));
    Ok(())
}

#[test]
fn update_keep_and_delete_of_absent_log_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    let before = db.stats();
    assert_eq!(db.update("k", |_| Update::Keep)?, None);
    assert_eq!(db.update("k", |_| Update::Delete)?, None);
    let after = db.stats();
    assert_eq!((after.last_seq, after.wal_bytes), (before.last_seq, before.wal_bytes));
    let seq = db.update("k", |cur| {
        assert!(cur.is_none());
        Update::Set(json!("v").into())
    })?;
    assert_eq!(seq, Some(Seq(before.last_seq + 1)));
    assert_eq!(db.get_with_seq("k").map(|(d, s)| (d.to_value(), s)), Some((json!("v"), Seq(before.last_seq + 1))));
    assert!(db.update("k", |_| Update::Delete)?.is_some());
    assert!(!db.contains("k"));
    Ok(())
}

#[test]
fn incr_counts_from_absent_and_refuses_what_is_not_an_integer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    assert_eq!(db.incr("n", 5)?, 5);
    assert_eq!(db.incr("n", -7)?, -2);
    db.set("s", json!("abc"))?;
    let last = db.stats().last_seq;
    assert!(matches!(db.incr("s", 1), Err(Error::InvalidValue { key: Some(k), .. }) if k == "s"));
    db.set("big", json!(i64::MAX))?;
    let last_big = db.stats().last_seq;
    assert!(matches!(db.incr("big", 1), Err(Error::InvalidValue { .. })));
    assert_eq!(db.stats().last_seq, last_big);
    assert!(last < last_big);
    assert_eq!(db.get_value("big"), Some(json!(i64::MAX)));
    Ok(())
}

#[test]
fn compare_and_set_writes_only_on_the_expected_value() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    let first = db.compare_and_set("k", None, json!(1))?;
    let err = db.compare_and_set("k", None, json!(2)).err().ok_or("absent-CAS on a present key succeeded")?;
    assert!(
        matches!(&err, Error::ConditionFailed { key, index: 0, seq: Some(s), .. } if key == "k" && *s == first.0),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "condition 1 failed: `k` is absent, but it holds 1; nothing was written");
    assert!(matches!(db.compare_and_set("k", Some(&json!(2)), json!(3)), Err(Error::ConditionFailed { .. })));
    assert_eq!(db.stats().last_seq, first.0);
    let second = db.compare_and_set("k", Some(&json!(1)), json!({"n": 2}))?;
    assert_eq!(second, Seq(first.0 + 1));
    // Objects compare as JSON values, whatever their member order.
    db.compare_and_set("k", Some(&serde_json::from_str(r#"{"n":2}"#)?), json!(4))?;
    assert_eq!(db.get_value("k"), Some(json!(4)));
    Ok(())
}

#[test]
fn a_failed_batch_condition_changes_and_logs_nothing_and_names_the_condition() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    let seq_a = db.set_with_seq("a", json!(1))?;
    db.set("b", json!(2))?;
    let before = db.stats();
    let batch = Batch::new()
        .require_equals("a", json!(1))
        .require_unchanged("a", seq_a)
        .require_absent("b")
        .set("a", json!(10))
        .delete("b")
        .set("c", json!(3));
    let err = db.batch(batch).err().ok_or("the batch ran")?;
    assert!(matches!(&err, Error::ConditionFailed { key, index: 2, .. } if key == "b"), "{err:?}");
    assert_eq!(err.to_string(), "condition 3 failed: `b` is absent, but it holds 2; nothing was written");
    let after = db.stats();
    assert_eq!((after.last_seq, after.wal_bytes), (before.last_seq, before.wal_bytes));
    assert_eq!(dump(&db), vec![("a".into(), json!(1)), ("b".into(), json!(2))]);
    // Once `a` is written again, a condition on its old seq fails.
    db.set("a", json!(5))?;
    let err = db.batch(Batch::new().require_unchanged("a", seq_a).set("c", json!(3))).err().ok_or("ran")?;
    assert!(
        err.to_string().contains(&format!(
            "`a` is unchanged since record {seq_a}, but it was last written by record {}",
            seq_a.0 + 2
        )),
        "{err}"
    );
    // Conditions that hold: the batch runs.
    let (_, seq_now) = db.get_with_seq("a").ok_or("a missing")?;
    db.batch(
        Batch::new()
            .require_unchanged("a", seq_now)
            .require_absent("c")
            .require_equals("b", json!(2))
            .set("c", json!(3)),
    )?;
    assert_eq!(db.get_value("c"), Some(json!(3)));
    Ok(())
}

#[test]
fn seqs_and_conditions_survive_reopen_and_save() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (seq_a, seq_b) = {
        let db = Db::open(dir.path())?;
        let a = db.set_with_seq("a", json!(1))?;
        let b = db.set_with_seq("b", json!(2))?;
        db.set("other", json!(0))?;
        (a, b)
    };
    {
        // Replayed from the log: exact seqs.
        let db = Db::open(dir.path())?;
        assert_eq!(db.get_with_seq("a").map(|(_, s)| s), Some(seq_a));
        db.batch(Batch::new().require_unchanged("a", seq_a).require_absent("c").set("c", json!(3)))?;
        assert!(matches!(
            db.batch(Batch::new().require_absent("c").set("c", json!(4))),
            Err(Error::ConditionFailed { .. })
        ));
        db.save()?;
    }
    let db = Db::open(dir.path())?;
    let snapshot_seq = Seq(db.stats().snapshot_seq);
    // Loaded from the snapshot: the snapshot's seq, never less than the true one.
    assert_eq!(db.get_with_seq("b").map(|(_, s)| s), Some(snapshot_seq));
    assert!(snapshot_seq > seq_b);
    assert!(matches!(
        db.batch(Batch::new().require_unchanged("b", seq_b).set("b", json!(9))),
        Err(Error::ConditionFailed { .. })
    ));
    db.batch(Batch::new().require_unchanged("b", snapshot_seq).set("b", json!(9)))?;
    let (_, written) = db.get_with_seq("b").ok_or("b missing")?;
    assert_eq!(written, Seq(snapshot_seq.0 + 1));
    assert!(matches!(db.compare_and_set("c", None, json!(5)), Err(Error::ConditionFailed { .. })));
    assert_eq!(db.get_value("c"), Some(json!(3)));
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    Set(u8, i64),
    Delete(u8),
    Incr(u8, i64),
    Cas(u8, Option<i64>, i64),
    /// Conditions (key, kind 0 absent / 1 equals / 2 unchanged, a value or a seq offset), then sets.
    Batch(Vec<(u8, u8, i64)>, Vec<(u8, i64)>),
    Save,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..5, 0i64..4).prop_map(|(k, v)| Op::Set(k, v)),
        1 => (0u8..5).prop_map(Op::Delete),
        2 => (0u8..5, -2i64..3).prop_map(|(k, v)| Op::Incr(k, v)),
        2 => (0u8..5, prop::option::of(0i64..4), 0i64..4).prop_map(|(k, e, v)| Op::Cas(k, e, v)),
        3 => (prop::collection::vec((0u8..5, 0u8..3, -1i64..3), 0..3), prop::collection::vec((0u8..5, 0i64..4), 0..3))
            .prop_map(|(c, s)| Op::Batch(c, s)),
        1 => Just(Op::Save),
        1 => Just(Op::Reopen),
    ]
}

/// The model: each key's value and the seq of its last write, and the
/// snapshot's seq the keys loaded at the last open report at least.
#[derive(Default)]
struct Model {
    map: BTreeMap<String, (i64, u64)>,
    floor: u64,
}

impl Model {
    fn seq_of(&self, k: &str) -> Option<u64> {
        self.map.get(k).map(|(_, s)| (*s).max(self.floor))
    }
}

fn key(k: u8) -> String {
    format!("k{k}")
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let fail = |e: Error| TestCaseError::fail(e.to_string());
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let open = || Options::new().durability(Durability::Never).auto_compact(false).open(dir.path());
    let mut db = Some(open().map_err(fail)?);
    let mut model = Model::default();
    for op in ops {
        let d = db.as_ref().ok_or_else(|| TestCaseError::fail("no db"))?;
        let next = d.stats().last_seq + 1;
        match op {
            Op::Set(k, v) => {
                prop_assert_eq!(d.set_with_seq(key(k), json!(v)).map_err(fail)?, Seq(next));
                model.map.insert(key(k), (v, next));
            }
            Op::Delete(k) => {
                d.delete(&key(k)).map_err(fail)?;
                model.map.remove(&key(k));
            }
            Op::Incr(k, by) => {
                let n = d.incr(&key(k), by).map_err(fail)?;
                let want = model.map.get(&key(k)).map_or(0, |(v, _)| *v) + by;
                prop_assert_eq!(n, want);
                model.map.insert(key(k), (want, next));
            }
            Op::Cas(k, expected, v) => {
                let holds = model.map.get(&key(k)).map(|(v, _)| *v) == expected;
                let got = d.compare_and_set(&key(k), expected.map(Value::from).as_ref(), json!(v));
                prop_assert_eq!(got.is_ok(), holds, "{:?}", got);
                if holds {
                    model.map.insert(key(k), (v, next));
                } else {
                    let failed_first = matches!(got, Err(Error::ConditionFailed { index: 0, .. }));
                    prop_assert!(failed_first, "{:?}", got);
                }
            }
            Op::Batch(conditions, sets) => {
                let mut batch = Batch::new();
                let mut first_failed = None;
                for (i, (k, kind, x)) in conditions.into_iter().enumerate() {
                    let cur = model.map.get(&key(k));
                    let holds = match kind {
                        0 => {
                            batch = batch.require_absent(key(k));
                            cur.is_none()
                        }
                        1 => {
                            batch = batch.require_equals(key(k), json!(x));
                            cur.is_some_and(|(v, _)| *v == x)
                        }
                        _ => {
                            // Around the key's current seq: before it, at it, after it.
                            let since = model.seq_of(&key(k)).unwrap_or(next).saturating_add_signed(x);
                            batch = batch.require_unchanged(key(k), Seq(since));
                            model.seq_of(&key(k)).is_some_and(|s| s <= since)
                        }
                    };
                    if !holds && first_failed.is_none() {
                        first_failed = Some(i);
                    }
                }
                for (k, v) in &sets {
                    batch = batch.set(key(*k), json!(v));
                }
                let got = d.batch(batch);
                match first_failed {
                    Some(i) => {
                        let named = matches!(&got, Err(Error::ConditionFailed { index, .. }) if *index == i);
                        prop_assert!(named, "condition {} should fail: {:?}", i, got);
                        prop_assert_eq!(d.stats().last_seq, next - 1);
                    }
                    None => {
                        got.map_err(fail)?;
                        for (k, v) in sets {
                            model.map.insert(key(k), (v, next));
                        }
                    }
                }
            }
            Op::Save => {
                d.save().map_err(fail)?;
            }
            Op::Reopen => {
                drop(db.take());
                let reopened = open().map_err(fail)?;
                model.floor = reopened.stats().snapshot_seq;
                db = Some(reopened);
            }
        }
        let d = db.as_ref().ok_or_else(|| TestCaseError::fail("no db"))?;
        let want: Vec<(String, Value)> = model.map.iter().map(|(k, (v, _))| (k.clone(), json!(v))).collect();
        prop_assert_eq!(dump(d), want);
        for k in model.map.keys() {
            prop_assert_eq!(d.get_with_seq(k).map(|(_, s)| s.0), model.seq_of(k), "seq of {}", k);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn conditional_writes_match_a_model_with_seqs(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
