//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The log segments in `dir`, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    out.retain(|p| p.extension().is_some_and(|e| e == "wal"));
    out.sort();
    out
}

/// The files in `dir` whose name contains `part`.
pub fn files_containing(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    out.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(part)));
    out.sort();
    out
}

/// Byte offsets where each line of `bytes` starts.
pub fn line_starts(bytes: &[u8]) -> Vec<usize> {
    std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect()
}

/// Every key and value of `db`, sorted, as plain values.
pub fn dump(db: &redru::Db) -> Vec<(String, serde_json::Value)> {
    db.scan_prefix("").into_iter().map(|(k, v)| (k, v.to_value())).collect()
}

/// Every file in `dir` with its bytes, sorted by name: to show that a tool
/// changed nothing (or exactly what it changed).
pub fn dir_contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A segment's data: its bytes up to the first zero byte where a line
/// would start (the open segment's preallocated zeros follow its data).
pub fn log_data(bytes: &[u8]) -> &[u8] {
    let end = line_starts(bytes).into_iter().find(|&at| bytes.get(at).is_none_or(|&b| b == 0)).unwrap_or(bytes.len());
    &bytes[..end]
}

/// The data of the segment at `path` (see [`log_data`]).
pub fn read_segment(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path).map(|bytes| log_data(&bytes).to_vec())
}

/// The bytes of `path`'s record lines: without its header and seal (the
/// chained format's markers), which carry no record.
pub fn record_bytes(path: &Path) -> u64 {
    let bytes = read_segment(path).unwrap_or_default();
    bytes
        .split_inclusive(|&b| b == b'\n')
        .filter(|line| !redru::internal::record::is_marker(line))
        .map(|line| line.len() as u64)
        .sum()
}
