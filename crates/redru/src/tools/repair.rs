//! `repair`: point-in-time recovery of a log that `open` refuses.
//!
//! Keeps every valid record up to the first damage `verify` finds and moves
//! everything from there on (the rest of that segment, every later segment)
//! into quarantine files in the directory; nothing is deleted. Order of the
//! steps (docs/design.md): copy the tail, rename later segments, sync the
//! directory, truncate; a crash at any point leaves a state a second run
//! finishes. A damaged snapshot is refused: restore a backup instead.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::options::Options;
use crate::storage::log::{self, Segment};
use crate::storage::record::{self, BatchOp, DecodeError, Record};
use crate::storage::vfs::Vfs;
use crate::tools::verify::{self, Problem, ProblemKind, VerifyReport};

/// At most this many affected keys are listed per set-aside file.
const MAX_KEYS: usize = 1000;

/// Bytes moved into one quarantine file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetAside {
    /// The segment they came from.
    pub segment: PathBuf,
    /// Where in it they started.
    pub offset: u64,
    /// How many bytes.
    pub bytes: u64,
    /// The quarantine file holding them (in a dry run: the name it would get).
    pub quarantine: PathBuf,
    /// Whether the whole segment was renamed (otherwise its tail was copied
    /// and the segment cut at `offset`).
    pub whole_segment: bool,
    /// Valid records among them (checksum matched), first and last sequence number.
    pub records: u64,
    /// The first valid record's sequence number.
    pub first_seq: Option<u64>,
    /// The last valid record's sequence number.
    pub last_seq: Option<u64>,
    /// Lines that are not valid records.
    pub damaged_lines: u64,
    /// Keys (and `index <field>` for index changes, `(all keys)` for a clear)
    /// touched by the valid records, sorted, at most 1000.
    pub keys: Vec<String>,
    /// Keys read from damaged lines whose payload still parses (unverified).
    pub unverified_keys: Vec<String>,
    /// Number of distinct keys before the lists were shortened.
    pub keys_total: usize,
}

/// What [`repair`] did (or, in a dry run, would do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// The data directory.
    pub dir: PathBuf,
    /// Whether nothing was changed on purpose.
    pub dry_run: bool,
    /// The damage the cut is made at (`None`: the log is intact, nothing to do).
    pub damage: Option<Problem>,
    /// The snapshot's last record.
    pub snapshot_seq: u64,
    /// The last record kept: the database is back to this point in time.
    pub kept_upto: u64,
    /// What was moved into quarantine.
    pub set_aside: Vec<SetAside>,
    /// Problems a cut in the log cannot fix (an index mismatch...), if any.
    pub unfixable: Vec<Problem>,
    /// The segment started again, header first, after the snapshot when no
    /// segment was left there (the log continues in it; not in a dry run).
    pub restarted: Option<PathBuf>,
    /// `verify` after the repair (not in a dry run).
    pub after: Option<VerifyReport>,
    /// How long it took.
    #[serde(serialize_with = "crate::tools::verify::millis")]
    pub duration: Duration,
}

impl RepairReport {
    /// Whether the database now opens and verifies clean (always false in a dry run).
    pub fn is_repaired(&self) -> bool {
        self.after.as_ref().is_some_and(VerifyReport::is_clean)
    }
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(damage) = &self.damage else {
            write!(f, "{}: the log is intact up to record {}; nothing to repair", self.dir.display(), self.kept_upto)?;
            for p in &self.unfixable {
                write!(f, "\n  not fixable by repair: {p}")?;
            }
            return Ok(());
        };
        let (keep, move_) = if self.dry_run { ("would keep", "would move") } else { ("kept", "moved") };
        writeln!(f, "first damage: {damage}")?;
        writeln!(
            f,
            "{keep} every record up to {} (snapshot up to {}, log records {}..={})",
            self.kept_upto,
            self.snapshot_seq,
            self.snapshot_seq + 1,
            self.kept_upto
        )?;
        for s in &self.set_aside {
            write!(f, "{move_} {} bytes ", s.bytes)?;
            if s.whole_segment {
                write!(f, "(the whole segment {})", s.segment.display())?;
            } else {
                write!(f, "from {} at byte offset {}", s.segment.display(), s.offset)?;
            }
            writeln!(f, " to {}", s.quarantine.display())?;
            match (s.first_seq, s.last_seq) {
                (Some(a), Some(b)) => write!(f, "  {} valid record(s), {a}..={b}", s.records)?,
                _ => write!(f, "  no valid record")?,
            }
            writeln!(f, "; {} damaged line(s)", s.damaged_lines)?;
            if !s.keys.is_empty() {
                writeln!(f, "  keys affected: {}", shorten(&s.keys, 20, s.keys_total))?;
            }
            if !s.unverified_keys.is_empty() {
                writeln!(f, "  keys read from damaged lines (unverified): {}", shorten(&s.unverified_keys, 20, 0))?;
            }
        }
        if let Some(path) = &self.restarted {
            writeln!(f, "started {} again with its header: the log continues after the snapshot", path.display())?;
        }
        for p in &self.unfixable {
            writeln!(f, "not fixable by repair: {p}")?;
        }
        match &self.after {
            Some(after) if after.is_clean() => write!(f, "verify after repair: clean"),
            Some(after) => write!(f, "verify after repair:\n{after}"),
            None => write!(f, "dry run: nothing was changed"),
        }
    }
}

fn shorten(items: &[String], n: usize, total: usize) -> String {
    let total = total.max(items.len());
    let shown: Vec<&str> = items.iter().take(n).map(String::as_str).collect();
    if total > shown.len() { format!("{} ... ({total} in all)", shown.join(", ")) } else { shown.join(", ") }
}

/// Repairs the log in `dir` on the real file system; see [`repair_with`].
pub fn repair(dir: &Path, dry_run: bool) -> Result<RepairReport> {
    repair_with(dir, dry_run, &Options::default())
}

/// Cuts the log at its first damage, setting everything after it aside.
///
/// Takes the directory lock ([`Error::Locked`] if a `Db` has it open). With a
/// damaged snapshot it changes nothing and returns [`Error::BadSnapshot`]:
/// the log alone cannot rebuild the data, restore a backup. After a repair
/// the database opens and [`crate::verify_dir`] is clean (unless `unfixable`
/// lists a problem outside the log).
pub fn repair_with(dir: &Path, dry_run: bool, options: &Options) -> Result<RepairReport> {
    let started = Instant::now();
    let vfs = &*options.vfs;
    let lock_path = dir.join(crate::storage::files::LOCK_NAME);
    let opened_before = vfs.exists(&lock_path).map_err(|e| Error::io("checking", &lock_path, e))?;
    let _lock = verify::lock_dir(vfs, dir, !dry_run)?;
    let analysis = verify::analyze(vfs, dir, opened_before, options.observer())?;
    if !analysis.snapshot_ok {
        let problem = analysis.report.problems.first();
        let what = problem.map(|p| format!("{}: {}", p.kind, p.message)).unwrap_or_default();
        return Err(Error::BadSnapshot {
            path: dir.join(crate::storage::snapshot::FILE_NAME),
            reason: format!("{what}; `repair` only cuts the log and cannot rebuild a snapshot, nothing was changed"),
        });
    }
    if let Some(p) = analysis.report.problems.iter().find(|p| p.kind == ProblemKind::MissingSegment) {
        return Err(Error::MissingSegment { path: p.file.clone(), snapshot_seq: analysis.snapshot_seq.0 });
    }
    if analysis.report.problems.iter().any(|p| p.kind == ProblemKind::MissingSnapshot) {
        let first = analysis.live.first().map_or(1, |s| s.first.0);
        return Err(Error::MissingSnapshot { path: dir.join(crate::storage::snapshot::FILE_NAME), first });
    }
    let unfixable: Vec<Problem> =
        analysis.report.problems.iter().filter(|p| !p.kind.is_log_damage()).cloned().collect();
    let mut report = RepairReport {
        dir: dir.to_owned(),
        dry_run,
        damage: None,
        snapshot_seq: analysis.snapshot_seq.0,
        kept_upto: analysis.kept_upto.0,
        set_aside: Vec::new(),
        unfixable,
        restarted: None,
        after: None,
        duration: Duration::ZERO,
    };
    // A deleted continuation segment (nothing to cut): step 4 starts it again.
    let restart = analysis
        .report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::MissingContinuation && p.line.is_none())
        .cloned();
    if analysis.cut.is_none() && analysis.strays.is_empty() && restart.is_none() {
        report.duration = started.elapsed();
        return Ok(report);
    }
    report.damage = analysis
        .cut
        .as_ref()
        .map(|c| c.problem.clone())
        .or_else(|| analysis.report.problems.iter().find(|p| p.kind == ProblemKind::StraySegment).cloned())
        .or(restart);

    // Plan: every stray whole (the log does not run through it), then the
    // tail of the damaged segment (or all of it) and every later one.
    let mut planned: Vec<(Segment, u64, Vec<u8>)> = Vec::new();
    for segment in &analysis.strays {
        let bytes = vfs.read(&segment.path).map_err(|e| Error::io("reading", &segment.path, e))?;
        planned.push((segment.clone(), 0, bytes.to_vec()));
    }
    let from = analysis.cut.as_ref().map_or(analysis.live.len(), |c| c.segment);
    for (i, segment) in analysis.live.iter().enumerate().skip(from) {
        if analysis.strays.contains(segment) {
            continue;
        }
        let offset = analysis.cut.as_ref().filter(|c| c.segment == i).map_or(0, |c| c.offset);
        let bytes = vfs.read(&segment.path).map_err(|e| Error::io("reading", &segment.path, e))?;
        let mut tail = bytes.get(offset as usize..).unwrap_or_default();
        if i + 1 == analysis.live.len() {
            // The open segment's preallocated zeros are no one's data.
            tail = log::torn_bytes(tail);
        }
        planned.push((segment.clone(), offset, tail.to_vec()));
    }
    let mut taken = BTreeSet::new();
    for (segment, offset, tail) in &planned {
        let quarantine = free_name(vfs, dir, segment, *offset, &mut taken)?;
        report.set_aside.push(describe(segment, *offset, tail, quarantine));
    }
    if dry_run {
        report.duration = started.elapsed();
        return Ok(report);
    }

    // 1. Copy the damaged segment's tail into quarantine (synced, dir synced).
    let mut truncate: Option<(&Segment, u64)> = None;
    for ((segment, offset, tail), aside) in planned.iter().zip(report.set_aside.iter_mut()) {
        if *offset > 0 {
            aside.quarantine = log::set_aside(vfs, dir, segment, "quarantine", *offset, tail)?;
            truncate = Some((segment, *offset));
        }
    }
    // 2. Rename the whole segments into quarantine, newest first (a crash
    //    midway leaves a log that ends early, never one with a hole).
    for ((segment, offset, _), aside) in planned.iter().zip(report.set_aside.iter()).rev() {
        if *offset == 0 {
            vfs.rename(&segment.path, &aside.quarantine).map_err(|e| Error::io("renaming", &segment.path, e))?;
        }
    }
    vfs.sync_dir(dir).map_err(|e| Error::io("syncing directory", dir, e))?;
    // 3. Cut the damaged segment: its tail is safe in quarantine.
    if let Some((segment, offset)) = truncate {
        let file = vfs.open_append(&segment.path).map_err(|e| Error::io("opening", &segment.path, e))?;
        file.truncate(offset).map_err(|e| Error::io("truncating", &segment.path, e))?;
        file.sync().map_err(|e| Error::io("syncing", &segment.path, e))?;
    }
    // 4. If nothing after the snapshot is left, start the log where the
    //    snapshot ends, as a save does: without that segment a directory
    //    redru opened reads as one whose newest segment was deleted.
    if analysis.report.snapshot.is_some()
        && log::missing_successor(&log::list_segments(vfs, dir)?, dir, analysis.snapshot_seq).is_some()
    {
        let (created, _, _) = log::create_segment(vfs, dir, analysis.snapshot_seq.next(), None)?;
        report.restarted = Some(created.path);
    }
    report.after = Some(verify::analyze(vfs, dir, opened_before, options.observer())?.report);
    report.duration = started.elapsed();
    Ok(report)
}

/// The quarantine name for bytes of `segment` from `offset`: the segment's
/// name + `.quarantine-<offset>` (scheme: [`log::segment_name`]), with `.1`,
/// `.2`... when taken, exactly as [`log::set_aside`] picks it.
fn free_name(
    vfs: &dyn Vfs,
    dir: &Path,
    segment: &Segment,
    offset: u64,
    taken: &mut BTreeSet<PathBuf>,
) -> Result<PathBuf> {
    let base = format!("{}.quarantine-{offset}", log::segment_name(segment.first));
    let mut path = dir.join(&base);
    let mut n = 1;
    while taken.contains(&path) || vfs.exists(&path).map_err(|e| Error::io("checking", &path, e))? {
        path = dir.join(format!("{base}.{n}"));
        n += 1;
    }
    taken.insert(path.clone());
    Ok(path)
}

/// Reads what can be read of set-aside bytes: valid records, their keys,
/// and the keys of damaged lines whose payload still parses.
fn describe(segment: &Segment, offset: u64, bytes: &[u8], quarantine: PathBuf) -> SetAside {
    let mut aside = SetAside {
        segment: segment.path.clone(),
        offset,
        bytes: bytes.len() as u64,
        quarantine,
        whole_segment: offset == 0,
        records: 0,
        first_seq: None,
        last_seq: None,
        damaged_lines: 0,
        keys: Vec::new(),
        unverified_keys: Vec::new(),
        keys_total: 0,
    };
    let mut keys = BTreeSet::new();
    let mut unverified = BTreeSet::new();
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if bytes.ends_with(b"\n") {
        lines.pop();
    }
    for line in lines {
        match record::decode_line(line) {
            // A header or seal set aside with the records: framing, no data.
            Ok(record::Line::Marker(_)) => {}
            Ok(record::Line::Record(seq, rec)) => {
                aside.records += 1;
                aside.first_seq.get_or_insert(seq.0);
                aside.last_seq = Some(seq.0);
                keys_of(&rec, &mut keys);
            }
            Err(why) => {
                aside.damaged_lines += 1;
                if matches!(why, DecodeError::Checksum { .. })
                    && let Ok((_, rec)) = record::decode_payload(&line[record::PREFIX_LEN..])
                {
                    keys_of(&rec, &mut unverified);
                }
            }
        }
    }
    aside.keys_total = keys.len();
    aside.keys = keys.into_iter().take(MAX_KEYS).collect();
    aside.unverified_keys = unverified.into_iter().take(MAX_KEYS).collect();
    aside
}

fn keys_of(record: &Record, out: &mut BTreeSet<String>) {
    match record {
        Record::Set(k, _) | Record::SetExpiring(k, _, _) | Record::Expire(k, _) | Record::Delete(k) => {
            out.insert(k.clone());
        }
        Record::Batch(ops) => {
            for op in ops {
                match op {
                    BatchOp::Set(k, _) | BatchOp::SetExpiring(k, _, _) | BatchOp::Expire(k, _) | BatchOp::Delete(k) => {
                        out.insert(k.clone())
                    }
                    BatchOp::Clear => out.insert("(all keys)".into()),
                };
            }
        }
        Record::Clear => {
            out.insert("(all keys)".into());
        }
        Record::CreateIndex { field, .. } | Record::DropIndex(field) => {
            out.insert(format!("index {field}"));
        }
    }
}
