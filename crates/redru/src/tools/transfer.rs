//! Export and import of all key/value pairs as plain JSON.
//!
//! Two shapes: one JSON object of all pairs, or JSON lines with one
//! `{"key": ..., "value": ...}` per line. Export writes from a frozen copy
//! (writers are not held); import parses the whole file first and applies it
//! in one step ([`Db::import_pairs`]: a snapshot when large, else one batch),
//! so an invalid file changes nothing. Only JSON lines carry deadlines:
//! `"expires"`, ms since the Unix epoch, on an expiring key's line; the object
//! shape has no room for them and holds values only.

use std::cell::Cell;
use std::fmt;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::state::doc::Doc;
use crate::storage::record::Expiry;

/// The shape of an import file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImportFormat {
    /// JSON lines when every non-blank line is an object with exactly the
    /// members `key` (a string) and `value`; otherwise one JSON object. (A
    /// one-line object `{"key": "k", "value": v}` is read as JSON lines: use
    /// [`ImportFormat::Object`] for a database whose only keys are `key` and `value`.)
    #[default]
    Auto,
    /// One JSON object of all pairs.
    Object,
    /// One `{"key": ..., "value": ...}` object per line; blank lines are skipped.
    Lines,
}

/// How [`Db::import_with`] applies a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The file's shape. Default: detected.
    pub format: ImportFormat,
    /// Whether the file replaces the whole content (atomically, as a new
    /// snapshot) instead of being merged into it. Default: merge.
    pub replace: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: String,
    value: Value,
    /// The key's deadline, ms since the Unix epoch (absent: none).
    #[serde(default)]
    expires: Option<u64>,
}

/// One pair read from an import file, with its deadline (JSON lines only).
type Pair = (String, Value, Option<u64>);

/// An output stream that remembers the first error (for `Display`-less callers).
fn output_error(e: std::io::Error) -> Error {
    Error::io("writing the export to", PathBuf::from("<output>"), e)
}

impl Db {
    /// Writes every pair, sorted by key, to `out`: one JSON object (one
    /// member per line), or with `lines` one `{"key":..,"value":..}` per
    /// line, with `"expires":MS` (ms since the Unix epoch) after the value
    /// for a key that expires. Expired keys are left out; the object shape
    /// holds no deadlines (use `lines` to keep them). Writes from a frozen
    /// copy: writers are not held. Returns the number of pairs.
    ///
    /// # Errors
    /// [`Error::Io`] if writing to `out` fails.
    pub fn export(&self, out: &mut dyn Write, lines: bool) -> Result<usize> {
        let frozen = self.freeze()?;
        let mut w = BufWriter::with_capacity(1 << 16, out);
        let sorted = frozen.map.sorted_expiring(frozen.now);
        let mut buf = Vec::with_capacity(256);
        if !lines {
            w.write_all(if sorted.is_empty() { b"{" } else { b"{\n" }).map_err(output_error)?;
        }
        for (i, (key, value, exp)) in sorted.iter().enumerate() {
            buf.clear();
            // Serializing strings and Values into a Vec cannot fail.
            if lines {
                buf.extend_from_slice(b"{\"key\":");
                let _ = serde_json::to_writer(&mut buf, &***key);
                buf.extend_from_slice(b",\"value\":");
                buf.extend_from_slice(value.as_str().as_bytes());
                if *exp != 0 {
                    buf.extend_from_slice(b",\"expires\":");
                    buf.extend_from_slice(exp.to_string().as_bytes());
                }
                buf.extend_from_slice(b"}\n");
            } else {
                if i > 0 {
                    buf.extend_from_slice(b",\n");
                }
                let _ = serde_json::to_writer(&mut buf, &***key);
                buf.push(b':');
                buf.extend_from_slice(value.as_str().as_bytes());
            }
            w.write_all(&buf).map_err(output_error)?;
        }
        if !lines {
            w.write_all(if sorted.is_empty() { b"}\n" } else { b"\n}\n" }).map_err(output_error)?;
        }
        w.flush().map_err(output_error)?;
        Ok(sorted.len())
    }

    /// Merges the pairs of the file at `path` (either shape, detected) into
    /// the database in one atomic step; see [`Db::import_with`].
    ///
    /// # Errors
    /// As [`Db::import_with`].
    pub fn import(&self, path: &Path) -> Result<usize> {
        self.import_with(path, ImportOptions::default(), &mut |_, _| {})
    }

    /// Reads the whole file at `path`, then applies its pairs in one step,
    /// as [`Db::import_pairs`] (all or nothing: an invalid file, or a pair a
    /// unique index refuses, changes nothing; a replace or a large merge is
    /// written as a new snapshot, not as a log record every open replays). `progress(done, total)` is called with
    /// bytes parsed as parsing goes. Returns the number of pairs in the file
    /// (a key given twice counts twice; the last value wins).
    ///
    /// # Errors
    /// - [`Error::Import`] if the file is not a JSON object of pairs or JSON
    ///   lines of `{"key":..,"value":..}`, or a value cannot be stored: nothing imported.
    /// - [`Error::UniqueViolation`]: nothing imported.
    /// - [`Error::Io`] if the file cannot be read; [`Error::Io`], [`Error::Poisoned`] as [`Db::batch`].
    pub fn import_with(
        &self,
        path: &Path,
        options: ImportOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<usize> {
        self.check_writable()?;
        let vfs = &*self.options().vfs;
        let bytes = vfs.read(path).map_err(|e| Error::io("reading", path, e))?;
        let pairs = parse_import(path, &bytes, options.format, progress)?;
        drop(bytes);
        let pairs =
            pairs.into_iter().map(|(key, value, expires)| (key, Doc::from(value), expires.map(Expiry))).collect();
        self.import_expiring(pairs, options.replace)
    }
}

/// Parses an import file into pairs, or says exactly where it is invalid.
fn parse_import(
    path: &Path,
    bytes: &[u8],
    format: ImportFormat,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Pair>> {
    let total = bytes.len() as u64;
    let format = match format {
        ImportFormat::Auto => {
            let first = bytes.split(|&b| b == b'\n').find(|l| !l.trim_ascii().is_empty());
            match first {
                None => return Err(invalid(path, "the file is empty: expected a JSON object or JSON lines".into())),
                Some(line) if serde_json::from_slice::<Line>(line).is_ok() => ImportFormat::Lines,
                Some(_) => ImportFormat::Object,
            }
        }
        other => other,
    };
    let pairs = if format == ImportFormat::Lines {
        let mut pairs = Vec::new();
        let mut offset = 0u64;
        let mut reported = 0u64;
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if !line.trim_ascii().is_empty() {
                let entry: Line = serde_json::from_slice(line).map_err(|e| {
                    invalid(
                        path,
                        format!(
                            "line {} (byte offset {offset}) is not a {{\"key\": string, \"value\": any}} object: {e}",
                            i + 1
                        ),
                    )
                })?;
                pairs.push((entry.key, entry.value, entry.expires));
            }
            offset += line.len() as u64 + 1;
            if offset - reported >= 1 << 20 {
                reported = offset;
                progress(offset.min(total), total);
            }
        }
        pairs
    } else {
        let read = Rc::new(Cell::new(0u64));
        let reader = Counting { inner: bytes, read: Rc::clone(&read) };
        let mut de = serde_json::Deserializer::from_reader(reader);
        de
            .deserialize_map(PairsVisitor { read, total, progress })
            .and_then(|p| de.end().map(|()| p))
            .map_err(|e| {
                invalid(
                    path,
                    format!("not a JSON object of key/value pairs: {e} (a JSON-lines file needs one {{\"key\":..,\"value\":..}} per line)"),
                )
            })?
    };
    progress(total, total);
    Ok(pairs)
}

fn invalid(path: &Path, why: String) -> Error {
    Error::Import { path: path.to_owned(), reason: why }
}

/// Counts the bytes the JSON parser has consumed, for progress.
struct Counting<'a> {
    inner: &'a [u8],
    read: Rc<Cell<u64>>,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

struct PairsVisitor<'p> {
    read: Rc<Cell<u64>>,
    total: u64,
    progress: &'p mut dyn FnMut(u64, u64),
}

impl<'de> Visitor<'de> for PairsVisitor<'_> {
    type Value = Vec<Pair>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of key/value pairs")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> std::result::Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        let mut reported = 0u64;
        while let Some(pair) = access.next_entry::<String, Value>()? {
            pairs.push((pair.0, pair.1, None));
            let read = self.read.get();
            if read - reported >= 1 << 20 {
                reported = read;
                (self.progress)(read.min(self.total), self.total);
            }
        }
        Ok(pairs)
    }
}
