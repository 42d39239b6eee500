//! Replaying a log on every core: [`Replay`] takes records in log order and
//! splits their writes by the shard of each key, and the shards apply their
//! lists in parallel ([`Map::apply_writes`]).
//!
//! Invariant: the state after [`Replay::finish`] is the one [`State::apply`]
//! of every record, one by one in log order, gives: the same keys, values,
//! per-key seqs and deadlines, key order (once built), indexes, deadline index and seq
//! (the property test below compares both on random logs).

use crate::state::change::{BatchOp, Record, Seq};
use crate::state::key::Key;
use crate::state::map::{Map, SHARDS, ShardWrite};
use crate::state::store::State;

/// Writes queued before they are applied: enough that a flush's threads
/// have work worth their start (~20 µs each), few enough that the queue
/// (64 bytes a write) stays a few MiB.
const FLUSH_WRITES: usize = 1 << 16;

/// Below this many queued writes a flush applies them on the calling thread.
const PARALLEL_WRITES: usize = 4096;

/// Applies a log's records to a state, the writes of plain records (sets,
/// deletes, deadlines, batches of those) per shard on several threads.
///
/// Why the split is exact: a key's writes all go to its one shard, in log
/// order, so each key ends as the sequential replay leaves it; what spans
/// shards is kept apart. The deadline index takes each key's deadline
/// changes after the flush that made them. A clear, an index definition,
/// and every record once an index exists, are applied by [`State::apply`]
/// after the queued writes (indexes read the value each write replaces, in
/// order across shards: worth no split for the rare database that replays
/// a long log into indexes).
pub struct Replay<'a> {
    state: &'a mut State,
    /// Queued writes, by shard.
    writes: Vec<Vec<ShardWrite>>,
    queued: usize,
    /// The last record queued, once its writes are queued.
    last: Option<Seq>,
    threads: usize,
    flush_at: usize,
    parallel_at: usize,
}

/// A replay thread panicked: the state holds only part of the log.
#[derive(Debug)]
pub struct ReplayFailed;

/// A record made ready for [`Replay::push_prepared`] by [`Replay::prepare`],
/// on the thread that decoded it: a single write's key made inline and its
/// shard chosen there, out of the replay's in-order loop (reading the key's
/// bytes there was a cache miss per record, and freeing the decoded `String`
/// a free into another thread's heap).
pub enum Prepared {
    /// The one write of a set, delete or deadline change, and its shard.
    Write(usize, ShardWrite),
    /// Any other record, as decoded.
    Record(Record),
}

impl Prepared {
    /// The write `make` builds for `key`, with the shard of `key`.
    fn write(key: String, make: impl FnOnce(Key) -> ShardWrite) -> Prepared {
        Prepared::Write(Map::shard_of(&key), make(Key::from(key)))
    }
}

impl<'a> Replay<'a> {
    /// A replay into `state` on up to `threads` threads.
    pub fn new(state: &'a mut State, threads: usize) -> Replay<'a> {
        Replay::with_limits(state, threads, FLUSH_WRITES, PARALLEL_WRITES)
    }

    /// [`Replay::new`], flushing every `flush_at` writes and using threads
    /// from `parallel_at` queued writes on (tests use small ones).
    fn with_limits(state: &'a mut State, threads: usize, flush_at: usize, parallel_at: usize) -> Replay<'a> {
        Replay {
            state,
            writes: (0..SHARDS).map(|_| Vec::new()).collect(),
            queued: 0,
            last: None,
            threads,
            flush_at: flush_at.max(1),
            parallel_at,
        }
    }

    /// Applies (or queues) record `seq`; records come in log order.
    ///
    /// # Errors
    /// [`ReplayFailed`] if a thread applying a flush panicked.
    pub fn push(&mut self, seq: Seq, record: Record) -> Result<(), ReplayFailed> {
        if !self.queueable(&record) {
            self.flush()?;
            self.state.apply(seq, &record);
            return Ok(());
        }
        match record {
            Record::Set(key, doc) => self.queue(key, |k| ShardWrite::Put(k, doc, seq, 0)),
            Record::SetExpiring(key, doc, exp) => self.queue(key, |k| ShardWrite::Put(k, doc, seq, exp.0)),
            Record::Expire(key, exp) => self.queue(key, |k| ShardWrite::Expire(k, seq, exp.map_or(0, |e| e.0))),
            Record::Delete(key) => self.queue(key, ShardWrite::Remove),
            Record::Batch(ops) => {
                for op in ops {
                    match op {
                        BatchOp::Set(key, doc) => self.queue(key, |k| ShardWrite::Put(k, doc, seq, 0)),
                        BatchOp::SetExpiring(key, doc, exp) => {
                            self.queue(key, |k| ShardWrite::Put(k, doc, seq, exp.0));
                        }
                        BatchOp::Expire(key, exp) => {
                            self.queue(key, |k| ShardWrite::Expire(k, seq, exp.map_or(0, |e| e.0)));
                        }
                        BatchOp::Delete(key) => self.queue(key, ShardWrite::Remove),
                        // Not queueable (checked above).
                        BatchOp::Clear => {}
                    }
                }
            }
            // Not queueable (checked above).
            Record::Clear | Record::CreateIndex { .. } | Record::DropIndex(_) => {}
        }
        self.last = Some(seq);
        if self.queued >= self.flush_at { self.apply_queued() } else { Ok(()) }
    }

    /// Makes `record` (number `seq`) ready for [`Replay::push_prepared`]:
    /// pure, so any thread may run it, in any order.
    pub fn prepare(seq: Seq, record: Record) -> Prepared {
        match record {
            Record::Set(key, doc) => Prepared::write(key, |k| ShardWrite::Put(k, doc, seq, 0)),
            Record::SetExpiring(key, doc, exp) => Prepared::write(key, |k| ShardWrite::Put(k, doc, seq, exp.0)),
            Record::Expire(key, exp) => Prepared::write(key, |k| ShardWrite::Expire(k, seq, exp.map_or(0, |e| e.0))),
            Record::Delete(key) => Prepared::write(key, ShardWrite::Remove),
            other => Prepared::Record(other),
        }
    }

    /// [`Replay::push`] of a record [`Replay::prepare`] made ready.
    ///
    /// # Errors
    /// [`ReplayFailed`] if a thread applying a flush panicked.
    pub fn push_prepared(&mut self, seq: Seq, prepared: Prepared) -> Result<(), ReplayFailed> {
        let (shard, write) = match prepared {
            Prepared::Record(record) => return self.push(seq, record),
            Prepared::Write(shard, write) => (shard, write),
        };
        if !self.queueable_write(&write) {
            return self.push(seq, write.into_record());
        }
        match self.writes.get_mut(shard) {
            Some(list) => list.push(write),
            // A shard from another map's layout: never, as `prepare` uses
            // this one's; applied one by one rather than misplaced.
            None => return self.push(seq, write.into_record()),
        }
        self.queued += 1;
        self.last = Some(seq);
        if self.queued >= self.flush_at { self.apply_queued() } else { Ok(()) }
    }

    /// Applies what is queued; the state is then complete. Key orders the
    /// caller deferred ([`Map::defer_orders`]) stay deferred: the first
    /// listing builds them ([`Map::build_orders`]), so an open sorts no keys.
    ///
    /// # Errors
    /// [`ReplayFailed`] if a thread applying the last flush panicked.
    pub fn finish(mut self) -> Result<(), ReplayFailed> {
        self.flush()
    }

    /// Whether `record`'s writes may be queued: no index to keep (an index
    /// reads each replaced value, across shards), nothing that replaces the
    /// whole map or the index definitions.
    fn queueable(&self, record: &Record) -> bool {
        #[cfg(feature = "__internal_whitebox")]
        if matches!(record, Record::Delete(_)) && crate::state::planted::on(crate::state::planted::SKIP_DELETES) {
            // The planted bug lives in `State::apply`, read in this thread.
            return false;
        }
        self.state.indexes.is_empty()
            && match record {
                Record::Batch(ops) => !ops.iter().any(|op| matches!(op, BatchOp::Clear)),
                Record::Set(..) | Record::SetExpiring(..) | Record::Expire(..) | Record::Delete(_) => true,
                Record::Clear | Record::CreateIndex { .. } | Record::DropIndex(_) => false,
            }
    }

    /// [`Replay::queueable`] for the one write of a set, delete or deadline change.
    fn queueable_write(&self, write: &ShardWrite) -> bool {
        #[cfg(feature = "__internal_whitebox")]
        if matches!(write, ShardWrite::Remove(_)) && crate::state::planted::on(crate::state::planted::SKIP_DELETES) {
            return false;
        }
        let _ = write;
        self.state.indexes.is_empty()
    }

    /// Queues the write `make` builds for `key`, in its shard's list.
    fn queue(&mut self, key: String, make: impl FnOnce(Key) -> ShardWrite) {
        let shard = Map::shard_of(&key);
        self.writes[shard].push(make(Key::from(key)));
        self.queued += 1;
    }

    /// Applies the queued writes: to the map on several threads, then the
    /// deadlines they changed to the deadline index (a key's changes in its
    /// write order, which is all exactness needs: entries of different keys
    /// are independent).
    fn apply_queued(&mut self) -> Result<(), ReplayFailed> {
        if self.queued == 0 {
            return Ok(());
        }
        let threads = if self.queued >= self.parallel_at { self.threads } else { 1 };
        self.queued = 0;
        // The lists keep their capacity: a flush allocates nothing new.
        for (key, before, after) in self.state.map.apply_writes(&mut self.writes, threads).ok_or(ReplayFailed)? {
            self.state.track(&key, before, after);
        }
        Ok(())
    }

    /// Applies the queued writes and sets the seq to the last record's.
    fn flush(&mut self) -> Result<(), ReplayFailed> {
        self.apply_queued()?;
        if let Some(seq) = self.last.take() {
            self.state.seq = seq;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::change::Expiry;
    use crate::state::doc::Doc;
    use crate::state::index::{IndexKind, ValueDigest};
    use proptest::prelude::*;
    use serde_json::json;
    use std::ops::Bound;

    /// Everything a read can see: entries with their seq and deadline, the
    /// keys in order, the deadline index, the indexes' contents, the seq.
    type Picture =
        (Vec<(String, String, Seq, Option<Option<Expiry>>)>, Vec<String>, Vec<(u64, String)>, Vec<usize>, String, Seq);

    fn picture(s: &State) -> Picture {
        let mut entries: Vec<_> = s
            .map
            .iter(0)
            .map(|(k, d)| {
                let seq = s.map.get_with_seq(k, 0).map(|(_, q)| q).unwrap_or_default();
                (k.to_string(), d.as_str().to_owned(), seq, s.map.expiry(k, 0))
            })
            .collect();
        entries.sort();
        let order = s.map.keys_from(Bound::Unbounded).map(str::to_owned).collect();
        let deadlines = s.expired(u64::MAX, usize::MAX).into_iter().map(|k| (s.map.expiry(&k, 0), k.to_string()));
        let deadlines = deadlines.map(|(e, k)| (e.flatten().map_or(0, |e| e.0), k)).collect();
        // Counts from the deadline index, at every time the deadlines fall in.
        let live = (0..55).map(|t| s.live_len(t)).collect();
        let mut indexes = format!("{:?}", s.index_infos().iter().map(|i| (&i.field, i.entries)).collect::<Vec<_>>());
        for index in s.indexes.values() {
            for v in 0..4 {
                let mut keys: Vec<String> = index.lookup(&ValueDigest::of(&json!(v))).map(|k| k.to_string()).collect();
                keys.sort();
                indexes.push_str(&format!("{v}:{keys:?}"));
            }
        }
        (entries, order, deadlines, live, indexes, s.seq)
    }

    fn op() -> impl Strategy<Value = BatchOp> {
        let key = (0..40u8).prop_map(|k| format!("k{k}"));
        let doc = (0..4u8).prop_map(|v| Doc::from(json!({ "v": v })));
        prop_oneof![
            6 => (key.clone(), doc.clone()).prop_map(|(k, d)| BatchOp::Set(k, d)),
            3 => key.clone().prop_map(BatchOp::Delete),
            2 => (key.clone(), doc, 1..50u64).prop_map(|(k, d, e)| BatchOp::SetExpiring(k, d, Expiry(e))),
            2 => (key, proptest::option::of(1..50u64)).prop_map(|(k, e)| BatchOp::Expire(k, e.map(Expiry))),
            1 => Just(BatchOp::Clear),
        ]
    }

    fn record() -> impl Strategy<Value = Record> {
        let single = op().prop_map(|op| match op {
            BatchOp::Set(k, d) => Record::Set(k, d),
            BatchOp::Delete(k) => Record::Delete(k),
            BatchOp::SetExpiring(k, d, e) => Record::SetExpiring(k, d, e),
            BatchOp::Expire(k, e) => Record::Expire(k, e),
            BatchOp::Clear => Record::Clear,
        });
        prop_oneof![
            12 => single,
            4 => proptest::collection::vec(op(), 1..6).prop_map(Record::Batch),
            1 => prop_oneof![Just(IndexKind::Hash), Just(IndexKind::Ordered)]
                .prop_map(|kind| Record::CreateIndex { field: "v".into(), unique: false, kind }),
            1 => Just(Record::DropIndex("v".into())),
        ]
    }

    /// A state with keys in some shards (a snapshot's), or none.
    fn start(keys: usize) -> State {
        let mut s = State::default();
        for i in 0..keys {
            s.apply(Seq(i as u64 + 1), &Record::SetExpiring(format!("k{i}"), Doc::from(json!(i)), Expiry(30)));
        }
        s.apply(Seq(keys as u64 + 1), &Record::Set("k0".into(), Doc::from(json!(0))));
        s
    }

    /// At the real limits (a flush every 65,536 writes, on threads): a log
    /// of 150,000 records, sets, deletes, deadlines and batches over 20,000
    /// keys, ends where the record-by-record replay does.
    #[test]
    fn a_long_log_at_the_real_limits_is_the_sequential_one() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut records = Vec::new();
        for _ in 0..150_000 {
            let key = format!("user:{}", next(20_000));
            let doc = Doc::from(json!({ "n": next(1000) }));
            records.push(match next(10) {
                0 => Record::Delete(key),
                1 => Record::SetExpiring(key, doc, Expiry(1 + next(100))),
                2 => Record::Expire(key, (next(2) == 0).then(|| Expiry(1 + next(100)))),
                3 => Record::Batch(vec![BatchOp::Set(key, doc), BatchOp::Delete(format!("user:{}", next(20_000)))]),
                _ => Record::Set(key, doc),
            });
        }
        let (mut sequential, mut split) = (State::default(), State::default());
        sequential.map.defer_orders();
        split.map.defer_orders();
        let mut replay = Replay::new(&mut split, 2);
        for (i, record) in records.into_iter().enumerate() {
            let seq = Seq(i as u64 + 1);
            sequential.apply(seq, &record);
            // As an open does: prepared (on the decoding threads), then pushed.
            assert!(replay.push_prepared(seq, Replay::prepare(seq, record)).is_ok());
        }
        assert!(replay.finish().is_ok());
        sequential.map.build_orders(1);
        split.map.build_orders(2);
        assert!(picture(&split) == picture(&sequential));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// The split replay, flushing every few writes on 2-3 threads, its
        /// records pushed as decoded or prepared first, ends exactly where
        /// the sequential one does.
        #[test]
        fn the_split_replay_is_the_sequential_one(
            records in proptest::collection::vec(record(), 0..120),
            snapshot in prop_oneof![Just(0usize), Just(5usize)],
            flush_at in 1..40usize,
            threads in 1..4usize,
            prepared in any::<bool>(),
        ) {
            let mut sequential = start(snapshot);
            let mut split = start(snapshot);
            let first = sequential.seq.0 + 1;
            sequential.map.defer_orders();
            split.map.defer_orders();
            let mut replay = Replay::with_limits(&mut split, threads, flush_at, 0);
            for (i, record) in records.iter().enumerate() {
                let seq = Seq(first + i as u64);
                sequential.apply(seq, record);
                let pushed = if prepared {
                    replay.push_prepared(seq, Replay::prepare(seq, record.clone()))
                } else {
                    replay.push(seq, record.clone())
                };
                prop_assert!(pushed.is_ok());
            }
            prop_assert!(replay.finish().is_ok());
            sequential.map.build_orders(1);
            split.map.build_orders(threads);
            prop_assert_eq!(picture(&split), picture(&sequential));
            prop_assert_eq!(split.map.len(), sequential.map.len());
        }
    }
}
