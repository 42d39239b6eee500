//! Installing a whole new state as a snapshot: how a large import and a
//! restore end, instead of one log record holding all the data that every
//! open would replay (and whose buffers and undo the handle would keep).
//!
//! Invariant: the rename of `database.json` is the one commit point. Before
//! it, a crash leaves the old snapshot and log (the temporary file is removed
//! at open); after it, the new snapshot at `S + 1` covers every segment (all
//! records are at most `S`), and the log continues at `S + 2`. Writers are
//! held for the whole step, so nothing is logged between the state the new
//! one was built from and the snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::{Db, Inner};
use crate::error::{Error, Result};
use crate::state::change::Expiry;
use crate::state::doc::Doc;
use crate::state::index::Wanted;
use crate::state::store::{Key, State};
use crate::storage::log;
use crate::storage::record::Seq;
use crate::storage::snapshot::{self, Frozen, SnapshotInfo};

/// A merge import of at least this many bytes of keys and values is
/// installed as a snapshot (a replace always is): below it, one batch record
/// costs less than rewriting the whole snapshot.
pub(crate) const INSTALL_MIN_BYTES: usize = 16 << 20;

impl Inner {
    /// Replaces the state with `build(current)` as a snapshot at the next
    /// sequence number (module docs). `build` runs with writers held; an
    /// error from it changes nothing.
    pub(super) fn install(self: &Arc<Self>, build: impl FnOnce(&State) -> Result<State>) -> Result<SnapshotInfo> {
        self.check_writable()?;
        let _one_at_a_time = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        // Most of the log is synced before writers are held.
        self.wal.sync_all()?;
        let mut writer = self.wal.lock();
        self.wal.check_poisoned()?;
        if let Err(e) = writer.sync_open() {
            self.wal.poison(&e);
            return Err(e);
        }
        let last = writer.written();
        self.wal.mark_synced(last);
        let seq = last.next();
        let mut new = build(&self.read_state())?;
        new.seq = seq;
        // What a reopen reports for every key of the snapshot.
        new.map.set_floor(seq);
        let mut frozen = Frozen::of(&new, self.now());
        // Created with its header right after the rename (step 5); until
        // then the old log, all covered, is still there (docs/design.md).
        frozen.continues = Some(seq.next());
        let tmp = self.dir.join(snapshot::TMP_NAME);
        if self.vfs.exists(&tmp).map_err(|e| Error::io("checking", &tmp, e))? {
            self.vfs.remove(&tmp).map_err(|e| Error::io("removing", &tmp, e))?;
        }
        let info = snapshot::write_file(&*self.vfs, &tmp, &frozen, self.options.observer())?;
        drop(frozen);
        let path = self.dir.join(snapshot::FILE_NAME);
        if let Err(e) = self.vfs.rename(&tmp, &path) {
            snapshot::discard(&*self.vfs, &tmp);
            return Err(Error::io("renaming into place", &path, e));
        }
        // From here the new state may be what the disk holds: it is
        // installed in memory whatever fails next, and a failure poisons
        // the log (a reopen reads which snapshot the disk kept).
        let committed = self
            .vfs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("syncing directory", &self.dir, e))
            .and_then(|()| writer.restart_after(seq));
        let old = {
            let mut state = self.write_state();
            let old = std::mem::replace(&mut *state, new);
            self.pending().clear();
            old
        };
        {
            let mut snap = self.snap();
            snap.seq = info.seq;
            snap.bytes = info.bytes;
            snap.exists = true;
        }
        if let Err(e) = committed {
            self.wal.poison(&e);
            return Err(e);
        }
        self.wal.mark_synced(seq);
        let covered = writer.take_older(seq);
        drop(writer);
        // Freed outside the locks (readers and writers need not wait for a
        // million frees), then its pages go back to the OS: without that the
        // process stays as large as both states together (module `heap`).
        drop(old);
        super::heap::trim();
        log::remove_segments(&*self.vfs, &self.dir, &covered)?;
        self.compaction_retry_at.store(0, Ordering::Relaxed);
        Ok(info)
    }
}

impl Db {
    /// Writes `pairs` (merged into the data, or replacing it all with
    /// `replace`) as one step, all or nothing: a replace, or a merge of at
    /// least 16 MiB, is written as a new snapshot (the log continues after
    /// it, so no open replays it); a smaller merge as one batch record.
    /// Writers wait while it runs. Keys may be borrowed (`Cow<str>`, `&str`):
    /// the map copies them. Returns the number of pairs (a key given twice
    /// counts twice; the last value wins).
    ///
    /// # Errors
    /// - [`Error::UniqueViolation`] if a unique index would see two keys
    ///   share a value: nothing is written.
    /// - [`Error::Io`] if the snapshot or the log cannot be written: nothing
    ///   is written, unless the error came after the new snapshot was renamed
    ///   into place (then reads show the new data, the handle refuses writes
    ///   until reopened, and a reopen shows whichever snapshot the disk kept).
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn import_pairs<K: AsRef<str> + Into<String>>(&self, pairs: Vec<(K, Doc)>, replace: bool) -> Result<usize> {
        self.import_expiring(pairs.into_iter().map(|(k, v)| (k, v, None)).collect(), replace)
    }

    /// [`Db::import_pairs`] where a pair may carry a deadline (an absolute
    /// time, as [`Db::set_expiring_at`] takes). A pair whose deadline has
    /// already passed is counted but not stored: no read would see it.
    ///
    /// # Errors
    /// As [`Db::import_pairs`].
    pub fn import_expiring<K: AsRef<str> + Into<String>>(
        &self,
        pairs: Vec<(K, Doc, Option<Expiry>)>,
        replace: bool,
    ) -> Result<usize> {
        let n = pairs.len();
        let now = self.now_ms();
        let live = |exp: &Option<Expiry>| exp.is_none_or(|at| at.0 > now);
        let bytes: usize = pairs.iter().map(|(k, v, _)| k.as_ref().len() + v.as_str().len()).sum();
        if !replace && bytes < INSTALL_MIN_BYTES {
            let mut batch = super::Batch::new();
            for (key, value, exp) in pairs.into_iter().filter(|(_, _, e)| live(e)) {
                match exp {
                    None => batch.push_set(key.into(), value),
                    Some(at) => batch.push_set_expiring(key.into(), value, at),
                }
            }
            if !batch.is_empty() {
                self.batch(batch)?;
            }
            return Ok(n);
        }
        self.inner.install(|current| {
            let mut new = State::default();
            if !replace {
                // Copy-on-write: only the shards the pairs touch are copied.
                new.map = current.map.clone();
            }
            for (key, value, exp) in pairs.into_iter().filter(|(_, _, e)| live(e)) {
                // A set clears an earlier deadline (as `set` does).
                new.map.put(Key::from(key.as_ref()), value, Seq(0), exp.map_or(0, |e| e.0));
            }
            new.deadlines_changed();
            let defs: Vec<_> = current.indexes.values().map(|i| (i.path().clone(), i.unique(), i.kind())).collect();
            with_indexes(new, defs, now)
        })?;
        Ok(n)
    }

    /// Replaces the whole state (data and index definitions) with `state`,
    /// as [`Db::import_pairs`] with `replace` (restore).
    pub(crate) fn install_state(&self, state: State) -> Result<SnapshotInfo> {
        // The caller checked its unique indexes (restore verifies a backup first).
        self.inner.install(|_| Ok(state))
    }
}

/// Builds `defs`' indexes over `state`'s data (one thread each), refusing
/// duplicates in a unique one among the keys live at `now`.
fn with_indexes(
    mut state: State,
    defs: Vec<(crate::state::index::FieldPath, bool, crate::state::index::IndexKind)>,
    now: u64,
) -> Result<State> {
    state.build_indexes(defs);
    check_unique(&state, now)?;
    Ok(state)
}

/// The first two keys (in key order) sharing a value of a unique index.
fn check_unique(state: &State, now: u64) -> Result<()> {
    for index in state.indexes.values().filter(|i| i.unique()) {
        let wanted = Wanted::of([index.path()]);
        let mut seen = std::collections::BTreeMap::new();
        for (key, doc) in state.map.sorted(now) {
            let value = wanted.extract(doc.as_str());
            if let Some(digest) = index.digest(&value)
                && let Some(existing) = seen.insert(digest, key)
            {
                let shown = index.path().resolve(&value).map(Value::to_string).unwrap_or_default();
                let shown = if shown.chars().count() > 80 {
                    format!("{}...", shown.chars().take(77).collect::<String>())
                } else {
                    shown
                };
                return Err(Error::UniqueViolation {
                    field: index.path().to_string(),
                    key: key.to_string(),
                    existing: existing.to_string(),
                    value: shown,
                });
            }
        }
    }
    Ok(())
}
