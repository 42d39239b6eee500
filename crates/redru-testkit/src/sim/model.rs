//! Random workloads on the simulated file system, and the model they are checked against.
//!
//! A [`Run`] drives a `Db` on a [`SimFs`] through a list of [`Op`]s, recording
//! for every record its model state (a `BTreeMap`, index definitions) and, for
//! every operation, the file-system clock before and after it and what became
//! durable. [`Run::check_recovered`] then judges a database reopened from a
//! crash image taken at any clock value: it must hold exactly the state after
//! some record `k` between "acknowledged durable by then" and "started by then".
//! The clock is a `ManualClock` that never moves ([`SIM_NOW`]): deadlines are
//! exact numbers the model keeps, and nothing expires during a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redru::{Batch, Db, Durability, Error, IndexKind, ManualClock, Options, Ttl, Update, Value, json};

use super::{Rng, SimFs};
use crate::rng::{Bytes, Choices};

/// One step of a workload.
#[derive(Clone, Debug)]
pub enum Op {
    Set(String, Value),
    Delete(String),
    Batch(Vec<BOp>),
    /// `Db::update` adding 1 to an integer (absent: 0); anything else is kept.
    Incr(String),
    /// A batch that requires its key to be absent (no record when it exists).
    BatchIfAbsent(String, Vec<BOp>),
    Clear,
    CreateIndex(String, bool),
    CreateOrderedIndex(String),
    DropIndex(String),
    Save,
    Sync,
    /// `Db::import_pairs` replacing everything: a snapshot installed at the
    /// next seq, with no log record.
    ImportReplace(Vec<(String, Value)>),
    /// A backup into `DIR/backups/`.
    Backup,
    /// A set with a time to live, in seconds.
    SetTtl(String, Value, u64),
    /// A new deadline (seconds from now) for the key, if it exists.
    Expire(String, u64),
    /// The key's deadline removed, if it has one.
    Persist(String),
    /// Clean close, then open.
    Reopen,
    /// Close, append garbage to the newest log segment (a torn write), open.
    Tear(Vec<u8>),
}

#[derive(Clone, Debug)]
pub enum BOp {
    Set(String, Value),
    /// A set with a time to live, in seconds.
    SetTtl(String, Value, u64),
    Delete(String),
    Clear,
}

/// What the simulation's clock reads, always: 2025-12-01T00:00:00Z in ms.
pub const SIM_NOW: u64 = 1_764_547_200_000;

const FIELDS: [&str; 3] = ["name", "n", "tags.0"];

fn key(rng: &mut impl Choices) -> String {
    format!("k{}", rng.below(8))
}

fn value(rng: &mut impl Choices) -> Value {
    let names = ["ann", "bob", "cy", "dee"];
    match rng.below(10) {
        0 => json!(rng.below(100)),
        1 => json!("plain"),
        2 => {
            // Big enough to cross 512-byte sectors and to trigger compaction.
            let pad = "x".repeat(100 + rng.below_usize(700));
            json!({"name": names[rng.below_usize(4)], "n": rng.below(4), "pad": pad})
        }
        3 => json!({"tags": [names[rng.below_usize(4)], "t"], "n": rng.below(4)}),
        _ => json!({"name": names[rng.below_usize(4)], "n": rng.below(4)}),
    }
}

/// A random workload of `len` steps.
pub fn workload(rng: &mut Rng, len: usize) -> Vec<Op> {
    (0..len).map(|_| op(rng)).collect()
}

/// A workload the fuzzer's bytes spell, one operation after another (at most
/// `max` of them): each choice is a byte, so a mutated byte changes one
/// operation, its key or its value.
pub fn workload_from_bytes(data: &[u8], max: usize) -> Vec<Op> {
    let mut bytes = Bytes::new(data);
    let mut ops = Vec::new();
    while !bytes.is_empty() && ops.len() < max {
        ops.push(op(&mut bytes));
    }
    ops
}

/// One step, its kind, keys and values chosen by `rng`.
fn op(rng: &mut impl Choices) -> Op {
    {
        match rng.below(100) {
            0..32 => Op::Set(key(rng), value(rng)),
            32..36 => Op::SetTtl(key(rng), value(rng), 1 + rng.below(3600)),
            36..38 => Op::Expire(key(rng), 1 + rng.below(3600)),
            38..39 => Op::Persist(key(rng)),
            39..42 => Op::Incr(key(rng)),
            42..45 => Op::BatchIfAbsent(key(rng), vec![BOp::Set(key(rng), value(rng)), BOp::Delete(key(rng))]),
            45..55 => Op::Delete(key(rng)),
            55..67 => {
                let n = 1 + rng.below_usize(4);
                Op::Batch(
                    (0..n)
                        .map(|_| match rng.below(10) {
                            0 => BOp::Clear,
                            1..4 => BOp::Delete(key(rng)),
                            4 => BOp::SetTtl(key(rng), value(rng), 1 + rng.below(3600)),
                            _ => BOp::Set(key(rng), value(rng)),
                        })
                        .collect(),
                )
            }
            67..69 => Op::Clear,
            69..75 if rng.chance(1, 3) => Op::CreateOrderedIndex(FIELDS[rng.below_usize(3)].to_owned()),
            69..75 => Op::CreateIndex(FIELDS[rng.below_usize(3)].to_owned(), rng.chance(1, 4)),
            75..78 => Op::DropIndex(FIELDS[rng.below_usize(3)].to_owned()),
            78..86 => Op::Save,
            86..87 => Op::Sync,
            87..88 => Op::ImportReplace((0..rng.below(5)).map(|_| (key(rng), value(rng))).collect()),
            88..89 => Op::Backup,
            89..96 => Op::Reopen,
            _ => {
                let mut junk = vec![0u8; 1 + rng.below_usize(60)];
                if rng.chance(1, 2) {
                    rng.fill(&mut junk);
                } else {
                    // A record cut short: a valid prefix of a line.
                    let line = b"0badc0de {\"seq\":999,\"op\":\"set\",\"key\":\"k1\",\"value\":1}";
                    junk = line[..junk.len().min(line.len())].to_vec();
                }
                Op::Tear(junk)
            }
        }
    }
}

/// The model: data and index definitions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub map: BTreeMap<String, Value>,
    /// Field -> (unique, ordered).
    pub indexes: BTreeMap<String, (bool, bool)>,
    /// Key -> deadline (ms since the epoch) of every key that has one.
    pub deadlines: BTreeMap<String, u64>,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Set(k, v) => {
                self.map.insert(k.clone(), v.clone());
                self.deadlines.remove(k);
            }
            Op::SetTtl(k, v, secs) => {
                self.map.insert(k.clone(), v.clone());
                self.deadlines.insert(k.clone(), SIM_NOW + secs * 1000);
            }
            // Applied only when a record was written: the key existed (or had a deadline).
            Op::Expire(k, secs) => {
                self.deadlines.insert(k.clone(), SIM_NOW + secs * 1000);
            }
            Op::Persist(k) => {
                self.deadlines.remove(k);
            }
            Op::Delete(k) => {
                self.map.remove(k);
                self.deadlines.remove(k);
            }
            // An update keeps the deadline.
            Op::Incr(k) => {
                if let Some(n) = incremented(self.map.get(k)) {
                    self.map.insert(k.clone(), json!(n));
                }
            }
            // Applied only when a record was written: the engine's condition held.
            Op::Batch(ops) | Op::BatchIfAbsent(_, ops) => {
                for op in ops {
                    match op {
                        BOp::Set(k, v) => {
                            self.map.insert(k.clone(), v.clone());
                            self.deadlines.remove(k);
                        }
                        BOp::SetTtl(k, v, secs) => {
                            self.map.insert(k.clone(), v.clone());
                            self.deadlines.insert(k.clone(), SIM_NOW + secs * 1000);
                        }
                        BOp::Delete(k) => {
                            self.map.remove(k);
                            self.deadlines.remove(k);
                        }
                        BOp::Clear => {
                            self.map.clear();
                            self.deadlines.clear();
                        }
                    }
                }
            }
            Op::Clear => {
                self.map.clear();
                self.deadlines.clear();
            }
            Op::ImportReplace(pairs) => {
                self.map = pairs.iter().cloned().collect();
                self.deadlines.clear();
            }
            Op::CreateIndex(f, unique) => {
                self.indexes.insert(f.clone(), (*unique, false));
            }
            Op::CreateOrderedIndex(f) => {
                self.indexes.insert(f.clone(), (false, true));
            }
            Op::DropIndex(f) => {
                self.indexes.remove(f);
            }
            _ => {}
        }
    }

    /// Differences between this model and `db` (empty when they agree),
    /// including every index against a rebuild from the model's data.
    pub fn diff(&self, db: &Db) -> Vec<String> {
        let mut out = Vec::new();
        let keys = db.keys();
        let want: Vec<&String> = self.map.keys().collect();
        if keys.iter().collect::<Vec<_>>() != want {
            out.push(format!("keys {keys:?}, expected {want:?}"));
        }
        for (k, v) in &self.map {
            let got = db.get_value(k);
            if got.as_ref() != Some(v) {
                out.push(format!("{k} = {got:?}, expected {v}"));
            }
            let want = self.deadlines.get(k).map(|at| std::time::Duration::from_millis(at - SIM_NOW));
            let ttl = db.ttl(k);
            if ttl.left() != want || (want.is_none() && ttl != Ttl::Persistent) {
                out.push(format!("{k} has ttl {ttl:?}, expected {want:?} left"));
            }
        }
        let infos = db.indexes();
        let got: BTreeMap<String, (bool, bool)> =
            infos.iter().map(|i| (i.field.clone(), (i.unique, i.kind == IndexKind::Ordered))).collect();
        if got != self.indexes {
            out.push(format!("indexes {got:?}, expected {:?}", self.indexes));
            return out;
        }
        for info in &infos {
            let mut groups: BTreeMap<String, (Value, Vec<String>)> = BTreeMap::new();
            for (k, v) in &self.map {
                if let Some(field) = resolve(v, &info.field) {
                    let entry = groups.entry(field.to_string()).or_insert_with(|| (field.clone(), Vec::new()));
                    entry.1.push(k.clone());
                }
            }
            let entries: usize = groups.values().map(|g| g.1.len()).sum();
            if info.entries != entries || info.distinct_values != groups.len() {
                out.push(format!(
                    "index {}: {info:?}, a rebuild has {entries} entries, {} values",
                    info.field,
                    groups.len()
                ));
            }
            for (value, keys) in groups.values() {
                match db.find(&info.field, value) {
                    Ok(found) if &found == keys => {}
                    other => out.push(format!("index {} finds {other:?} for {value}, expected {keys:?}", info.field)),
                }
            }
            if info.kind == IndexKind::Ordered {
                self.diff_ordered(db, &info.field, &mut out);
            }
        }
        out
    }

    /// An ordered index against the model: a walk of the whole order, and a
    /// range from the middle. The workload's fields hold numbers or strings.
    fn diff_ordered(&self, db: &Db, field: &str, out: &mut Vec<String>) {
        let rank = |v: &Value| match v {
            Value::Number(n) => (0, n.as_f64().unwrap_or(0.0), String::new()),
            Value::String(s) => (1, 0.0, s.clone()),
            other => (2, 0.0, other.to_string()),
        };
        let mut sorted: Vec<(&String, &Value)> =
            self.map.iter().filter_map(|(k, v)| resolve(v, field).map(|f| (k, f))).collect();
        sorted.sort_by(|a, b| {
            let (x, y) = (rank(a.1), rank(b.1));
            x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)).then(x.2.cmp(&y.2)).then(a.0.cmp(b.0))
        });
        let want: Vec<String> = sorted.iter().map(|(k, _)| (*k).clone()).collect();
        let keys = |q: &str| -> Result<Vec<String>, String> {
            let query = redru::Query::parse(q).map_err(|e| e.to_string())?;
            let r = db.query(&query).map_err(|e| e.to_string())?;
            Ok(r.entries.into_iter().map(|(k, _)| k).collect())
        };
        let walk = format!("exists {field} sort by {field} limit 1000");
        match keys(&walk) {
            Ok(got) if got == want => {}
            other => out.push(format!("ordered index {field}: `{walk}` gives {other:?}, expected {want:?}")),
        }
        let Some(middle) = sorted.get(sorted.len() / 2).map(|(_, v)| (*v).clone()) else { return };
        if !(middle.is_number() || middle.is_string()) {
            return;
        }
        let mut want: Vec<String> = sorted
            .iter()
            .filter(|(_, v)| rank(v).0 == rank(&middle).0 && rank(v) >= rank(&middle))
            .map(|(k, _)| (*k).clone())
            .collect();
        want.sort();
        let range = format!("{field} >= {middle}");
        match keys(&range) {
            Ok(got) if got == want => {}
            other => out.push(format!("ordered index {field}: `{range}` gives {other:?}, expected {want:?}")),
        }
    }
}

/// What `Op::Incr` writes over `current` (None: it keeps the value).
fn incremented(current: Option<&Value>) -> Option<i64> {
    match current {
        None => Some(1),
        Some(v) => v.as_i64().and_then(|n| n.checked_add(1)),
    }
}

/// The value at a dotted path (`tags.0`), as the engine's field paths resolve it.
fn resolve<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut v = value;
    for part in path.split('.') {
        v = match v {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// The log buffer of `Durability::Buffered` in simulated runs: a few small records.
pub const SIM_BUFFER_BYTES: usize = 256;

/// How the run's database is configured.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub durability: Durability,
    /// Automatic compaction above this many log bytes (None: off).
    pub auto_compact: Option<u64>,
    /// Negative control: acknowledge writes without fsync.
    pub skip_sync: bool,
}

impl Config {
    pub fn options(&self, vfs: Arc<dyn redru::vfs::Vfs>) -> Options {
        // Buffered mode (the other modes ignore these): a buffer small enough to
        // fill within a workload, and no flush thread, so runs stay reproducible.
        let options = Options::new()
            .vfs(vfs)
            .clock(Arc::new(ManualClock::new(SIM_NOW)))
            .sweep_interval(None)
            .durability(self.durability)
            .buffer_bytes(SIM_BUFFER_BYTES)
            .buffer_flush_interval(None);
        match self.auto_compact {
            Some(min) => options.auto_compact(true).auto_compact_min_bytes(min).auto_compact_ratio(1.0),
            None => options.auto_compact(false),
        }
    }
}

/// What happened to one operation.
#[derive(Clone, Debug)]
pub struct Event {
    pub op: String,
    /// File-system clock before and after the operation.
    pub start: u64,
    pub end: u64,
    /// The operation's outcome.
    pub error: Option<String>,
    /// Whether the operation failed with `Error::Poisoned`.
    pub poisoned: bool,
    /// The last record known durable when it returned, if it made anything durable.
    pub durable: Option<u64>,
    /// The last record written when it returned.
    pub last: u64,
    /// Mutations an injected fault failed during it.
    pub faulted: u64,
    /// The backup it wrote (path, last record), if it was a successful backup.
    pub backup: Option<(PathBuf, u64)>,
}

/// A workload run on the simulated file system.
pub struct Run {
    pub fs: SimFs,
    pub dir: PathBuf,
    pub config: Config,
    /// `states[k]`: the model after record `k`.
    pub states: Vec<Model>,
    pub events: Vec<Event>,
    pub db: Option<Db>,
    pub vfs: Arc<dyn redru::vfs::Vfs>,
    /// Rule 2 breaches seen when an operation returned: creations or renames
    /// it relied on that no directory sync had made durable.
    pub undurable: Vec<String>,
    /// Reopens that came back without records acknowledged durable before.
    pub lost: Vec<String>,
    /// Reads after a failed log write or sync that showed records not durable.
    pub undurable_reads: Vec<String>,
    /// Negative control: every handle skips its rollback after a failure.
    pub skip_rollback: bool,
}

fn last_seq(db: &Option<Db>) -> u64 {
    db.as_ref().map_or(0, |db| db.stats().last_seq)
}

impl Run {
    /// Opens a database in `/db` on `fs` (through `vfs`, which may wrap it).
    pub fn start(fs: SimFs, vfs: Arc<dyn redru::vfs::Vfs>, config: Config) -> Run {
        let mut run = Run {
            fs,
            dir: PathBuf::from("/db"),
            config,
            states: vec![Model::default()],
            events: Vec::new(),
            db: None,
            vfs,
            undurable: Vec::new(),
            lost: Vec::new(),
            undurable_reads: Vec::new(),
            skip_rollback: false,
        };
        run.open();
        run
    }

    fn open(&mut self) {
        let start = self.fs.mutations();
        let fired = self.fs.fired();
        let opened = self.config.options(Arc::clone(&self.vfs)).open(&self.dir);
        let (error, durable, last) = match opened {
            Ok(db) => {
                if self.config.skip_sync {
                    db.__test_skip_sync();
                }
                if self.skip_rollback {
                    db.__test_skip_rollback();
                }
                let last = db.stats().last_seq;
                let acknowledged = self.events.iter().filter_map(|e| e.durable).max().unwrap_or(0);
                if last < acknowledged {
                    self.lost.push(format!("reopen came back at record {last}, {acknowledged} were acknowledged"));
                }
                // After a failed log sync the engine cuts the records it could
                // not sync (never acknowledged durable, checked above): the
                // history continues from what the reopen found.
                self.states.truncate(last as usize + 1);
                self.db = Some(db);
                let pending = self.fs.undurable();
                if !pending.is_empty() {
                    self.undurable.push(format!("rule 2: open returned with {} not durable", pending.join(", ")));
                }
                (None, None, last)
            }
            Err(e) => (Some(e.to_string()), None, 0),
        };
        // What an open reads may be cached, not durable: it acknowledges nothing.
        self.events.push(Event {
            op: "open".into(),
            start,
            end: self.fs.mutations(),
            poisoned: false,
            error,
            durable,
            last,
            faulted: self.fs.fired() - fired,
            backup: None,
        });
    }

    /// Negative control: this handle and every reopened one skip the rollback
    /// after a failed log write or sync.
    pub fn skip_rollback(&mut self) {
        self.skip_rollback = true;
        if let Some(db) = &self.db {
            db.__test_skip_rollback();
        }
    }

    /// Runs one step. Returns false once the database could not be reopened.
    pub fn step(&mut self, op: &Op) -> bool {
        if self.db.is_none() {
            return false;
        }
        let start = self.fs.mutations();
        let fired = self.fs.fired();
        let before = last_seq(&self.db);
        // What the engine claims durable, believed as claimed (negative controls break the claim).
        let mut durable_kind = self.config.durability == Durability::Always;
        let mut backup = None;
        let result: Result<(), Error> = match (op, self.db.as_ref()) {
            (_, None) => return false,
            (Op::Set(k, v), Some(db)) => db.set(k.clone(), v.clone()),
            (Op::SetTtl(k, v, secs), Some(db)) => db.set_with_ttl(k.clone(), v.clone(), Duration::from_secs(*secs)),
            (Op::Expire(k, secs), Some(db)) => db.expire(k, Duration::from_secs(*secs)).map(|_| ()),
            (Op::Persist(k), Some(db)) => db.persist(k).map(|_| ()),
            (Op::Delete(k), Some(db)) => db.delete(k).map(|_| ()),
            (Op::Incr(k), Some(db)) => db
                .update(k, |cur| match incremented(cur.map(|d| d.to_value()).as_ref()) {
                    Some(n) => Update::Set(json!(n).into()),
                    None => Update::Keep,
                })
                .map(|_| ()),
            (Op::Batch(ops) | Op::BatchIfAbsent(_, ops), Some(db)) => {
                let mut b = Batch::new();
                if let Op::BatchIfAbsent(k, _) = op {
                    b = b.require_absent(k.clone());
                }
                for op in ops {
                    b = match op {
                        BOp::Set(k, v) => b.set(k.clone(), v.clone()),
                        BOp::SetTtl(k, v, secs) => b.set_with_ttl(k.clone(), v.clone(), Duration::from_secs(*secs)),
                        BOp::Delete(k) => b.delete(k.clone()),
                        BOp::Clear => b.clear(),
                    };
                }
                match db.batch(b) {
                    // Not a failure: the condition is part of the workload.
                    Err(Error::ConditionFailed { .. }) => Ok(()),
                    other => other,
                }
            }
            (Op::Clear, Some(db)) => db.clear().map(|_| ()),
            (Op::CreateIndex(f, true), Some(db)) => db.create_unique_index(f),
            (Op::CreateIndex(f, false), Some(db)) => db.create_index(f),
            (Op::CreateOrderedIndex(f), Some(db)) => db.create_ordered_index(f),
            (Op::DropIndex(f), Some(db)) => db.drop_index(f),
            (Op::Save, Some(db)) => {
                durable_kind = true;
                db.save().map(|_| ())
            }
            (Op::ImportReplace(pairs), Some(db)) => {
                // A snapshot, synced before it returns, in every mode.
                durable_kind = true;
                let docs = pairs.iter().map(|(k, v)| (k.clone(), redru::Doc::from(v))).collect();
                db.import_pairs(docs, true).map(|_| ())
            }
            (Op::Backup, Some(db)) => db.backup().map(|info| backup = Some((info.path, info.seq))),
            (Op::Sync, Some(db)) => {
                durable_kind = true;
                db.sync()
            }
            (Op::Reopen | Op::Tear(_), Some(_)) => {
                durable_kind = true;
                let db = self.db.take();
                let closed = db.map_or(Ok(()), Db::close);
                if let (Op::Tear(junk), Ok(())) = (op, &closed)
                    && let Some(last) =
                        redru::internal::log::list_segments(&self.fs, &self.dir).ok().and_then(|s| s.last().cloned())
                {
                    let _ = self.fs.tear_durable(&last.path, junk);
                }
                closed
            }
        };
        let after = last_seq(&self.db).max(before);
        if after > before {
            self.wait_for_compaction();
        }
        if let (Op::BatchIfAbsent(k, _), Ok(())) = (op, &result) {
            let absent = !self.states.last().is_some_and(|m| m.map.contains_key(k));
            if absent != (after > before) {
                self.lost
                    .push(format!("{op:?}: the key was absent: {absent}, but a record written: {}", after > before));
            }
        }
        if after > before {
            debug_assert_eq!(after, before + 1, "one operation, one record");
            let mut model = self.states.last().cloned().unwrap_or_default();
            model.apply(op);
            self.states.push(model);
        }
        self.check_rolled_back(op);
        let poisoned = matches!(result, Err(Error::Poisoned { .. }));
        let ok = result.is_ok();
        if ok {
            let pending = self.fs.undurable();
            if !pending.is_empty() {
                self.undurable.push(format!("rule 2: {op:?} returned with {} not durable", pending.join(", ")));
            }
        }
        self.events.push(Event {
            op: format!("{op:?}").chars().take(80).collect(),
            start,
            end: self.fs.mutations(),
            error: result.err().map(|e| e.to_string()),
            poisoned,
            durable: (ok && durable_kind).then_some(after),
            last: after,
            faulted: self.fs.fired() - fired,
            backup,
        });
        if matches!(op, Op::Reopen | Op::Tear(_)) {
            self.open();
        }
        self.db.is_some()
    }

    /// An automatic compaction runs in its own thread; wait for the one this
    /// write may have started, so that runs stay reproducible.
    fn wait_for_compaction(&self) {
        if let (Some(_), Some(db)) = (self.config.auto_compact, self.db.as_ref()) {
            db.__test_wait_compaction();
        }
    }

    /// Once the handle refuses writes, every read must show the state after
    /// the last durable record (docs/durability.md): nothing that was not.
    fn check_rolled_back(&mut self, op: &Op) {
        let Some(db) = self.db.as_ref() else { return };
        let stats = db.stats();
        if stats.poisoned.is_none() {
            return;
        }
        let durable = stats.durable_seq as usize;
        let diff = self.states.get(durable).map(|m| m.diff(db)).unwrap_or_default();
        if !diff.is_empty() {
            self.undurable_reads.push(format!(
                "after {op:?} failed, reads differ from the state after durable record {durable}: {}",
                diff.join("; ")
            ));
        }
    }

    /// Runs every step, then closes. Returns how many steps ran.
    pub fn run_all(&mut self, ops: &[Op]) -> usize {
        let mut n = 0;
        for op in ops {
            if !self.step(op) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Closes the database (a clean close is a durability point).
    pub fn close(&mut self) {
        let start = self.fs.mutations();
        let fired = self.fs.fired();
        let last = last_seq(&self.db);
        if let Some(db) = self.db.take() {
            let result = db.close();
            self.events.push(Event {
                op: "close".into(),
                start,
                end: self.fs.mutations(),
                poisoned: matches!(result, Err(Error::Poisoned { .. })),
                durable: result.is_ok().then_some(last),
                error: result.err().map(|e| e.to_string()),
                last,
                faulted: self.fs.fired() - fired,
                backup: None,
            });
        }
    }

    /// The records that must and may survive a crash at clock `n` (the state
    /// before mutation `n`): at least every one acknowledged durable by an
    /// operation that had returned, at most every one written by an operation
    /// that had started.
    pub fn bounds(&self, n: u64) -> (u64, u64) {
        let lo = self.events.iter().filter(|e| e.end <= n).filter_map(|e| e.durable).max().unwrap_or(0);
        let hi = self.events.iter().filter(|e| e.start < n).map(|e| e.last).max().unwrap_or(0);
        (lo, hi)
    }

    /// Judges a database opened from a crash image: its last record `k` must
    /// lie in `lo..=hi` and its content equal the model after record `k`.
    pub fn check_recovered(&self, db: &Db, lo: u64, hi: u64) -> Result<u64, String> {
        let k = db.stats().last_seq;
        if k < lo {
            return Err(format!("lost acknowledged records: recovered up to record {k}, {lo} were acknowledged"));
        }
        if k > hi {
            return Err(format!("recovered record {k}, but only {hi} had been written"));
        }
        let Some(model) = self.states.get(k as usize) else {
            return Err(format!("recovered record {k}, the model has {}", self.states.len() - 1));
        };
        let diff = model.diff(db);
        if diff.is_empty() { Ok(k) } else { Err(format!("state after record {k} differs: {}", diff.join("; "))) }
    }

    /// Every backup acknowledged by clock `n` must be on disk, intact, at its seq.
    pub fn check_backups(&self, fs: &SimFs, n: u64) -> Result<(), String> {
        for e in self.events.iter().filter(|e| e.end <= n) {
            let Some((path, seq)) = &e.backup else { continue };
            let bytes =
                fs.contents(path).map_err(|err| format!("acknowledged backup {} is gone: {err}", path.display()))?;
            match redru::internal::snapshot::parse(path, &bytes, None) {
                Ok((_, info)) if info.seq.0 == *seq => {}
                Ok((_, info)) => {
                    return Err(format!("backup {} holds record {}, expected {seq}", path.display(), info.seq));
                }
                Err(err) => return Err(format!("acknowledged backup {} is damaged: {err}", path.display())),
            }
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
