//! `database.json`: writing a snapshot atomically, loading and verifying one.
//!
//! A snapshot is one JSON document whose last member is the SHA-256 of every
//! byte before it (a fixed 78-byte trailer), so `jq` reads it as is and redru
//! checks it without parsing first. Version 2 adds an `"expires"` member
//! (key -> deadline) before `"data"`; a snapshot with no expiring key is
//! still written as version 1, byte for byte as before expiry existed.
//! Version 3 adds `"continues"`: the first record of the log segment the
//! snapshot's log continues in, which starts with its header, so that
//! emptying that segment is detected. It is written to a temporary file, synced,
//! renamed over `database.json` and the directory synced: a crash leaves the
//! old snapshot or the new one, never a mix. Layout: docs/design.md.

use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::progress::{Meter, Observer, Stage};
use crate::state::doc::Doc;
use crate::state::doc::StrRef;
use crate::state::index::{FieldPath, IndexKind};
use crate::state::json_check;
use crate::state::store::{Key, Map, SHARDS, ShardLists, State};
use crate::storage::files;
use crate::storage::record::Seq;
use crate::storage::vfs::{VFile, Vfs};

mod stream;

pub use stream::{Pending, stream};

/// The snapshot's file name in a data directory.
pub const FILE_NAME: &str = files::SNAPSHOT;
/// The name a snapshot is written under before it is renamed into place.
pub const TMP_NAME: &str = files::SNAPSHOT_TMP;
/// The value of the snapshot's `format` member.
pub const FORMAT: &str = "redru-snapshot";
/// The version that added deadlines (`expires`).
pub const VERSION_EXPIRES: u64 = 2;
/// The newest snapshot format version this build writes and reads (it
/// reads every version from 1): `database.json` names the segment its log
/// continues in (`continues`). A snapshot without that member (a backup)
/// is written as 1, or 2 when a key has a deadline.
pub const VERSION: u64 = 3;
/// The version of a snapshot without deadlines: what builds before
/// expiry wrote and read.
pub const VERSION_PLAIN: u64 = 1;

/// The start of the trailer: `,"sha256":"`.
pub const TRAILER_HEAD: &[u8] = b",\"sha256\":\"";
const TRAILER_TAIL: &[u8] = b"\"}\n";
/// Bytes hashed or parsed between two advances of a progress meter.
const PROGRESS_CHUNK: usize = 1 << 20;
/// `,"sha256":"` + 64 hex digits + `"}\n`.
pub const TRAILER_LEN: usize = TRAILER_HEAD.len() + 64 + TRAILER_TAIL.len();

/// One index definition, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// The field path.
    pub field: String,
    /// Whether values must be unique.
    pub unique: bool,
    /// An ordered index: written as `"ordered":true` only then, so a
    /// snapshot without ordered indexes reads and writes as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ordered: bool,
}

impl IndexDef {
    /// The definition of an index of `kind`.
    pub fn of(field: String, unique: bool, kind: IndexKind) -> IndexDef {
        IndexDef { field, unique, ordered: kind == IndexKind::Ordered }
    }

    /// Hash or ordered.
    pub fn kind(&self) -> IndexKind {
        if self.ordered { IndexKind::Ordered } else { IndexKind::Hash }
    }
}

/// What a snapshot is written from: a point-in-time copy of the data (cheap:
/// the map's shards are shared copy-on-write) and the index definitions.
#[derive(Clone)]
pub struct Frozen {
    /// The data.
    pub map: Map,
    /// Index definitions (their contents are rebuilt on load, never stored).
    pub defs: Vec<IndexDef>,
    /// The last record the copy includes.
    pub seq: Seq,
    /// When it was frozen (ms since the Unix epoch): keys expired by then
    /// are left out of what is written from it, as no read could see them.
    pub now: u64,
    /// The first record of the log segment the snapshot's log continues
    /// in, when that segment starts with a header and is durable by the
    /// time the snapshot is (`database.json`; a backup names none): written
    /// as `continues`, version 3.
    pub continues: Option<Seq>,
}

impl Frozen {
    /// Freezes `state` at `now` (O(shards), not O(keys)).
    pub fn of(state: &State, now: u64) -> Frozen {
        let defs = state.indexes.values().map(|i| IndexDef::of(i.path().to_string(), i.unique(), i.kind())).collect();
        Frozen { map: state.map.clone(), defs, seq: state.seq, now, continues: None }
    }
}

/// What a written or loaded snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The last record the snapshot includes.
    pub seq: Seq,
    /// Number of keys.
    pub keys: usize,
    /// Size of the file.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file's content before the trailer.
    pub sha256: String,
    /// The segment the log continues in (`continues`, version 3): it must
    /// exist and start with its header.
    pub continues: Option<Seq>,
}

/// Buffers writes to a file and hashes every byte that goes through it.
struct HashingWriter {
    file: Box<dyn VFile>,
    path: PathBuf,
    buf: Vec<u8>,
    hasher: Sha256,
    written: u64,
}

impl HashingWriter {
    const CHUNK: usize = 1 << 20;

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= Self::CHUNK { self.flush() } else { Ok(()) }
    }

    /// Bytes written between two syncs while the file is being written.
    const SYNC_EVERY: u64 = 8 << 20;

    fn flush(&mut self) -> Result<()> {
        self.hasher.update(&self.buf);
        self.file.append(&self.buf).map_err(|e| Error::io("writing", &self.path, e))?;
        let before = self.written;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        if before / Self::SYNC_EVERY != self.written / Self::SYNC_EVERY {
            // Write back as we go (RocksDB's `bytes_per_sync`): a snapshot's
            // worth of dirty pages flushed at once stalls every other writer
            // of the disk, the log's appends included.
            self.file.sync().map_err(|e| Error::io("syncing", &self.path, e))?;
        }
        Ok(())
    }
}

/// Writes `state` as a snapshot file at `path` (which must not exist) and syncs it.
///
/// Does not rename: [`write_atomic`] does the whole dance for `database.json`,
/// backups reuse this for their own names.
///
/// If writing fails after the file was created, the partial file is removed
/// (best effort): on a full disk it would hold the space the log needs next.
pub fn write_file(vfs: &dyn Vfs, path: &Path, frozen: &Frozen, observer: Option<&Observer>) -> Result<SnapshotInfo> {
    let file = vfs.create_new(path).map_err(|e| Error::io("creating", path, e))?;
    write_into(file, path, frozen, observer).inspect_err(|_| discard(vfs, path))
}

/// Removes a temporary file a failed write leaves, ignoring errors: the
/// operation already failed with a better one, and a file left behind is
/// removed by the next open.
pub fn discard(vfs: &dyn Vfs, path: &Path) {
    let _ = vfs.remove(path);
}

fn write_into(file: Box<dyn VFile>, path: &Path, frozen: &Frozen, observer: Option<&Observer>) -> Result<SnapshotInfo> {
    let mut w = HashingWriter {
        file,
        path: path.to_owned(),
        buf: Vec::with_capacity(HashingWriter::CHUNK + 4096),
        hasher: Sha256::new(),
        written: 0,
    };
    let entries = frozen.map.sorted_expiring(frozen.now);
    let meter = Meter::start(observer, Stage::WriteSnapshot, entries.len() as u64);
    let mut expires = Vec::new();
    for (key, _, exp) in entries.iter().filter(|(_, _, exp)| *exp != 0) {
        expires.extend_from_slice(if expires.is_empty() { b"{" } else { b"," });
        let _ = serde_json::to_writer(&mut expires, &***key);
        expires.push(b':');
        expires.extend_from_slice(itoa::Buffer::new().format(*exp).as_bytes());
    }
    let version = match (frozen.continues, expires.is_empty()) {
        (Some(_), _) => VERSION,
        (None, true) => VERSION_PLAIN,
        (None, false) => VERSION_EXPIRES,
    };
    let continues = frozen.continues.map(|c| format!("\"continues\":{},", c.0)).unwrap_or_default();
    let head = format!(
        "{{\"format\":\"{FORMAT}\",\"version\":{version},\"seq\":{},\"keys\":{},{continues}\"indexes\":{},",
        frozen.seq.0,
        entries.len(),
        serde_json::to_string(&frozen.defs).unwrap_or_else(|_| "[]".into())
    );
    w.put(head.as_bytes())?;
    if !expires.is_empty() {
        w.put(b"\"expires\":")?;
        w.put(&expires)?;
        w.put(b"},")?;
    }
    w.put(b"\"data\":{")?;
    // One entry per line (still one JSON document): loading splits the lines
    // between threads, and `grep`/`diff` work on snapshots.
    w.put(b"\n")?;
    let mut entry = Vec::with_capacity(256);
    for (i, (key, value, _)) in entries.iter().enumerate() {
        entry.clear();
        if i > 0 {
            entry.extend_from_slice(b",\n");
        }
        let _ = serde_json::to_writer(&mut entry, &***key);
        entry.push(b':');
        entry.extend_from_slice(value.as_str().as_bytes());
        w.put(&entry)?;
        meter.advance(1);
    }
    w.put(if entries.is_empty() { b"}" } else { b"\n}" })?;
    w.flush()?;
    let sha256 = hex(&w.hasher.clone().finalize());
    let mut trailer = Vec::with_capacity(TRAILER_LEN);
    trailer.extend_from_slice(TRAILER_HEAD);
    trailer.extend_from_slice(sha256.as_bytes());
    trailer.extend_from_slice(TRAILER_TAIL);
    w.put(&trailer)?;
    w.flush()?;
    w.file.sync().map_err(|e| Error::io("syncing", path, e))?;
    meter.finish();
    Ok(SnapshotInfo { seq: frozen.seq, keys: entries.len(), bytes: w.written, sha256, continues: frozen.continues })
}

/// Replaces `dir/database.json` with a snapshot of `state`: temp file, fsync,
/// rename, fsync of the directory. After it returns the new snapshot is durable.
pub fn write_atomic(vfs: &dyn Vfs, dir: &Path, frozen: &Frozen, observer: Option<&Observer>) -> Result<SnapshotInfo> {
    let tmp = dir.join(TMP_NAME);
    let path = dir.join(FILE_NAME);
    if vfs.exists(&tmp).map_err(|e| Error::io("checking", &tmp, e))? {
        vfs.remove(&tmp).map_err(|e| Error::io("removing", &tmp, e))?;
    }
    let info = write_file(vfs, &tmp, frozen, observer)?;
    vfs.rename(&tmp, &path).map_err(|e| {
        discard(vfs, &tmp);
        Error::io("renaming into place", &path, e)
    })?;
    vfs.sync_dir(dir).map_err(|e| Error::io("syncing directory", dir, e))?;
    Ok(info)
}

/// Checks the trailer digest of snapshot bytes; returns the hex digest.
pub fn check_digest(path: &Path, bytes: &[u8], observer: Option<&Observer>) -> Result<String> {
    let bad = |reason: String| Error::BadSnapshot { path: path.to_owned(), reason };
    if bytes.len() < TRAILER_LEN + 2 {
        return Err(bad(format!("{} bytes is too short for a snapshot (truncated?)", bytes.len())));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let (head, rest) = trailer.split_at(TRAILER_HEAD.len());
    let (digest, tail) = rest.split_at(64);
    if head != TRAILER_HEAD || tail != TRAILER_TAIL {
        return Err(bad(format!(
            "no `\"sha256\"` trailer in the last {TRAILER_LEN} bytes (byte offset {}): truncated or not a redru snapshot",
            body.len()
        )));
    }
    let meter = Meter::start(observer, Stage::CheckSnapshot, body.len() as u64);
    let mut hasher = Sha256::new();
    for chunk in body.chunks(PROGRESS_CHUNK) {
        hasher.update(chunk);
        meter.advance(chunk.len() as u64);
    }
    meter.finish();
    let actual = hex(&hasher.finalize());
    if digest != actual.as_bytes() {
        return Err(bad(format!(
            "SHA-256 mismatch: the file says {}, its first {} bytes hash to {actual}",
            String::from_utf8_lossy(digest),
            body.len()
        )));
    }
    Ok(actual)
}

/// Reads and verifies the snapshot at `path`, and builds its indexes.
pub fn load(vfs: &dyn Vfs, path: &Path, observer: Option<&Observer>) -> Result<(State, SnapshotInfo)> {
    let bytes = vfs.read(path).map_err(|e| Error::io("reading", path, e))?;
    parse(path, &bytes, observer)
}

/// Verifies and parses snapshot bytes (`path` names them in errors).
pub fn parse(path: &Path, bytes: &[u8], observer: Option<&Observer>) -> Result<(State, SnapshotInfo)> {
    let sha256 = check_digest(path, bytes, observer)?;
    let bad = |reason: String| Error::BadSnapshot { path: path.to_owned(), reason };
    // The layout redru writes parses on every core; anything else (a file
    // edited by hand, say) goes through one serde pass, which also gives the
    // precise error when something is wrong.
    let meter = Meter::start(observer, Stage::LoadSnapshot, bytes.len() as u64);
    let doc = match parse_lines(&bytes[..bytes.len() - TRAILER_LEN], &meter) {
        Some(doc) => doc,
        None => serde_json::from_slice(bytes).map_err(|e| bad(format!("digest matches but JSON is invalid: {e}")))?,
    };
    finish(path, doc, sha256, bytes.len() as u64, meter)
}

/// Checks the members of a parsed snapshot whose digest matched, and builds
/// its state and indexes: the checks after the JSON grammar, shared by
/// [`parse`] and the streaming read ([`stream`](mod@stream)).
fn finish(path: &Path, doc: Document, sha256: String, len: u64, meter: Meter) -> Result<(State, SnapshotInfo)> {
    let bad = |reason: String| Error::BadSnapshot { path: path.to_owned(), reason };
    if doc.format != FORMAT {
        return Err(bad(format!("`format` is {:?}, expected {FORMAT:?}", doc.format)));
    }
    if !(VERSION_PLAIN..=VERSION).contains(&doc.version) {
        return Err(bad(format!(
            "format version {} is not supported by this build (reads {VERSION_PLAIN} to {VERSION})",
            doc.version
        )));
    }
    if doc.keys != doc.data.0.len() {
        return Err(bad(format!("`keys` says {} but `data` holds {}", doc.keys, doc.data.0.len())));
    }
    let mut state = State::default();
    state.map = doc.data.0;
    match doc.continues {
        Some(_) if doc.version < VERSION => {
            return Err(bad(format!("`continues` in a version {} snapshot (it came with {VERSION})", doc.version)));
        }
        None if doc.version == VERSION => {
            return Err(bad(format!("a version {VERSION} snapshot without `continues`")));
        }
        // The log after a snapshot at S continues with record S + 1, and
        // the segment holding it starts there: a save starts it at S + 1
        // before writing the snapshot, an import right after (at S + 1, its
        // snapshot being at S).
        Some(c) if c != doc.seq.saturating_add(1) => {
            return Err(bad(format!(
                "`continues` names the segment starting at record {c}, but the log after `seq` {} continues at {}",
                doc.seq,
                doc.seq.saturating_add(1)
            )));
        }
        _ => {}
    }
    if let Some(expires) = doc.expires {
        if doc.version < VERSION_EXPIRES {
            return Err(bad(format!(
                "`expires` in a version {} snapshot (deadlines came with {VERSION_EXPIRES})",
                doc.version
            )));
        }
        for (key, exp) in expires {
            if exp == 0 {
                return Err(bad(format!("`expires` gives {key:?} the deadline 0 (at least 1 ms since the epoch)")));
            }
            if !state.map.set_deadline(&key, exp) {
                return Err(bad(format!("`expires` names {key:?}, which `data` does not hold")));
            }
        }
        state.deadlines_changed();
    }
    state.seq = Seq(doc.seq);
    // The file keeps no per-key seq: every key reports the snapshot's.
    state.map.set_floor(state.seq);
    #[allow(unused_mut)]
    let mut defs = doc.indexes;
    #[cfg(feature = "__internal_whitebox")]
    if crate::state::planted::on(crate::state::planted::DROP_SNAPSHOT_HEADER) {
        state.seq = Seq(0);
        defs.clear();
    }
    let mut paths: Vec<(FieldPath, bool, IndexKind)> = Vec::new();
    for def in defs {
        let path = FieldPath::parse(&def.field).map_err(|e| bad(format!("index definition: {e}")))?;
        // redru writes each path as it parses it; another spelling (spaces
        // around it, say) would load as a different field than the file names.
        if path.as_str() != def.field {
            return Err(bad(format!("index definition {:?} is not written as redru writes `{path}`", def.field)));
        }
        if paths.iter().any(|(p, _, _)| p == &path) {
            return Err(bad(format!("index on `{path}` defined twice")));
        }
        paths.push((path, def.unique, def.kind()));
    }
    // Index contents are rebuilt, one index per thread.
    state.build_indexes(paths);
    meter.finish();
    let continues = doc.continues.map(Seq);
    let info = SnapshotInfo { seq: state.seq, keys: state.map.len(), bytes: len, sha256, continues };
    Ok((state, info))
}

/// Parses the one-entry-per-line layout [`write_file`] produces, splitting
/// the entries between threads. `content` is the file without its trailer.
/// `None` when the bytes are laid out differently (or are invalid).
fn parse_lines(content: &[u8], meter: &Meter) -> Option<Document> {
    let nl = content.iter().position(|&b| b == b'\n')?;
    let head = parse_head(&content[..nl])?;
    let body = content.get(nl + 1..content.len().checked_sub(1)?)?;
    if content.last() != Some(&b'}') || !(body.is_empty() || body.ends_with(b"\n")) {
        return None;
    }
    let threads = threads_for(head.keys);
    let parsed = parse_chunks(body, threads, true, meter)?;
    let map = Map::from_parts(parsed, threads)?;
    Some(Document { data: DataMap(map), ..head })
}

/// The members of a snapshot's first line, which ends with `"data":{` in
/// the layout [`write_file`] produces (`data` left empty). `None` when the
/// line is anything else.
fn parse_head(line: &[u8]) -> Option<Document> {
    let head = line.strip_suffix(b"\"data\":{")?;
    let mut head_doc = head.to_vec();
    head_doc.extend_from_slice(b"\"data\":{},\"sha256\":\"\"}");
    serde_json::from_slice(&head_doc).ok()
}

/// Threads that parse the entries of a snapshot of `keys` keys: one for a
/// small one, where starting threads costs more than it saves.
fn threads_for(keys: usize) -> usize {
    if keys < 20_000 { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) }
}

/// Parses whole entry lines on `threads` threads, cut at line boundaries;
/// with `ends`, the last line is the snapshot's last entry (no comma).
/// Returns the parts in order, for [`Map::from_parts`].
fn parse_chunks(body: &[u8], threads: usize, ends: bool, meter: &Meter) -> Option<Vec<Entries>> {
    let mut cuts = vec![0];
    for i in 1..threads {
        let at = body.len() * i / threads;
        let next = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |p| at + p + 1);
        if next > *cuts.last()? {
            cuts.push(next);
        }
    }
    cuts.push(body.len());
    let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &body[w[0]..w[1]]).filter(|c| !c.is_empty()).collect();
    let last = chunks.len().saturating_sub(1);
    let parsed: Vec<Option<Entries>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| s.spawn(move || parse_entries(chunk, ends && i == last, meter)))
            .collect();
        handles.into_iter().map(|h| h.join().ok().flatten()).collect()
    });
    // A thread that panicked, or a chunk that did not parse, leaves a None.
    let parsed = parsed.into_iter().collect::<Option<Vec<Entries>>>()?;
    (parsed.len() == chunks.len()).then_some(parsed)
}

/// Parsed entries of one chunk, split by shard, in file order within each.
type Entries = ShardLists;

/// Parses lines `"key":value,`; the file's very last entry has no comma.
fn parse_entries(chunk: &[u8], last_chunk: bool, meter: &Meter) -> Option<Entries> {
    // Counted in bytes, handed to the meter about every `PROGRESS_CHUNK`.
    let mut uncounted = 0;
    let per_shard = chunk.len() / 100 / SHARDS + 1;
    let mut out: Entries = (0..SHARDS).map(|_| Vec::with_capacity(per_shard)).collect();
    // Line ends found with memchr, not a byte-by-byte `split`.
    let mut start = 0;
    let mut lines = memchr::memchr_iter(b'\n', chunk)
        .chain(std::iter::once(chunk.len()))
        .map(|end| {
            let line = &chunk[start..end];
            start = end + 1;
            line
        })
        .filter(|l| !l.is_empty())
        .peekable();
    while let Some(line) = lines.next() {
        let final_entry = last_chunk && lines.peek().is_none();
        let line = if final_entry { line } else { line.strip_suffix(b",")? };
        let end = string_end(line)?;
        if line.get(end) != Some(&b':') {
            return None;
        }
        // Borrowed unless the key has escapes: one allocation per key, its Arc.
        let key = match plain_string(&line[1..end - 1]) {
            Some(key) => std::borrow::Cow::Borrowed(key),
            None => serde_json::from_slice::<StrRef>(&line[..end]).ok()?.0,
        };
        // Checked, not built: the value stays the text it is in the file.
        // The same grammar as serde_json's `RawValue`, checked without its
        // visitor machinery (`json_check`: 15 % of an open's samples went to
        // serde_json here); what it does not take goes to serde_json's pass.
        let value = json_check::checked(&line[end + 1..])?;
        let shard = Map::shard_of(&key);
        out[shard].push((Key::from(&*key), Doc::from_json_check(value).ok()?, 0));
        uncounted += line.len() + 1;
        if uncounted >= PROGRESS_CHUNK {
            meter.advance(uncounted as u64);
            uncounted = 0;
        }
    }
    meter.advance(uncounted as u64);
    Some(out)
}

/// The contents of a JSON string (between its quotes) as the string they
/// stand for, when that is the bytes themselves: no escape, no control
/// character (invalid in JSON), valid UTF-8. Anything else is `None` and
/// goes through serde_json, which decodes or refuses it. Parsing every key
/// with serde_json was ~5 % of a snapshot open's instructions.
fn plain_string(contents: &[u8]) -> Option<&str> {
    if contents.iter().any(|&b| b < 0x20 || b == b'\\') {
        return None;
    }
    std::str::from_utf8(contents).ok()
}

/// The end (exclusive) of the JSON string at the start of `bytes`.
fn string_end(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[derive(Deserialize)]
struct Document {
    format: String,
    version: u64,
    seq: u64,
    keys: usize,
    /// Version 3: the first record of the segment the log continues in.
    #[serde(default)]
    continues: Option<u64>,
    indexes: Vec<IndexDef>,
    /// Version 2: key -> deadline (ms since the epoch) of every expiring key.
    #[serde(default)]
    expires: Option<std::collections::BTreeMap<String, u64>>,
    data: DataMap,
    /// Required, read from the trailer instead (checked before parsing).
    #[serde(rename = "sha256")]
    _sha256: String,
}

/// Deserializes the `data` object straight into the sharded map.
struct DataMap(Map);

impl<'de> Deserialize<'de> for DataMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DataMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of keys to JSON values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> std::result::Result<DataMap, A::Error> {
                let mut map = Map::default();
                if let Some(n) = access.size_hint() {
                    map.reserve(n);
                }
                while let Some((key, value)) = access.next_entry::<StrRef<'de>, &'de RawValue>()? {
                    let doc = Doc::from_raw(value).map_err(serde::de::Error::custom)?;
                    map.insert(Key::from(&*key.0), doc, Seq(0));
                }
                Ok(DataMap(map))
            }
        }
        d.deserialize_map(V)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::Record;
    use serde_json::json;

    fn sample() -> State {
        let mut s = State::default();
        s.apply(Seq(1), &Record::Set("b".into(), crate::Doc::from(json!({"name": "Bob"}))));
        s.apply(Seq(2), &Record::Set("a".into(), crate::Doc::from(json!([1, "x", null]))));
        s.apply(Seq(3), &Record::CreateIndex { field: "name".into(), unique: true, kind: IndexKind::Hash });
        s.apply(Seq(4), &Record::CreateIndex { field: "$".into(), unique: false, kind: IndexKind::Ordered });
        s
    }

    #[test]
    fn write_then_parse_roundtrips() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let info = write_atomic(&crate::storage::vfs::StdFs, dir.path(), &Frozen::of(&sample(), 0), None)?;
        let bytes = std::fs::read(dir.path().join(FILE_NAME))?;
        assert_eq!(info.bytes, bytes.len() as u64);
        // It is plain JSON: any JSON reader takes it.
        let doc: serde_json::Value = serde_json::from_slice(&bytes)?;
        assert_eq!(doc["data"]["b"]["name"], json!("Bob"));
        assert_eq!(doc["seq"], json!(4));
        // `ordered` is written only for an ordered index.
        assert_eq!(
            doc["indexes"],
            json!([{"field": "$", "unique": false, "ordered": true}, {"field": "name", "unique": true}])
        );
        assert_eq!(doc["sha256"], json!(info.sha256));
        let (state, loaded) = parse(Path::new("x"), &bytes, None)?;
        assert_eq!(loaded, info);
        assert_eq!(state.map.len(), 2);
        let infos = state.index_infos();
        assert_eq!((infos[0].kind, infos[0].entries), (IndexKind::Ordered, 2));
        assert_eq!((infos[1].kind, infos[1].entries), (IndexKind::Hash, 1));
        assert!(!dir.path().join(TMP_NAME).exists());
        Ok(())
    }

    /// Both parsers (the per-line one on several threads, and one serde pass)
    /// read a large snapshot to the same state, whatever its layout.
    #[test]
    fn line_parser_and_serde_agree() -> Result<(), Box<dyn std::error::Error>> {
        let mut state = State::default();
        for i in 0..25_000u64 {
            let key = format!("k{i}\\\"\n{}", if i % 7 == 0 { "é" } else { "" });
            let value = json!({"i": i, "s": format!("v\"{i}\"\n"), "a": [1.5, null, {"x": "}"}]});
            state.apply(Seq(i + 1), &Record::Set(key, crate::Doc::from(value)));
        }
        let dir = tempfile::tempdir()?;
        let info = write_atomic(&crate::storage::vfs::StdFs, dir.path(), &Frozen::of(&state, 0), None)?;
        let bytes = std::fs::read(dir.path().join(FILE_NAME))?;
        let content = &bytes[..bytes.len() - TRAILER_LEN];
        let lines = parse_lines(content, &Meter::start(None, Stage::LoadSnapshot, 0))
            .ok_or("the line parser refused its own layout")?;
        let serde: Document = serde_json::from_slice(&bytes)?;
        assert_eq!(lines.data.0.len(), 25_000);
        assert_eq!(lines.data.0.sorted(0), serde.data.0.sorted(0));
        let (loaded, loaded_info) = parse(Path::new("x"), &bytes, None)?;
        assert_eq!(loaded_info, info);
        assert_eq!(loaded.map.sorted(0), state.map.sorted(0));
        // A layout it does not know (two entries on a line) goes through serde.
        let mut other = content.to_vec();
        let second = other.iter().position(|&b| b == b'\n').map(|p| p + 1).unwrap_or(0);
        let second_end = second + other[second..].iter().position(|&b| b == b'\n').unwrap_or(0);
        other[second_end] = b' ';
        assert!(parse_lines(&other, &Meter::start(None, Stage::LoadSnapshot, 0)).is_none());
        // A false `keys` claim is refused, not trusted.
        let mut lying = content.to_vec();
        let at = lying.windows(12).position(|w| w == b"\"keys\":25000").ok_or("no keys member")?;
        lying.splice(at..at + 12, b"\"keys\":99999".iter().copied());
        let mut with_trailer = lying.clone();
        let digest = hex(&Sha256::digest(&lying));
        with_trailer.extend_from_slice(format!(",\"sha256\":\"{digest}\"}}\n").as_bytes());
        assert!(matches!(parse(Path::new("x"), &with_trailer, None), Err(Error::BadSnapshot { .. })));
        Ok(())
    }

    /// Version 3 names the segment the log continues in: read back as
    /// written, and refused anywhere but right after `seq` or in another
    /// version (the digest fixed each time, so only the member is judged).
    #[test]
    fn continues_is_version_3_and_names_the_record_after_seq() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut frozen = Frozen::of(&sample(), 0);
        frozen.continues = Some(Seq(5));
        let info = write_atomic(&crate::storage::vfs::StdFs, dir.path(), &frozen, None)?;
        assert_eq!(info.continues, Some(Seq(5)));
        let bytes = std::fs::read(dir.path().join(FILE_NAME))?;
        assert!(
            bytes.starts_with(br#"{"format":"redru-snapshot","version":3,"seq":4,"keys":2,"continues":5,"indexes""#)
        );
        assert_eq!(parse(Path::new("x"), &bytes, None)?.1, info);
        let body = String::from_utf8(bytes[..bytes.len() - TRAILER_LEN].to_vec())?;
        let with_digest = |text: String| {
            let digest = hex(&Sha256::digest(text.as_bytes()));
            format!("{text},\"sha256\":\"{digest}\"}}\n").into_bytes()
        };
        for (what, text) in [
            ("not after seq", body.replacen("\"continues\":5", "\"continues\":6", 1)),
            ("in version 1", body.replacen("\"version\":3", "\"version\":1", 1)),
            ("in version 2", body.replacen("\"version\":3", "\"version\":2", 1)),
            ("missing in version 3", body.replacen("\"continues\":5,", "", 1)),
            ("version 4", body.replacen("\"version\":3", "\"version\":4", 1)),
        ] {
            let refused = parse(Path::new("x"), &with_digest(text), None);
            assert!(matches!(refused.map(|(_, info)| info), Err(Error::BadSnapshot { .. })), "{what}");
        }
        // A backup (no continuation) is still version 1, byte for byte.
        write_atomic(&crate::storage::vfs::StdFs, dir.path(), &Frozen::of(&sample(), 0), None)?;
        let plain = std::fs::read(dir.path().join(FILE_NAME))?;
        assert!(plain.starts_with(br#"{"format":"redru-snapshot","version":1,"seq":4,"keys":2,"indexes""#));
        Ok(())
    }

    #[test]
    fn only_plain_keys_skip_serde_json() {
        assert_eq!(plain_string(b"user:1 \xc3\xa9"), Some("user:1 é"));
        assert_eq!(plain_string(b""), Some(""));
        // An escape is decoded by serde_json; a control character and broken
        // UTF-8 are refused by it.
        for left in [&b"a\\\"b"[..], b"a\\u0041", b"tab\there", b"\x01", b"\xff\xfe", b"\xc3"] {
            assert_eq!(plain_string(left), None, "{left:?}");
        }
    }

    #[test]
    fn every_damage_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        write_atomic(&crate::storage::vfs::StdFs, dir.path(), &Frozen::of(&sample(), 0), None)?;
        let bytes = std::fs::read(dir.path().join(FILE_NAME))?;
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x04;
            assert!(matches!(parse(Path::new("x"), &damaged, None), Err(Error::BadSnapshot { .. })), "flip at {i}");
        }
        for len in 0..bytes.len() {
            assert!(
                matches!(parse(Path::new("x"), &bytes[..len], None), Err(Error::BadSnapshot { .. })),
                "cut at {len}"
            );
        }
        Ok(())
    }
}
