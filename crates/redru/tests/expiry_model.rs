//! Guards expiry against a model with a fake clock: random sets with and
//! without a time to live, expires, persists, deletes and batches, the clock
//! stepping a millisecond at a time over every deadline, with saves, sweeps
//! and reopens in between; after each step every key, its time left and
//! the count must equal the model's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use redru::{Batch, Db, Durability, ManualClock, Options, Ttl, json};

const T0: u64 = 1_764_547_200_000;

#[derive(Clone, Debug)]
enum Op {
    Set(u8, u8),
    /// A key, a value and a ttl in ms (0 deletes).
    SetTtl(u8, u8, u64),
    Expire(u8, u64),
    Persist(u8),
    Delete(u8),
    /// Sets with a ttl and expires in one batch.
    Batch(Vec<(u8, u8, u64)>),
    Advance(u64),
    Save,
    Sweep,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Set(k, v)),
        5 => (0u8..6, any::<u8>(), 0u64..5).prop_map(|(k, v, t)| Op::SetTtl(k, v, t)),
        3 => (0u8..6, 0u64..5).prop_map(|(k, t)| Op::Expire(k, t)),
        2 => (0u8..6).prop_map(Op::Persist),
        1 => (0u8..6).prop_map(Op::Delete),
        1 => prop::collection::vec((0u8..6, any::<u8>(), 0u64..5), 0..4).prop_map(Op::Batch),
        6 => (0u64..3).prop_map(Op::Advance),
        1 => Just(Op::Save),
        1 => Just(Op::Sweep),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> String {
    format!("k{k}")
}

/// Key -> (value, deadline), as plain data; `now` decides what is visible.
#[derive(Default)]
struct Model {
    keys: BTreeMap<String, (u8, Option<u64>)>,
    now: u64,
}

impl Model {
    fn live(&self, k: &str) -> Option<(u8, Option<u64>)> {
        self.keys.get(k).copied().filter(|(_, exp)| exp.is_none_or(|e| e > self.now))
    }

    fn set_ttl(&mut self, k: String, v: u8, ttl: u64) {
        if ttl == 0 {
            self.keys.remove(&k);
        } else {
            self.keys.insert(k, (v, Some(self.now + ttl)));
        }
    }

    fn expire(&mut self, k: &str, ttl: u64) -> bool {
        let Some((v, _)) = self.live(k) else { return false };
        self.set_ttl(k.to_owned(), v, ttl);
        true
    }
}

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> redru::Result<Db> {
    Options::new().clock(clock.clone()).sweep_interval(None).durability(Durability::Never).open(dir)
}

fn check(db: &Db, model: &Model) -> Result<(), TestCaseError> {
    for k in (0..6).map(key) {
        let want = model.live(&k);
        prop_assert_eq!(db.get_value(&k), want.map(|(v, _)| json!(v)), "value of {}", k);
        let ttl = match want {
            None => Ttl::Missing,
            Some((_, None)) => Ttl::Persistent,
            Some((_, Some(exp))) => Ttl::Expires {
                left: Duration::from_millis(exp - model.now),
                at: std::time::UNIX_EPOCH + Duration::from_millis(exp),
            },
        };
        prop_assert_eq!(db.ttl(&k), ttl, "ttl of {}", k);
    }
    let live: Vec<String> = model.keys.keys().filter(|k| model.live(k).is_some()).cloned().collect();
    prop_assert_eq!(db.len(), live.len());
    prop_assert_eq!(db.keys(), live);
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let clock = Arc::new(ManualClock::new(T0));
    let fail = |e: redru::Error| TestCaseError::fail(e.to_string());
    let mut db = open(dir.path(), &clock).map_err(fail)?;
    let mut model = Model { now: T0, ..Model::default() };
    for op in ops {
        match op {
            Op::Set(k, v) => {
                db.set(key(k), json!(v)).map_err(fail)?;
                model.keys.insert(key(k), (v, None));
            }
            Op::SetTtl(k, v, ttl) => {
                db.set_with_ttl(key(k), json!(v), Duration::from_millis(ttl)).map_err(fail)?;
                model.set_ttl(key(k), v, ttl);
            }
            Op::Expire(k, ttl) => {
                let got = db.expire(&key(k), Duration::from_millis(ttl)).map_err(fail)?;
                prop_assert_eq!(got, model.expire(&key(k), ttl));
            }
            Op::Persist(k) => {
                let want = model.live(&key(k)).is_some_and(|(_, exp)| exp.is_some());
                prop_assert_eq!(db.persist(&key(k)).map_err(fail)?, want);
                if let Some((v, _)) = model.live(&key(k)) {
                    model.keys.insert(key(k), (v, None));
                }
            }
            Op::Delete(k) => {
                prop_assert_eq!(db.delete(&key(k)).map_err(fail)?, model.live(&key(k)).is_some());
                model.keys.remove(&key(k));
            }
            Op::Batch(items) => {
                let mut batch = Batch::new();
                for &(k, v, ttl) in &items {
                    // Odd values expire the key, even ones set it with a ttl.
                    batch = if v % 2 == 1 {
                        model.expire(&key(k), ttl);
                        batch.expire(key(k), Duration::from_millis(ttl))
                    } else {
                        model.set_ttl(key(k), v, ttl);
                        batch.set_with_ttl(key(k), json!(v), Duration::from_millis(ttl))
                    };
                }
                db.batch(batch).map_err(fail)?;
            }
            Op::Advance(by) => {
                clock.advance(Duration::from_millis(by));
                model.now += by;
            }
            Op::Save => {
                db.save().map_err(fail)?;
            }
            Op::Sweep => {
                db.sweep_expired().map_err(fail)?;
            }
            Op::Reopen => {
                db.close().map_err(fail)?;
                db = open(dir.path(), &clock).map_err(fail)?;
            }
        }
        check(&db, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn expiry_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
