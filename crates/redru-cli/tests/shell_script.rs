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
        r#"{"name":"Alice","age":30}"#,
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
        r#"user:1	{"name":"Alice","age":30}"#,
        r#"user:1	{"name":"Alice","age":30}"#,
        r#"user:2	{"name":"Bob","age":25}"#,
        "index lookup on `name` (1 candidate key), then filter; 1 match",
        "OK",
        "email\tunique\t0\t0",
        &stats_line,
        "saved 5 keys (* bytes) in * ms; * log segment* removed",
        "OK",
        "wrote * (up to record *, 5 keys, * bytes, verified)",
        // backups: none in DIR/backups yet (the copy went elsewhere)
        r#"{"key":"doc","value":{"tags":["a","b"],"text":"multi-line } with brackets in a string"}}"#,
        r#"{"key":"my key","value":"hello   world"}"#,
        r#"{"key":"name","value":"Alice"}"#,
        r#"{"key":"user:1","value":{"name":"Alice","age":30}}"#,
        r#"{"key":"user:2","value":{"name":"Bob","age":25}}"#,
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
        "0 backups removed",
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
            "line 19: not found: nope",
            "line 21: not found: nope",
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
    // The shell's options may also follow `shell`.
    let other = tempfile::tempdir()?;
    redru(other.path()).args(["shell", "--bail"]).write_stdin(script).assert().code(2).stdout("OK\n");
    let db = Db::open(other.path())?;
    assert!(db.contains("a") && !db.contains("b"));
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
    redru(dir.path()).write_stdin("set a 1\nset b {\"x\":\n  [1,\n").assert().code(2).stdout("OK\n").stderr(
        "error: line 2: unfinished value: the JSON value that opens it is never closed (the input ends first)\n",
    );
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

/// Issue 12, point 1: only a value that opens with `{`, `[` or `"` may go on
/// to the next line, and only while it is still valid JSON; an unclosed value
/// is an error for its own command and the script goes on.
#[test]
fn a_stray_quote_or_bracket_swallows_no_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // The issue's example, word for word.
    redru(d).write_stdin("set height 5\" tall\nset b 2\nget b\n").assert().success().stdout("OK\nOK\n2\n").stderr("");
    redru(d).write_stdin("list [a\nget height\n").assert().success().stdout("\"5\\\" tall\"\n");
    redru(d).write_stdin("set k {\"a\": 1\nset c 3\nget c\n").assert().code(2).stdout("OK\n3\n").stderr(
        "error: line 1: unfinished value: the JSON value that opens it is never closed \
             (line 2 starts the next command)\n",
    );
    redru(d).arg("--bail").write_stdin("set k [1,\nset d 4\n").assert().code(2).stdout("");
    let db = Db::open(d)?;
    assert!(!db.contains("k") && !db.contains("d"));
    Ok(())
}

/// Issue 12, point 3: a line that is not UTF-8 is an error for that line only,
/// and "not found" names its line like every other message.
#[test]
fn invalid_utf8_costs_its_own_line_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    redru(dir.path())
        .write_stdin(&b"set a 1\n\xff\xfe bad\nget a\nget nope\n"[..])
        .assert()
        .code(2)
        .stdout("OK\n1\n")
        .stderr("error: line 2: not valid UTF-8 (at byte 0 of the line)\nline 4: not found: nope\n");
    Ok(())
}

/// Issue 12, point 5: values keep their digits; what the library could not
/// read back is refused with its reason, not stored as text.
#[test]
fn values_take_the_librarys_raw_text_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let script = "set big 12345678901234567890123\nget big\nset o {\n  \"n\": 1.50e2,\n  \"m\": [1, 2]\n}\nget o\n\
                  set inf 1e400\nset r {\"$serde_json::private::RawValue\": \"1\"}\n";
    let assert = redru(d)
        .write_stdin(script)
        .assert()
        .code(2)
        .stdout("OK\n12345678901234567890123\nOK\n{\"n\":1.50e2,\"m\":[1,2]}\n");
    let err = String::from_utf8(assert.get_output().stderr.clone())?;
    assert_lines(
        "stderr",
        &err,
        &["error: line 8: * cannot be read back: number out of range*", "error: line 9: *$serde_json::private::*"],
    );
    let db = Db::open(d)?;
    assert_eq!(db.get("big").map(|v| v.as_str().to_owned()).as_deref(), Some("12345678901234567890123"));
    assert!(!db.contains("inf") && !db.contains("r"));
    Ok(())
}

/// Issue 12, point 10: `begin` ... `commit` applies the writes between them as
/// one atomic batch; `rollback`, a failing commit and the end of the script
/// apply none of them.
#[test]
fn begin_commit_rollback_group_writes_into_one_batch() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let script = "set gone 0\nbegin\nset a 1\nset b 2\ndelete gone\nget a\ncommit\nget a\nexists gone\n\
                  begin\nset c 3\nrollback\nexists c\ncommit\n\
                  index u unique\nbegin\nset x {\"u\": 1}\nset y {\"u\": 1}\ncommit\nexists x\n\
                  begin\nclear --yes\nset z 1\n";
    let assert = redru(d).write_stdin(script).assert().code(2);
    let out = String::from_utf8(assert.get_output().stdout.clone())?;
    let err = String::from_utf8(assert.get_output().stderr.clone())?;
    assert_lines(
        "stdout",
        &out,
        &[
            "OK",
            "OK",
            "QUEUED",
            "QUEUED",
            "QUEUED", // get a: not yet there
            "committed 3 writes",
            "1",
            "false",
            "OK",
            "QUEUED",
            "rolled back 1 write",
            "false",
            "OK",
            "OK",
            "QUEUED",
            "QUEUED",
            "false",
            "OK",
            "QUEUED",
        ],
    );
    assert_lines(
        "stderr",
        &err,
        &[
            "line 6: not found: a",
            "error: line 14: `commit` without `begin`",
            "error: line 19: committing the batch (none of its writes was applied): *unique index on `u`*",
            "error: line 22: `clear` cannot run inside a batch: `commit` or `rollback` the batch first",
            "error: the script ended inside a batch (`begin` without `commit`): its 1 queued write was rolled back",
        ],
    );
    let db = Db::open(d)?;
    assert_eq!(db.keys(), ["a", "b"]);
    Ok(())
}

/// Issue 12, point 10: `--durability buffered|never` hand the writes to the
/// OS without an fsync each; everything is there after the script ends.
#[test]
fn durability_modes_keep_every_write_of_a_finished_script() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    for mode in ["buffered", "never", "always"] {
        let script: String = (0..200).map(|i| format!("set {mode}{i} {i}\n")).collect();
        redru(d).args(["--durability", mode]).write_stdin(script).assert().success();
        redru(d)
            .args(["--durability", mode, "stats"])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!("\"durability\":\"{mode}\"")));
    }
    redru(d).args(["--durability", "sometimes", "stats"]).assert().code(2);
    assert_eq!(Db::open(d)?.len(), 600);
    Ok(())
}

/// Issue 12, point 7: verify, repair and compact are one-shot commands; a
/// script (like the shell) says so with the command line to run.
#[test]
fn offline_tools_name_the_command_line_to_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let shown = d.display().to_string();
    redru(d).write_stdin("verify --json\nrepair --dry-run\ncompact\n").assert().code(2).stderr(format!(
        "error: line 1: `verify` works on the closed directory, so it is a one-shot command; leave and run: \
         redru --dir {shown} verify --json\n\
         error: line 2: `repair` works on the closed directory, so it is a one-shot command; leave and run: \
         redru --dir {shown} repair --dry-run\n\
         error: line 3: `compact` works on the closed directory, so it is a one-shot command; leave and run: \
         redru --dir {shown} compact\n"
    ));
    Ok(())
}
