//! A one-shot read of one key from a closed data directory, without loading
//! the rest: what `redru get KEY` runs, where a full open would build the
//! whole map (and every index) to read one value.
//!
//! It answers only when a full open would change no file and refuse nothing
//! it can see: the directory lock free, no leftover of an interrupted save or
//! backup, a snapshot in the one-entry-per-line layout redru writes whose
//! SHA-256 matches, entries in strictly increasing key order (so no key is
//! listed twice) and as many as the header says, and a log that continues
//! it with no torn tail and no covered segment. The value returned is
//! checked as a full load checks it; other entries' values are not parsed
//! (the digest is what vouches for bytes redru wrote). Anything else is
//! [`GetOnce::NeedsOpen`]: open the database, which recovers or reports the
//! problem with its file and offset.

use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::options::Options;
use crate::state::change::BatchOp;
use crate::state::doc::Doc;
use crate::state::index::FieldPath;
use crate::storage::files::{BACKUP_DIR, LOCK_NAME, is_backup_temp};
use crate::storage::log;
use crate::storage::record::{Record, Seq};
use crate::storage::snapshot::{self, IndexDef};
use crate::storage::vfs::LockOutcome;

/// What [`get_once`] found.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum GetOnce {
    /// The key's value, as an open database would return it.
    Found(Doc),
    /// The key is absent.
    Absent,
    /// The files need more than a read (recovery, or a layout this path does
    /// not read), or reading failed: open the database to get the answer or
    /// the precise error.
    NeedsOpen,
}

/// Reads `key` from the database in `dir` without opening it (module docs).
/// Holds the directory lock while it reads; a directory held by another
/// process is [`GetOnce::NeedsOpen`].
pub fn get_once(dir: &Path, key: &str, options: &Options) -> GetOnce {
    read(dir, key, options).unwrap_or(GetOnce::NeedsOpen)
}

fn read(dir: &Path, key: &str, options: &Options) -> Option<GetOnce> {
    let vfs = &*options.vfs;
    let lock_path = dir.join(LOCK_NAME);
    // A directory never opened (no lock file) is left to open's first-run checks.
    if !vfs.exists(&lock_path).ok()? {
        return None;
    }
    let LockOutcome::Acquired(_guard) = vfs.try_lock(&lock_path).ok()? else { return None };
    if vfs.exists(&dir.join(snapshot::TMP_NAME)).ok()? {
        return None;
    }
    let backups = dir.join(BACKUP_DIR);
    if vfs.exists(&backups).ok()? && vfs.list(&backups).ok()?.iter().any(|n| is_backup_temp(n)) {
        return None;
    }
    let snap_path = dir.join(snapshot::FILE_NAME);
    if !vfs.exists(&snap_path).ok()? {
        return None;
    }
    let bytes = vfs.read(&snap_path).ok()?;
    let (seq, continues, mut value) = find(&snap_path, &bytes, key)?;
    drop(bytes);
    let segments = log::list_segments(vfs, dir).ok()?;
    if segments.is_empty() {
        return None;
    }
    if let Some(continues) = continues {
        log::check_continuation(vfs, dir, &segments, &snap_path, seq, continues, true).ok()?;
    }
    let mut plain = true;
    let scan = log::read_log(vfs, dir, seq, None, |_, record| plain &= follow(&mut value, key, record)).ok()?;
    if !plain {
        return None;
    }
    let last = scan.last.max(seq);
    let leftovers = !scan.covered.is_empty() || !scan.torn_seals.is_empty() || !scan.temps.is_empty();
    if scan.torn.is_some() || leftovers || scan.log_next != Some(last.next()) {
        return None;
    }
    Some(value.map_or(GetOnce::Absent, GetOnce::Found))
}

/// Applies what `record` does to `key`'s value; false when it gives a key a
/// deadline (the answer then depends on the clock: left to an open).
fn follow(value: &mut Option<Doc>, key: &str, record: Record) -> bool {
    match record {
        Record::SetExpiring(..) | Record::Expire(..) => return false,
        Record::Set(k, doc) if k == key => *value = Some(doc),
        Record::Delete(k) if k == key => *value = None,
        Record::Clear => *value = None,
        Record::Batch(ops) => {
            for op in ops {
                match op {
                    BatchOp::SetExpiring(..) | BatchOp::Expire(..) => return false,
                    BatchOp::Set(k, doc) if k == key => *value = Some(doc),
                    BatchOp::Delete(k) if k == key => *value = None,
                    BatchOp::Clear => *value = None,
                    _ => {}
                }
            }
        }
        _ => {}
    }
    true
}

/// The snapshot's first line, parsed as a document without its data.
#[derive(Deserialize)]
struct Head {
    format: String,
    version: u64,
    seq: u64,
    keys: usize,
    /// Version 3: the segment the log continues in.
    continues: Option<u64>,
    /// Version 2 or 3: present when a key has a deadline.
    expires: Option<serde::de::IgnoredAny>,
    indexes: Vec<IndexDef>,
    #[allow(dead_code)]
    data: serde::de::IgnoredAny,
    #[allow(dead_code)]
    sha256: String,
}

/// The snapshot's seq and `key`'s value in it, if the bytes pass every
/// check of the module docs; None otherwise (a full load decides).
fn find(path: &Path, bytes: &[u8], key: &str) -> Option<(Seq, Option<Seq>, Option<Doc>)> {
    // The digest (half the time, one core) runs beside the scan.
    let check = || snapshot::check_digest(path, bytes, None).is_ok();
    let (digest, found) = std::thread::scope(|s| match std::thread::Builder::new().spawn_scoped(s, check) {
        Ok(digest) => {
            let found = scan(bytes, key);
            (digest.join().unwrap_or(false), found)
        }
        Err(_) => (check(), scan(bytes, key)),
    });
    if digest { found } else { None }
}

fn scan(bytes: &[u8], key: &str) -> Option<(Seq, Option<Seq>, Option<Doc>)> {
    let content = &bytes[..bytes.len().checked_sub(snapshot::TRAILER_LEN)?];
    let nl = memchr::memchr(b'\n', content)?;
    let head = content[..nl].strip_suffix(b"\"data\":{")?;
    let mut head_doc = head.to_vec();
    head_doc.extend_from_slice(b"\"data\":{},\"sha256\":\"\"}");
    let head: Head = serde_json::from_slice(&head_doc).ok()?;
    // Only the layout without deadlines: with them, which keys are live
    // depends on the clock, and an open answers that.
    // Version 3 is version 1 plus `continues` (checked as a load does).
    let continues = head.continues.filter(|&c| c == head.seq.saturating_add(1));
    let plain = match head.version {
        snapshot::VERSION_PLAIN => head.continues.is_none(),
        snapshot::VERSION => continues.is_some(),
        _ => false,
    };
    if head.format != snapshot::FORMAT || !plain || head.expires.is_some() {
        return None;
    }
    let mut fields = Vec::new();
    for def in &head.indexes {
        let field = FieldPath::parse(&def.field).ok()?;
        if fields.contains(&field) {
            return None;
        }
        fields.push(field);
    }
    let body = content.get(nl + 1..content.len().checked_sub(1)?)?;
    if content.last() != Some(&b'}') || !(body.is_empty() || body.ends_with(b"\n")) {
        return None;
    }
    std::str::from_utf8(body).ok()?;
    let (count, raw) = scan_entries(body, key)?;
    if count != head.keys {
        return None;
    }
    let value = match raw {
        None => None,
        Some(text) => {
            let raw: &RawValue = serde_json::from_slice(text).ok()?;
            Some(Doc::from_raw(raw).ok()?)
        }
    };
    Some((Seq(head.seq), continues.map(Seq), value))
}

/// Walks the entry lines `"key":value,` (the last without its comma):
/// checks each line's shape and that keys strictly increase, counts them,
/// and returns `key`'s value text. Values are skipped, not parsed.
fn scan_entries<'a>(body: &'a [u8], key: &str) -> Option<(usize, Option<&'a [u8]>)> {
    let mut count = 0;
    let mut found = None;
    let mut previous: Option<(&[u8], bool)> = None;
    let mut at = 0;
    while at < body.len() {
        let end = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |p| at + p);
        let line = &body[at..end];
        at = end + 1;
        if line.is_empty() {
            continue;
        }
        let last = body[at.min(body.len())..].iter().all(|&b| b == b'\n');
        let line = if last { line } else { line.strip_suffix(b",")? };
        let (key_end, escaped) = string_end(line)?;
        if line.get(key_end) != Some(&b':') {
            return None;
        }
        let raw_key = &line[1..key_end - 1];
        if let Some((before, before_escaped)) = previous
            && !increasing(before, before_escaped, raw_key, escaped)?
        {
            return None;
        }
        if same_key(raw_key, escaped, key)? {
            found = Some(&line[key_end + 1..]);
        }
        previous = Some((raw_key, escaped));
        count += 1;
    }
    Some((count, found))
}

/// Whether the JSON string contents `a` < `b` as decoded strings (the
/// snapshot's order); None if either does not decode.
fn increasing(a: &[u8], a_escaped: bool, b: &[u8], b_escaped: bool) -> Option<bool> {
    if !a_escaped && !b_escaped {
        // Without escapes the bytes are the string's UTF-8.
        return Some(a < b);
    }
    Some(decode(a)? < decode(b)?)
}

fn same_key(raw: &[u8], escaped: bool, key: &str) -> Option<bool> {
    if !escaped {
        return Some(raw == key.as_bytes());
    }
    Some(decode(raw)? == key)
}

/// The string a JSON string's contents (without quotes) stand for.
fn decode(contents: &[u8]) -> Option<String> {
    let mut quoted = Vec::with_capacity(contents.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(contents);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

/// The end (exclusive) of the JSON string at the start of `bytes`, and
/// whether it holds an escape.
fn string_end(bytes: &[u8]) -> Option<(usize, bool)> {
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut escaped = false;
    let mut any = false;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            _ if escaped => escaped = false,
            b'\\' => {
                escaped = true;
                any = true;
            }
            b'"' => return Some((i + 1, any)),
            // A raw control character is not JSON: a full load decides.
            0..=0x1f => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::snapshot::{Frozen, write_atomic};
    use crate::storage::vfs::StdFs;
    use crate::{Db, json};
    use sha2::Digest;

    #[test]
    fn finds_what_an_open_finds_and_refuses_what_it_cannot_vouch_for() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = Db::open(dir.path())?;
        for i in 0..50 {
            db.set(format!("k{i:02}"), json!({"i": i}))?;
        }
        db.set("a\"b\\c\né", json!("odd"))?;
        db.save()?;
        db.set("k01", json!("after"))?;
        db.delete("k02")?;
        db.batch(crate::Batch::new().set("new", json!(1)).delete("k03"))?;
        db.close()?;
        let options = Options::default();
        let get = |key: &str| get_once(dir.path(), key, &options);
        let db = Db::open(dir.path())?;
        let expected: Vec<(String, Option<String>)> = ["k00", "k01", "k02", "k03", "new", "a\"b\\c\né", "zz"]
            .iter()
            .map(|k| (k.to_string(), db.get(k).map(|d| d.as_str().to_owned())))
            .collect();
        // Held by this process: the lock is not free.
        assert_eq!(get("k00"), GetOnce::NeedsOpen);
        db.close()?;
        for (key, want) in expected {
            let got = match get(&key) {
                GetOnce::Found(doc) => Some(doc.as_str().to_owned()),
                GetOnce::Absent => None,
                GetOnce::NeedsOpen => return Err(format!("{key}: needs open").into()),
            };
            assert_eq!(got, want, "{key}");
        }
        // A torn tail is open's to cut.
        let segment = log::list_segments(&StdFs, dir.path())?.pop().ok_or("no segment")?;
        let clean = std::fs::read(&segment.path)?;
        std::fs::write(&segment.path, [clean.as_slice(), b"0badc0de {\"se"].concat())?;
        assert_eq!(get("k00"), GetOnce::NeedsOpen);
        std::fs::write(&segment.path, &clean)?;
        // A damaged snapshot, and a well-formed one out of order, go to open.
        let snap = dir.path().join(snapshot::FILE_NAME);
        let good = std::fs::read(&snap)?;
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        std::fs::write(&snap, &flipped)?;
        assert_eq!(get("k00"), GetOnce::NeedsOpen);
        let text = String::from_utf8(good.clone())?;
        let body_end = text.len() - snapshot::TRAILER_LEN;
        let swapped = text[..body_end].replacen("\"k00\":", "\"k99\":", 1);
        let digest = snapshot::hex(&sha2::Sha256::digest(swapped.as_bytes()));
        std::fs::write(&snap, format!("{swapped},\"sha256\":\"{digest}\"}}\n"))?;
        assert_eq!(get("k10"), GetOnce::NeedsOpen);
        std::fs::write(&snap, &good)?;
        assert!(matches!(get("k00"), GetOnce::Found(_)));
        Ok(())
    }

    #[test]
    fn an_empty_snapshot_has_no_keys() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        Db::open(dir.path())?.close()?;
        write_atomic(&StdFs, dir.path(), &Frozen::of(&crate::state::store::State::default(), 0), None)?;
        assert_eq!(get_once(dir.path(), "x", &Options::default()), GetOnce::Absent);
        Ok(())
    }
}
