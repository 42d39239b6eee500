//! Guards script mode (stdin not a terminal): every shell command run from a
//! pipe, its stdout checked line by line; errors name their line and make
//! the exit code 2 after the whole script ran (or stop it with `--bail`); a
//! write's result line is printed only once the write is durable.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::util::{TestResult, assert_lines, redru};
use predicates::prelude::*;
use redru::{Db, json};

#[test]
fn a_script_of_every_command() -> TestResult {
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let d = dir.path();
    let copy = work.path().join("copy.json");
    let dump = work.path().join("dump.jsonl");
    let script = format!(
        r#"# every shell command, in order
set user:1 {{"name": "Alice", "age": 30}}
set user:2 {{"name": "Bob", "age": 25}}
set "my key" hello   world
set name "Alice"
set n 42

set doc {{
  "tags": ["a", "b"],
  "text": "multi-line }} with brackets in a string"
}}
get user:1
get "my key"
get name
get doc
GET n
exists n
exists nope
get nope
delete n
del nope
list
list user:
list *e*
count
count user:*
index name
index email unique
indexes
find name Alice
find age >= 26
find name = Bob and exists age
explain name = Bob
drop-index name
indexes
stats
save
sync
backup {copy}
backups
export --lines
export {dump} --lines
clear
clear --yes
count
import {dump}
count
set name "Changed"
restore --file {copy}
get name
prune-backups 10
help get
bogus command
set broken {{"a": }}
exit
set after exit
"#,
        copy = copy.display(),
        dump = dump.display()
    );
    let assert = redru(d).arg("shell").write_stdin(script).assert().code(2);
    let out = String::from_utf8(assert.get_output().stdout.clone())?;
    let err = String::from_utf8(assert.get_output().stderr.clone())?;
    let stats_line = out.lines().find(|l| l.starts_with("{\"compactions\"")).unwrap_or("").to_owned();
    let export_at = out.find("{\"key\":\"doc\"").unwrap_or(0);
    assert!(export_at > 0, "{out}");
    let expected = [
        "OK",
        "OK",
        "OK",
        "OK",
        "OK",
        "OK",
        r#"{"age":30,"name":"Alice"}"#,
        r#""hello   world""#,
        r#""Alice""#,
        r#"{"tags":["a","b"],"text":"multi-line } with brackets in a string"}"#,
        "42",
        "true",
        "false",
        // get nope: stderr only
        "OK",
        // del nope: stderr only
        "doc",
        "my key",
        "name",
        "user:1",
        "user:2",
        "user:1",
        "user:2",
        "my key",
        "name",
        "user:1",
        "user:2",
        "5",
        "2",
        "OK",
        "OK",
        "email\tunique\t0\t0",
        "name\tplain\t2\t2",
        r#"user:1	{"age":30,"name":"Alice"}"#,
        r#"user:1	{"age":30,"name":"Alice"}"#,
        r#"user:2	{"age":25,"name":"Bob"}"#,
        "index lookup on `name` (1 candidate keys), then filter; 1 match",
        "OK",
        "email\tunique\t0\t0",
        &stats_line,
        "saved 5 keys (* bytes) in * ms; * log segment(s) removed",
        "OK",
        "wrote * (up to record *, 5 keys, * bytes, verified)",
        // backups: none in DIR/backups yet (the copy went elsewhere)
        r#"{"key":"doc","value":{"tags":["a","b"],"text":"multi-line } with brackets in a string"}}"#,
        r#"{"key":"my key","value":"hello   world"}"#,
        r#"{"key":"name","value":"Alice"}"#,
        r#"{"key":"user:1","value":{"age":30,"name":"Alice"}}"#,
        r#"{"key":"user:2","value":{"age":25,"name":"Bob"}}"#,
        "exported 5 pairs to *dump.jsonl",
        // clear without --yes: an error
        "cleared 5 keys",
        "0",
        "imported 5 pairs from *dump.jsonl",
        "5",
        "OK",
        "restored *copy.json (up to record *): 5 keys in * ms",
        "the state it replaced is backed up as backup-*.json (restore it to undo)",
        r#""Alice""#,
        "0 backup(s) removed",
        "get <key>",
        "  print the value of a key",
        "",
        "Says `not found` when the key does not exist (exit code 1 as a one-shot",
        "command).",
        "",
        "Example:",
        "  get user:1",
    ];
    assert_lines("stdout", &out, &expected);
    let stats: serde_json::Value = serde_json::from_str(&stats_line)?;
    assert_eq!(stats["keys"], json!(5));
    assert_eq!(stats["indexes"][0]["field"], json!("email"));

    assert_lines(
        "stderr",
        &err,
        &[
            "not found: nope",
            "not found: nope",
            "error: line 43: `clear` removes every key; where it cannot ask, write `clear --yes`",
            "error: line 53: unknown command `bogus`; type `help` for the list",
            "error: line 54: invalid JSON object: expected value at line 1 column 7 (usage: set <key> <value>)",
        ],
    );
    // `exit` ended the script: the line after it never ran.
    let db = Db::open(d)?;
    assert!(db.get("after").is_none());
    assert_eq!(db.get_value("name").as_ref(), Some(&json!("Alice")));
    assert_eq!(db.len(), 5);
    Ok(())
}

#[test]
fn the_whole_script_runs_unless_bail() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let script = "set a 1\nnonsense\nset b 2\n";
    redru(d)
        .write_stdin(script)
        .assert()
        .code(2)
        .stdout("OK\nOK\n")
        .stderr("error: line 2: unknown command `nonsense`; type `help` for the list\n");
    let db = Db::open(d)?;
    assert!(db.contains("b"));
    db.clear()?;
    drop(db);
    redru(d).arg("--bail").write_stdin(script).assert().code(2).stdout("OK\n");
    let db = Db::open(d)?;
    assert!(db.contains("a") && !db.contains("b"), "--bail stops at the failing line");
    Ok(())
}

#[test]
fn a_clean_script_exits_0_with_no_prompt_banner_or_colour() -> TestResult {
    let dir = tempfile::tempdir()?;
    redru(dir.path())
        .write_stdin("set a {\"x\": [1, 2]}\nget a\n\n# comment\nlist\n")
        .assert()
        .success()
        .stdout("OK\n{\"x\":[1,2]}\na\n")
        .stderr("");
    // The issue's example, word for word.
    redru(dir.path()).write_stdin("set a 1\nget a\n").assert().success().stdout("OK\n1\n");
    Ok(())
}

#[test]
fn an_unclosed_value_at_the_end_of_input_is_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    redru(dir.path())
        .write_stdin("set a 1\nset b {\"x\":\n  [1,\n")
        .assert()
        .code(2)
        .stdout("OK\n")
        .stderr(predicate::str::contains("line 2: unexpected end of input"));
    Ok(())
}

/// The result line of a write is printed after the write is durable: once
/// `OK` is read, killing the process (SIGKILL, no clean close) loses nothing.
#[test]
fn a_write_is_durable_before_its_result_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rounds: usize = std::env::var("REDRU_TEST_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1) * 5;
    for round in 0..rounds {
        let mut child = Command::new(crate::util::BIN)
            .arg("--dir")
            .arg(dir.path())
            .env("REDRU_HISTORY", "")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        writeln!(stdin, "set round{round} {{\"n\": {round}}}")?;
        stdin.flush()?;
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        assert_eq!(line, "OK\n");
        child.kill()?;
        child.wait()?;
        let db = Db::open(dir.path())?;
        assert_eq!(db.get_value(&format!("round{round}")).as_ref(), Some(&json!({"n": round})));
    }
    Ok(())
}
