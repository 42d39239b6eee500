//! A simulated file system behind `redru::vfs`, for power-loss and I/O-error tests.
//!
//! Per file it keeps the durable bytes and the unsynced operations (appends,
//! writes in place, truncations) made since the last `sync`; per directory, the durable entries
//! and the unsynced creations, renames and removals since the last `sync_dir`.
//! [`SimState::crash_image`] builds what a power loss could leave: the durable
//! state, plus a seeded prefix of each file's unsynced operations (the last
//! kept append possibly torn at a sector boundary, anywhere, or zero- or
//! garbage-filled; a torn write in place keeps the old bytes where it did not
//! reach), plus a prefix of the unsynced directory operations;
//! [`SimState::shuffled_crash_image`] keeps any subset instead of a prefix
//! (pages reaching the disk out of order). Like a real file system it
//! preallocates the log (in small chunks, inline: see [`SimFs::set_preallocation`]).
//! It also checks two ordering rules as the engine runs (see [`SimFs::violations`])
//! and can inject ENOSPC/EIO at any mutating operation.
//!
//! Shared by tests/crash_sim.rs, tests/crash_io_errors.rs, tests/crash_damage.rs
//! and the fuzz targets (fuzz/src/targets.rs), so it depends on std and redru only.
//!
//! One file, past 800 lines: files, directories, crash images and injected
//! faults share one state behind one lock.
#![allow(dead_code, clippy::panic)]

pub mod explore;
pub mod model;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redru::vfs::{FileBytes, LockGuard, LockOutcome, Preallocation, VFile, Vfs};

pub use crate::rng::Rng;

/// The kinds of mutating operations, as faults and the trace name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Mkdir,
    Create,
    Append,
    Sync,
    Truncate,
    Rename,
    Remove,
    SyncDir,
    Lock,
    /// Zeros written ahead of the log's appends, or cut back at its close
    /// (preallocation): a failed one must fail nothing, so faults it hits
    /// are not counted as fired.
    Zero,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            OpKind::Mkdir => "mkdir",
            OpKind::Create => "create",
            OpKind::Append => "write",
            OpKind::Sync => "sync",
            OpKind::Truncate => "truncate",
            OpKind::Rename => "rename",
            OpKind::Remove => "remove",
            OpKind::SyncDir => "sync_dir",
            OpKind::Lock => "lock",
            OpKind::Zero => "zero",
        };
        f.write_str(name)
    }
}

/// One mutating operation, as recorded in the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceOp {
    pub index: u64,
    pub kind: OpKind,
    pub path: PathBuf,
    /// Whether an injected fault made it fail.
    pub failed: bool,
}

/// Which error a fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    NoSpace,
    Eio,
}

impl Errno {
    fn error(self) -> io::Error {
        match self {
            Errno::NoSpace => io::Error::from_raw_os_error(28),
            Errno::Eio => io::Error::from_raw_os_error(5),
        }
    }
}

/// An injected failure of every mutating operation of the given kinds on a
/// path whose file name contains `name` (a full disk that still has room for
/// the log's small appends, say, but not for a snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathFault {
    pub name: String,
    pub kinds: Vec<OpKind>,
    pub errno: Errno,
}

/// An injected failure: at mutating operation `at` (and, if `persistent`, at every one after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub at: u64,
    pub errno: Errno,
    pub persistent: bool,
}

type Ino = u64;

#[derive(Clone, Debug)]
enum DataOp {
    Append(Vec<u8>),
    /// A write in place at an offset (over the old bytes, growing the file
    /// with zeros before it if it starts past the end).
    WriteAt(u64, Vec<u8>),
    Truncate(u64),
    /// An append whose sync failed: the page cache still shows the bytes, but
    /// they will never reach the disk (Linux marks such pages clean after EIO).
    Doomed(usize),
    /// A write in place whose sync failed: the file may have grown to this
    /// end (with zeros), the old bytes stay.
    DoomedAt(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    pending: Vec<DataOp>,
    /// What a read sees now (the page cache).
    current: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(Ino),
    Dir,
}

#[derive(Clone, Debug)]
enum DirOpKind {
    Create(PathBuf, Node),
    Rename(PathBuf, PathBuf),
    Remove(PathBuf),
}

#[derive(Clone, Debug)]
struct DirOp {
    dir: PathBuf,
    kind: DirOpKind,
}

/// The whole simulated disk and page cache. `Clone` is a point-in-time copy.
#[derive(Clone, Debug, Default)]
pub struct SimState {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    /// The namespace as seen now.
    names: BTreeMap<PathBuf, Node>,
    /// The namespace on disk.
    durable_names: BTreeMap<PathBuf, Node>,
    /// Directory operations not yet made durable, in order.
    pending_dir: Vec<DirOp>,
    locks: BTreeMap<PathBuf, u64>,
    /// Mutating operations so far (the crash-point clock).
    mutations: u64,
    trace: Vec<TraceOp>,
    violations: Vec<String>,
    fault: Option<Fault>,
    path_fault: Option<PathFault>,
    fired: u64,
    /// Snapshots of the state before each mutating operation, when recording.
    recording: bool,
    #[allow(clippy::type_complexity)]
    history: Vec<Arc<SimState>>,
    /// Names whose durability the ordering rules ignore (the lock file).
    ignore: Vec<String>,
    /// What [`Vfs::preallocation`] says (see [`SimFs::set_preallocation`]).
    prealloc: u64,
}

/// The chunk the simulated file system preallocates by default: small, so
/// that the crash suites see many extensions and crash points among them.
pub const SIM_PREALLOCATION: u64 = 4096;

/// How the last kept append of a file is damaged in a crash image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    Whole,
    Sector,
    Anywhere,
    Zeros,
    Garbage,
}

/// The simulated file system; clones share it.
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
    next_lock: Arc<Mutex<u64>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SimFs")
    }
}

const SECTOR: u64 = 512;

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn apply_dir_op(names: &mut BTreeMap<PathBuf, Node>, op: &DirOpKind) {
    match op {
        DirOpKind::Create(path, node) => {
            names.insert(path.clone(), *node);
        }
        DirOpKind::Rename(from, to) => {
            if let Some(node) = names.remove(from) {
                names.insert(to.clone(), node);
            }
        }
        DirOpKind::Remove(path) => {
            names.remove(path);
        }
    }
}

impl SimState {
    fn lookup_file(&self, path: &Path) -> io::Result<Ino> {
        match self.names.get(path) {
            Some(Node::File(ino)) => Ok(*ino),
            Some(Node::Dir) => {
                Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{} is a directory", path.display())))
            }
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))),
        }
    }

    /// Counts a mutating operation, records it, and says whether a fault fails it.
    fn begin(&mut self, kind: OpKind, path: &Path) -> Option<io::Error> {
        if self.recording {
            let history = std::mem::take(&mut self.history);
            let trace = std::mem::take(&mut self.trace);
            let copy = self.clone();
            self.history = history;
            self.trace = trace;
            self.history.push(Arc::new(copy));
        }
        let index = self.mutations;
        self.mutations += 1;
        let by_path = self.path_fault.as_ref().filter(|f| {
            f.kinds.contains(&kind) && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(&f.name))
        });
        let fail = match (self.fault, by_path) {
            (Some(f), _) if index == f.at || (f.persistent && index > f.at) => Some(f.errno.error()),
            (_, Some(f)) => Some(f.errno.error()),
            _ => None,
        };
        if fail.is_some() && kind != OpKind::Zero {
            self.fired += 1;
        }
        self.trace.push(TraceOp { index, kind, path: path.to_owned(), failed: fail.is_some() });
        fail
    }

    fn ignored(&self, path: &Path) -> bool {
        path.file_name().and_then(|n| n.to_str()).is_some_and(|n| self.ignore.iter().any(|i| i == n))
    }

    /// Creations and renames in `dir` not yet made durable by a directory sync.
    fn undurable_in(&self, dir: Option<&Path>) -> Vec<String> {
        self.pending_dir
            .iter()
            .filter(|op| dir.is_none_or(|d| op.dir == d))
            .filter_map(|op| match &op.kind {
                DirOpKind::Create(p, _) if !self.ignored(p) => Some(format!("creation of {}", p.display())),
                DirOpKind::Rename(a, b) => Some(format!("rename of {} to {}", a.display(), b.display())),
                _ => None,
            })
            .collect()
    }

    fn create_file(&mut self, path: &Path) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        let op = DirOpKind::Create(path.to_owned(), Node::File(ino));
        apply_dir_op(&mut self.names, &op);
        self.pending_dir.push(DirOp { dir: parent(path), kind: op });
        ino
    }

    fn sync_file(&mut self, ino: Ino, failed: bool) {
        let Some(inode) = self.inodes.get_mut(&ino) else { return };
        if failed {
            // The bytes stay visible in the cache but never reach the disk.
            for op in &mut inode.pending {
                match op {
                    DataOp::Append(bytes) => *op = DataOp::Doomed(bytes.len()),
                    // The size may have reached the disk; the bytes did not.
                    DataOp::WriteAt(at, bytes) => *op = DataOp::DoomedAt(*at + bytes.len() as u64),
                    _ => {}
                }
            }
            return;
        }
        let mut content = std::mem::take(&mut inode.durable);
        for op in inode.pending.drain(..) {
            apply_data_op(&mut content, &op, None);
        }
        inode.durable = content;
    }

    fn sync_dir(&mut self, dir: &Path) {
        let mut rest = Vec::new();
        for op in std::mem::take(&mut self.pending_dir) {
            if op.dir == dir {
                apply_dir_op(&mut self.durable_names, &op.kind);
            } else {
                rest.push(op);
            }
        }
        self.pending_dir = rest;
    }

    /// What a power loss at this moment could leave on disk, as a fresh state.
    pub fn crash_image(&self, rng: &mut Rng) -> SimState {
        self.image(rng, false)
    }

    /// The strictest power loss: only what was synced survives.
    pub fn durable_image(&self) -> SimState {
        self.image(&mut Rng::new(0), true)
    }

    /// A power loss where each file's unsynced writes reached the disk in
    /// any order: a seeded subset of them survives, whole, the others not
    /// at all (what out-of-order page writeback can leave). Directory
    /// operations as in [`SimState::crash_image`].
    pub fn shuffled_crash_image(&self, rng: &mut Rng) -> SimState {
        let mut image = self.image(rng, true);
        let mut names = self.durable_names.clone();
        let keep = rng.prefix_len(self.pending_dir.len());
        for op in &self.pending_dir[..keep] {
            apply_dir_op(&mut names, &op.kind);
        }
        image.inodes.clear();
        for node in names.values() {
            let Node::File(ino) = node else { continue };
            let Some(inode) = self.inodes.get(ino) else { continue };
            let mut content = inode.durable.clone();
            for op in &inode.pending {
                if rng.below(2) == 0 {
                    apply_data_op(&mut content, op, None);
                }
            }
            image.inodes.insert(*ino, Inode { durable: content.clone(), pending: Vec::new(), current: content });
        }
        image.durable_names = names.clone();
        image.names = names;
        image
    }

    /// What a crash of the process alone leaves (the OS keeps running): every
    /// write and directory operation made so far, synced or not; no locks held.
    pub fn process_crash_image(&self) -> SimState {
        let mut inodes = BTreeMap::new();
        for node in self.names.values() {
            let Node::File(ino) = node else { continue };
            let Some(inode) = self.inodes.get(ino) else { continue };
            let content = inode.current.clone();
            inodes.insert(*ino, Inode { durable: content.clone(), pending: Vec::new(), current: content });
        }
        SimState {
            inodes,
            next_ino: self.next_ino,
            durable_names: self.names.clone(),
            names: self.names.clone(),
            ignore: self.ignore.clone(),
            prealloc: self.prealloc,
            ..SimState::default()
        }
    }

    fn image(&self, rng: &mut Rng, strict: bool) -> SimState {
        let mut names = self.durable_names.clone();
        let keep = if strict { 0 } else { rng.prefix_len(self.pending_dir.len()) };
        for op in &self.pending_dir[..keep] {
            apply_dir_op(&mut names, &op.kind);
        }
        // An entry whose directory did not survive is gone with it.
        let mut kept: BTreeMap<PathBuf, Node> = BTreeMap::new();
        for (path, node) in names {
            let up = parent(&path);
            if up.as_os_str().is_empty() || up == Path::new("/") || kept.get(&up) == Some(&Node::Dir) {
                kept.insert(path, node);
            }
        }
        let names = kept;
        let mut inodes = BTreeMap::new();
        for node in names.values() {
            let Node::File(ino) = node else { continue };
            let Some(inode) = self.inodes.get(ino) else { continue };
            let mut content = inode.durable.clone();
            let kept = if strict { 0 } else { rng.prefix_len(inode.pending.len()) };
            for (i, op) in inode.pending[..kept].iter().enumerate() {
                let tear = if i + 1 == kept {
                    match rng.below(6) {
                        0 => Tear::Sector,
                        1 => Tear::Anywhere,
                        2 => Tear::Zeros,
                        3 => Tear::Garbage,
                        _ => Tear::Whole,
                    }
                } else {
                    Tear::Whole
                };
                apply_data_op(&mut content, op, Some((tear, &mut *rng)));
            }
            inodes.insert(*ino, Inode { durable: content.clone(), pending: Vec::new(), current: content });
        }
        SimState {
            inodes,
            next_ino: self.next_ino,
            durable_names: names.clone(),
            names,
            ignore: self.ignore.clone(),
            prealloc: self.prealloc,
            ..SimState::default()
        }
    }
}

fn apply_data_op(content: &mut Vec<u8>, op: &DataOp, tear: Option<(Tear, &mut Rng)>) {
    match op {
        DataOp::Truncate(len) => content.truncate(*len as usize),
        DataOp::Doomed(len) => content.resize(content.len() + len, 0),
        DataOp::DoomedAt(end) => {
            if content.len() < *end as usize {
                content.resize(*end as usize, 0);
            }
        }
        DataOp::WriteAt(at, bytes) => write_at(content, *at, bytes, tear),
        DataOp::Append(bytes) => {
            let start = content.len() as u64;
            match tear {
                None | Some((Tear::Whole, _)) => content.extend_from_slice(bytes),
                Some((Tear::Sector, _)) => {
                    let end = start + bytes.len() as u64;
                    let cut = (end / SECTOR * SECTOR).max(start);
                    content.extend_from_slice(&bytes[..(cut - start) as usize]);
                }
                Some((Tear::Anywhere, rng)) => {
                    let cut = rng.below_usize(bytes.len());
                    content.extend_from_slice(&bytes[..cut]);
                }
                Some((Tear::Zeros, rng)) => {
                    let cut = rng.below_usize(bytes.len());
                    content.extend_from_slice(&bytes[..cut]);
                    content.resize(content.len() + bytes.len() - cut, 0);
                }
                Some((Tear::Garbage, rng)) => {
                    let cut = rng.below_usize(bytes.len());
                    content.extend_from_slice(&bytes[..cut]);
                    let mut junk = vec![0u8; bytes.len() - cut];
                    rng.fill(&mut junk);
                    content.extend_from_slice(&junk);
                }
            }
        }
    }
}

/// Applies a write in place, torn as `tear` says: where a torn write did
/// not reach, the old bytes stay (zeros past the old end), or garbage.
fn write_at(content: &mut Vec<u8>, at: u64, bytes: &[u8], tear: Option<(Tear, &mut Rng)>) {
    let start = at as usize;
    let kind = tear.as_ref().map_or(Tear::Whole, |(kind, _)| *kind);
    let cut = match tear {
        Some((_, rng)) if !bytes.is_empty() => rng.below_usize(bytes.len()),
        _ => bytes.len(),
    };
    let mut data = bytes.to_vec();
    let (kept, grow) = match kind {
        Tear::Whole => (bytes.len(), bytes.len()),
        Tear::Sector => {
            let end = at + bytes.len() as u64;
            let kept = ((end / SECTOR * SECTOR).max(at) - at) as usize;
            (kept, kept)
        }
        Tear::Anywhere => (cut, cut),
        // The size may have reached the disk (metadata) and not the bytes:
        // zeros where they did not land, the old bytes where there were some.
        Tear::Zeros => (cut, bytes.len()),
        Tear::Garbage => {
            let mut junk = vec![0u8; bytes.len() - cut];
            Rng::new(at ^ cut as u64).fill(&mut junk);
            data[cut..].copy_from_slice(&junk);
            (bytes.len(), bytes.len())
        }
    };
    if content.len() < start + grow {
        content.resize(start + grow, 0);
    }
    content[start..start + kept].copy_from_slice(&data[..kept]);
}

impl SimFs {
    /// An empty disk.
    pub fn new() -> SimFs {
        let fs = SimFs::default();
        {
            let mut s = fs.lock();
            s.ignore.push(redru::LOCK_NAME.to_owned());
            s.prealloc = SIM_PREALLOCATION;
        }
        fs
    }

    /// Preallocates the log's open segment in chunks of `chunk` bytes from
    /// now on (0: no preallocation, every append grows the file).
    pub fn set_preallocation(&self, chunk: u64) {
        self.lock().prealloc = chunk;
    }

    /// A disk holding `state` (a crash image).
    pub fn from_state(state: SimState) -> SimFs {
        SimFs { state: Arc::new(Mutex::new(state)), next_lock: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine as a `Vfs` handle.
    pub fn vfs(&self) -> Arc<dyn Vfs> {
        Arc::new(self.clone())
    }

    /// Creates `dir` durably (as if it existed before the test).
    pub fn mkdir_durable(&self, dir: &Path) {
        let mut s = self.lock();
        let mut p = dir.to_path_buf();
        loop {
            s.names.insert(p.clone(), Node::Dir);
            s.durable_names.insert(p.clone(), Node::Dir);
            match p.parent() {
                Some(up) if !up.as_os_str().is_empty() => p = up.to_path_buf(),
                _ => break,
            }
        }
    }

    /// Mutating operations so far.
    pub fn mutations(&self) -> u64 {
        self.lock().mutations
    }

    /// The state right now (including unsynced data).
    pub fn state(&self) -> SimState {
        let mut s = self.lock().clone();
        s.history = Vec::new();
        s
    }

    /// Starts keeping a copy of the state before every mutating operation.
    pub fn record(&self, on: bool) {
        self.lock().recording = on;
    }

    /// The copies kept so far: `history()[i]` is the state before mutation number `first + i`.
    pub fn take_history(&self) -> Vec<Arc<SimState>> {
        std::mem::take(&mut self.lock().history)
    }

    pub fn trace(&self) -> Vec<TraceOp> {
        self.lock().trace.clone()
    }

    /// Breaches of the ordering rules seen so far:
    /// 1. a file renamed while it still has unsynced data;
    /// 2. a file removed while an earlier creation or rename in its directory is not durable.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Creations and renames (anywhere) that no directory sync has made durable yet.
    pub fn undurable(&self) -> Vec<String> {
        self.lock().undurable_in(None)
    }

    pub fn set_fault(&self, fault: Option<Fault>) {
        let mut s = self.lock();
        s.fault = fault;
        s.fired = 0;
    }

    /// Fails every operation `fault` names from now on (until set to `None`).
    pub fn set_path_fault(&self, fault: Option<PathFault>) {
        let mut s = self.lock();
        s.path_fault = fault;
        s.fired = 0;
    }

    /// How many operations the fault failed.
    pub fn fired(&self) -> u64 {
        self.lock().fired
    }

    /// Appends `bytes` to `path` durably, as damage from outside (a torn write the test injects).
    pub fn append_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        let ino = s.lookup_file(path)?;
        if let Some(inode) = s.inodes.get_mut(&ino) {
            inode.current.extend_from_slice(bytes);
            inode.durable.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// Writes `bytes` durably where a log segment's next record would go:
    /// after its data, over its preallocated zeros (the first zero byte
    /// where a line would start, after the first line), else at the end
    /// (a torn write the test injects).
    pub fn tear_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        let ino = s.lookup_file(path)?;
        if let Some(inode) = s.inodes.get_mut(&ino) {
            let content = &inode.current;
            let mut at = content.iter().position(|&b| b == b'\n').map_or(content.len(), |nl| nl + 1);
            while at < content.len() && content[at] != 0 {
                at = content[at..].iter().position(|&b| b == b'\n').map_or(content.len(), |nl| at + nl + 1);
            }
            write_at(&mut inode.current, at as u64, bytes, None);
            write_at(&mut inode.durable, at as u64, bytes, None);
        }
        Ok(())
    }

    /// Replaces the content of `path` durably (damage from outside).
    pub fn overwrite(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        let ino = s.lookup_file(path)?;
        if let Some(inode) = s.inodes.get_mut(&ino) {
            inode.current = bytes.to_vec();
            inode.durable = bytes.to_vec();
            inode.pending.clear();
        }
        Ok(())
    }

    /// The current bytes of `path`.
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.lock();
        let ino = s.lookup_file(path)?;
        Ok(s.inodes.get(&ino).map(|i| i.current.clone()).unwrap_or_default())
    }

    /// The names in `dir` now.
    pub fn names(&self, dir: &Path) -> Vec<String> {
        self.list(dir).unwrap_or_default()
    }
}

struct SimFile {
    fs: SimFs,
    ino: Ino,
    path: PathBuf,
}

impl VFile for SimFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let mut s = self.fs.lock();
        let fail = s.begin(OpKind::Append, &self.path);
        // A failed write may still have written part of the buffer.
        let n = if fail.is_some() { buf.len() / 2 } else { buf.len() };
        if let Some(inode) = s.inodes.get_mut(&self.ino) {
            inode.current.extend_from_slice(&buf[..n]);
            if n > 0 {
                inode.pending.push(DataOp::Append(buf[..n].to_vec()));
            }
        }
        fail.map_or(Ok(()), Err)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut s = self.fs.lock();
        let fail = s.begin(OpKind::Append, &self.path);
        // A failed write may still have written part of the buffer.
        let n = if fail.is_some() { buf.len() / 2 } else { buf.len() };
        if let Some(inode) = s.inodes.get_mut(&self.ino) {
            let bytes = &buf[..n];
            write_at(&mut inode.current, offset, bytes, None);
            if n > 0 {
                inode.pending.push(DataOp::WriteAt(offset, bytes.to_vec()));
            }
        }
        fail.map_or(Ok(()), Err)
    }

    fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        if let Some(e) = s.begin(OpKind::Zero, &self.path) {
            return Err(e);
        }
        if let Some(inode) = s.inodes.get_mut(&self.ino) {
            let zeros = vec![0u8; len as usize];
            write_at(&mut inode.current, offset, &zeros, None);
            inode.pending.push(DataOp::WriteAt(offset, zeros));
        }
        Ok(())
    }

    fn trim(&self, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        if let Some(e) = s.begin(OpKind::Zero, &self.path) {
            return Err(e);
        }
        if let Some(inode) = s.inodes.get_mut(&self.ino) {
            inode.current.truncate(len as usize);
            inode.pending.push(DataOp::Truncate(len));
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut s = self.fs.lock();
        let fail = s.begin(OpKind::Sync, &self.path);
        s.sync_file(self.ino, fail.is_some());
        fail.map_or(Ok(()), Err)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        if let Some(e) = s.begin(OpKind::Truncate, &self.path) {
            return Err(e);
        }
        if let Some(inode) = s.inodes.get_mut(&self.ino) {
            inode.current.truncate(len as usize);
            inode.pending.push(DataOp::Truncate(len));
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.fs.lock();
        Ok(s.inodes.get(&self.ino).map_or(0, |i| i.current.len() as u64))
    }
}

struct SimLock {
    fs: SimFs,
    path: PathBuf,
    id: u64,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut s = self.fs.lock();
        if s.locks.get(&self.path) == Some(&self.id) {
            s.locks.remove(&self.path);
        }
    }
}

impl Vfs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.names.get(dir) == Some(&Node::Dir) {
            return Ok(());
        }
        if let Some(e) = s.begin(OpKind::Mkdir, dir) {
            return Err(e);
        }
        let mut missing = Vec::new();
        let mut p = dir.to_path_buf();
        while !p.as_os_str().is_empty() && !s.names.contains_key(&p) {
            missing.push(p.clone());
            match p.parent() {
                Some(up) => p = up.to_path_buf(),
                None => break,
            }
        }
        for p in missing.into_iter().rev() {
            let op = DirOpKind::Create(p.clone(), Node::Dir);
            apply_dir_op(&mut s.names, &op);
            s.pending_dir.push(DirOp { dir: parent(&p), kind: op });
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        if s.names.get(dir) != Some(&Node::Dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found", dir.display())));
        }
        let mut out: Vec<String> = s
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        out.sort();
        Ok(out)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.lock().names.contains_key(path))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        let mut s = self.lock();
        let ino = match s.lookup_file(path) {
            Ok(ino) => ino,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(e) = s.begin(OpKind::Create, path) {
                    return Err(e);
                }
                s.create_file(path)
            }
            Err(e) => return Err(e),
        };
        Ok(Box::new(SimFile { fs: self.clone(), ino, path: path.to_owned() }))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        let mut s = self.lock();
        if s.names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        if s.names.get(&parent(path)) != Some(&Node::Dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        if let Some(e) = s.begin(OpKind::Create, path) {
            return Err(e);
        }
        let ino = s.create_file(path);
        Ok(Box::new(SimFile { fs: self.clone(), ino, path: path.to_owned() }))
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let s = self.lock();
        let ino = s.lookup_file(path)?;
        Ok(Box::new(s.inodes.get(&ino).map(|i| i.current.clone()).unwrap_or_default()))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let ino = s.lookup_file(from)?;
        if let Some(e) = s.begin(OpKind::Rename, to) {
            return Err(e);
        }
        if s.inodes.get(&ino).is_some_and(|i| !i.pending.is_empty()) {
            let v = format!("rule 1: {} renamed to {} with unsynced data", from.display(), to.display());
            s.violations.push(v);
        }
        let op = DirOpKind::Rename(from.to_owned(), to.to_owned());
        apply_dir_op(&mut s.names, &op);
        s.pending_dir.push(DirOp { dir: parent(to), kind: op });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.lookup_file(path)?;
        if let Some(e) = s.begin(OpKind::Remove, path) {
            return Err(e);
        }
        let dir = parent(path);
        let undurable = s.undurable_in(Some(&dir));
        if !undurable.is_empty() {
            let v = format!(
                "rule 2: {} removed before a directory sync made durable: {}",
                path.display(),
                undurable.join(", ")
            );
            s.violations.push(v);
        }
        let op = DirOpKind::Remove(path.to_owned());
        apply_dir_op(&mut s.names, &op);
        s.pending_dir.push(DirOp { dir, kind: op });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.names.get(dir) != Some(&Node::Dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found", dir.display())));
        }
        if let Some(e) = s.begin(OpKind::SyncDir, dir) {
            return Err(e);
        }
        s.sync_dir(dir);
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<LockOutcome> {
        let id = {
            let mut n = self.next_lock.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let mut s = self.lock();
        if s.locks.contains_key(path) {
            return Ok(LockOutcome::Held(Some(1)));
        }
        if !s.names.contains_key(path) {
            if s.names.get(&parent(path)) != Some(&Node::Dir) {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
            }
            if let Some(e) = s.begin(OpKind::Lock, path) {
                return Err(e);
            }
            s.create_file(path);
        }
        s.locks.insert(path.to_owned(), id);
        Ok(LockOutcome::Acquired(Box::new(SimLock { fs: self.clone(), path: path.to_owned(), id })))
    }
    fn preallocation(&self) -> Preallocation {
        Preallocation { chunk: self.lock().prealloc, background: false }
    }
}

/// A deliberately broken file system for negative controls.
#[derive(Debug)]
pub struct Broken {
    pub inner: SimFs,
    /// Directory syncs do nothing (a rename or creation is never made durable).
    pub no_dir_sync: bool,
    /// A failed file sync reports success (the fsyncgate bug).
    pub swallow_sync_errors: bool,
}

struct SwallowFile(Box<dyn VFile>);

impl VFile for SwallowFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.0.append(buf)
    }
    fn sync(&self) -> io::Result<()> {
        let _ = self.0.sync();
        Ok(())
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.truncate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, buf)
    }
    fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        self.0.zero(offset, len)
    }
    fn trim(&self, len: u64) -> io::Result<()> {
        self.0.trim(len)
    }
}

impl Broken {
    fn wrap(&self, file: Box<dyn VFile>) -> Box<dyn VFile> {
        if self.swallow_sync_errors { Box::new(SwallowFile(file)) } else { file }
    }
}

impl Vfs for Broken {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        Ok(self.wrap(self.inner.open_append(path)?))
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        Ok(self.wrap(self.inner.create_new(path)?))
    }
    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        self.inner.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.no_dir_sync { Ok(()) } else { self.inner.sync_dir(dir) }
    }
    fn try_lock(&self, path: &Path) -> io::Result<LockOutcome> {
        self.inner.try_lock(path)
    }
    fn preallocation(&self) -> Preallocation {
        self.inner.preallocation()
    }
}
