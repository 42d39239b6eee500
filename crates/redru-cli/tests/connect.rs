//! Guards `redru --connect redis://HOST:PORT` (and `-h`/`-p`/`--pass`): the
//! shell's one-shot commands, a script on stdin and the interactive shell
//! (Tab completion of a key that exists only on the server) against a real
//! `redru serve` on a free loopback port, with the same output as on a local
//! directory; what needs the directory says where to run it; a lost server
//! is an error, not a crash.
//!
//! Every wait is bounded (util::PATIENCE); servers are stopped by pid.
#![cfg(unix)]

use std::process::Command;
use std::time::Duration;

use expectrl::process::unix::WaitStatus;
use expectrl::{Eof, Expect, Session};
use redru::{Db, json};

use crate::util::{BIN, BoxError, Ran, Serve, assert_lines, run_bounded};

type Result<T = (), E = BoxError> = std::result::Result<T, E>;

/// `redru ARGS...` with a clean environment, stdin as given, bounded in time.
fn redru(args: &[&str], stdin: &str) -> Result<Ran> {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("REDRU_DIR").env_remove("NO_COLOR").env("REDRU_HISTORY", "").args(args);
    run_bounded(&mut cmd, stdin.as_bytes())
}

/// `redru --connect URL ARGS...`, asserting its exit code.
fn remote(server: &Serve, args: &[&str], code: i32) -> Result<Ran> {
    let url = format!("redis://{}", server.addr);
    let mut all = vec!["--connect", url.as_str()];
    all.extend(args);
    let ran = redru(&all, "")?;
    assert_eq!(ran.status.code(), Some(code), "redru {all:?}\nstdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
    Ok(ran)
}

#[test]
fn one_shot_commands_on_a_server() -> Result {
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &[])?;
    remote(&server, &["set", "user:1", r#"{"name": "Alice", "age": 30, "n": 12345678901234567890123}"#], 0)?;
    remote(&server, &["set", "user:2", r#"{"name": "Bob", "age": 25}"#], 0)?;
    let ran = remote(&server, &["set", "greeting", "hello world"], 0)?;
    assert_lines("set", &ran.stdout, &["OK"]);
    // Values come back as their stored text (digits kept), strings as JSON strings.
    let ran = remote(&server, &["get", "user:1"], 0)?;
    assert_lines("get", &ran.stdout, &[r#"{"name":"Alice","age":30,"n":12345678901234567890123}"#]);
    assert_lines("get", &remote(&server, &["get", "greeting"], 0)?.stdout, &["\"hello world\""]);
    assert_lines("list", &remote(&server, &["list"], 0)?.stdout, &["greeting", "user:1", "user:2"]);
    assert_lines("list glob", &remote(&server, &["list", "user:*"], 0)?.stdout, &["user:1", "user:2"]);
    assert_lines("count", &remote(&server, &["count"], 0)?.stdout, &["3"]);
    assert_lines("count prefix", &remote(&server, &["count", "user:"], 0)?.stdout, &["2"]);
    // An index, a lookup through it, and the plan that says so.
    assert_lines("index", &remote(&server, &["index", "name"], 0)?.stdout, &["OK"]);
    let ran = remote(&server, &["find", "name", "Alice"], 0)?;
    assert_lines("find", &ran.stdout, &[r#"user:1	{"name":"Alice","age":30,"n":12345678901234567890123}"#]);
    let ran = remote(&server, &["find", "age >= 25", "--format", "json"], 0)?;
    assert_lines("find json", &ran.stdout, &[r#"{"user:1":{*},"user:2":{"name":"Bob","age":25}}"#]);
    let ran = remote(&server, &["explain", "name = Bob"], 0)?;
    assert_lines("explain", &ran.stdout, &["index lookup on `name` (1 candidate key)*; 1 match"]);
    assert_lines("indexes", &remote(&server, &["indexes"], 0)?.stdout, &["name\tplain\t2\t2"]);
    // Delete, then "not found" with exit code 1, as on a directory.
    assert_lines("delete", &remote(&server, &["delete", "greeting"], 0)?.stdout, &["OK"]);
    let ran = remote(&server, &["get", "greeting"], 1)?;
    assert!(ran.stderr.contains("not found: greeting"), "{}", ran.stderr);
    assert_lines("exists", &remote(&server, &["exists", "greeting"], 1)?.stdout, &["false"]);
    assert_lines("count", &remote(&server, &["count"], 0)?.stdout, &["2"]);
    // redis-cli's -h and -p reach the same server.
    let port = server.port().to_string();
    let ran = redru(&["-h", "127.0.0.1", "-p", &port, "count", "user:"], "")?;
    assert!(ran.status.success(), "{}", ran.stderr);
    assert_lines("-h -p", &ran.stdout, &["2"]);
    // What needs the directory says where to run it.
    let ran = remote(&server, &["backups"], 2)?;
    assert!(ran.stderr.contains("`backups`") && ran.stderr.contains("server's machine"), "{}", ran.stderr);
    let ran = remote(&server, &["verify"], 2)?;
    assert!(ran.stderr.contains("stop the server there and run `redru --dir DIR verify`"), "{}", ran.stderr);
    server.stop()?;
    let db = Db::open(dir.path())?;
    assert_eq!(db.keys(), ["user:1", "user:2"]);
    assert_eq!(db.get_value("user:2"), Some(json!({"name": "Bob", "age": 25})));
    Ok(())
}

#[test]
fn conditional_sets_and_incr_on_a_server() -> Result {
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &[])?;
    assert_lines("set", &remote(&server, &["set", "lock", "me", "--if-absent"], 0)?.stdout, &["OK"]);
    let ran = remote(&server, &["set", "lock", "you", "--if-absent"], 1)?;
    assert!(ran.stderr.contains("not written: `lock` exists on the server"), "{}", ran.stderr);
    assert_lines("incr", &remote(&server, &["incr", "n", "5"], 0)?.stdout, &["5"]);
    assert_lines("incr", &remote(&server, &["incr", "n"], 0)?.stdout, &["6"]);
    // What only the data directory knows is refused, saying where to run it.
    let ran = remote(&server, &["set", "n", "1", "--if-seq", "3"], 2)?;
    assert!(ran.stderr.contains("needs the data directory"), "{}", ran.stderr);
    assert!(remote(&server, &["last-seq", "n"], 2)?.stderr.contains("needs the data directory"));
    server.stop()?;
    let db = Db::open(dir.path())?;
    assert_eq!(db.get_value("lock"), Some(json!("me")));
    Ok(())
}

#[test]
fn a_script_piped_to_a_server_and_a_password() -> Result {
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &["--requirepass", "s3cret"])?;
    let script = "begin\nset a 1\nset b [1, 2]\ndelete nothing\ncommit\nget b\nbogus\nlist\ncount\n";
    let url = format!("redis://:s3cret@{}", server.addr);
    let ran = redru(&["--connect", &url], script)?;
    assert_eq!(ran.status.code(), Some(2), "a failed line makes exit code 2; stderr:\n{}", ran.stderr);
    assert_lines(
        "script",
        &ran.stdout,
        &["OK", "QUEUED", "QUEUED", "QUEUED", "committed 3 writes", "[1,2]", "a", "b", "2"],
    );
    assert!(ran.stderr.contains("line 7: unknown command `bogus`"), "{}", ran.stderr);
    // --pass gives the password too; without one the server's refusal is explained.
    let port = server.port().to_string();
    let ran = redru(&["-p", &port, "--pass", "s3cret", "get", "a"], "")?;
    assert_lines("--pass", &ran.stdout, &["1"]);
    let ran = redru(&["-p", &port, "get", "a"], "")?;
    assert_eq!(ran.status.code(), Some(2));
    assert!(ran.stderr.contains("needs a password"), "{}", ran.stderr);
    // import (a file here, or stdin) and export go through the server: one MULTI, one REDRU.QUERY.
    let file = dir.path().join("pairs.jsonl");
    let pairs: String = (0..3000).map(|i| format!("{{\"key\":\"k{i:04}\",\"value\":{i}}}\n")).collect();
    std::fs::write(&file, pairs)?;
    let shown = file.display().to_string();
    let ran = redru(&["--connect", &url, "import", &shown, "--replace"], "")?;
    assert_lines("import", &ran.stdout, &[&format!("replaced the data with 3000 pairs from {shown}")]);
    let ran = redru(&["--connect", &url, "import", "-"], r#"{"extra": {"x": 1.50}}"#)?;
    assert_lines("import -", &ran.stdout, &["imported 1 pair from -"]);
    let ran = redru(&["--connect", &url, "export", "--lines"], "")?;
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 3001, "{}", ran.stderr);
    assert_eq!(lines[..2], [r#"{"key":"extra","value":{"x":1.50}}"#, r#"{"key":"k0000","value":0}"#]);
    server.stop()?;
    assert_eq!(Db::open(dir.path())?.len(), 3001);
    Ok(())
}

const PROMPT: &str = "redru> ";

/// Types `line` and Enter, waits for `result`, then for the next prompt.
fn run(shell: &mut expectrl::session::OsSession, line: &str, result: &str) -> Result {
    shell.send(line)?;
    shell.send("\r")?;
    shell.expect(result).map_err(|e| format!("after typing {line:?}, waiting for {result:?}: {e}"))?;
    shell.expect(PROMPT).map_err(|e| format!("after {line:?}, waiting for the prompt: {e}"))?;
    Ok(())
}

#[test]
fn the_interactive_shell_on_a_server_completes_its_keys() -> Result {
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &[])?;
    let mut client = server.connect()?;
    client.call(&["SET", "alphabet-on-server", "remote-value-1"])?;
    client.call(&["JSON.SET", "person:1", "$", r#"{"nickname":"Al"}"#])?;
    client.call(&["REDRU.INDEX", "nickname"])?;

    let mut cmd = Command::new(BIN);
    cmd.args(["--connect", &format!("redis://{}", server.addr)])
        .env("REDRU_HISTORY", "")
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env_remove("REDRU_DIR");
    let mut shell = Session::spawn(cmd)?;
    shell.set_expect_timeout(Some(Duration::from_secs(60)));
    shell.expect(format!("connected to redru {} at redis://{} (2 keys)", env!("CARGO_PKG_VERSION"), server.addr))?;
    shell.expect(PROMPT)?;
    // Tab completes a key only the server has, and an indexed field.
    run(&mut shell, "get alp\t", "\"remote-value-1\"")?;
    run(&mut shell, "find nick\tAl", "person:1  {\"nickname\":\"Al\"}")?;
    run(&mut shell, "set typed-here {\"a\": [1,\r2]}", "OK")?;
    run(&mut shell, "get typed-here", "\"a\": [\r\n    1,\r\n    2\r\n  ]")?;
    // A lost server is an error at the prompt; the shell stays, and leaves cleanly.
    server.stop()?;
    run(&mut shell, "count", "error: ")?;
    run(&mut shell, "count", "cannot connect to redis://")?;
    shell.send("\x04")?;
    shell.expect(Eof)?;
    let status = shell.get_process().wait()?;
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    let db = Db::open(dir.path())?;
    assert_eq!(db.get_value("typed-here"), Some(json!({"a": [1, 2]})));
    Ok(())
}

#[test]
fn watch_over_connect_prints_the_servers_changes_live() -> Result {
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &[])?;
    remote(&server, &["set", "user:1", "1"], 0)?;
    // History first.
    assert_lines(
        "watch --from",
        &remote(&server, &["watch", "--from", "0", "--count", "1"], 0)?.stdout,
        &["1\tset\tuser:1\t1"],
    );
    // Live: a watcher started before the writes sees them as they come (from
    // record 1, so that a slow start cannot miss them).
    let url = format!("redis://{}", server.addr);
    let watcher = {
        let url = url.clone();
        std::thread::spawn(move || redru(&["--connect", &url, "watch", "user:", "--from", "1", "--count", "2"], ""))
    };
    std::thread::sleep(Duration::from_millis(700));
    remote(&server, &["set", "order:1", "2"], 0)?;
    remote(&server, &["set", "user:2", "3"], 0)?;
    remote(&server, &["delete", "user:1"], 0)?;
    let ran = watcher.join().map_err(|_| "the watcher panicked")??;
    assert_eq!(ran.status.code(), Some(0), "stderr: {}", ran.stderr);
    assert_lines("watch live", &ran.stdout, &["3\tset\tuser:2\t3", "4\tdel\tuser:1"]);
    Ok(())
}
