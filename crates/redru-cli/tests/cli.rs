//! Guards the one-shot command line through the real binary: outputs, exit
//! codes (0 ok, 1 not found / problems found, 2 usage errors and failures),
//! and the stderr messages for bad input, an unknown command and a directory
//! another process holds.

use crate::util::{TestResult, redru};
use predicates::prelude::*;
use redru::{Db, json};

#[test]
fn set_then_get_round_trips_json_and_text() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d).args(["set", "user:1", r#"{"name": "Alice", "age": 30}"#]).assert().success().stdout("OK\n").stderr("");
    redru(d).args(["get", "user:1"]).assert().success().stdout("{\"age\":30,\"name\":\"Alice\"}\n");
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
fn invalid_json_inside_brackets_is_an_error_not_a_string() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    for bad in [r#"{"a":"#, "[1, 2", "{a: 1}", r#""open"#] {
        redru(d)
            .args(["set", "k", bad])
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::starts_with("error: the value for `k`: invalid JSON"));
    }
    redru(d).args(["get", "k"]).assert().code(1);
    Ok(())
}

#[test]
fn usage_errors_exit_2_and_say_what_is_missing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    redru(d)
        .arg("set")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("required arguments").and(predicate::str::contains("<KEY>")));
    redru(d).args(["set", "k"]).assert().code(2).stderr(predicate::str::contains("<VALUE>"));
    redru(d).arg("get").assert().code(2).stderr(predicate::str::contains("<KEY>"));
    redru(d)
        .arg("frobnicate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unrecognized subcommand 'frobnicate'"));
    redru(d).args(["list", "a", "b"]).assert().code(2).stderr(predicate::str::contains("unexpected argument"));
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
    for args in [vec!["get", "k"], vec!["set", "k", "1"], vec!["verify"], vec!["compact"]] {
        redru(d).args(&args).assert().code(2).stdout("").stderr(
            predicate::str::starts_with("error: ")
                .and(predicate::str::contains(format!("locked by another redru process (pid {pid})"))),
        );
    }
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
        .stdout("u1\t{\"age\":30,\"email\":\"a@x\",\"name\":\"Alice\"}\n");
    redru(d).args(["explain", "name = Alice"]).assert().success().stdout(predicate::str::starts_with("full scan"));
    redru(d).args(["index", "name"]).assert().success().stdout("OK\n");
    redru(d).args(["index", "email", "--unique"]).assert().success();
    redru(d).arg("indexes").assert().success().stdout("email\tunique\t1\t1\nname\tplain\t3\t3\n");
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
    redru(d).arg("save").assert().success().stdout(predicate::str::starts_with("saved 1 keys ("));
    redru(d).arg("save").assert().success().stdout("nothing changed since the last save (1 keys)\n");
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
        .stdout(predicate::str::starts_with("exported 1 pairs"));
    // Like every file redru writes, whatever the umask (0666 for a new file).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dump)?.permissions().mode() & 0o777, 0o600, "export file mode");
    }
    redru(d).args(["clear", "--yes"]).assert().success();
    redru(d).arg("import").arg(&dump).assert().success().stdout(predicate::str::starts_with("imported 1 pairs"));
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
    let second_line = bytes.iter().position(|&b| b == b'\n').ok_or("one line")? + 1;
    let at = second_line + 10;
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
