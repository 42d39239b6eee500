//! Guards the interactive shell through a real pseudo-terminal (expectrl):
//! the prompt, a multi-line JSON value behind the `...> ` prompt, stray
//! quotes and brackets that hold no line open, lines typed ahead or pasted
//! running one by one, Tab completion of a key, history surviving a restart
//! (up arrow, long lines left out), Ctrl-C cancelling a line and erasing its
//! hint, batches, and Ctrl-D leaving cleanly with the database closed.
//!
//! Every step waits for what the shell prints (the result, then the next
//! prompt) before typing, so nothing depends on timing; timeouts are only a
//! generous upper bound for a slow machine.
#![cfg(unix)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::TestResult;
use expectrl::process::unix::WaitStatus;
use expectrl::{Eof, Expect, Session};
use redru::{Db, json};

const PROMPT: &str = "redru> ";
const CONTINUATION: &str = "...> ";
const UP: &str = "\x1b[A";
const CTRL_C: &str = "\x03";
const CTRL_D: &str = "\x04";

type Shell = expectrl::session::OsSession;

fn start(dir: &Path, history: &Path) -> Result<Shell, Box<dyn std::error::Error>> {
    let mut cmd = Command::new(crate::util::BIN);
    cmd.arg("--dir")
        .arg(dir)
        .env("REDRU_HISTORY", history)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env_remove("REDRU_DIR");
    let mut shell = Session::spawn(cmd)?;
    shell.set_expect_timeout(Some(Duration::from_secs(60)));
    shell.expect("Type `help`")?;
    shell.expect(PROMPT)?;
    Ok(shell)
}

/// Types `line` and Enter, waits for `result`, then for the next prompt.
fn run(shell: &mut Shell, line: &str, result: &str) -> TestResult {
    shell.send(line)?;
    shell.send("\r")?;
    shell.expect(result).map_err(|e| format!("after typing {line:?}, waiting for {result:?}: {e}"))?;
    shell.expect(PROMPT).map_err(|e| format!("after {line:?}, waiting for the prompt: {e}"))?;
    Ok(())
}

fn exit_with_ctrl_d(mut shell: Shell) -> TestResult {
    shell.send(CTRL_D)?;
    shell.expect(Eof)?;
    let status = shell.get_process().wait()?;
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    Ok(())
}

#[test]
fn an_interactive_session() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    let history = state.path().join("sub").join("history");
    let mut shell = start(dir.path(), &history)?;

    // A multi-line JSON value: the shell keeps reading while the object is open.
    shell.send("set user:1 {\r")?;
    shell.send("  \"name\": \"Alice\",\r")?;
    shell.send("  \"tags\": [\"a\",\r")?;
    shell.send("           \"b\"]\r")?;
    shell.send("}\r")?;
    shell.expect("OK")?;
    shell.expect(PROMPT)?;
    // Pretty-printed in a terminal.
    run(&mut shell, "get user:1", "\"tags\": [\r\n    \"a\",\r\n    \"b\"\r\n  ]")?;

    // Tab completes a key: "get alp<Tab>" becomes "get alphabet-soup ".
    run(&mut shell, "set alphabet-soup \"completed-value-1\"", "OK")?;
    run(&mut shell, "get alp\t", "\"completed-value-1\"")?;

    // A key with a space completes quoted.
    run(&mut shell, "set \"spaced key\" \"spaced-value-2\"", "OK")?;
    run(&mut shell, "get sp\t", "\"spaced-value-2\"")?;

    // Ctrl-C drops the line being typed; the shell stays, and what was typed
    // after the Ctrl-C (here in the same read) is the next command, not lost.
    run(&mut shell, &format!("set cancelled 1{CTRL_C}exists cancelled"), "false")?;

    // A bad command is an error, not the end of the session.
    run(&mut shell, "set k {\"a\": }", "error: invalid JSON object")?;
    run(&mut shell, "get missing-key", "not found: missing-key")?;

    // The last command before leaving, to be recalled after the restart.
    run(&mut shell, "get alphabet-soup", "\"completed-value-1\"")?;
    exit_with_ctrl_d(shell)?;

    // Ctrl-D closed the database: it opens here, with everything in it.
    {
        let db = Db::open(dir.path())?;
        assert_eq!(db.get_value("user:1").as_ref(), Some(&json!({"name": "Alice", "tags": ["a", "b"]})));
        assert!(!db.contains("cancelled"));
        assert!(!db.contains("k"));
    }
    let saved = std::fs::read_to_string(&history)?;
    assert!(saved.contains("get alphabet-soup"), "{saved}");
    assert!(!saved.contains("set cancelled"), "a cancelled line is not history: {saved}");

    // After a restart, the up arrow recalls the last command.
    let mut shell = start(dir.path(), &history)?;
    run(&mut shell, "count", "\n3\r\n")?;
    shell.send(UP)?;
    shell.send(UP)?;
    shell.send("\r")?;
    shell.expect("\"completed-value-1\"")?;
    shell.expect(PROMPT)?;

    // `exit` leaves too.
    shell.send("exit\r")?;
    shell.expect(Eof)?;
    let status = shell.get_process().wait()?;
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    Ok(())
}

#[test]
fn clear_asks_for_confirmation_in_a_terminal() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    let history = state.path().join("history");
    let mut shell = start(dir.path(), &history)?;
    run(&mut shell, "set a 1", "OK")?;
    shell.send("clear\r")?;
    shell.expect("remove the 1 key from")?;
    shell.send("n\r")?;
    shell.expect("cancelled")?;
    shell.expect(PROMPT)?;
    run(&mut shell, "count", "\n1\r\n")?;
    shell.send("clear\r")?;
    shell.expect("[y/N]")?;
    shell.send("y\r")?;
    shell.expect("cleared 1 key\r\n")?;
    shell.expect(PROMPT)?;
    exit_with_ctrl_d(shell)?;
    assert!(Db::open(dir.path())?.is_empty());
    Ok(())
}

/// Issue 12, point 1: a stray `"` or `[` holds no line open; only a value
/// that opens JSON continues, behind the `...> ` prompt.
#[test]
fn only_an_open_json_value_continues_on_the_next_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    let mut shell = start(dir.path(), &state.path().join("history"))?;
    run(&mut shell, "set height 5\" tall", "OK")?;
    run(&mut shell, "list [a", "(no keys)")?;
    run(&mut shell, "get height", "\"5\\\" tall\"")?;
    shell.send("set doc {\r")?;
    shell.expect(CONTINUATION)?;
    shell.send("  \"n\": 12345678901234567890123\r")?;
    shell.expect(CONTINUATION)?;
    shell.send("}\r")?;
    shell.expect("OK")?;
    shell.expect(PROMPT)?;
    // Shown from the stored text: the digits as typed.
    run(&mut shell, "get doc", "\"n\": 12345678901234567890123")?;
    // A command name ends an unclosed value: the value is an error, the command runs.
    shell.send("set broken [1,\r")?;
    shell.expect(CONTINUATION)?;
    run(&mut shell, "exists broken", "unfinished value")?;
    // Ctrl-D inside an open value says it was not stored, and leaves.
    shell.send("set open {\r")?;
    shell.expect(CONTINUATION)?;
    shell.send(CTRL_D)?;
    shell.expect("unfinished value: the JSON value that opens it is never closed (the input ends first)")?;
    shell.expect(Eof)?;
    let status = shell.get_process().wait()?;
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    let db = Db::open(dir.path())?;
    assert_eq!(db.get("doc").map(|d| d.as_str().to_owned()).as_deref(), Some("{\"n\":12345678901234567890123}"));
    assert!(!db.contains("broken"));
    Ok(())
}

/// Issue 12, point 2: three lines written at once (typed ahead) run as three
/// commands, in order; so do the lines of a bracketed paste.
#[test]
fn lines_typed_ahead_or_pasted_each_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    let mut shell = start(dir.path(), &state.path().join("history"))?;
    shell.send("set a first-value\rset b second-value\rget b\r")?;
    shell.expect("OK")?;
    shell.expect("OK")?;
    shell.expect("\"second-value\"")?;
    shell.expect(PROMPT)?;
    shell.send("\x1b[200~set c pasted-value\nget c\n\x1b[201~\r")?;
    shell.expect("OK")?;
    shell.expect("\"pasted-value\"")?;
    shell.expect(PROMPT)?;
    run(&mut shell, "count", "\n3\r\n")?;
    // A line typed while a command still runs (the terminal is not in raw mode then) runs next.
    let dump = state.path().join("dump.jsonl");
    let pairs: String = (0..100_000).map(|i| format!("{{\"key\":\"k{i}\",\"value\":{i}}}\n")).collect();
    std::fs::write(&dump, pairs)?;
    shell.send(format!("import {}\r", dump.display()))?;
    std::thread::sleep(Duration::from_millis(20));
    shell.send("get b\r")?;
    shell.expect("imported 100000 pairs")?;
    shell.expect("\"second-value\"")?;
    shell.expect(PROMPT)?;
    exit_with_ctrl_d(shell)?;
    let db = Db::open(dir.path())?;
    assert_eq!(db.len(), 100_003);
    assert_eq!(db.keys()[..3], ["a", "b", "c"]);
    assert_eq!(db.get_value("a").as_ref(), Some(&json!("first-value")));
    Ok(())
}

/// Issue 12, points 7, 10 and 14: the offline tools say how to run them;
/// batches work in the shell; Ctrl-C erases the hint of the abandoned line;
/// a very long line stays out of the history file.
#[test]
fn one_shot_tools_batches_hints_and_history() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    let history = state.path().join("history");
    let mut shell = start(dir.path(), &history)?;
    run(&mut shell, "verify", "one-shot command; leave and run: redru --dir")?;
    run(&mut shell, "begin", "OK")?;
    run(&mut shell, "set x 1", "QUEUED")?;
    run(&mut shell, "commit", "committed 1 write")?;
    // "se" shows the hint "t <key> <value>"; Ctrl-C must erase it from the screen.
    shell.send("se")?;
    shell.expect("t <key> <value>")?;
    shell.send(CTRL_C)?;
    // The line is cleared and drawn again as typed, its hint gone.
    shell.expect("\x1b[Kredru> se\r")?;
    shell.expect(PROMPT)?;
    let long = "v".repeat(6000);
    shell.send(format!("\x1b[200~set long {long}\x1b[201~\r"))?;
    shell.expect("OK")?;
    shell.expect(PROMPT)?;
    run(&mut shell, "begin", "OK")?;
    run(&mut shell, "set y 1", "QUEUED")?;
    shell.send(CTRL_D)?;
    shell.expect("left inside a batch: its 1 queued write was rolled back")?;
    shell.expect(Eof)?;
    let db = Db::open(dir.path())?;
    assert!(db.contains("x") && db.contains("long") && !db.contains("y"));
    let saved = std::fs::read_to_string(&history)?;
    assert!(saved.contains("set x 1") && !saved.contains("set long"), "{saved}");
    Ok(())
}

/// Runs `redru <args>` in a pseudo-terminal and returns everything it drew.
fn run_in_terminal(dir: &Path, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let mut cmd = Command::new(crate::util::BIN);
    cmd.arg("--dir").arg(dir).args(args).env("NO_COLOR", "1").env("TERM", "xterm").env_remove("REDRU_DIR");
    // Draw from the first report on, not after a quarter second.
    cmd.env("REDRU_PROGRESS_DELAY_MS", "0");
    let mut session = Session::spawn(cmd)?;
    session.set_expect_timeout(Some(Duration::from_secs(120)));
    let drawn = session.expect(Eof)?;
    let status = session.get_process().wait()?;
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    // Eof "matches" everything left to read.
    let mut bytes = drawn.before().to_vec();
    drawn.matches().for_each(|m| bytes.extend_from_slice(m));
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn long_work_shows_a_bar_with_rate_and_time_left_in_a_terminal_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let db = Db::open(dir.path())?;
        let mut batch = redru::Batch::new();
        for i in 0..60_000 {
            batch.push_set(format!("user:{i:06}"), json!({"name": format!("user {i}"), "n": i}));
        }
        db.batch(batch)?;
        db.save()?;
    }
    // Each stage the library reports becomes a bar: the task, the stage,
    // the rate and the time left.
    let drawn = run_in_terminal(dir.path(), &["verify"])?;
    assert!(drawn.contains("checking the snapshot") || drawn.contains("loading the snapshot"), "{drawn:?}");
    assert!(drawn.contains("left"), "{drawn:?}");
    assert!(drawn.contains("clean"), "{drawn:?}");

    // Piped, the same work draws nothing.
    let out = Command::new(crate::util::BIN)
        .arg("--dir")
        .arg(dir.path())
        .arg("verify")
        .env("REDRU_PROGRESS_DELAY_MS", "0")
        .env_remove("REDRU_DIR")
        .output()?;
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("snapshot") && !stderr.contains("left"), "{stderr:?}");
    Ok(())
}
