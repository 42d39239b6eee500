//! Guards the one-shot command line through the real binary: outputs, exit
//! codes (0 ok, 1 not found / problems found, 2 usage errors and failures),
//! and the stderr messages for bad input, an unknown command and a directory
//! another process holds.
//!
//! One file past 800 lines: each test is a short run of the real binary that
//! pins one behaviour of the command line as a user meets it; the shell, the
//! server and the cluster have files of their own in this directory.

use crate::util::{TestResult, redru};
use predicates::prelude::*;
use redru::{Db, json};

#[test]
fn set_then_get_round_trips_json_and_text() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "user:1", r#"{"name": "Alice", "age": 30}"#]).assert().success().stdout("OK\n").stderr("");
    // Stored as written (members in their order, digits kept), only without the blanks.
    redru(d).args(["get", "user:1"]).assert().success().stdout("{\"name\":\"Alice\",\"age\":30}\n");
    // Bare and quoted text store the same string; numbers stay numbers.
    redru(d).args(["set", "a", "Alice"]).assert().success();
    redru(d).args(["set", "b", "\"Alice\""]).assert().success();
    redru(d).args(["set", "n", "42"]).assert().success();
    redru(d).args(["set", "words", "hello", "big", "world"]).assert().success();
    redru(d).args(["set", "neg", "-5"]).assert().success();
    redru(d).args(["get", "a"]).assert().success().stdout("\"Alice\"\n");
    redru(d).args(["get", "b"]).assert().success().stdout("\"Alice\"\n");
    redru(d).args(["get", "n"]).assert().success().stdout("42\n");
    redru(d).args(["get", "words"]).assert().success().stdout("\"hello big world\"\n");
    redru(d).args(["get", "neg"]).assert().success().stdout("-5\n");
    let db = Db::open(d)?;
    assert_eq!(db.get_value("user:1").as_ref(), Some(&json!({"name": "Alice", "age": 30})));
    assert_eq!(db.get_value("a").as_ref(), Some(&json!("Alice")));
    assert_eq!(db.get_value("n").as_ref(), Some(&json!(42)));
    Ok(())
}

#[test]
fn not_found_is_exit_code_1_with_a_message() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["get", "nope"]).assert().code(1).stdout("").stderr("not found: nope\n");
    redru(d).args(["delete", "nope"]).assert().code(1).stderr(predicate::str::contains("not found: nope"));
    redru(d).args(["exists", "nope"]).assert().code(1).stdout("false\n");
    redru(d).args(["set", "k", "1"]).assert().success();
    redru(d).args(["exists", "k"]).assert().success().stdout("true\n");
    redru(d).args(["delete", "k"]).assert().success().stdout("OK\n");
    redru(d).args(["get", "k"]).assert().code(1);
    Ok(())
}

#[test]
fn conditional_sets_incr_and_seq() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "lock", "me", "--if-absent"]).assert().success().stdout("OK\n");
    redru(d)
        .args(["set", "lock", "you", "--if-absent"])
        .assert()
        .code(1)
        .stdout("")
        .stderr("not written: condition 1 failed: `lock` is absent, but it holds \"me\"; nothing was written\n");
    redru(d).args(["incr", "n"]).assert().success().stdout("1\n");
    redru(d).args(["incr", "n", "41"]).assert().success().stdout("42\n");
    redru(d).args(["incr", "lock"]).assert().code(2).stderr(predicate::str::contains("not an integer"));
    let seq = String::from_utf8(redru(d).args(["last-seq", "n"]).assert().success().get_output().stdout.clone())?;
    let seq: u64 = seq.trim().parse()?;
    redru(d).args(["set", "n", "0", "--if-seq", &(seq - 1).to_string()]).assert().code(1);
    redru(d).args(["set", "n", "0", "--if-seq", &seq.to_string()]).assert().success();
    redru(d).args(["set", "n", "5", "--if-seq", &seq.to_string()]).assert().code(1).stderr(predicate::str::contains(
        format!("`n` is unchanged since record {seq}, but it was last written by record {}", seq + 1),
    ));
    redru(d).args(["get", "n"]).assert().success().stdout("0\n");
    redru(d).args(["last-seq", "nope"]).assert().code(1).stderr("not found: nope\n");
    Ok(())
}

#[test]
fn ttl_expire_and_persist() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "s", "{\"u\": 1}", "--ttl", "10m"]).assert().success().stdout("OK\n");
    let left = String::from_utf8(redru(d).args(["ttl", "s"]).assert().success().get_output().stdout.clone())?;
    let secs: f64 = left.trim().trim_end_matches('s').parse()?;
    assert!((590.0..=600.0).contains(&secs), "{left}");
    redru(d).args(["persist", "s"]).assert().success().stdout("OK\n");
    redru(d).args(["ttl", "s"]).assert().success().stdout("no expiry\n");
    redru(d).args(["persist", "s"]).assert().success().stdout("no expiry\n");
    redru(d).args(["expire", "s", "2h"]).assert().success().stdout("OK\n");
    redru(d).args(["ttl", "s"]).assert().success().stdout(predicate::str::starts_with("7199."));
    redru(d).args(["set", "s", "2"]).assert().success();
    redru(d).args(["ttl", "s"]).assert().success().stdout("no expiry\n");
    redru(d).args(["expire", "s", "0"]).assert().success().stdout("OK\n");
    redru(d).args(["get", "s"]).assert().code(1).stderr("not found: s\n");
    redru(d).args(["ttl", "s"]).assert().code(1).stderr("not found: s\n");
    redru(d).args(["expire", "s", "5s"]).assert().code(1).stderr("not found: s\n");
    redru(d).args(["persist", "s"]).assert().code(1).stderr("not found: s\n");
    redru(d).args(["expire", "s", "5y"]).assert().code(2).stderr(predicate::str::contains("not a duration"));
    // An export in JSON lines keeps the deadline, and `import` reads it back.
    redru(d).args(["set", "e", "1", "--ttl", "1h"]).assert().success();
    let file = d.join("export.jsonl");
    redru(d).args(["export", file.to_str().ok_or("path")?, "--lines"]).assert().success();
    assert!(std::fs::read_to_string(&file)?.contains("\"expires\":"));
    redru(d).args(["delete", "e"]).assert().success();
    redru(d).args(["import", file.to_str().ok_or("path")?]).assert().success();
    redru(d).args(["ttl", "e"]).assert().success().stdout(predicate::str::starts_with("3599."));
    redru(d).args(["delete", "e"]).assert().success();
    // A key that expired is gone for every command, before any sweep.
    redru(d).args(["set", "t", "1", "--ttl", "1ms"]).assert().success();
    std::thread::sleep(std::time::Duration::from_millis(5));
    redru(d).args(["get", "t"]).assert().code(1);
    redru(d).args(["count"]).assert().success().stdout("0\n");
    Ok(())
}

#[test]
fn invalid_json_inside_brackets_is_an_error_not_a_string() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    for bad in [r#"{"a":"#, "[1, 2", "{a: 1}", r#""open"#] {
        redru(d).args(["set", "k", bad]).assert().code(2).stdout("").stderr(
            predicate::str::starts_with("error: invalid JSON")
                .and(predicate::str::contains("(usage: set <key> <value>)")),
        );
    }
    redru(d).args(["get", "k"]).assert().code(1);
    Ok(())
}

#[test]
fn usage_errors_exit_2_and_say_what_is_missing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // The shell's parser says what is missing, with the command's usage.
    redru(d).arg("set").assert().code(2).stderr("error: missing key (usage: set <key> <value>)\n");
    redru(d).args(["set", "k"]).assert().code(2).stderr("error: missing value for `k` (usage: set <key> <value>)\n");
    redru(d).arg("get").assert().code(2).stderr(predicate::str::contains("missing key (usage: get <key>)"));
    redru(d)
        .arg("frobnicate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unrecognized subcommand 'frobnicate'"));
    redru(d).args(["list", "a", "b"]).assert().code(2).stderr(predicate::str::contains("unexpected `b`"));
    redru(d).args(["--color", "sometimes", "stats"]).assert().code(2);
    Ok(())
}

#[test]
fn help_and_version() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).arg("--version").assert().success().stdout(format!("redru {}\n", env!("CARGO_PKG_VERSION")));
    redru(d)
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage: redru").and(predicate::str::contains("Exit codes")));
    for sub in ["set", "get", "find", "index", "clear", "verify", "backup", "import", "shell"] {
        redru(d).args([sub, "--help"]).assert().success().stdout(predicate::str::contains("Usage: redru"));
    }
    redru(d).args(["set", "--help"]).assert().success().stdout(predicate::str::contains("Examples:"));
    // `help` and `help COMMAND` as in git and cargo (they once failed on the `--` put before words).
    redru(d).arg("help").assert().success().stdout(predicate::str::contains("Usage: redru"));
    redru(d).args(["help", "get"]).assert().success().stdout(predicate::str::contains("Usage: redru [OPTIONS] get"));
    // Asking for help creates no data directory.
    assert!(std::fs::read_dir(d)?.next().is_none());
    Ok(())
}

#[test]
fn a_locked_directory_is_refused_naming_the_holder() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let db = Db::open(d)?;
    let pid = std::process::id();
    for args in [vec!["set", "k", "1"], vec!["verify"], vec!["compact"]] {
        redru(d).args(&args).assert().code(2).stdout("").stderr(
            predicate::str::starts_with("error: ")
                .and(predicate::str::contains(format!("locked by another redru process (pid {pid})"))),
        );
    }
    // A read opens it read-only instead, naming the holder once.
    redru(d).args(["get", "k"]).assert().code(1).stderr(predicate::str::contains(format!(
        "note: reading {} read-only: it is open in another process (pid {pid})",
        d.display()
    )));
    // Script mode refuses the same way, before reading any command.
    redru(d).write_stdin("set k 1\n").assert().code(2).stderr(predicate::str::contains("locked"));
    assert!(db.get("k").is_none());
    drop(db);
    redru(d).args(["set", "k", "1"]).assert().success();
    Ok(())
}

#[test]
fn list_count_and_globs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    for (k, v) in [("user:1", "1"), ("user:2", "2"), ("user:10", "3"), ("order:1", "4"), ("my key", "5")] {
        redru(d).args(["set", k, v]).assert().success();
    }
    redru(d).arg("list").assert().success().stdout("my key\norder:1\nuser:1\nuser:10\nuser:2\n");
    redru(d).args(["list", "user:1"]).assert().success().stdout("user:1\nuser:10\n");
    redru(d).args(["list", "user:?"]).assert().success().stdout("user:1\nuser:2\n");
    redru(d).args(["list", "*:1"]).assert().success().stdout("order:1\nuser:1\n");
    redru(d).args(["keys", "[mo]*"]).assert().success().stdout("my key\norder:1\n");
    redru(d).arg("count").assert().success().stdout("5\n");
    redru(d).args(["count", "user:*"]).assert().success().stdout("3\n");
    redru(d).args(["count", "zzz"]).assert().success().stdout("0\n");
    Ok(())
}

#[test]
fn list_pages_with_limit_and_after() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let mut batch = String::from("begin\n");
    for i in 0..25 {
        batch.push_str(&format!("set user:{i:04} {i}\n"));
    }
    batch.push_str("set order:1 1\ncommit\n");
    redru(d).write_stdin(batch).assert().success();
    // A cut page: the keys on stdout, the command for the next page on stderr.
    redru(d)
        .args(["list", "user:", "--limit", "3"])
        .assert()
        .success()
        .stdout("user:0000\nuser:0001\nuser:0002\n")
        .stderr("(more: list user: --limit 3 --after user:0002)\n");
    redru(d)
        .args(["list", "user:", "--limit", "3", "--after", "user:0002"])
        .assert()
        .success()
        .stdout("user:0003\nuser:0004\nuser:0005\n");
    // The last page says nothing more; a cursor need not be a key.
    redru(d)
        .args(["list", "user:", "--after", "user:0021x", "--limit", "5"])
        .assert()
        .success()
        .stdout("user:0022\nuser:0023\nuser:0024\n")
        .stderr("");
    // In a table (for people) the hint follows the keys on stdout.
    redru(d)
        .args(["--format", "table", "list", "--limit", "1"])
        .assert()
        .success()
        .stdout("order:1\n(more: list --limit 1 --after order:1)\n");
    // A range, a glob with a limit, JSON output stays keys only.
    redru(d)
        .args(["list", "--from", "user:0023", "--to", "user:1"])
        .assert()
        .success()
        .stdout("user:0023\nuser:0024\n");
    redru(d)
        .args(["list", "user:*1", "--limit", "2"])
        .assert()
        .success()
        .stdout("user:0001\nuser:0011\n")
        .stderr("(more: list user:*1 --limit 2 --after user:0011)\n");
    // No hint when the limit took the last match.
    redru(d).args(["list", "user:*5", "--limit", "2"]).assert().success().stdout("user:0005\nuser:0015\n").stderr("");
    redru(d)
        .args(["--format", "json", "list", "user:", "--limit", "2"])
        .assert()
        .success()
        .stdout("[\"user:0000\",\"user:0001\"]\n");
    // Usage errors exit 2.
    redru(d).args(["list", "--limit", "x"]).assert().code(2).stderr(predicate::str::contains("whole number"));
    redru(d).args(["list", "--after"]).assert().code(2).stderr(predicate::str::contains("needs a key"));
    redru(d)
        .args(["list", "--after", "a", "--from", "b"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not both"));
    Ok(())
}

#[test]
fn indexes_find_and_explain() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "u1", r#"{"name": "Alice", "age": 30, "email": "a@x"}"#]).assert().success();
    redru(d).args(["set", "u2", r#"{"name": "Bob", "age": 25}"#]).assert().success();
    redru(d).args(["set", "u3", r#"{"name": "Alice Smith", "age": 41}"#]).assert().success();
    // Without an index, find still answers (a scan), and explain says so.
    redru(d)
        .args(["find", "name", "Alice"])
        .assert()
        .success()
        .stdout("u1\t{\"name\":\"Alice\",\"age\":30,\"email\":\"a@x\"}\n");
    redru(d).args(["explain", "name = Alice"]).assert().success().stdout(predicate::str::starts_with("full scan"));
    redru(d).args(["index", "name"]).assert().success().stdout("OK\n");
    redru(d).args(["index", "email", "--unique"]).assert().success();
    redru(d).args(["index", "age", "ordered"]).assert().success().stdout("OK\n");
    redru(d).arg("indexes").assert().success().stdout("age\tordered\t3\t3\nemail\tunique\t1\t1\nname\tplain\t3\t3\n");
    redru(d)
        .args(["explain", "age between 18 and 40"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("index range on `age`"));
    redru(d).args(["drop-index", "age"]).assert().success();
    redru(d)
        .args(["explain", "name = Alice and age >= 18"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("index lookup on `name`").and(predicate::str::ends_with("; 1 match\n")));
    // The rest of the line is the value, as in the shell.
    redru(d).args(["find", "name", "Alice", "Smith"]).assert().success().stdout(predicate::str::starts_with("u3\t"));
    redru(d)
        .args(["find", "age >= 30"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("u1\t").and(predicate::str::contains("u3\t")));
    redru(d).args(["find", "age", ">", "100"]).assert().success().stdout("");
    redru(d)
        .args(["find", "age", ">", "[1]"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("compares numbers or strings"));
    // A unique index refuses a duplicate and nothing is written.
    redru(d)
        .args(["set", "u4", r#"{"email": "a@x"}"#])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unique index on `email`"));
    redru(d).args(["exists", "u4"]).assert().code(1);
    redru(d).args(["drop-index", "name"]).assert().success();
    redru(d)
        .args(["drop-index", "name"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("error: dropping the index on `name`"));
    Ok(())
}

#[test]
fn colour_only_when_asked_or_in_a_terminal() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "k", r#"{"a": [1, "x", null]}"#]).assert().success();
    // Piped: plain and compact.
    redru(d).args(["get", "k"]).assert().success().stdout("{\"a\":[1,\"x\",null]}\n");
    let out = redru(d).args(["--color", "always", "get", "k"]).assert().success().get_output().stdout.clone();
    let text = String::from_utf8(out)?;
    assert!(text.contains("\x1b[1;34m\"a\"\x1b[0m") && text.contains("\x1b[32m\"x\"\x1b[0m"), "{text:?}");
    // NO_COLOR does not override an explicit --color always, and auto stays plain in a pipe.
    redru(d).env("NO_COLOR", "1").args(["get", "k"]).assert().success().stdout("{\"a\":[1,\"x\",null]}\n");
    Ok(())
}

#[test]
fn clear_needs_yes_where_it_cannot_ask() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "a", "1"]).assert().success();
    redru(d).args(["set", "b", "2"]).assert().success();
    redru(d).arg("clear").assert().code(2).stderr(predicate::str::contains("write `clear --yes`"));
    redru(d).arg("count").assert().stdout("2\n");
    redru(d).args(["clear", "--yes"]).assert().success().stdout("cleared 2 keys\n");
    redru(d).arg("count").assert().stdout("0\n");
    Ok(())
}

#[test]
fn stats_save_sync_print_what_they_did() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "a", "1"]).assert().success();
    let out = redru(d).arg("stats").assert().success().get_output().stdout.clone();
    let stats: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(stats["keys"], json!(1));
    assert_eq!(stats["durability"], json!("always"));
    redru(d).arg("save").assert().success().stdout(predicate::str::starts_with("saved 1 key ("));
    redru(d).arg("save").assert().success().stdout("nothing changed since the last save (1 key)\n");
    redru(d).arg("sync").assert().success().stdout("OK\n");
    Ok(())
}

#[test]
fn backups_restore_export_import() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let work = tempfile::tempdir()?;
    redru(d).args(["set", "a", "1"]).assert().success();
    redru(d)
        .arg("backup")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("wrote ").and(predicate::str::contains("verified)")));
    let listed = redru(d).arg("backups").assert().success().get_output().stdout.clone();
    let listed = String::from_utf8(listed)?;
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let name = listed.split_whitespace().next().ok_or("no backup listed")?.to_owned();
    redru(d).args(["set", "a", "2"]).assert().success();
    redru(d).args(["restore", &name]).assert().success().stdout(predicate::str::starts_with("restored "));
    redru(d).args(["get", "a"]).assert().success().stdout("1\n");
    redru(d).args(["restore", "no-such-backup"]).assert().code(2).stderr(predicate::str::contains("no backup named"));
    // A name is looked up only inside DIR/backups/; a path needs --file.
    let outside = work.path().join("copy.json");
    redru(d).args(["backup", outside.to_str().ok_or("path")?]).assert().success();
    for bad in ["../backups/x.json", outside.to_str().ok_or("path")?, ".."] {
        redru(d).args(["restore", bad]).assert().code(2).stderr(
            predicate::str::contains("not a path").or(predicate::str::contains("outside the backups directory")),
        );
    }
    redru(d).args(["set", "a", "3"]).assert().success();
    redru(d).args(["restore", "--file", outside.to_str().ok_or("path")?]).assert().success();
    redru(d).args(["get", "a"]).assert().success().stdout("1\n");
    // backup --keep prunes the oldest beyond N.
    redru(d).args(["backup", "--keep", "2"]).assert().success();
    let listed = redru(d).arg("backups").assert().success().get_output().stdout.clone();
    assert_eq!(String::from_utf8(listed)?.lines().count(), 2);

    let dump = work.path().join("dump.jsonl");
    redru(d).args(["export", "--lines"]).assert().success().stdout("{\"key\":\"a\",\"value\":1}\n");
    redru(d)
        .arg("export")
        .arg(&dump)
        .arg("--lines")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("exported 1 pair to"));
    // Like every file redru writes, whatever the umask (0666 for a new file).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dump)?.permissions().mode() & 0o777, 0o600, "export file mode");
    }
    redru(d).args(["clear", "--yes"]).assert().success();
    redru(d).arg("import").arg(&dump).assert().success().stdout(predicate::str::starts_with("imported 1 pair from"));
    redru(d).args(["get", "a"]).assert().success().stdout("1\n");
    std::fs::write(&dump, "{\"a\": 1, \"b\":")?;
    redru(d).arg("import").arg(&dump).assert().code(2).stderr(predicate::str::starts_with("error: importing"));
    redru(d).args(["exists", "b"]).assert().code(1);
    Ok(())
}

#[test]
fn verify_and_repair_report_problems_with_exit_code_1() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    for i in 0..5 {
        redru(d).args(["set", &format!("k{i}"), &i.to_string()]).assert().success();
    }
    redru(d).arg("verify").assert().success().stdout(predicate::str::ends_with("clean\n"));
    let out = redru(d).args(["verify", "--json"]).assert().success().get_output().stdout.clone();
    let report: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(report["problems"], json!([]));

    // Damage the second record of the log (not a torn tail: records follow it).
    let segment = std::fs::read_dir(d)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .ok_or("no log segment")?;
    let mut bytes = std::fs::read(&segment)?;
    // Line 1 is the segment's header, line 2 the first record.
    let third_line = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).ok_or("two lines")?.0 + 1;
    let at = third_line + 10;
    bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
    std::fs::write(&segment, &bytes)?;

    redru(d).arg("verify").assert().code(1).stdout(predicate::str::contains("problem"));
    redru(d).args(["get", "k0"]).assert().code(2).stderr(predicate::str::contains("redru repair"));
    redru(d).args(["repair", "--dry-run"]).assert().code(1).stdout(predicate::str::contains("dry run"));
    redru(d).arg("repair").assert().success().stdout(predicate::str::contains("verify after repair: clean"));
    redru(d).arg("verify").assert().success();
    redru(d).args(["get", "k0"]).assert().success().stdout("0\n");
    redru(d).arg("compact").assert().success().stdout(predicate::str::starts_with("compacted "));
    Ok(())
}

#[test]
fn redru_dir_comes_from_the_environment() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut set = assert_cmd::Command::new(crate::util::BIN);
    set.env("REDRU_DIR", dir.path()).env("REDRU_HISTORY", "").args(["set", "k", "v"]).assert().success();
    let db = Db::open(dir.path())?;
    assert_eq!(db.get_value("k").as_ref(), Some(&json!("v")));
    Ok(())
}

#[test]
fn verify_checks_one_snapshot_file_given_as_flag_or_argument() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "k", "1"]).assert().success();
    redru(d).arg("save").assert().success();
    let snapshot = d.join("database.json");
    let path = snapshot.to_str().ok_or("path")?;
    redru(d).args(["verify", "--file", path]).assert().success();
    redru(d).args(["verify", path]).assert().success();
    let mut bytes = std::fs::read(&snapshot)?;
    bytes[20] ^= 0x01;
    std::fs::write(&snapshot, &bytes)?;
    redru(d).args(["verify", "--file", path]).assert().code(1).stdout(predicate::str::contains("digest"));
    redru(d).args(["verify", "--file", path, path]).assert().code(2);
    Ok(())
}

/// Issue 12, point 4: a one-shot command takes exactly what the shell takes
/// (the same parser), aliases included, and `--help` still documents each.
#[test]
fn one_shot_commands_take_the_shell_syntax() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "u1", r#"{"tags": ["admin", "x"]}"#]).assert().success();
    redru(d).args(["find", "tags.0 admin"]).assert().success().stdout("u1\t{\"tags\":[\"admin\",\"x\"]}\n");
    redru(d).args(["index", "email", "unique"]).assert().success().stdout("OK\n");
    redru(d).args(["create-index", "name"]).assert().success().stdout("OK\n");
    redru(d).arg("indexes").assert().success().stdout("email\tunique\t0\t0\nname\tplain\t0\t0\n");
    redru(d).args(["set", "gone", "1"]).assert().success();
    redru(d).args(["rm", "gone"]).assert().success().stdout("OK\n");
    redru(d).arg("ls").assert().success().stdout("u1\n");
    redru(d).arg("info").assert().success().stdout(predicate::str::starts_with("{\"compactions\""));
    redru(d).args(["flush", "--yes"]).assert().success().stdout("cleared 1 key\n");
    // Options may follow the words; `--` makes the rest words even when they look like options.
    redru(d).args(["set", "k", "--", "--raw"]).assert().success();
    redru(d).args(["get", "k", "--format", "json"]).assert().success().stdout("\"--raw\"\n");
    redru(d).args(["set", "n", "-5"]).assert().success();
    redru(d).args(["get", "n"]).assert().success().stdout("-5\n");
    for alias in ["rm", "ls", "info", "flush", "create-index", "keys", "del"] {
        redru(d).args([alias, "--help"]).assert().success().stdout(predicate::str::contains("Usage: redru"));
    }
    redru(d)
        .args(["set", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("redru set 'my key' '[1, 2, 3]'").and(predicate::str::contains("Examples:")));
    redru(d).arg("--help").assert().success().stdout(predicate::str::contains("create-index"));
    // The shell's session commands say where they work.
    redru(d).arg("begin").assert().code(2).stderr(predicate::str::contains("works only in the shell and in scripts"));
    redru(d).arg("quit").assert().code(2).stderr("error: `exit` works only in the shell and in scripts\n");
    Ok(())
}

/// Issue 12, points 5 and 6: `import` reads standard input (`-`, /dev/stdin)
/// and keeps every number's digits; a value the library refuses fails the
/// whole import.
#[test]
fn import_reads_standard_input_and_keeps_digits() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let dump = "{\n\"a\": 12345678901234567890123,\n\"b\": {\"x\": 1.50}\n}\n";
    redru(d).args(["import", "-"]).write_stdin(dump).assert().success().stdout("imported 2 pairs from -\n");
    redru(d).args(["get", "a"]).assert().success().stdout("12345678901234567890123\n");
    redru(d).args(["get", "b"]).assert().success().stdout("{\"x\":1.50}\n");
    let lines = "{\"key\":\"c\",\"value\":98765432109876543210987}\n";
    redru(d)
        .args(["import", "/dev/stdin"])
        .write_stdin(lines)
        .assert()
        .success()
        .stdout("imported 1 pair from /dev/stdin\n");
    redru(d).args(["get", "c"]).assert().success().stdout("98765432109876543210987\n");
    redru(d)
        .args(["import", "-"])
        .write_stdin("{\"d\": 1, \"e\": 1e400}")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("value of \"e\"").and(predicate::str::contains("nothing was imported")));
    redru(d).args(["exists", "d"]).assert().code(1);
    redru(d).args(["import", "-"]).write_stdin("").assert().code(2).stderr(predicate::str::contains("empty"));
    // In a script, stdin holds the script.
    redru(d).write_stdin("import -\n").assert().code(2).stderr(predicate::str::contains("run it one-shot"));
    Ok(())
}

/// Issue 12, point 9: a read of a directory that does not exist creates
/// nothing and says "no such database" (exit code 2); a write creates it.
#[test]
fn reads_do_not_create_a_mistyped_directory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no3").join("x");
    for args in [
        vec!["get", "a"],
        vec!["exists", "a"],
        vec!["list"],
        vec!["count"],
        vec!["find", "a", "1"],
        vec!["explain", "a = 1"],
        vec!["indexes"],
        vec!["stats"],
        vec!["export"],
        vec!["backups"],
        vec!["delete", "a"],
        vec!["verify"],
    ] {
        redru(&missing).args(&args).assert().code(2).stdout("").stderr(predicate::str::contains("no such database"));
    }
    assert!(!dir.path().join("no3").exists());
    redru(&missing).args(["set", "a", "1"]).assert().success();
    redru(&missing).args(["get", "a"]).assert().success().stdout("1\n");
    Ok(())
}

/// Issue 12, point 11: `--format json|jsonl|table|raw` (and `--raw`); no format
/// lets a key holding a line break, or an empty key, pass for another.
#[test]
fn output_formats_for_programs_and_people() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "two\nlines", "1"]).assert().success();
    redru(d).args(["set", "", "2"]).assert().success();
    redru(d).args(["set", "plain", "{\"n\": 3}"]).assert().success();
    redru(d).arg("list").assert().success().stdout("\"\"\nplain\n\"two\\nlines\"\n");
    redru(d).args(["list", "--raw"]).assert().success().stdout("\"\"\nplain\n\"two\\nlines\"\n");
    redru(d).args(["--format", "json", "list"]).assert().success().stdout("[\"\",\"plain\",\"two\\nlines\"]\n");
    redru(d).args(["list", "--format", "jsonl"]).assert().success().stdout("\"\"\n\"plain\"\n\"two\\nlines\"\n");
    redru(d).args(["list", "--format", "table"]).assert().success().stdout("\"\"\nplain\n\"two\\nlines\"\n");
    redru(d).args(["get", "plain", "--format", "table"]).assert().success().stdout("{\n  \"n\": 3\n}\n");
    redru(d).args(["get", "plain", "--format", "json"]).assert().success().stdout("{\"n\":3}\n");
    redru(d).args(["find", "n", "3", "--format", "json"]).assert().success().stdout("{\"plain\":{\"n\":3}}\n");
    redru(d)
        .args(["find", "n", "3", "--format", "jsonl"])
        .assert()
        .success()
        .stdout("{\"key\":\"plain\",\"value\":{\"n\":3}}\n");
    redru(d).args(["find", "n", "3", "--format", "table"]).assert().success().stdout(
        predicate::str::starts_with("plain  {\"n\":3}\n")
            .and(predicate::str::contains("(1 match; full scan (3 keys examined; no index applies))")),
    );
    redru(d).args(["index", "n"]).assert().success();
    redru(d)
        .args(["indexes", "--format", "json"])
        .assert()
        .success()
        .stdout("[{\"distinct_values\":1,\"entries\":1,\"field\":\"n\",\"kind\":\"hash\",\"unique\":false}]\n");
    redru(d)
        .args(["indexes", "--format", "jsonl"])
        .assert()
        .success()
        .stdout("{\"distinct_values\":1,\"entries\":1,\"field\":\"n\",\"kind\":\"hash\",\"unique\":false}\n");
    redru(d).args(["indexes", "--format", "table"]).assert().success().stdout(predicate::str::starts_with("field"));
    redru(d).args(["backups", "--format", "json"]).assert().success().stdout("[]\n");
    redru(d).arg("backup").assert().success();
    let out = redru(d).args(["backups", "--format", "jsonl"]).assert().success().get_output().stdout.clone();
    let backup: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(backup["verified"], json!(true));
    let out = redru(d).args(["stats", "--format", "json"]).assert().success().get_output().stdout.clone();
    assert_eq!(String::from_utf8(out.clone())?.lines().count(), 1);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out)?["keys"], json!(3));
    redru(d).args(["stats", "--format", "table"]).assert().success().stdout(predicate::str::starts_with("{\n  \""));
    redru(d).args(["--raw", "--format", "json", "list"]).assert().code(2);
    Ok(())
}

/// Issue 12, point 12: the operating system's error is said once.
#[test]
fn the_os_error_is_printed_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x")?;
    let assert = redru(&file.join("db")).args(["set", "k", "1"]).assert().code(2);
    let err = String::from_utf8(assert.get_output().stderr.clone())?;
    assert_eq!(err.matches("os error 20").count(), 1, "{err}");
    Ok(())
}

/// Issue 12, point 13: `restore --file` of an export says what it is and what loads it.
#[test]
fn restoring_an_export_points_to_import() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let work = tempfile::tempdir()?;
    redru(d).args(["set", "a", "1"]).assert().success();
    for flag in ["--lines", "--force"] {
        let dump = work.path().join(format!("dump{flag}.json"));
        let dump = dump.to_str().ok_or("path")?;
        redru(d).args(["export", dump, flag]).assert().success();
        redru(d).args(["restore", "--file", dump]).assert().code(2).stderr(format!(
            "error: {dump} is an export (written by `export`), not a backup; load it with \
             `import {dump} --replace`\n"
        ));
    }
    Ok(())
}

/// Issue 12, point 14: shell-only options are refused by one-shot commands
/// and shown only in the main help; `export FILE` keeps an existing file
/// unless `--force`; counts agree with their nouns.
#[test]
fn smaller_defects() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "a", "1"]).assert().success();
    redru(d).args(["--bail", "get", "a"]).assert().code(2).stderr(predicate::str::contains("--bail applies to"));
    redru(d).args(["get", "a", "--backup-every", "1h"]).assert().code(2);
    redru(d).args(["--backup-keep", "3", "list"]).assert().code(2).stderr(predicate::str::contains("--backup-keep"));
    let help = redru(d).args(["get", "--help"]).assert().success().get_output().stdout.clone();
    let help = String::from_utf8(help)?;
    assert!(!help.contains("--bail") && !help.contains("--backup"), "{help}");
    redru(d).arg("--help").assert().success().stdout(predicate::str::contains("--bail"));

    let work = tempfile::tempdir()?;
    let file = work.path().join("dump.json");
    std::fs::write(&file, "keep me")?;
    let path = file.to_str().ok_or("path")?;
    redru(d).args(["export", path]).assert().code(2).stderr(predicate::str::contains("--force"));
    assert_eq!(std::fs::read_to_string(&file)?, "keep me");
    redru(d).args(["export", path, "--force"]).assert().success().stdout(format!("exported 1 pair to {path}\n"));
    assert_eq!(std::fs::read_to_string(&file)?, "{\n\"a\":1\n}\n");

    redru(d).args(["index", "a"]).assert().success();
    redru(d).arg("save").assert().success().stdout(predicate::str::starts_with("saved 1 key ("));
    redru(d).args(["clear", "--yes"]).assert().success().stdout("cleared 1 key\n");
    Ok(())
}

#[test]
fn find_takes_the_whole_query_language() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "u1", r#"{"name":"Al","age":30,"tags":["a"]}"#]).assert().success();
    redru(d).args(["set", "u2", r#"{"name":"Bo","age":20}"#]).assert().success();
    let find = |query: &str| -> Result<String, Box<dyn std::error::Error>> {
        let out = redru(d).args(["find", query]).output()?;
        Ok(String::from_utf8(out.stdout)?)
    };
    assert_eq!(find("tags contains a")?, "u1\t{\"name\":\"Al\",\"age\":30,\"tags\":[\"a\"]}\n");
    assert_eq!(find("sort by age desc limit 1 fields name")?, "u1\t{\"name\":\"Al\"}\n");
    assert_eq!(find("(name = Al or name = Bo) and age < 25")?, "u2\t{\"name\":\"Bo\",\"age\":20}\n");
    assert_eq!(find("not name = Al fields age")?, "u2\t{\"age\":20}\n");
    assert_eq!(find("name in [\"Bo\"] fields name")?, "u2\t{\"name\":\"Bo\"}\n");
    assert_eq!(find("age between 25 and 35 fields age")?, "u1\t{\"age\":30}\n");
    Ok(())
}

#[test]
fn a_missing_snapshot_points_to_the_newest_backup_not_to_repair() -> TestResult {
    let work = tempfile::tempdir()?;
    let d = work.path();
    redru(d).args(["set", "a", "1"]).assert().success();
    redru(d).arg("backup").assert().success();
    redru(d).arg("save").assert().success();
    redru(d).args(["set", "b", "2"]).assert().success();
    std::fs::remove_file(d.join("database.json"))?;
    let out = redru(d).args(["get", "a"]).assert().code(2).get_output().stderr.clone();
    let err = String::from_utf8(out)?;
    assert!(
        err.contains("database.json is missing") && err.contains("`cp ") && !err.contains("redru repair --dir"),
        "{err}"
    );
    redru(d).arg("repair").assert().code(2);
    // Following the advice brings everything back.
    let cp = err.split("`cp ").nth(1).and_then(|s| s.split('`').next()).ok_or("no cp command")?;
    let (from, to) = cp.split_once(' ').ok_or("cp needs two paths")?;
    std::fs::copy(from, to)?;
    redru(d).args(["get", "b"]).assert().success().stdout("2\n");
    Ok(())
}

/// Issue 12, point 8: a one-shot read of a directory another process holds
/// opens it read-only by itself (saying so once); a write is still refused;
/// `--read-only` refuses every write and changes nothing.
#[test]
fn reads_of_a_held_directory_open_it_read_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "a", "1"]).assert().success();
    let holder = Db::open(d)?;
    holder.set("b", json!(2))?;
    let got = redru(d).args(["get", "b"]).assert().success().stdout("2\n").get_output().stderr.clone();
    let note = String::from_utf8(got)?;
    assert!(note.contains("read-only") && note.contains("another process"), "{note}");
    assert_eq!(note.lines().count(), 1, "said once: {note}");
    redru(d).args(["list"]).assert().success().stdout("a\nb\n");
    redru(d).args(["set", "c", "3"]).assert().code(2).stderr(predicate::str::contains("locked"));
    holder.close()?;
    let before = crate::util::files_in(d)?;
    redru(d)
        .args(["--read-only", "set", "c", "3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("read-only").and(predicate::str::contains("--read-only")));
    redru(d).args(["--read-only", "get", "a"]).assert().success().stdout("1\n");
    assert_eq!(crate::util::files_in(d)?, before, "a read-only run changed the directory");
    Ok(())
}

#[test]
fn watch_prints_the_changes_after_a_seq_and_stops_after_count() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "user:1", r#"{"name": "Alice"}"#]).assert().success();
    redru(d).args(["set", "order:1", "1.50"]).assert().success();
    redru(d).args(["delete", "user:1"]).assert().success();
    redru(d).args(["clear", "--yes"]).assert().success();
    redru(d)
        .args(["watch", "--from", "0", "--count", "4"])
        .assert()
        .success()
        .stdout("1\tset\tuser:1\t{\"name\":\"Alice\"}\n2\tset\torder:1\t1.50\n3\tdel\tuser:1\n4\tclear\n");
    redru(d)
        .args(["watch", "user:", "--from", "1", "--count", "2", "--format", "jsonl"])
        .assert()
        .success()
        .stdout("{\"seq\":3,\"op\":\"del\",\"key\":\"user:1\"}\n{\"seq\":4,\"op\":\"clear\"}\n");
    redru(d).args(["watch", "--count", "0"]).assert().success().stdout("");
    redru(d)
        .args(["watch", "--from", "9", "--count", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("this database's log ends at record 4"));
    // After a save the log no longer holds records 1..=4.
    redru(d).args(["save"]).assert().success();
    redru(d).args(["set", "k", "1"]).assert().success();
    redru(d)
        .args(["watch", "--from", "0", "--count", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("resync from a snapshot"));
    redru(d).args(["watch", "--from", "4", "--count", "1"]).assert().success().stdout("5\tset\tk\t1\n");
    Ok(())
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_a_live_watch_cleanly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(crate::util::BIN)
        .env_remove("REDRU_DIR")
        .arg("--dir")
        .arg(dir.path())
        .arg("watch")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    // Give it time to open the database and install its handler.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status()?;
    assert!(killed.success());
    let status = child.wait()?;
    assert_eq!(status.code(), Some(0), "a watch stopped by Ctrl-C exits 0");
    // The directory was closed cleanly: it opens at once.
    Db::open(dir.path())?.close()?;
    Ok(())
}

/// Issue 18: `get` on a closed directory with a snapshot reads the value from
/// the files instead of opening, with the same output and exit codes; a log
/// with a torn tail still goes through open, which cuts it and warns.
#[test]
fn get_on_a_closed_directory_reads_the_files_or_opens() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["import", "-", "--replace"]).write_stdin("{\"a\": {\"x\": 1.50}, \"b\": 2}").assert().success();
    assert!(d.join("database.json").exists(), "a replace ends in a snapshot");
    redru(d).args(["set", "c", "3"]).assert().success();
    redru(d).args(["delete", "b"]).assert().success();
    redru(d).args(["get", "a"]).assert().success().stdout("{\"x\":1.50}\n").stderr("");
    redru(d).args(["get", "c"]).assert().success().stdout("3\n");
    redru(d).args(["get", "b"]).assert().code(1).stdout("").stderr("not found: b\n");
    let segment = std::fs::read_dir(d)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .max()
        .ok_or("no segment")?;
    let mut bytes = std::fs::read(&segment)?;
    bytes.extend_from_slice(b"0badc0de {\"seq\":9");
    std::fs::write(&segment, bytes)?;
    redru(d).args(["get", "c"]).assert().success().stdout("3\n").stderr(predicate::str::contains("torn"));
    redru(d).args(["get", "c"]).assert().success().stdout("3\n").stderr("");
    Ok(())
}
