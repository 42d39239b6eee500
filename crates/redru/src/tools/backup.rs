//! Backups: point-in-time snapshot files in `DIR/backups/`, retention,
//! restore, and scheduled backups.
//!
//! A backup is a snapshot file (same format as `database.json`) written from
//! a frozen copy of the state, so writers are held only for the copy-on-write
//! clone. It is written under a temporary name, synced, read back and
//! verified, renamed into place, and its whole-file SHA-256 written beside it
//! in `sha256sum` format. Names: [`backup_name`]. Restore replaces the data
//! and index definitions in one atomic step (a snapshot renamed into place)
//! after backing up the state it replaces.
//!
//! One file, past 800 lines: naming, writing, listing, pruning and restoring
//! backups share the format checks and the one-backup-at-a-time lock.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::options::Options;
use crate::progress::Observer;
use crate::state::index::FieldPath;
use crate::state::index::IndexKind;
use crate::state::store::State;
use crate::storage::record::Seq;
use crate::storage::snapshot::{self, Frozen, IndexDef, SnapshotInfo};
use crate::storage::vfs::{FileBytes, Vfs};
use crate::tools::verify::{self, file_sha256, sidecar_path};

pub use crate::storage::files::BACKUP_DIR;

/// One backup at a time in this process: two in the same second at the same
/// sequence number would otherwise race for one name.
static WRITING: Mutex<()> = Mutex::new(());

/// The file name of a backup taken at `time` (seconds since the Unix epoch)
/// holding records up to `seq`.
///
/// The scheme, in one place: `backup-` + UTC time as `YYYYMMDDTHHMMSSZ` +
/// `-seq` + 20-digit zero-padded sequence number + `.json`, so names sort by
/// time, then sequence number; a second backup with the same time and sequence
/// number gets `-2`, `-3`... before `.json`. Beside each, `<name>.sha256` holds
/// the whole file's SHA-256 as `sha256sum` writes it (`sha256sum -c` checks it).
/// While being written a backup is `<name>.tmp`; listings ignore that name.
pub fn backup_name(time: u64, seq: Seq, n: u32) -> String {
    let suffix = if n > 1 { format!("-{n}") } else { String::new() };
    format!("backup-{}-seq{:020}{suffix}.json", utc_stamp(time), seq.0)
}

/// Parses a name made by [`backup_name`]: (time, seq).
pub fn parse_backup_name(name: &str) -> Option<(u64, Seq)> {
    parse_name(name).map(|(time, seq, _)| (time, seq))
}

/// (time, seq, n): `n` orders backups with the same time and sequence number.
fn parse_name(name: &str) -> Option<(u64, Seq, u32)> {
    let rest = name.strip_prefix("backup-")?.strip_suffix(".json")?;
    let (stamp, rest) = rest.split_at_checked(16)?;
    let rest = rest.strip_prefix("-seq")?;
    let (digits, suffix) = rest.split_at_checked(20)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = if suffix.is_empty() {
        1
    } else {
        let n = suffix.strip_prefix('-')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok()?
    };
    Some((parse_stamp(stamp)?, Seq(digits.parse().ok()?), n))
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the epoch (UTC, proleptic Gregorian).
pub(crate) fn utc_stamp(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339) for seconds since the epoch.
pub(crate) fn rfc3339(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

fn parse_stamp(stamp: &str) -> Option<u64> {
    let b = stamp.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = stamp.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) { s.parse().ok() } else { None }
    };
    let (y, m, d, h, mi, s) = (num(0..4)?, num(4..6)?, num(6..8)?, num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + s).ok()
}

/// One backup file, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupInfo {
    /// Its file name.
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// When it was taken, seconds since the Unix epoch (from its name).
    pub time: u64,
    /// The same, as `YYYY-MM-DDTHH:MM:SSZ`.
    pub time_utc: String,
    /// The last record it holds.
    pub seq: u64,
    /// Number of keys (0 if unreadable).
    pub keys: usize,
    /// Size of the file.
    pub bytes: u64,
    /// SHA-256 of the whole file (what its `.sha256` file should say).
    pub sha256: String,
    /// Whether its internal digest and structure check out and its `.sha256`
    /// file is present and matches.
    pub verified: bool,
    /// Why it is not verified.
    pub problem: Option<String>,
}

impl fmt::Display for BackupInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}  {}  seq {}  {} keys  {} bytes  ", self.name, self.time_utc, self.seq, self.keys, self.bytes)?;
        match &self.problem {
            None if self.verified => write!(f, "verified"),
            None => write!(f, "NOT verified"),
            Some(p) => write!(f, "NOT verified: {p}"),
        }
    }
}

/// What [`Db::restore`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub from: PathBuf,
    /// The last record the backup held.
    pub backup_seq: u64,
    /// Keys now in the database.
    pub keys: usize,
    /// The backup of the state it replaced: restore this one to undo.
    pub undo: BackupInfo,
    /// Index definitions removed to match the backup.
    pub indexes_dropped: Vec<String>,
    /// Index definitions created to match the backup.
    pub indexes_created: Vec<String>,
    /// How long it took.
    #[serde(serialize_with = "crate::tools::verify::millis")]
    pub duration: Duration,
}

impl fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "restored {} (up to record {}): {} keys in {} ms",
            self.from.display(),
            self.backup_seq,
            self.keys,
            self.duration.as_millis()
        )?;
        if !self.indexes_dropped.is_empty() {
            write!(f, "\n  indexes dropped: {}", self.indexes_dropped.join(", "))?;
        }
        if !self.indexes_created.is_empty() {
            write!(f, "\n  indexes created: {}", self.indexes_created.join(", "))?;
        }
        write!(f, "\nthe state it replaced is backed up as {} (restore it to undo)", self.undo.name)
    }
}

/// The backups of the database in `dir` (offline, on the real file system), oldest first.
pub fn list_backups(dir: &Path) -> Result<Vec<BackupInfo>> {
    list_backups_with(dir, &Options::default())
}

/// The backups of the database in `dir`, oldest first; each is read and checked.
pub fn list_backups_with(dir: &Path, options: &Options) -> Result<Vec<BackupInfo>> {
    list_in(&*options.vfs, &dir.join(BACKUP_DIR))
}

/// Deletes the oldest backups of the database in `dir` beyond `keep` (offline); see [`Db::prune_backups`].
pub fn prune_backups(dir: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    prune_backups_with(dir, keep, &Options::default())
}

/// [`prune_backups`] through `options`' file system.
pub fn prune_backups_with(dir: &Path, keep: usize, options: &Options) -> Result<Vec<PathBuf>> {
    prune_in(&*options.vfs, &dir.join(BACKUP_DIR), keep)
}

fn list_in(vfs: &dyn Vfs, backups: &Path) -> Result<Vec<BackupInfo>> {
    if !vfs.exists(backups).map_err(|e| Error::io("checking", backups, e))? {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for name in vfs.list(backups).map_err(|e| Error::io("listing", backups, e))? {
        let Some((time, seq)) = parse_backup_name(&name) else { continue };
        out.push(inspect(vfs, &backups.join(&name), time, seq)?);
    }
    let order = |b: &BackupInfo| (b.time, b.seq, parse_name(&b.name).map_or(0, |(_, _, n)| n));
    out.sort_by_key(order);
    Ok(out)
}

/// Reads and checks one backup file.
fn inspect(vfs: &dyn Vfs, path: &Path, time: u64, seq: Seq) -> Result<BackupInfo> {
    let bytes = vfs.read(path).map_err(|e| Error::io("reading", path, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut info = BackupInfo {
        name,
        path: path.to_owned(),
        time,
        time_utc: rfc3339(time),
        seq: seq.0,
        keys: 0,
        bytes: bytes.len() as u64,
        sha256: file_sha256(&bytes),
        verified: false,
        problem: None,
    };
    match light_check(path, &bytes) {
        Ok((file_seq, keys)) => {
            info.keys = keys;
            if file_seq != seq.0 {
                info.problem = Some(format!("its name says record {} but it holds records up to {file_seq}", seq.0));
            }
        }
        Err(why) => info.problem = Some(why),
    }
    let sidecar = sidecar_path(path);
    if info.problem.is_none() {
        if vfs.exists(&sidecar).map_err(|e| Error::io("checking", &sidecar, e))? {
            let text = vfs.read(&sidecar).map_err(|e| Error::io("reading", &sidecar, e))?;
            info.problem = verify::check_sidecar(path, &bytes, &text).map(|p| p.message);
        } else {
            info.problem = Some(format!("{} is missing", sidecar.display()));
        }
    }
    info.verified = info.problem.is_none();
    Ok(info)
}

/// Reads the backup at `path` for a restore and verifies it (its digest,
/// its `.sha256` file when present, its structure): the state it holds,
/// indexes built. Read once in pieces, so that the file is never in memory
/// beside the state (`snapshot::stream`); a file that does not pass that
/// way is read whole and parsed again, for the precise error (the same
/// checks in the same order: the `.sha256` file first).
fn read_verified(vfs: &dyn Vfs, path: &Path, observer: Option<&Observer>) -> Result<(State, SnapshotInfo)> {
    let sidecar = sidecar_path(path);
    let sidecar_text = || -> Result<Option<FileBytes>> {
        if vfs.exists(&sidecar).map_err(|e| Error::io("checking", &sidecar, e))? {
            return vfs.read(&sidecar).map(Some).map_err(|e| Error::io("reading", &sidecar, e));
        }
        Ok(None)
    };
    let refused = |problem: verify::Problem| Error::BadSnapshot { path: path.to_owned(), reason: problem.message };
    let streamed: Option<snapshot::Pending> = snapshot::stream(vfs, path, observer)?;
    if let Some(pending) = streamed {
        if let Some(text) = sidecar_text()?
            && let Some(problem) = verify::check_sidecar_digest(path, pending.file_len(), pending.file_sha256(), &text)
        {
            return Err(refused(problem));
        }
        return pending.finish(path);
    }
    let bytes = vfs.read(path).map_err(|e| Error::io("reading", path, e))?;
    if let Some(text) = sidecar_text()?
        && let Some(problem) = verify::check_sidecar(path, &bytes, &text)
    {
        return Err(refused(problem));
    }
    snapshot::parse(path, &bytes, observer)
}

/// Checks a backup's digest and structure without building its map: (seq, keys).
fn light_check(path: &Path, bytes: &[u8]) -> std::result::Result<(u64, usize), String> {
    snapshot::check_digest(path, bytes, None).map_err(|e| match e {
        Error::BadSnapshot { reason, .. } => reason,
        other => other.to_string(),
    })?;
    let head: Head = serde_json::from_slice(bytes).map_err(|e| format!("digest matches but JSON is invalid: {e}"))?;
    if head.format != snapshot::FORMAT || !(snapshot::VERSION_PLAIN..=snapshot::VERSION).contains(&head.version) {
        return Err(format!("format {:?} version {} is not a snapshot this build reads", head.format, head.version));
    }
    if head.keys != head.data.0 {
        return Err(format!("`keys` says {} but `data` holds {}", head.keys, head.data.0));
    }
    for def in &head.indexes {
        FieldPath::parse(&def.field).map_err(|e| format!("index definition: {e}"))?;
    }
    Ok((head.seq, head.keys))
}

#[derive(Deserialize)]
struct Head {
    format: String,
    version: u64,
    seq: u64,
    keys: usize,
    indexes: Vec<IndexDef>,
    data: Count,
}

/// Counts the members of the `data` object without keeping them.
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> std::result::Result<Count, A::Error> {
                let mut n = 0;
                while access.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
        }
        d.deserialize_map(V)
    }
}

fn prune_in(vfs: &dyn Vfs, backups: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    let all = list_in(vfs, backups)?;
    if all.len() <= keep {
        return Ok(Vec::new());
    }
    let newest_verified = all.iter().rposition(|b| b.verified);
    let mut removed = Vec::new();
    for (i, backup) in all.iter().enumerate().take(all.len() - keep) {
        if Some(i) == newest_verified {
            continue;
        }
        vfs.remove(&backup.path).map_err(|e| Error::io("removing", &backup.path, e))?;
        let sidecar = sidecar_path(&backup.path);
        if vfs.exists(&sidecar).map_err(|e| Error::io("checking", &sidecar, e))? {
            vfs.remove(&sidecar).map_err(|e| Error::io("removing", &sidecar, e))?;
        }
        removed.push(backup.path.clone());
    }
    if !removed.is_empty() {
        vfs.sync_dir(backups).map_err(|e| Error::io("syncing directory", backups, e))?;
    }
    Ok(removed)
}

/// Writes `frozen` as a backup at `path`: temp file, sync, read back and
/// check, rename, `.sha256` beside it (also via temp file), directory synced.
fn write_backup(
    vfs: &dyn Vfs,
    path: &Path,
    frozen: &Frozen,
    time: u64,
    observer: Option<&Observer>,
) -> Result<BackupInfo> {
    let dir = path.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("."));
    let tmp = with_suffix(path, ".tmp");
    if vfs.exists(&tmp).map_err(|e| Error::io("checking", &tmp, e))? {
        vfs.remove(&tmp).map_err(|e| Error::io("removing", &tmp, e))?;
    }
    // `write_file` removes the temporary file itself if writing it fails.
    let written = snapshot::write_file(vfs, &tmp, frozen, observer)?;
    let bytes = vfs.read(&tmp).map_err(|e| {
        snapshot::discard(vfs, &tmp);
        Error::io("reading back", &tmp, e)
    })?;
    let checked = light_check(&tmp, &bytes);
    if checked != Ok((written.seq.0, written.keys)) || bytes.len() as u64 != written.bytes {
        let why = checked.err().unwrap_or_else(|| "its content differs from what was written".into());
        return Err(Error::BackupUnverified { path: tmp, reason: why });
    }
    let sha256 = file_sha256(&bytes);
    drop(bytes);
    vfs.rename(&tmp, path).map_err(|e| {
        snapshot::discard(vfs, &tmp);
        Error::io("renaming into place", path, e)
    })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let sidecar = sidecar_path(path);
    let sidecar_tmp = with_suffix(&sidecar, ".tmp");
    if vfs.exists(&sidecar_tmp).map_err(|e| Error::io("checking", &sidecar_tmp, e))? {
        vfs.remove(&sidecar_tmp).map_err(|e| Error::io("removing", &sidecar_tmp, e))?;
    }
    let file = vfs.create_new(&sidecar_tmp).map_err(|e| Error::io("creating", &sidecar_tmp, e))?;
    let written_sidecar = file
        .append(format!("{sha256}  {name}\n").as_bytes())
        .map_err(|e| Error::io("writing", &sidecar_tmp, e))
        .and_then(|()| file.sync().map_err(|e| Error::io("syncing", &sidecar_tmp, e)));
    drop(file);
    written_sidecar
        .and_then(|()| vfs.rename(&sidecar_tmp, &sidecar).map_err(|e| Error::io("renaming into place", &sidecar, e)))
        .inspect_err(|_| snapshot::discard(vfs, &sidecar_tmp))?;
    vfs.sync_dir(&dir).map_err(|e| Error::io("syncing directory", &dir, e))?;
    Ok(BackupInfo {
        name,
        path: path.to_owned(),
        time,
        time_utc: rfc3339(time),
        seq: written.seq.0,
        keys: written.keys,
        bytes: written.bytes,
        sha256,
        verified: true,
        problem: None,
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Resolves a backup name inside `backups`, refusing anything that could
/// leave it: empty names, `/`, `\`, `..`, a leading `.`, NUL.
fn resolve(vfs: &dyn Vfs, backups: &Path, name: &str) -> Result<PathBuf> {
    let refuse = |why: &str| Err(Error::BadBackupName { name: name.to_owned(), reason: why.to_owned() });
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.contains('/') || name.contains('\\') || Path::new(name).is_absolute() {
        return refuse("a backup name is a file name in the backups directory, not a path");
    }
    if name.contains("..") || name.starts_with('.') || name.contains('\0') {
        return refuse("it could name something outside the backups directory");
    }
    for candidate in [name.to_owned(), format!("{name}.json")] {
        let path = backups.join(&candidate);
        if vfs.exists(&path).map_err(|e| Error::io("checking", &path, e))? {
            return Ok(path);
        }
    }
    Err(Error::BackupNotFound { name: name.to_owned(), dir: backups.to_owned() })
}

impl Db {
    /// The backups directory: `DIR/backups/`.
    pub fn backup_dir(&self) -> PathBuf {
        self.dir().join(BACKUP_DIR)
    }

    /// Writes a consistent point-in-time copy of the database into
    /// `DIR/backups/` (named by [`backup_name`]), reads it back and verifies
    /// it before returning. Writers are held only for the copy-on-write
    /// freeze (O(shards)), not while the file is written.
    ///
    /// # Errors
    /// - [`Error::Io`] if the file cannot be written or synced.
    /// - [`Error::BackupUnverified`] if the file read back does not match what was written.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn backup(&self) -> Result<BackupInfo> {
        self.check_writable()?;
        self.check_poisoned()?;
        let vfs = &*self.options().vfs;
        let backups = self.backup_dir();
        if !vfs.exists(&backups).map_err(|e| Error::io("checking", &backups, e))? {
            vfs.create_dir_all(&backups).map_err(|e| Error::io("creating directory", &backups, e))?;
            // `backups/` is an entry of the data directory: durable only once that is synced.
            vfs.sync_dir(self.dir()).map_err(|e| Error::io("syncing directory", self.dir(), e))?;
        }
        let _one = WRITING.lock().unwrap_or_else(|p| p.into_inner());
        let frozen = self.freeze()?;
        let time = now();
        let mut n = 1;
        let path = loop {
            let path = backups.join(backup_name(time, frozen.seq, n));
            if !vfs.exists(&path).map_err(|e| Error::io("checking", &path, e))? {
                break path;
            }
            n += 1;
        };
        write_backup(vfs, &path, &frozen, time, self.options().observer())
    }

    /// Like [`Db::backup`], to an explicit file `path` (which must not exist);
    /// `<path>.sha256` is written beside it.
    ///
    /// # Errors
    /// - [`Error::BackupExists`] if `path` exists: a backup never overwrites a file.
    /// - As [`Db::backup`].
    pub fn backup_to(&self, path: &Path) -> Result<BackupInfo> {
        self.check_writable()?;
        self.check_poisoned()?;
        let vfs = &*self.options().vfs;
        if vfs.exists(path).map_err(|e| Error::io("checking", path, e))? {
            return Err(Error::BackupExists { path: path.to_owned() });
        }
        let _one = WRITING.lock().unwrap_or_else(|p| p.into_inner());
        let frozen = self.freeze()?;
        write_backup(vfs, path, &frozen, now(), self.options().observer())
    }

    /// The backups in `DIR/backups/`, oldest first, each read and checked.
    ///
    /// # Errors
    /// [`Error::Io`] if the backups directory cannot be listed.
    pub fn backups(&self) -> Result<Vec<BackupInfo>> {
        list_in(&*self.options().vfs, &self.backup_dir())
    }

    /// Deletes the oldest backups beyond the newest `keep` (with their
    /// `.sha256` files), but never the newest verified backup, even when the
    /// `keep` newest are all unverified or `keep` is 0. Returns what it deleted.
    ///
    /// # Errors
    /// [`Error::Io`] if a backup cannot be listed or removed.
    pub fn prune_backups(&self, keep: usize) -> Result<Vec<PathBuf>> {
        self.check_writable()?;
        let _one = WRITING.lock().unwrap_or_else(|p| p.into_inner());
        prune_in(&*self.options().vfs, &self.backup_dir(), keep)
    }

    /// Restores the backup called `name` in `DIR/backups/` (a bare file name,
    /// `.json` optional; names with `/`, `\` or `..` are refused); see [`Db::restore_file`].
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// db.set("a", redru::json!(1))?;
    /// let backup = db.backup()?;
    /// db.set("a", redru::json!(2))?;
    /// let report = db.restore(&backup.name)?; // the state it replaced is `report.undo`
    /// assert_eq!(db.get_value("a"), Some(redru::json!(1)));
    /// # let _ = report;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// - [`Error::BadBackupName`] for a name that is empty or could leave the
    ///   backups directory; [`Error::BackupNotFound`] if there is no such backup.
    /// - As [`Db::restore_file`].
    pub fn restore(&self, name: &str) -> Result<RestoreReport> {
        let path = resolve(&*self.options().vfs, &self.backup_dir(), name)?;
        self.restore_file(&path)
    }

    /// Replaces the database's contents with the backup at `path`.
    ///
    /// In order: reads and fully verifies the backup (digest, structure,
    /// unique indexes, and its `.sha256` when present), refusing it on any
    /// problem with nothing changed; backs up the current state (the undo
    /// point, named in the report); then replaces the data and the index
    /// definitions in one atomic step, a new snapshot renamed into place
    /// (writers wait meanwhile). If that step fails, the error names the undo backup.
    ///
    /// # Errors
    /// - [`Error::BadSnapshot`] if the backup does not verify: nothing changed.
    /// - [`Error::RestoreFailed`] (naming the undo backup) if a step after the
    ///   data change failed.
    /// - [`Error::Io`], [`Error::Poisoned`]: as [`Db::batch`].
    pub fn restore_file(&self, path: &Path) -> Result<RestoreReport> {
        self.check_writable()?;
        let started = Instant::now();
        let (state, info) = read_verified(&*self.options().vfs, path, self.options().observer())?;
        if let Some(problem) = verify::unique_duplicates(&state, path).into_iter().next() {
            return Err(Error::BadSnapshot { path: path.to_owned(), reason: problem.message });
        }

        let undo = self.backup()?;
        let failed =
            |e: Error| Error::RestoreFailed { path: path.to_owned(), undo: undo.name.clone(), source: Box::new(e) };
        let wanted: Vec<(String, bool, IndexKind)> =
            state.indexes.values().map(|i| (i.path().to_string(), i.unique(), i.kind())).collect();
        let current: Vec<(String, bool, IndexKind)> =
            self.indexes().into_iter().map(|i| (i.field, i.unique, i.kind)).collect();
        let dropped = current.iter().filter(|d| !wanted.contains(d)).map(|(f, _, _)| f.clone()).collect();
        let created = wanted.iter().filter(|d| !current.contains(d)).map(|(f, _, _)| f.clone()).collect();
        // Data and index definitions in one step: a snapshot renamed into place.
        self.install_state(state).map_err(failed)?;
        Ok(RestoreReport {
            from: path.to_owned(),
            backup_seq: info.seq.0,
            keys: self.len(),
            undo,
            indexes_dropped: dropped,
            indexes_created: created,
            duration: started.elapsed(),
        })
    }

    /// Takes a backup every `every` (at least 1 ms) in a background thread,
    /// then deletes the oldest beyond `keep` (as [`Db::prune_backups`]).
    ///
    /// The thread holds only a `Weak` reference: it never keeps the database
    /// (or its directory lock) alive, except for the duration of a backup
    /// already running when the last `Arc` is dropped; once the `Db` is gone
    /// the thread ends at its next tick. Dropping the returned handle stops
    /// the thread (waiting for a running backup to finish). Errors do not
    /// stop the schedule; they are kept in [`BackupSchedule::status`].
    pub fn start_backup_schedule(self: &Arc<Self>, every: Duration, keep: usize) -> BackupSchedule {
        let every = every.max(Duration::from_millis(1));
        let db: Weak<Db> = Arc::downgrade(self);
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = mpsc::channel::<()>();
        let status = Arc::clone(&shared);
        let spawned = std::thread::Builder::new().name("redru-backup".into()).spawn(move || {
            // The last record the schedule has a backup of: an interval in
            // which nothing was written takes no backup, so retention keeps
            // `keep` distinct points in time rather than copies of one.
            let mut backed_up: Option<u64> = None;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let Some(db) = db.upgrade() else { break };
                if backed_up == Some(db.stats().last_seq) {
                    drop(db);
                    status.lock().skipped += 1;
                    status.changed.notify_all();
                    continue;
                }
                let outcome = db.backup().and_then(|info| db.prune_backups(keep).map(|gone| (info, gone)));
                drop(db);
                let mut s = status.lock();
                s.runs += 1;
                match outcome {
                    Ok((info, gone)) => {
                        backed_up = Some(info.seq);
                        s.last = Some(info);
                        s.pruned += gone.len() as u64;
                    }
                    Err(e) => {
                        s.errors += 1;
                        s.last_error = Some(e.to_string());
                    }
                }
                drop(s);
                status.changed.notify_all();
            }
            status.lock().stopped = true;
            status.changed.notify_all();
        });
        match spawned {
            Ok(handle) => BackupSchedule { stop: Some(stop), handle: Some(handle), shared },
            Err(e) => {
                {
                    let mut s = shared.lock();
                    s.last_error = Some(format!("could not start the backup thread: {e}"));
                    s.errors = 1;
                    s.stopped = true;
                }
                BackupSchedule { stop: None, handle: None, shared }
            }
        }
    }
}

/// What a [`BackupSchedule`] has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScheduleStatus {
    /// Backups attempted.
    pub runs: u64,
    /// Intervals skipped because nothing was written since the last backup.
    pub skipped: u64,
    /// The last successful backup.
    pub last: Option<BackupInfo>,
    /// Attempts that failed.
    pub errors: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Backups deleted by retention.
    pub pruned: u64,
    /// Whether the thread has ended (stopped, or the `Db` is gone).
    pub stopped: bool,
}

#[derive(Default)]
struct Shared {
    status: Mutex<ScheduleStatus>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ScheduleStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle of scheduled backups ([`Db::start_backup_schedule`]): dropping it stops them.
pub struct BackupSchedule {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl BackupSchedule {
    /// What it has done so far.
    pub fn status(&self) -> ScheduleStatus {
        self.shared.lock().clone()
    }

    /// The last failure's message, if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.lock().last_error.clone()
    }

    /// Waits until at least `runs` backups were attempted or the thread
    /// ended, at most `timeout`; returns the status then.
    pub fn wait_for_runs(&self, runs: u64, timeout: Duration) -> ScheduleStatus {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.lock();
        while s.runs < runs && !s.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self.shared.changed.wait_timeout(s, left).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        s.clone()
    }

    /// Stops the schedule, waiting for a running backup; returns the final status.
    pub fn stop(mut self) -> ScheduleStatus {
        self.halt();
        self.status()
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for BackupSchedule {
    fn drop(&mut self) {
        self.halt();
    }
}

impl fmt::Debug for BackupSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupSchedule").field("status", &self.status()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_sort() {
        // 2026-11-26T10:15:00Z
        let t = 1_795_688_100;
        assert_eq!(rfc3339(t), "2026-11-26T10:15:00Z");
        let name = backup_name(t, Seq(42), 1);
        assert_eq!(name, "backup-20261126T101500Z-seq00000000000000000042.json");
        assert_eq!(parse_backup_name(&name), Some((t, Seq(42))));
        assert_eq!(parse_backup_name(&backup_name(t, Seq(42), 3)), Some((t, Seq(42))));
        assert_eq!(parse_name(&backup_name(t, Seq(42), 12)), Some((t, Seq(42), 12)));
        assert!(backup_name(t, Seq(42), 1) < backup_name(t + 1, Seq(1), 1));
        for bad in [
            "backup-x.json",
            "backup-20261126T101500Z-seq42.json",
            "backup-20261126T101500Z-seq00000000000000000042.json.sha256",
            "backup-20261126T101500Z-seq00000000000000000042-.json",
        ] {
            assert_eq!(parse_backup_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_dates_match_known_days() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (1_709_164_800, "2024-02-29T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(secs), text);
            assert_eq!(parse_stamp(&utc_stamp(secs)), Some(secs));
        }
        // Every day of four centuries roundtrips.
        for day in 0..146_097u64 {
            let secs = day * 86_400 + 3_723;
            assert_eq!(parse_stamp(&utc_stamp(secs)), Some(secs));
        }
    }
}
