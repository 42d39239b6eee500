//! Helpers for the command-line tests: the real binary with a clean
//! environment, and line matching with `*` wildcards.
#![allow(dead_code)]

use std::path::Path;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The built `redru` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_redru");

/// `redru --dir DIR` with no inherited REDRU_*/NO_COLOR variables and no history file.
pub fn redru(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(BIN);
    cmd.env_remove("REDRU_DIR").env_remove("NO_COLOR").env("REDRU_HISTORY", "").arg("--dir").arg(dir);
    cmd
}

/// Whether `line` matches `pattern`, where `*` stands for any run of characters.
pub fn wildcard(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) || line.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Asserts that `text`'s lines match `expected` one by one (`*` wildcards), naming the first difference.
pub fn assert_lines(what: &str, text: &str, expected: &[&str]) {
    let lines: Vec<&str> = text.lines().collect();
    for (i, (got, want)) in lines.iter().zip(expected).enumerate() {
        assert!(wildcard(want, got), "{what} line {}: expected {want:?}, got {got:?}\nwhole output:\n{text}", i + 1);
    }
    assert_eq!(lines.len(), expected.len(), "{what}: number of lines\nwhole output:\n{text}");
}

#[test]
fn wildcard_matches() {
    assert!(wildcard("abc", "abc"));
    assert!(!wildcard("abc", "abcd"));
    assert!(wildcard("a*c", "abbbc"));
    assert!(wildcard("*", ""));
    assert!(wildcard("wrote * (up to *)", "wrote /x/y (up to record 3)"));
    assert!(!wildcard("a*b*c", "acb"));
    assert!(!wildcard("ab*ba", "aba"));
}
