//! The in-memory state: the map ([`crate::state::map`]), the indexes, the
//! deadline index, the last applied sequence number, and how to apply and
//! undo a record.
//!
//! Pure: no I/O. Owns the rule that every index stays exact after every
//! applied record, and the checks (unique values, index existence) that run
//! before a record is logged so that a refused write changes nothing.
//! Each key may carry a deadline: reads take the time and skip expired keys,
//! and the deadline index (for the sweeper and an exact count) stays exact
//! like the value indexes. Applying never reads a clock, so replay is
//! deterministic.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::state::change::{BatchOp, Expiry, Record, Seq};
use crate::state::deadlines::Deadlines;
use crate::state::doc::Doc;
use crate::state::index::{DigestMap, FieldPath, Index, IndexInfo, IndexKind, Wanted};

pub use crate::state::key::Key;
pub use crate::state::map::{Map, Now, Old, SHARDS, ShardLists, ShardWrite};

/// Everything a snapshot holds, and the indexes built from it.
#[derive(Clone, Default)]
pub struct State {
    /// The data.
    pub map: Map,
    /// Indexes by field path text.
    pub indexes: BTreeMap<String, Index>,
    /// The last record applied.
    pub seq: Seq,
    /// What the indexes read of a value (kept by [`State::indexes_changed`]).
    wanted: Wanted,
    /// What the unique indexes read of a value.
    wanted_unique: Wanted,
    /// Every key with a deadline, by deadline: the sweeper takes the
    /// expired ones from the front without scanning the map, and
    /// [`State::live_len`] counts them. Exact after every apply and undo.
    expiring: Deadlines,
}

/// What a clear replaced: the map, the indexes and the deadlines.
type Cleared = (Map, BTreeMap<String, Index>, Deadlines);

/// A key a write touches, and its final value (None = deleted), parsed when
/// the caller had it parsed.
type Write<'a> = (&'a str, Option<(&'a Doc, Option<&'a Value>)>);

/// How to take one applied record back: what it replaced, in the order it
/// replaced it ([`State::undo`] restores in reverse). Cheap to keep: shared
/// handles to the replaced values, the map before a clear as a
/// copy-on-write clone, a dropped index as it was.
pub struct Undo {
    seq_before: Seq,
    steps: Steps,
}

/// Most records replace one value: keep that without a `Vec` (no allocation
/// per write).
#[derive(Default)]
enum Steps {
    #[default]
    None,
    One(UndoStep),
    Many(Vec<UndoStep>),
}

impl Steps {
    fn push(&mut self, step: UndoStep) {
        *self = match std::mem::take(self) {
            Steps::None => Steps::One(step),
            Steps::One(first) => Steps::Many(vec![first, step]),
            Steps::Many(mut all) => {
                all.push(step);
                Steps::Many(all)
            }
        };
    }

    fn into_vec(self) -> Vec<UndoStep> {
        match self {
            Steps::None => Vec::new(),
            Steps::One(step) => vec![step],
            Steps::Many(all) => all,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &UndoStep> {
        let (one, many) = match self {
            Steps::None => (None, &[][..]),
            Steps::One(step) => (Some(step), &[][..]),
            Steps::Many(all) => (None, &all[..]),
        };
        one.into_iter().chain(many)
    }
}

enum UndoStep {
    /// A key's value, seq and deadline before the record (None: absent).
    Key(Key, Option<Old>),
    /// The map, the indexes and the deadlines before a clear (boxed: rare,
    /// and the common step stays small).
    All(Box<Cleared>),
    /// An index the record created.
    Created(String),
    /// An index the record dropped, as it was.
    Dropped(Box<(String, Index)>),
}

impl Undo {
    /// Whether the rollback needs this undo: not if its record only created
    /// keys (or changed nothing), which [`State::roll_back`] finds by their seq.
    pub fn is_needed(&self) -> bool {
        !matches!(self.steps, Steps::None)
    }

    /// About how many bytes holding this undo costs: its own size, and the
    /// keys and replaced values it keeps alive.
    pub fn held_bytes(&self) -> usize {
        std::mem::size_of::<Undo>()
            + self
                .steps
                .iter()
                .map(|s| match s {
                    UndoStep::Key(k, v) => k.len() + v.as_ref().map_or(0, |(d, _, _)| d.as_str().len()),
                    _ => std::mem::size_of::<UndoStep>(),
                })
                .sum::<usize>()
    }
}

/// What applying a record found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// For a delete: whether the key existed. For a clear: whether any key existed.
    pub existed: bool,
}

impl State {
    /// Refuses a record that would break a unique index or name a missing or
    /// duplicate index. Runs before the record is logged.
    /// Every key counts, expired or not (the tools check a log this way).
    pub fn check(&self, record: &Record) -> Result<()> {
        self.check_with(record, None, 0)
    }

    /// [`State::check`], given the parsed value of a `Set` record when the
    /// caller has it (so the unique indexes need not parse its text), at
    /// `now` (ms since the epoch): a key expired by then holds no unique
    /// value, since no read can see it. `now` is read only when a unique
    /// index is involved: reading the clock was ~110 instructions of every
    /// relaxed set that has none (issue 18).
    pub fn check_with(&self, record: &Record, parsed: Option<&Value>, now: impl Now) -> Result<()> {
        match record {
            Record::Set(key, value) | Record::SetExpiring(key, value, _) => {
                check_value(key, value)?;
                self.check_unique(&[(key.as_str(), Some((value, parsed)))], false, now)
            }
            Record::Batch(ops) => {
                for op in ops {
                    if let BatchOp::Set(key, value) | BatchOp::SetExpiring(key, value, _) = op {
                        check_value(key, value)?;
                    }
                }
                if !self.has_unique() {
                    return Ok(());
                }
                // Last operation per key wins, as in apply; a clear wipes what came before.
                let mut finals: HashMap<&str, Option<(&Doc, Option<&Value>)>> = HashMap::new();
                let mut replaces_all = false;
                for op in ops {
                    match op {
                        BatchOp::Set(k, v) | BatchOp::SetExpiring(k, v, _) => {
                            finals.insert(k, Some((v, None)));
                        }
                        // A deadline changes no value.
                        BatchOp::Expire(..) => {}
                        BatchOp::Delete(k) => {
                            finals.insert(k, None);
                        }
                        BatchOp::Clear => {
                            finals.clear();
                            replaces_all = true;
                        }
                    }
                }
                let finals: Vec<_> = finals.into_iter().collect();
                self.check_unique(&finals, replaces_all, now)
            }
            Record::Delete(_) | Record::Clear | Record::Expire(..) => Ok(()),
            Record::CreateIndex { field, unique, .. } => {
                let path = FieldPath::parse(field)?;
                if self.indexes.contains_key(path.as_str()) {
                    return Err(Error::IndexExists { field: path.to_string() });
                }
                if *unique {
                    let mut seen: DigestMap<&str> = DigestMap::default();
                    let probe = Index::new(path.clone(), true);
                    let wanted = Wanted::of([&path]);
                    for (key, doc) in self.map.sorted(now.ms()) {
                        let value = wanted.extract(doc.as_str());
                        if let Some(d) = probe.digest(&value)
                            && let Some(existing) = seen.insert(d, key)
                        {
                            return Err(Error::UniqueViolation {
                                field: path.to_string(),
                                key: key.to_string(),
                                existing: existing.to_owned(),
                                value: short_json(probe.path().resolve(&value)),
                            });
                        }
                    }
                }
                Ok(())
            }
            Record::DropIndex(field) => {
                let path = FieldPath::parse(field)?;
                if self.indexes.contains_key(path.as_str()) {
                    Ok(())
                } else {
                    Err(Error::NoIndex { field: path.to_string() })
                }
            }
        }
    }

    /// `writes`: the final value (None = deleted) of every key a write
    /// touches. With `replaces_all` (a batch that clears) the current holders
    /// are gone, so only the writes themselves can conflict.
    fn check_unique(&self, writes: &[Write<'_>], replaces_all: bool, now: impl Now) -> Result<()> {
        if !self.has_unique() {
            return Ok(());
        }
        let now = now.ms();
        let touched: std::collections::HashSet<&str> = writes.iter().map(|(k, _)| *k).collect();
        // Parsed once (the fields the unique indexes read), read by each of them.
        let wanted = &self.wanted_unique;
        let writes: Vec<(&str, Option<Cow<'_, Value>>)> = writes
            .iter()
            .map(|&(k, w)| {
                let value = w.map(|(doc, parsed)| match parsed {
                    Some(v) => Cow::Borrowed(v),
                    None => Cow::Owned(wanted.extract(doc.as_str())),
                });
                (k, value)
            })
            .collect();
        for index in self.indexes.values().filter(|i| i.unique()) {
            // digest -> the written key that will hold it
            let mut claimed: DigestMap<&str> = DigestMap::default();
            for (key, value) in &writes {
                let (key, Some(value)) = (*key, value) else { continue };
                let Some(d) = index.digest(value) else { continue };
                if let Some(other) = claimed.insert(d, key) {
                    return Err(violation(index, key, other, value));
                }
                if replaces_all {
                    continue;
                }
                // A current holder conflicts unless this write replaces it.
                let other_live = |h: &&Key| &***h != key && !touched.contains(&***h) && self.map.get(h, now).is_some();
                if let Some(holder) = index.lookup(&d).find(other_live) {
                    return Err(violation(index, key, holder, value));
                }
            }
        }
        Ok(())
    }

    fn has_unique(&self) -> bool {
        self.indexes.values().any(Index::unique)
    }

    /// Applies a record (already checked, or replayed from the log).
    pub fn apply(&mut self, seq: Seq, record: &Record) -> Applied {
        self.apply_with(seq, record, None)
    }

    /// [`State::apply`], given the parsed value of a `Set` record when the
    /// caller has it (so the indexes need not parse its text).
    pub fn apply_with(&mut self, seq: Seq, record: &Record, parsed: Option<&Value>) -> Applied {
        self.apply_inner(seq, record, parsed, None)
    }

    /// [`State::apply_with`], also returning how to take the record back
    /// ([`State::undo`]).
    pub fn apply_undoable(&mut self, seq: Seq, record: &Record, parsed: Option<&Value>) -> (Applied, Undo) {
        let mut undo = Undo { seq_before: self.seq, steps: Steps::None };
        let applied = self.apply_inner(seq, record, parsed, Some(&mut undo.steps));
        (applied, undo)
    }

    /// Takes back every record applied after `durable`: `undos` are the
    /// undos ([`State::apply_undoable`]) of those records, newest first
    /// (the ones [`Undo::is_needed`] spared may be left out). Indexes,
    /// deadlines and key orders stay exact.
    ///
    /// An undo keeps no step for a key its record created. Once the undos
    /// are applied, every key that existed at `durable` holds what it held
    /// then (its first change after `durable` replaced, deleted, re-dated
    /// or cleared it, and that change's undo, applied last, restored it,
    /// with its seq of then, at most `durable`), so every key whose seq is
    /// still after `durable` did not exist then: it is deleted.
    pub fn roll_back(&mut self, durable: Seq, undos: impl IntoIterator<Item = Undo>) {
        for undo in undos {
            self.undo(undo);
        }
        for key in self.map.written_after(durable) {
            self.delete(&key);
        }
        self.seq = self.seq.min(durable);
    }

    /// Takes back the last record applied (with [`State::apply_undoable`]);
    /// undoing several takes them back newest first. Keys the records
    /// created stay (see [`State::roll_back`]).
    fn undo(&mut self, undo: Undo) {
        for step in undo.steps.into_vec().into_iter().rev() {
            match step {
                UndoStep::Key(key, Some((value, seq, exp))) => {
                    self.set(&key, &value, None, seq, exp);
                }
                UndoStep::Key(key, None) => {
                    self.delete(&key);
                }
                UndoStep::All(all) => {
                    let (map, indexes, expiring) = *all;
                    self.map = map;
                    self.indexes = indexes;
                    self.expiring = expiring;
                    self.indexes_changed();
                }
                UndoStep::Created(name) => {
                    self.indexes.remove(&name);
                    self.indexes_changed();
                }
                UndoStep::Dropped(dropped) => {
                    let (name, index) = *dropped;
                    self.indexes.insert(name, index);
                    self.indexes_changed();
                }
            }
        }
        self.seq = undo.seq_before;
    }

    fn apply_inner(
        &mut self,
        seq: Seq,
        record: &Record,
        parsed: Option<&Value>,
        mut undo: Option<&mut Steps>,
    ) -> Applied {
        self.seq = seq;
        let mut keep = |step: UndoStep| {
            // A key the record created needs no step: [`State::roll_back`]
            // finds it by its seq. An undo per new key was ~350 instructions
            // of a relaxed bulk load's set (issue 18).
            if let Some(steps) = undo.as_deref_mut()
                && !matches!(step, UndoStep::Key(_, None))
            {
                steps.push(step);
            }
        };
        match record {
            Record::Set(key, value) => {
                let (key, old) = self.set(key, value, parsed, seq, 0);
                keep(UndoStep::Key(key, old));
                Applied { existed: true }
            }
            Record::SetExpiring(key, value, exp) => {
                let (key, old) = self.set(key, value, parsed, seq, exp.0);
                keep(UndoStep::Key(key, old));
                Applied { existed: true }
            }
            Record::Expire(key, exp) => {
                let changed = self.expire(key, *exp, seq);
                let existed = changed.is_some();
                if let Some((key, old)) = changed {
                    keep(UndoStep::Key(key, Some(old)));
                }
                Applied { existed }
            }
            #[cfg(feature = "__internal_whitebox")]
            Record::Delete(_) if crate::state::planted::on(crate::state::planted::SKIP_DELETES) => {
                Applied { existed: false }
            }
            Record::Delete(key) => {
                let old = self.delete(key);
                let existed = old.is_some();
                if existed {
                    keep(UndoStep::Key(Key::from(key.as_str()), old));
                }
                Applied { existed }
            }
            Record::Batch(ops) => {
                for op in ops {
                    match op {
                        BatchOp::Set(k, v) => {
                            let (key, old) = self.set(k, v, None, seq, 0);
                            keep(UndoStep::Key(key, old));
                        }
                        BatchOp::SetExpiring(k, v, exp) => {
                            let (key, old) = self.set(k, v, None, seq, exp.0);
                            keep(UndoStep::Key(key, old));
                        }
                        BatchOp::Expire(k, exp) => {
                            if let Some((key, old)) = self.expire(k, *exp, seq) {
                                keep(UndoStep::Key(key, Some(old)));
                            }
                        }
                        BatchOp::Delete(k) => {
                            if let Some(old) = self.delete(k) {
                                keep(UndoStep::Key(Key::from(k.as_str()), Some(old)));
                            }
                        }
                        BatchOp::Clear => {
                            let cleared = self.clear();
                            keep(UndoStep::All(Box::new(cleared)));
                        }
                    }
                }
                Applied { existed: true }
            }
            Record::Clear => {
                let cleared = self.clear();
                let existed = !cleared.0.is_empty();
                keep(UndoStep::All(Box::new(cleared)));
                Applied { existed }
            }
            Record::CreateIndex { field, unique, kind } => {
                // A replayed definition was valid when logged.
                if let Ok(path) = FieldPath::parse(field) {
                    let index = build_index(&self.map, path.clone(), *unique, *kind);
                    self.indexes.insert(path.as_str().to_owned(), index);
                    self.indexes_changed();
                    keep(UndoStep::Created(path.as_str().to_owned()));
                }
                Applied { existed: false }
            }
            Record::DropIndex(field) => {
                let removed = FieldPath::parse(field).ok().and_then(|p| {
                    let name = p.as_str().to_owned();
                    self.indexes.remove(&name).map(|index| (name, index))
                });
                self.indexes_changed();
                let existed = removed.is_some();
                if let Some(dropped) = removed {
                    keep(UndoStep::Dropped(Box::new(dropped)));
                }
                Applied { existed }
            }
        }
    }

    /// Returns the key as stored and what it held before. `exp`: the
    /// deadline, ms since the epoch (0: none).
    fn set(&mut self, key: &str, value: &Doc, parsed: Option<&Value>, seq: Seq, exp: u64) -> (Key, Option<Old>) {
        let (key, old) = self.map.put(Key::from(key), value.clone(), seq, exp);
        self.track(&key, old.as_ref().map_or(0, |o| o.2), exp);
        if self.indexes.is_empty() {
            return (key, old);
        }
        // Indexes read fields: parse those of the new (unless given) and the
        // replaced value once each.
        let new = match parsed {
            Some(v) => Cow::Borrowed(v),
            None => Cow::Owned(self.wanted.extract(value.as_str())),
        };
        let old_fields = old.as_ref().map(|(d, _, _)| self.wanted.extract(d.as_str()));
        for index in self.indexes.values_mut() {
            if let Some(old) = &old_fields {
                index.remove(&key, old);
            }
            index.insert(&key, &new);
        }
        (key, old)
    }

    /// Gives an existing key (live or expired: replay must not depend on
    /// the clock) a new deadline, or none; the record counts as a write of
    /// the key (its seq). Returns the key as stored and what it held.
    fn expire(&mut self, key: &str, exp: Option<Expiry>, seq: Seq) -> Option<(Key, Old)> {
        let (key, doc) = self.map.get_key_value(key, 0).map(|(k, d)| (k.clone(), d.clone()))?;
        let new = exp.map_or(0, |e| e.0);
        let (key, old) = self.map.put(key, doc, seq, new);
        let old = old?;
        self.track(&key, old.2, new);
        Some((key, old))
    }

    /// Keeps the deadline index exact when `key`'s deadline goes from
    /// `before` to `after` (0: none). Free for keys that never expire.
    pub(crate) fn track(&mut self, key: &Key, before: u64, after: u64) {
        if before == after {
            return;
        }
        if before != 0 {
            self.expiring.remove(before, key);
        }
        if after != 0 {
            self.expiring.insert(after, key);
        }
    }

    /// Empties the map, the indexes and the deadlines; returns them as they
    /// were (the map's shards are shared, so dropping what is returned costs
    /// the same as dropping them here).
    fn clear(&mut self) -> Cleared {
        let map = std::mem::take(&mut self.map);
        let emptied = self
            .indexes
            .iter()
            .map(|(n, i)| (n.clone(), Index::of_kind(i.path().clone(), i.unique(), i.kind())))
            .collect();
        (map, std::mem::replace(&mut self.indexes, emptied), std::mem::take(&mut self.expiring))
    }

    /// Returns what the key held, if it existed (live or expired).
    fn delete(&mut self, key: &str) -> Option<Old> {
        let old = self.map.remove(key)?;
        if old.2 != 0 {
            self.expiring.remove(old.2, key);
        }
        if !self.indexes.is_empty() {
            let fields = self.wanted.extract(old.0.as_str());
            for index in self.indexes.values_mut() {
                index.remove(key, &fields);
            }
        }
        Some(old)
    }

    /// Number of keys live at `now` (exact: the map's count less the
    /// expired keys the sweeper has not removed yet).
    pub fn live_len(&self, now: u64) -> usize {
        self.map.len() - self.expiring.due(now)
    }

    /// Number of keys live at `now` that have a deadline.
    pub fn expiring_len(&self, now: u64) -> usize {
        self.expiring.len() - self.expiring.due(now)
    }

    /// Up to `limit` keys expired at `now`, earliest deadline first.
    pub fn expired(&self, now: u64, limit: usize) -> Vec<Key> {
        self.expiring.iter().take_while(|(e, _)| *e <= now).take(limit).map(|(_, k)| k.clone()).collect()
    }

    /// The earliest deadline of any key, if one has a deadline.
    pub fn next_deadline(&self) -> Option<Expiry> {
        self.expiring.first().map(|(e, _)| Expiry(*e))
    }

    /// Rebuilds the deadline index from the map; call after replacing
    /// `map` wholesale (a snapshot load).
    pub fn deadlines_changed(&mut self) {
        self.expiring = Deadlines::from_unsorted(
            self.map.iter_expiring(0).filter(|(_, _, e)| *e != 0).map(|(k, _, e)| (e, k.clone())).collect(),
        );
    }

    /// Recomputes what the indexes read; call after changing `indexes`.
    pub fn indexes_changed(&mut self) {
        self.wanted = Wanted::of(self.indexes.values().map(Index::path));
        self.wanted_unique = Wanted::of(self.indexes.values().filter(|i| i.unique()).map(Index::path));
    }

    /// The index on `field` (as parsed), if any.
    pub fn index(&self, field: &FieldPath) -> Option<&Index> {
        self.indexes.get(field.as_str())
    }

    /// Statistics for every index, by field.
    pub fn index_infos(&self) -> Vec<IndexInfo> {
        self.indexes.values().map(Index::info).collect()
    }
}

/// Refuses a value serde_json could not read back: nested too deeply (see
/// [`crate::state::doc::MAX_DEPTH`]) or using its reserved member names (see
/// [`crate::state::doc::RESERVED`]).
fn check_value(key: &str, value: &Doc) -> Result<()> {
    let invalid = |reason: String| Error::InvalidValue { key: Some(key.to_owned()), reason };
    if value.too_deep() {
        return Err(invalid(format!(
            "the value is nested {} levels deep; at most {} are supported",
            value.depth(),
            crate::state::doc::MAX_DEPTH
        )));
    }
    value.check_reserved().map_err(invalid)
}

impl State {
    /// Builds the indexes `defs` over the data from scratch, one thread each,
    /// and makes them the state's (what a loaded snapshot or an installed
    /// import needs).
    pub fn build_indexes(&mut self, defs: Vec<(FieldPath, bool, IndexKind)>) {
        let map = &self.map;
        let built: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = defs
                .into_iter()
                .map(|(path, unique, kind)| s.spawn(move || build_index(map, path, unique, kind)))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for index in built {
            self.indexes.insert(index.path().as_str().to_owned(), index);
        }
        self.indexes_changed();
    }
}

/// Builds an index on `path` from scratch.
pub fn build_index(map: &Map, path: FieldPath, unique: bool, kind: IndexKind) -> Index {
    let wanted = Wanted::of([&path]);
    let mut index = Index::of_kind(path, unique, kind);
    // Expired keys too: the map holds them until the sweeper's delete, and
    // every apply keeps the indexes exact over what the map holds.
    for (key, doc) in map.iter(0) {
        index.insert(key, &wanted.extract(doc.as_str()));
    }
    index
}

fn violation(index: &Index, key: &str, existing: &str, value: &Value) -> Error {
    Error::UniqueViolation {
        field: index.path().to_string(),
        key: key.to_owned(),
        existing: existing.to_owned(),
        value: short_json(index.path().resolve(value)),
    }
}

fn short_json(value: Option<&Value>) -> String {
    let text = value.map(Value::to_string).unwrap_or_default();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::index::ValueDigest;
    use serde_json::json;

    fn set(k: &str, v: Value) -> Record {
        Record::Set(k.into(), Doc::from(v))
    }

    /// Everything a read can see: entries, index definitions and contents,
    /// seq, and the deadlines (the map's and the deadline index's).
    type Picture =
        (Vec<(String, String)>, Vec<IndexInfo>, Vec<Vec<String>>, Seq, Vec<(String, u64)>, Vec<(u64, String)>);

    fn picture(s: &State) -> Picture {
        let mut entries: Vec<_> = s.map.iter(0).map(|(k, v)| (k.to_string(), v.as_str().to_owned())).collect();
        entries.sort();
        let mut lookups = Vec::new();
        for name in ["a", "b", "c"] {
            let digest = ValueDigest::of(&json!(name));
            for index in s.indexes.values() {
                lookups.push(index.lookup(&digest).map(|k| k.to_string()).collect());
            }
        }
        let mut deadlines: Vec<_> = s.map.iter_expiring(0).map(|(k, _, e)| (k.to_string(), e)).collect();
        deadlines.sort();
        let index = s.expiring.iter().map(|(e, k)| (*e, k.to_string())).collect();
        (entries, s.index_infos(), lookups, s.seq, deadlines, index)
    }

    fn base() -> State {
        let mut s = State::default();
        s.apply(Seq(1), &Record::CreateIndex { field: "n".into(), unique: false, kind: IndexKind::Hash });
        s.apply(Seq(2), &set("x", json!({"n": "a"})));
        s.apply(Seq(3), &set("y", json!({"n": "b"})));
        s
    }

    /// Records after [`base`] (seq 4 on): every kind, and keys created
    /// (which keep no undo step) then replaced, deleted, re-dated, cleared
    /// or created again, alone and inside batches.
    fn after_base() -> Vec<Record> {
        vec![
            set("x", json!({"n": "b"})),
            set("z", json!({"n": "c"})),
            Record::Delete("y".into()),
            Record::Delete("missing".into()),
            set("y", json!({"n": "c"})),
            set("z", json!({"n": "a"})),
            Record::Batch(vec![
                BatchOp::Set("w".into(), Doc::from(json!({"n": "a"}))),
                BatchOp::Clear,
                BatchOp::Set("x".into(), Doc::from(json!({"n": "c"}))),
                BatchOp::Delete("x".into()),
                BatchOp::Set("v".into(), Doc::from(json!({"n": "b"}))),
                BatchOp::Set("u".into(), Doc::from(json!({"n": "b"}))),
                BatchOp::Delete("u".into()),
                BatchOp::Set("u".into(), Doc::from(json!({"n": "c"}))),
            ]),
            Record::DropIndex("n".into()),
            Record::CreateIndex { field: "m".into(), unique: true, kind: IndexKind::Hash },
            Record::SetExpiring("e".into(), Doc::from(json!({"n": "b"})), Expiry(50)),
            Record::Expire("e".into(), Some(Expiry(60))),
            Record::Expire("missing".into(), Some(Expiry(60))),
            Record::Batch(vec![
                BatchOp::SetExpiring("f".into(), Doc::from(json!({"n": "c"})), Expiry(70)),
                BatchOp::Expire("e".into(), None),
                BatchOp::Expire("f".into(), Some(Expiry(80))),
                BatchOp::Set("e".into(), Doc::from(json!({"n": "a"}))),
            ]),
            Record::Delete("f".into()),
            Record::SetExpiring("g".into(), Doc::from(json!(1)), Expiry(90)),
            Record::Expire("g".into(), None),
            Record::Clear,
            set("q", json!({"n": "a"})),
            Record::SetExpiring("h".into(), Doc::from(json!(2)), Expiry(95)),
        ]
    }

    /// Rolled back to any durable point, the state is exactly what it was
    /// there: entries, seqs' high mark, indexes, deadlines, key order.
    #[test]
    fn a_roll_back_restores_every_kind_of_record_to_any_durable_point() {
        let records = after_base();
        let mut s = base();
        let mut pictures = vec![picture(&s)];
        for (i, record) in records.iter().enumerate() {
            s.apply(Seq(4 + i as u64), record);
            let now = picture(&s);
            // The deadline index holds exactly the map's deadlines.
            let mut from_map: Vec<(u64, String)> =
                now.4.iter().filter(|(_, e)| *e != 0).map(|(k, e)| (*e, k.clone())).collect();
            from_map.sort();
            assert_eq!(from_map, now.5, "after record {}", 4 + i);
            pictures.push(now);
        }
        for (durable, expected) in pictures.iter().enumerate() {
            let mut s = base();
            let mut undos = Vec::new();
            for (i, record) in records.iter().enumerate() {
                let (_, undo) = s.apply_undoable(Seq(4 + i as u64), record, None);
                // What the commit path keeps.
                if i >= durable && undo.is_needed() {
                    undos.push(undo);
                }
            }
            s.roll_back(Seq(3 + durable as u64), undos.into_iter().rev());
            assert!(*expected == picture(&s), "rolled back to record {}", 3 + durable);
            let listed: Vec<&str> = s.map.keys_from(std::ops::Bound::Unbounded).collect();
            let entries: Vec<&str> = expected.0.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(listed, entries, "the key order follows");
        }
    }

    #[test]
    fn the_undo_of_a_set_is_small_and_a_new_key_needs_none() {
        let mut s = State::default();
        let (_, undo) = s.apply_undoable(Seq(1), &set("user:00000001", json!({"n": 1})), None);
        assert!(!undo.is_needed(), "a new key is found by its seq");
        let (_, undo) = s.apply_undoable(Seq(2), &set("user:00000001", json!({"n": 2})), None);
        assert!(undo.is_needed());
        eprintln!("undo of a 13-byte key's replaced 7-byte value: {} bytes", undo.held_bytes());
        // What the relaxed modes' 64 MiB bound means in writes (docs/design.md).
        assert!(undo.held_bytes() <= 96, "{}", undo.held_bytes());
    }

    #[test]
    fn unique_checks_see_the_whole_batch() {
        let mut s = State::default();
        s.apply(Seq(1), &Record::CreateIndex { field: "email".into(), unique: true, kind: IndexKind::Hash });
        s.apply(Seq(2), &set("a", json!({"email": "x"})));
        // A second key with the same value is refused.
        assert!(matches!(s.check(&set("b", json!({"email": "x"}))), Err(Error::UniqueViolation { .. })));
        // Rewriting the same key is fine.
        assert!(s.check(&set("a", json!({"email": "x", "n": 1}))).is_ok());
        // Moving the value in one batch is fine; duplicating it inside a batch is not.
        let swap = Record::Batch(vec![
            BatchOp::Delete("a".into()),
            BatchOp::Set("b".into(), Doc::from(json!({"email": "x"}))),
        ]);
        assert!(s.check(&swap).is_ok());
        let dup = Record::Batch(vec![
            BatchOp::Set("c".into(), Doc::from(json!({"email": "y"}))),
            BatchOp::Set("d".into(), Doc::from(json!({"email": "y"}))),
        ]);
        assert!(matches!(s.check(&dup), Err(Error::UniqueViolation { .. })));
        // After a clear in the batch, old holders no longer conflict.
        let replace = Record::Batch(vec![BatchOp::Clear, BatchOp::Set("z".into(), Doc::from(json!({"email": "x"})))]);
        assert!(s.check(&replace).is_ok());
        // A unique index cannot be created over duplicates.
        s.apply(Seq(3), &set("c", json!({"tag": 1})));
        s.apply(Seq(4), &set("d", json!({"tag": 1.0})));
        assert!(matches!(
            s.check(&Record::CreateIndex { field: "tag".into(), unique: true, kind: IndexKind::Hash }),
            Err(Error::UniqueViolation { .. })
        ));
        assert!(s.check(&Record::CreateIndex { field: "tag".into(), unique: false, kind: IndexKind::Hash }).is_ok());
        assert!(matches!(s.check(&Record::DropIndex("nope".into())), Err(Error::NoIndex { .. })));
    }

    #[test]
    fn indexes_follow_updates_and_clear() -> Result<()> {
        let mut s = State::default();
        s.apply(Seq(1), &set("a", json!({"name": "Alice"})));
        s.apply(Seq(2), &Record::CreateIndex { field: "name".into(), unique: false, kind: IndexKind::Hash });
        let path = FieldPath::parse("name")?;
        let alice = ValueDigest::of(&json!("Alice"));
        let count = |s: &State| s.index(&path).map(|i| i.lookup(&alice).count()).unwrap_or(99);
        assert_eq!(count(&s), 1);
        s.apply(Seq(3), &set("a", json!({"name": "Bob"})));
        assert_eq!(count(&s), 0);
        s.apply(Seq(4), &set("b", json!({"name": "Alice"})));
        assert_eq!(count(&s), 1);
        s.apply(Seq(5), &Record::Clear);
        assert_eq!(count(&s), 0);
        assert_eq!(s.index_infos()[0].entries, 0);
        Ok(())
    }
}
