//! The state machine: a `redru::Db`. Each committed entry becomes ONE atomic
//! batch holding its operations and the reserved key [`APPLIED_KEY`] (last
//! applied log id and membership), so the database alone says where a restart
//! stands. A group entry ([`Request::many`]) is one batch too: its requests'
//! conditions are checked here, in order, against the state the ones before
//! them leave, and only the operations of those that pass go into the batch.
//! Snapshots are redru snapshot files (`Db::backup_to`), streamed off and onto
//! disk ([`SnapshotFile`]) and installed with `Db::restore_file`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend};
use redru::{Batch, Db, Doc};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::files::{self, io_err};
use crate::snapshot_file::{self, SnapshotFile, TempFile};
use crate::types::{
    Cond, Entry, LogId, Op, Request, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// Keys starting with this prefix belong to the cluster; requests that touch
/// them are rejected.
pub const RESERVED_PREFIX: &str = "\u{0}redru-cluster:";
/// The reserved key that records, in the same batch as each entry's
/// operations, `{"last_applied": LogId, "membership": StoredMembership}`.
pub const APPLIED_KEY: &str = "\u{0}redru-cluster:applied";

/// What [`APPLIED_KEY`] holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// At most this many entries are applied on openraft's state machine task
/// (a group entry holds at most 1 MiB of writes); more go to the
/// blocking pool.
const INLINE_APPLY_ENTRIES: usize = 4;

/// Which snapshot is current: its metadata and file name (the `current` file's line).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Current {
    meta: SnapshotMeta,
    file: String,
}

#[derive(Debug)]
struct State {
    applied: Applied,
    current: Option<Current>,
    /// The last membership written into an applied record, with its JSON:
    /// it changes rarely, and serializing it for every entry was about a
    /// fifth of an apply (docs/cluster.md, "Figures").
    membership_text: Option<(StoredMembership, String)>,
}

#[derive(Debug)]
struct Shared {
    db: Arc<Db>,
    snapshot_dir: PathBuf,
    /// Held while applying, building and installing, so that a snapshot's
    /// file and its metadata describe the same point of the log.
    state: Mutex<State>,
    /// The largest snapshot this node receives, in bytes.
    max_snapshot: AtomicU64,
}

/// The state machine of one node (cheap to clone: clones share it, and serve
/// as its snapshot builder).
#[derive(Clone, Debug)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

fn engine(doing: &str) -> impl FnOnce(redru::Error) -> Error + '_ {
    move |source| Error::Engine { doing: doing.to_owned(), source: Box::new(source) }
}

fn storage_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: Error) -> StorageError {
    StorageError::from_io_error(subject, verb, e.into())
}

impl StateMachine {
    /// Opens the state machine whose database is `db_dir` and whose snapshots
    /// live in `snapshot_dir`.
    ///
    /// # Errors
    /// [`Error::Engine`] if the database does not open, [`Error::Corrupt`] if
    /// its applied record or the current-snapshot file does not parse, [`Error::Io`].
    pub fn open(db_dir: &Path, snapshot_dir: &Path) -> Result<StateMachine, Error> {
        // Each entry's batch reaches the OS at once (a killed process loses
        // none); the Raft log is what makes an entry durable, so `apply` does
        // not fsync; `build` and `install` do (docs/cluster.md, "Durability").
        let db = redru::Options::default()
            .durability(redru::Durability::Never)
            .open(db_dir)
            .map_err(engine("opening the state machine's database"))?;
        files::ensure_dir(snapshot_dir)?;
        let applied = read_applied(&db)?;
        let current_path = snapshot_dir.join(files::CURRENT_SNAPSHOT_NAME);
        let current = match fs::read(&current_path) {
            Ok(bytes) => Some(codec::decode::<Current>(&bytes).map_err(|reason| Error::Corrupt {
                file: current_path,
                offset: 0,
                reason,
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("reading", &current_path, e).into()),
        };
        // What a transfer or an install cut short by a crash left behind.
        snapshot_file::remove_leftovers(snapshot_dir, current.as_ref().map(|c| c.file.as_str()))?;
        let state = Mutex::new(State { applied, current, membership_text: None });
        let max_snapshot = AtomicU64::new(snapshot_file::DEFAULT_MAX_SNAPSHOT_BYTES);
        let shared = Shared { db: Arc::new(db), snapshot_dir: snapshot_dir.to_owned(), state, max_snapshot };
        Ok(StateMachine { shared: Arc::new(shared) })
    }

    /// Sets the largest snapshot this node receives, in bytes (default
    /// [`crate::DEFAULT_MAX_SNAPSHOT_BYTES`]): a transfer that would grow
    /// past it is refused at the chunk that would, and nothing is installed.
    pub fn set_max_snapshot_bytes(&self, bytes: u64) {
        self.shared.max_snapshot.store(bytes, Ordering::Relaxed);
    }

    /// The database the entries are applied to (read it; write only through Raft).
    pub fn db(&self) -> &Db {
        &self.shared.db
    }

    /// A shared handle to the same database (for a server that reads it).
    pub fn db_handle(&self) -> Arc<Db> {
        Arc::clone(&self.shared.db)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state's lock if no one holds it (a snapshot being built or
    /// installed holds it for as long as that takes).
    fn try_lock(&self) -> Option<MutexGuard<'_, State>> {
        match self.shared.state.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &mut State) -> Result<T, Error> + Send + 'static,
    {
        let sm = self.clone();
        tokio::task::spawn_blocking(move || f(&sm.shared, &mut sm.lock()))
            .await
            .map_err(|e| Error::Io(io::Error::other(format!("a state machine task failed: {e}"))))?
    }
}

fn read_applied(db: &Db) -> Result<Applied, Error> {
    Ok(db.get_as::<Applied>(APPLIED_KEY).map_err(engine("reading the last applied log id"))?.unwrap_or_default())
}

fn applied_doc(applied: &Applied) -> Result<Doc, Error> {
    let value = serde_json::to_value(applied).map_err(io::Error::other)?;
    Ok(Doc::from(value))
}

/// The applied record of an entry, as [`applied_doc`] writes it, reusing
/// the membership's JSON from `cache` while the membership is the same
/// (compared whole, so a snapshot install that changes it is noticed).
fn applied_record(
    cache: &mut Option<(StoredMembership, String)>,
    last_applied: Option<LogId>,
    membership: &StoredMembership,
) -> Result<Doc, Error> {
    let text = match cache {
        Some((cached, text)) if cached == membership => text,
        _ => {
            let text = serde_json::to_string(membership).map_err(io::Error::other)?;
            &cache.insert((membership.clone(), text)).1
        }
    };
    let last = serde_json::to_string(&last_applied).map_err(io::Error::other)?;
    // The field order of `Applied`'s derive, so the text is what serde writes.
    Doc::parse(&format!(r#"{{"last_applied":{last},"membership":{text}}}"#))
        .map_err(engine("writing an applied record"))
}

/// The request's operations as a batch, or why it is rejected.
fn request_batch(request: &Request) -> Result<Batch, String> {
    let mut batch = Batch::new();
    for Cond { key, equals } in &request.conditions {
        batch = match equals {
            None => batch.require_absent(key),
            Some(text) => batch.require_equals(key, condition_value(key, text)?),
        };
    }
    for (op, doc) in request.ops.iter().zip(parse_ops(request)?) {
        batch = match (op, doc) {
            (Op::Set { key, .. }, Some(doc)) => batch.set(key, doc),
            (Op::Set { key, .. } | Op::Delete { key }, _) => batch.delete(key),
            (Op::Clear, _) => batch.clear(),
        };
    }
    Ok(batch)
}

fn condition_value(key: &str, text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("condition on {key:?}: {e}"))
}

/// Each operation's value parsed (`None` for a delete or a clear), or why
/// the request is rejected: a reserved key, a value that is not JSON.
fn parse_ops(request: &Request) -> Result<Vec<Option<Doc>>, String> {
    request
        .ops
        .iter()
        .map(|op| {
            if let Op::Set { key, .. } | Op::Delete { key } = op
                && key.starts_with(RESERVED_PREFIX)
            {
                return Err(format!("the key prefix {RESERVED_PREFIX:?} is reserved for the cluster"));
            }
            match op {
                Op::Set { key, value } => Doc::parse(value).map(Some).map_err(|e| format!("key {key:?}: {e}")),
                Op::Delete { .. } | Op::Clear => Ok(None),
            }
        })
        .collect()
}

/// Whether an engine error is about this batch (it is then rejected, the same
/// on every node) rather than about the node (which must stop).
fn refuses_batch(e: &redru::Error) -> bool {
    matches!(
        e,
        redru::Error::UniqueViolation { .. } | redru::Error::InvalidValue { .. } | redru::Error::ConditionFailed { .. }
    )
}

/// A group's requests as ONE batch (no conditions: they are checked here, so
/// that each request passes or fails on its own while the entry stays one
/// atomic write, replayed whole or not at all after a crash), and each
/// request's answer. `view` holds what the requests accepted so far wrote
/// (`None`: deleted) to the keys some condition of the group names (the only
/// ones looked up); `cleared`: one of them cleared the database.
fn group_batch(db: &Db, requests: &[Arc<Request>]) -> (Batch, Vec<Response>) {
    let mut batch = Batch::new();
    let watched: HashSet<&str> = requests.iter().flat_map(|r| &r.conditions).map(|c| c.key.as_str()).collect();
    let mut view: HashMap<&str, Option<serde_json::Value>> = HashMap::new();
    let mut cleared = false;
    let mut responses = Vec::with_capacity(requests.len());
    for request in requests.iter().map(Arc::as_ref) {
        if !request.many.is_empty() {
            responses.push(Response::Rejected { reason: "a group inside a group".into() });
            continue;
        }
        // Validates values, keys and conditions the same way a single request
        // is (`request_batch`), parsing each value once.
        let docs = request
            .conditions
            .iter()
            .filter_map(|Cond { key, equals }| Some(condition_value(key, equals.as_deref()?)))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|_| parse_ops(request));
        let docs = match docs {
            Ok(docs) => docs,
            Err(reason) => {
                responses.push(Response::Rejected { reason });
                continue;
            }
        };
        let failed = request.conditions.iter().find_map(|Cond { key, equals }| {
            let current = match view.get(key.as_str()) {
                Some(v) => v.clone(),
                None if cleared => None,
                None => db.get(key).map(|d| d.to_value()),
            };
            let holds = match (equals, &current) {
                (None, found) => found.is_none(),
                (Some(text), Some(found)) => serde_json::from_str::<serde_json::Value>(text).is_ok_and(|w| w == *found),
                (Some(_), None) => false,
            };
            (!holds).then(|| match equals {
                None => format!("condition failed: {key:?} must be absent"),
                Some(text) => format!("condition failed: {key:?} must equal {text}"),
            })
        });
        if let Some(reason) = failed {
            responses.push(Response::Conflict { reason });
            continue;
        }
        for (op, doc) in request.ops.iter().zip(docs) {
            match (op, doc) {
                (Op::Set { key, .. }, Some(doc)) => {
                    if watched.contains(key.as_str()) {
                        view.insert(key, Some(doc.to_value()));
                    }
                    batch = batch.set(key, doc);
                }
                (Op::Set { key, .. } | Op::Delete { key }, _) => {
                    if watched.contains(key.as_str()) {
                        view.insert(key, None);
                    }
                    batch = batch.delete(key);
                }
                (Op::Clear, _) => {
                    view.clear();
                    cleared = true;
                    batch = batch.clear();
                }
            }
        }
        responses.push(Response::Applied { ops: request.ops.len() });
    }
    (batch, responses)
}

fn apply_one(db: &Db, state: &mut State, entry: Entry) -> Result<Response, Error> {
    let last_applied = Some(entry.log_id);
    let mut new_membership = None;
    let (ops, response) = match entry.payload {
        EntryPayload::Blank => (None, Response::None),
        EntryPayload::Membership(m) => {
            new_membership = Some(StoredMembership::new(Some(entry.log_id), m));
            (None, Response::None)
        }
        EntryPayload::Normal(request) if !request.many.is_empty() => {
            let (batch, responses) = group_batch(db, &request.many);
            // If the engine refuses the whole batch (a unique index), nothing
            // is written and the entry is Rejected: the leader's batcher then
            // proposes each request alone, so one request cannot fail the others.
            (Some(batch), Response::Many { responses })
        }
        EntryPayload::Normal(request) => match request_batch(&request) {
            Ok(batch) => (Some(batch), Response::Applied { ops: request.ops.len() }),
            Err(reason) => (None, Response::Rejected { reason }),
        },
    };
    let membership = new_membership.as_ref().unwrap_or(&state.applied.membership);
    let record = applied_record(&mut state.membership_text, last_applied, membership)?;
    let response = match ops {
        Some(batch) => match db.batch(batch.set(APPLIED_KEY, record.clone())) {
            Ok(()) => response,
            Err(e) if refuses_batch(&e) => {
                db.batch(Batch::new().set(APPLIED_KEY, record)).map_err(engine("recording an applied entry"))?;
                match e {
                    redru::Error::ConditionFailed { .. } => Response::Conflict { reason: e.to_string() },
                    _ => Response::Rejected { reason: e.to_string() },
                }
            }
            Err(e) => return Err(engine("applying an entry")(e)),
        },
        None => {
            db.batch(Batch::new().set(APPLIED_KEY, record)).map_err(engine("recording an applied entry"))?;
            response
        }
    };
    state.applied.last_applied = last_applied;
    if let Some(membership) = new_membership {
        state.applied.membership = membership;
    }
    Ok(response)
}

/// A snapshot id is used in a file name: only `[0-9A-Za-z_-]` is accepted.
fn check_snapshot_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::Io(io::Error::other(format!("snapshot id {id:?} is not usable as a file name"))));
    }
    Ok(())
}

/// Makes `current` the current snapshot (atomically), then deletes the files
/// of the one it replaces.
fn set_current(shared: &Shared, state: &mut State, current: Current) -> Result<(), Error> {
    let line = codec::encode(&current).map_err(io::Error::other)?;
    files::write_atomic(&shared.snapshot_dir.join(files::CURRENT_SNAPSHOT_NAME), &line)?;
    if let Some(old) = state.current.replace(current)
        && state.current.as_ref().is_none_or(|c| c.file != old.file)
    {
        let path = shared.snapshot_dir.join(&old.file);
        let mut sidecar = path.clone().into_os_string();
        sidecar.push(".sha256");
        for p in [path, PathBuf::from(sidecar)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &p, e).into()),
            }
        }
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn build(shared: &Shared, state: &mut State) -> Result<Snapshot<TypeConfig>, Error> {
    let applied = state.applied.clone();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let id = match &applied.last_applied {
        Some(l) => format!("{}-{}-{nanos}", l.leader_id.term, l.index),
        None => format!("0-0-{nanos}"),
    };
    let path = files::snapshot_path(&shared.snapshot_dir, &id);
    // `apply` does not sync: the log may be purged up to this snapshot only
    // once the database durably holds what it covers.
    shared.db.sync().map_err(engine("syncing the database before a snapshot"))?;
    shared.db.backup_to(&path).map_err(engine("writing a snapshot"))?;
    files::sync_dir(&shared.snapshot_dir)?;
    let data = SnapshotFile::open(&path)?;
    let meta = SnapshotMeta { last_log_id: applied.last_applied, last_membership: applied.membership, snapshot_id: id };
    set_current(shared, state, Current { meta: meta.clone(), file: file_name(&path) })?;
    Ok(Snapshot { meta, snapshot: Box::new(data) })
}

/// Installs the snapshot in `file`: `temp` is the temporary file
/// `begin_receiving_snapshot` made and openraft wrote the chunks into (the
/// handle is on it); any other handle (openraft's storage suite installs the
/// leader's own) is first copied into a new temporary file, from its start.
fn install(
    shared: &Shared,
    state: &mut State,
    meta: &SnapshotMeta,
    mut file: fs::File,
    temp: Option<TempFile>,
) -> Result<(), Error> {
    check_snapshot_id(&meta.snapshot_id)?;
    let dir = &shared.snapshot_dir;
    let temp = match temp {
        Some(temp) => temp,
        None => {
            let (mut copy, temp) = snapshot_file::create_temp(dir)?;
            file.rewind()
                .and_then(|()| io::copy(&mut file, &mut copy))
                .map_err(|e| io_err("copying into", temp.path(), e))?;
            file = copy;
            temp
        }
    };
    file.sync_all().map_err(|e| io_err("syncing", temp.path(), e))?;
    drop(file);
    let db = &shared.db;
    // Verifies the whole file (its SHA-256 digest, its structure) before
    // changing anything: a truncated or crafted transfer is refused here, and
    // dropping `temp` removes it.
    db.restore_file(temp.path()).map_err(engine("installing a snapshot"))?;
    // Raft's metadata is authoritative; a snapshot built by this crate already
    // carries the same record, so this write happens only for foreign ones.
    let applied = Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
    if read_applied(db)? != applied {
        db.batch(Batch::new().set(APPLIED_KEY, applied_doc(&applied)?)).map_err(engine("recording a snapshot"))?;
    }
    db.sync().map_err(engine("syncing an installed snapshot"))?;
    state.applied = applied;
    // restore_file keeps an undo backup per install: keep only the newest.
    db.prune_backups(1).map_err(engine("pruning the undo backups of snapshot installs"))?;
    // Only now does the received file take the snapshot's name: a refused one
    // never replaces a snapshot file, the current one included (a re-sent
    // snapshot has the current one's id).
    let path = files::snapshot_path(dir, &meta.snapshot_id);
    fs::rename(temp.path(), &path).map_err(|e| io_err("renaming into place", &path, e))?;
    temp.keep();
    files::sync_dir(dir)?;
    set_current(shared, state, Current { meta: meta.clone(), file: file_name(&path) })
}

fn current(shared: &Shared, state: &State) -> Result<Option<Snapshot<TypeConfig>>, Error> {
    let Some(current) = &state.current else { return Ok(None) };
    // Opened under the state's lock, so the file is the one `current` names:
    // a build or an install deletes the file it replaces only under it.
    let path = shared.snapshot_dir.join(&current.file);
    Ok(Some(Snapshot { meta: current.meta.clone(), snapshot: Box::new(SnapshotFile::open(&path)?) }))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.blocking(build).await.map_err(|e| storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.lock();
        Ok((state.applied.last_applied, state.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        // No fsync here: an entry is applied only once committed, that is
        // fsynced in a majority of Raft logs, and a database that lost its
        // last batches (a power loss) restarts at the applied record they
        // left, from which openraft re-applies the log. The log is purged only
        // up to a snapshot, which `build` makes after syncing the database.
        //
        // Applied here, on openraft's state machine task, when the state is
        // free: without an fsync an apply is a parse, a map update and one
        // write(2) per entry, shorter than the hand-off to tokio's blocking
        // pool and back (two thread wake-ups per apply on every node). While
        // a snapshot holds the state (a build or an install: a database sync
        // and a file copy), the apply waits for it on the blocking pool
        // rather than stall a runtime thread; so does a long run of entries
        // (a follower catching up), which could hold a runtime thread for
        // longer than a heartbeat.
        let err = |e| storage_err(ErrorSubject::StateMachine, ErrorVerb::Write, e);
        let entries = match (entries.len() <= INLINE_APPLY_ENTRIES).then(|| self.try_lock()).flatten() {
            Some(mut state) => {
                return entries
                    .into_iter()
                    .map(|e| apply_one(&self.shared.db, &mut state, e))
                    .collect::<Result<_, _>>()
                    .map_err(err);
            }
            None => entries,
        };
        self.blocking(move |shared, state| entries.into_iter().map(|e| apply_one(&shared.db, state, e)).collect())
            .await
            .map_err(err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    /// A new temporary file in the snapshot directory: openraft writes each
    /// chunk into it as it arrives (seeking to the chunk's offset), so a
    /// transfer holds no more than a chunk in memory.
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let limit = self.shared.max_snapshot.load(Ordering::Relaxed);
        let data = SnapshotFile::receive_into(&self.shared.snapshot_dir, limit)
            .await
            .map_err(|e| storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e.into()))?;
        Ok(Box::new(data))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotFile>) -> Result<(), StorageError> {
        let meta = meta.clone();
        let signature = meta.signature();
        let err = |e| storage_err(ErrorSubject::Snapshot(Some(signature.clone())), ErrorVerb::Write, e);
        let (file, temp) = snapshot.into_parts().await.map_err(|e| err(e.into()))?;
        self.blocking(move |shared, state| install(shared, state, &meta, file, temp)).await.map_err(err)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        self.blocking(|shared, state| current(shared, state))
            .await
            .map_err(|e| storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::CommittedLeaderId;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn set(index: u64, key: &str) -> Entry {
        let log_id = LogId::new(CommittedLeaderId::new(1, 1), index);
        Entry { log_id, payload: EntryPayload::Normal(Request::set(key, "1")) }
    }

    /// While a snapshot holds the state, an apply waits for it (on the
    /// blocking pool) and then applies; it neither skips the lock nor fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn apply_waits_while_a_snapshot_holds_the_state() -> TestResult {
        let dir = tempfile::tempdir()?;
        let sm = StateMachine::open(&dir.path().join("db"), &dir.path().join("snapshots"))?;
        // The holder stands for a snapshot build on the blocking pool.
        let (held_tx, held) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let sm = sm.clone();
            std::thread::spawn(move || {
                let _state = sm.lock();
                let _ = held_tx.send(());
                let _ = release_rx.recv();
            })
        };
        held.recv()?;
        let mut applier = sm.clone();
        let apply = tokio::spawn(async move { applier.apply(vec![set(1, "a")]).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!apply.is_finished(), "the apply went past a held state lock");
        assert!(sm.db().get("a").is_none());
        release.send(())?;
        holder.join().map_err(|_| "the holder thread panicked")?;
        let responses = apply.await??;
        assert_eq!(responses, vec![Response::Applied { ops: 1 }]);
        assert!(sm.db().get("a").is_some());
        assert_eq!(sm.lock().applied.last_applied.map(|l| l.index), Some(1));
        Ok(())
    }

    /// The applied record built from the cached membership text is the one
    /// `applied_doc` writes, before and after the membership changes.
    #[test]
    fn the_applied_record_matches_the_full_encoding_across_a_membership_change() -> TestResult {
        let mut cache = None;
        let one = |ids: &[u64], index| {
            let nodes: std::collections::BTreeMap<u64, openraft::BasicNode> =
                ids.iter().map(|&i| (i, openraft::BasicNode::new(format!("127.0.0.1:{i}")))).collect();
            let membership = openraft::Membership::new(vec![ids.iter().copied().collect()], nodes);
            StoredMembership::new(Some(LogId::new(CommittedLeaderId::new(1, 1), index)), membership)
        };
        for (membership, index) in
            [(StoredMembership::default(), 1), (one(&[1], 2), 3), (one(&[1], 2), 4), (one(&[1, 2, 3], 5), 6)]
        {
            let last_applied = Some(LogId::new(CommittedLeaderId::new(2, 1), index));
            let got = applied_record(&mut cache, last_applied, &membership)?;
            let want = applied_doc(&Applied { last_applied, membership: membership.clone() })?;
            assert_eq!(got.to_value(), want.to_value(), "entry {index}");
            assert_eq!(got.deserialize::<Applied>()?, Applied { last_applied, membership });
        }
        Ok(())
    }

    /// A short run of entries is applied inline, a long one on the blocking
    /// pool: both apply every entry in order and record the last one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_and_long_runs_apply_every_entry() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut sm = StateMachine::open(&dir.path().join("db"), &dir.path().join("snapshots"))?;
        let short: Vec<Entry> = (1..=2).map(|i| set(i, &format!("k{i}"))).collect();
        assert_eq!(sm.apply(short).await?.len(), 2);
        let long: Vec<Entry> = (3..=3 + INLINE_APPLY_ENTRIES as u64).map(|i| set(i, &format!("k{i}"))).collect();
        assert_eq!(sm.apply(long).await?.len(), INLINE_APPLY_ENTRIES + 1);
        for i in 1..=3 + INLINE_APPLY_ENTRIES as u64 {
            assert!(sm.db().get(&format!("k{i}")).is_some(), "k{i} missing");
        }
        assert_eq!(sm.lock().applied.last_applied.map(|l| l.index), Some(3 + INLINE_APPLY_ENTRIES as u64));
        Ok(())
    }
}
