//! Reading a snapshot file once, front to back, a piece at a time: how a
//! restore loads a snapshot without holding the file in memory beside the
//! state it builds (a cluster node installing a 58 MB snapshot kept all of
//! it mapped until the state was built).
//!
//! Invariant: nothing is handed back unless every byte before the trailer
//! hashed to the digest the trailer holds. The state is built as the pieces
//! arrive and returned only after the digest matched. A file that is not in
//! the layout [`write_file`](super::write_file) produces, or is damaged, or
//! does not match its digest, gives `None`: the caller then reads it whole
//! ([`parse`](super::parse)), which refuses it with the precise error.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{DataMap, Document, Entries, SnapshotInfo, TRAILER_HEAD, TRAILER_LEN, TRAILER_TAIL};
use crate::error::{Error, Result};
use crate::progress::{Meter, Observer, Stage};
use crate::state::store::{Map, SHARDS, ShardWrite, State};
use crate::storage::record::Seq;
use crate::storage::vfs::Vfs;

/// Bytes read from the file at a time: large enough that a piece holds
/// many entries for the parse threads, small beside a large snapshot.
const PIECE: usize = 4 << 20;

/// A snapshot read in full whose digest matched, not yet checked member by
/// member ([`Pending::finish`] does that and builds the indexes).
pub struct Pending<'a> {
    doc: Document,
    /// The digest the trailer holds (and the body hashes to).
    sha256: String,
    /// The SHA-256 of the whole file, trailer included (a backup's
    /// `.sha256` file holds it).
    file_sha256: String,
    len: u64,
    meter: Meter<'a>,
}

impl Pending<'_> {
    /// The file's size in bytes.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Lowercase hex SHA-256 of the whole file, trailer included.
    pub fn file_sha256(&self) -> &str {
        &self.file_sha256
    }

    /// Checks the snapshot's members (format, version, `keys`, `continues`,
    /// `expires`, index definitions) as [`parse`](super::parse) does, and
    /// builds the indexes.
    ///
    /// # Errors
    /// [`Error::BadSnapshot`] naming `path` and what is wrong.
    pub fn finish(self, path: &Path) -> Result<(State, SnapshotInfo)> {
        super::finish(path, self.doc, self.sha256, self.len, self.meter)
    }
}

/// Reads the snapshot at `path` in pieces of 4 MiB, hashing and
/// parsing each as it arrives (module docs). `Ok(None)` when the file is
/// not a snapshot in redru's layout whose digest matches: read it whole
/// with [`parse`](super::parse) for the reason.
///
/// # Errors
/// [`Error::Io`] if the file cannot be opened or read.
pub fn stream<'a>(vfs: &dyn Vfs, path: &Path, observer: Option<&'a Observer>) -> Result<Option<Pending<'a>>> {
    stream_in_pieces(vfs, path, observer, PIECE)
}

/// [`stream`], reading `piece` bytes at a time (tests cut pieces anywhere).
fn stream_in_pieces<'a>(
    vfs: &dyn Vfs,
    path: &Path,
    observer: Option<&'a Observer>,
    piece: usize,
) -> Result<Option<Pending<'a>>> {
    let (file, len) = vfs.open_read(path).map_err(|e| Error::io("reading", path, e))?;
    let mut input = Input { file, buf: Vec::with_capacity(piece), piece, eof: false, path, len: 0 };
    let meter = Meter::start(observer, Stage::LoadSnapshot, len);
    let Some((doc, sha256, file_sha256)) = read_all(&mut input, len, &meter)? else { return Ok(None) };
    Ok(Some(Pending { doc, sha256, file_sha256, len: input.len, meter }))
}

/// The file being read and the bytes read but not yet parsed.
struct Input<'p> {
    file: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// Bytes read at a time: [`PIECE`].
    piece: usize,
    eof: bool,
    path: &'p Path,
    /// Bytes read so far.
    len: u64,
}

impl Input<'_> {
    /// Appends up to `piece` more bytes to `buf`; false once the file ended.
    fn more(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let n = (&mut self.file)
            .take(self.piece as u64)
            .read_to_end(&mut self.buf)
            .map_err(|e| Error::io("reading", self.path, e))?;
        self.eof = n < self.piece;
        self.len += n as u64;
        Ok(n > 0)
    }
}

/// The document, the body's digest and the whole file's, or `None` (see
/// [`stream`]).
/// `size` is the file's size when opened (it bounds what `keys` may reserve).
fn read_all(input: &mut Input, size: u64, meter: &Meter) -> Result<Option<(Document, String, String)>> {
    let mut hasher = Sha256::new();
    // The first line: the members before `data` (`expires` can make it long).
    let mut searched = 0;
    let nl = loop {
        if let Some(p) = memchr::memchr(b'\n', &input.buf[searched..]) {
            break searched + p;
        }
        searched = input.buf.len();
        if !input.more()? {
            return Ok(None);
        }
    };
    let Some(head) = super::parse_head(&input.buf[..nl]) else { return Ok(None) };
    hasher.update(&input.buf[..=nl]);
    meter.advance(nl as u64 + 1);
    input.buf.drain(..=nl);
    let threads = super::threads_for(head.keys);
    // The entries go into the map piece by piece (never all of them in
    // lists first: 40 bytes a key beside the map being built), its key
    // orders deferred: the first listing sorts them, so a load sorts no
    // keys (issue 18; `Map::defer_orders`). Room for the keys the head claims, but
    // no more than the file could hold (a crafted count must not reserve
    // gigabytes): an entry line takes at least 5 bytes (`"":0,` and `\n`).
    let mut map = Map::default();
    map.defer_orders();
    map.reserve(head.keys.min(usize::try_from(size / 5).unwrap_or(usize::MAX)));
    let mut writes: Vec<Vec<ShardWrite>> = (0..SHARDS).map(|_| Vec::new()).collect();
    let mut any = false;
    // Entry lines until the line that closes `data` (it starts with `}`).
    // The last complete line in the buffer is held back until the next
    // piece shows what follows it: the snapshot's last entry has no comma,
    // and must be parsed with the line that closes `data`.
    loop {
        let complete = memchr::memrchr(b'\n', &input.buf).map_or(0, |p| p + 1);
        let closing = if input.buf.first() == Some(&b'}') {
            Some(0)
        } else {
            memchr::memmem::find(&input.buf[..complete], b"\n}").map(|p| p + 1)
        };
        if let Some(at) = closing {
            if at == 0 && any {
                // A held-back line always comes first: `}` first means
                // there was none, so no entry came before.
                return Ok(None);
            }
            let Some(entries) = parse_piece(&input.buf[..at], threads, true, &mut hasher, meter) else {
                return Ok(None);
            };
            if !insert(&mut map, entries, &mut writes, threads) {
                return Ok(None);
            }
            input.buf.drain(..at);
            break;
        }
        let held = memchr::memrchr(b'\n', &input.buf[..complete.saturating_sub(1)]).map_or(0, |p| p + 1);
        if held > 0 {
            let Some(entries) = parse_piece(&input.buf[..held], threads, false, &mut hasher, meter) else {
                return Ok(None);
            };
            if !insert(&mut map, entries, &mut writes, threads) {
                return Ok(None);
            }
            any = true;
            input.buf.drain(..held);
        }
        if !input.more()? {
            return Ok(None);
        }
    }
    // The rest must be `}` and the trailer, then the end of the file.
    while input.buf.len() <= 1 + TRAILER_LEN && input.more()? {}
    let tail = std::mem::take(&mut input.buf);
    if tail.len() != 1 + TRAILER_LEN || !tail[1..].starts_with(TRAILER_HEAD) || !tail.ends_with(TRAILER_TAIL) {
        return Ok(None);
    }
    hasher.update(b"}");
    let sha256 = super::hex(&hasher.clone().finalize());
    let claimed = &tail[1 + TRAILER_HEAD.len()..1 + TRAILER_HEAD.len() + 64];
    if claimed != sha256.as_bytes() {
        return Ok(None);
    }
    hasher.update(&tail[1..]);
    let file_sha256 = super::hex(&hasher.finalize());
    Ok(Some((Document { data: DataMap(map), ..head }, sha256, file_sha256)))
}

/// Puts one piece's entries into `map` on `threads` threads, in file order
/// within each shard (a later entry of a key replaces an earlier one, as
/// [`Map::from_parts`] does); `writes` is the reused queue. False if a
/// thread panicked.
fn insert(map: &mut Map, entries: Vec<Entries>, writes: &mut [Vec<ShardWrite>], threads: usize) -> bool {
    for chunk in entries {
        for (queue, list) in writes.iter_mut().zip(chunk) {
            queue.extend(list.into_iter().map(|(key, doc, exp)| ShardWrite::Put(key, doc, Seq(0), exp)));
        }
    }
    map.apply_writes(writes, threads).is_some()
}

/// Parses whole entry lines on `threads` threads while this one hashes them.
fn parse_piece(lines: &[u8], threads: usize, ends: bool, hasher: &mut Sha256, meter: &Meter) -> Option<Vec<Entries>> {
    if lines.is_empty() {
        return Some(Vec::new());
    }
    std::thread::scope(|s| {
        let parse = s.spawn(|| super::parse_chunks(lines, threads, ends, meter));
        hasher.update(lines);
        parse.join().ok().flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::doc::Doc;
    use crate::state::index::IndexKind;
    use crate::storage::record::{Record, Seq};
    use crate::storage::snapshot::{Frozen, parse, write_file};
    use crate::storage::vfs::StdFs;
    use serde_json::json;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// `keys` keys (tricky ones among them), a hash and an ordered index,
    /// deadlines on some keys when `expiring`.
    fn state(keys: u64, expiring: bool) -> State {
        let mut s = State::default();
        for i in 0..keys {
            let key = match i % 5 {
                0 => format!("k{i}\\\"\n"),
                1 => format!("é{i}"),
                _ => format!("user:{i:07}"),
            };
            let value = json!({"i": i, "s": format!("v\"{i}\"\n}}"), "a": [1.5, null, {"x": "}"}]});
            s.apply(Seq(i + 1), &Record::Set(key.clone(), Doc::from(value)));
            if expiring && i % 3 == 0 {
                s.apply(Seq(i + 1), &Record::Expire(key, Some(crate::state::change::Expiry(1 << 60))));
            }
        }
        s.apply(Seq(keys + 1), &Record::CreateIndex { field: "i".into(), unique: true, kind: IndexKind::Hash });
        s.apply(Seq(keys + 2), &Record::CreateIndex { field: "s".into(), unique: false, kind: IndexKind::Ordered });
        s
    }

    fn write(dir: &Path, name: &str, frozen: &Frozen) -> std::result::Result<Vec<u8>, Box<dyn std::error::Error>> {
        write_file(&StdFs, &dir.join(name), frozen, None)?;
        Ok(std::fs::read(dir.join(name))?)
    }

    /// Streamed in pieces of every size from 1 byte to more than the file,
    /// a snapshot loads to what `parse` loads from the whole bytes.
    #[test]
    fn every_piece_size_loads_what_parse_loads() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut continued = Frozen::of(&state(300, true), 0);
        continued.continues = Some(Seq(continued.seq.0 + 1));
        let cases = [
            ("empty", Frozen::of(&State::default(), 0)),
            ("one", Frozen::of(&state(1, false), 0)),
            ("v1", Frozen::of(&state(300, false), 0)),
            ("v2", Frozen::of(&state(300, true), 0)),
            ("v3", continued),
        ];
        for (name, frozen) in cases {
            let bytes = write(dir.path(), name, &frozen)?;
            let path = dir.path().join(name);
            let (want, want_info) = parse(&path, &bytes, None)?;
            for piece in [1, 2, 3, 7, 64, 100, 1000, 4096, bytes.len(), bytes.len() + 1, PIECE] {
                let pending = stream_in_pieces(&StdFs, &path, None, piece)?.ok_or(format!("{name}: refused"))?;
                assert_eq!(pending.file_len(), bytes.len() as u64);
                assert_eq!(pending.file_sha256(), super::super::hex(&Sha256::digest(&bytes)));
                let (got, info) = pending.finish(&path)?;
                assert_eq!(info, want_info, "{name} in pieces of {piece}");
                assert_eq!(got.map.sorted_expiring(0), want.map.sorted_expiring(0), "{name} in pieces of {piece}");
                assert_eq!(got.index_infos(), want.index_infos(), "{name} in pieces of {piece}");
                assert_eq!(got.seq, want.seq);
            }
        }
        Ok(())
    }

    /// On several threads (25,000 keys, over 20,000) and in pieces that cut
    /// lines anywhere.
    #[test]
    fn a_large_snapshot_loads_on_every_core_in_small_pieces() -> TestResult {
        let dir = tempfile::tempdir()?;
        let bytes = write(dir.path(), "big", &Frozen::of(&state(25_000, true), 0))?;
        let path = dir.path().join("big");
        let (want, want_info) = parse(&path, &bytes, None)?;
        for piece in [4093, 65_536, 1 << 20] {
            let (got, info) = stream_in_pieces(&StdFs, &path, None, piece)?.ok_or("refused")?.finish(&path)?;
            assert_eq!(info, want_info);
            assert_eq!(got.map.sorted_expiring(0), want.map.sorted_expiring(0));
        }
        Ok(())
    }

    /// No damaged file is ever handed back: a changed byte anywhere, a cut
    /// anywhere, or a byte added at the end gives `None`, in any piece size.
    #[test]
    fn no_damage_is_handed_back() -> TestResult {
        let dir = tempfile::tempdir()?;
        let bytes = write(dir.path(), "good", &Frozen::of(&state(12, true), 0))?;
        let path = dir.path().join("bad");
        let refused = |damaged: &[u8], piece: usize| -> std::result::Result<bool, Box<dyn std::error::Error>> {
            std::fs::write(&path, damaged)?;
            Ok(stream_in_pieces(&StdFs, &path, None, piece)?.is_none())
        };
        for piece in [5, 4096] {
            for i in 0..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[i] ^= 0x04;
                assert!(refused(&damaged, piece)?, "flip at {i}, pieces of {piece}");
            }
            for len in 0..bytes.len() {
                assert!(refused(&bytes[..len], piece)?, "cut at {len}, pieces of {piece}");
            }
            for extra in [&b"\n"[..], b" ", b"x", b"}"] {
                assert!(refused(&[&bytes[..], extra].concat(), piece)?, "{extra:?} added, pieces of {piece}");
            }
        }
        Ok(())
    }

    /// A file whose digest matches but which is not in redru's layout, or
    /// not JSON, is not loaded by the stream: `parse` judges it (and gives
    /// the precise error or, for valid JSON laid out differently, the state).
    #[test]
    fn other_layouts_and_crafted_files_are_left_to_parse() -> TestResult {
        let dir = tempfile::tempdir()?;
        let bytes = write(dir.path(), "good", &Frozen::of(&state(3, false), 0))?;
        let body = String::from_utf8(bytes[..bytes.len() - TRAILER_LEN].to_vec())?;
        let with_digest = |text: &str| {
            let digest = super::super::hex(&Sha256::digest(text.as_bytes()));
            format!("{text},\"sha256\":\"{digest}\"}}\n").into_bytes()
        };
        let path = dir.path().join("crafted");
        let first_entry_end = body.find(",\n").ok_or("no entry")?;
        for (what, text, valid) in [
            ("all on one line", body.replace('\n', ""), true),
            ("spaces around the colon", body.replacen("\":{", "\" : {", 1), true),
            ("the last entry with a comma", body.replacen("\n}", ",\n}", 1), false),
            (
                "an entry without its comma",
                format!("{}{}", &body[..first_entry_end], &body[first_entry_end + 1..]),
                false,
            ),
            ("a value that is not JSON", body.replacen(":{\"a\"", ":{a\"", 1), false),
            ("a key that is not a string", body.replacen("\n\"", "\nk\"", 1), false),
            ("a value split over two lines", body.replacen(",\"s\":", ",\n\"s\":", 1), true),
            ("a line after the closing brace", body.replacen("\n}", "\n}\n", 1), true),
        ] {
            assert_ne!(text, body, "{what}: the edit applies");
            let crafted = with_digest(&text);
            std::fs::write(&path, &crafted)?;
            for piece in [3, 4096] {
                assert!(stream_in_pieces(&StdFs, &path, None, piece)?.is_none(), "{what}: streamed");
            }
            assert_eq!(parse(&path, &crafted, None).is_ok(), valid, "{what}: parse");
        }
        Ok(())
    }
}
