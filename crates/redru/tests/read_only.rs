//! Guards `Options::read_only`: a second reader beside a writer. It takes no
//! lock, changes no file (a torn tail stays), refuses every write, and sees a
//! state that really existed while a writer process appends, saves and
//! compacts in a loop (never a mix of two states).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redru::{Batch, Db, Durability, Error, Options, json};

use crate::util::{TestResult, dir_contents, segments};

fn read_only(dir: &std::path::Path) -> redru::Result<Db> {
    Options::new().read_only(true).open(dir)
}

#[test]
fn a_reader_beside_a_writer_changes_nothing_and_refuses_writes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let writer = Db::open(dir.path())?;
    writer.set("a", json!(1))?;
    writer.create_index("n")?;
    writer.save()?;
    writer.set("b", json!({"n": 2}))?;
    let before = dir_contents(dir.path());
    let reader = read_only(dir.path())?;
    assert!(reader.is_read_only());
    assert_eq!(reader.get_value("a"), Some(json!(1)));
    assert_eq!(reader.find("n", &json!(2))?, ["b"]);
    for refused in [
        reader.set("c", json!(3)).err(),
        reader.delete("a").err(),
        reader.batch(Batch::new().set("c", json!(3))).err(),
        reader.create_index("x").err(),
        reader.save().err(),
        reader.backup().err(),
        reader.clear().err(),
    ] {
        assert!(matches!(refused, Some(Error::ReadOnly { .. })), "{refused:?}");
    }
    reader.sync()?;
    reader.close()?;
    assert_eq!(dir_contents(dir.path()), before, "a read-only open changed the directory");
    // The writer never noticed.
    writer.set("c", json!(3))?;
    assert_eq!(read_only(dir.path())?.get_value("c"), Some(json!(3)));
    Ok(())
}

#[test]
fn a_missing_directory_is_not_created() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no/such/db");
    assert!(matches!(read_only(&missing), Err(Error::NoDatabase { .. })));
    assert!(!missing.exists());
    Ok(())
}

#[test]
fn a_torn_tail_is_read_around_not_cut() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let db = Db::open(dir.path())?;
        db.set("a", json!(1))?;
        db.set("b", json!(2))?;
        db.close()?;
    }
    let segment = segments(dir.path()).pop().ok_or("no segment")?;
    let mut bytes = std::fs::read(&segment)?;
    bytes.extend_from_slice(b"0badcafe {\"seq\":3,\"op\":\"set\",\"ke");
    std::fs::write(&segment, &bytes)?;
    let reader = read_only(dir.path())?;
    assert_eq!(reader.len(), 2);
    drop(reader);
    assert_eq!(std::fs::read(&segment)?, bytes, "the torn tail was cut by a read-only open");
    Ok(())
}

const WRITER_DIR: &str = "REDRU_READ_ONLY_WRITER_DIR";

/// The writer process of `views_beside_a_saving_writer_are_real_states`:
/// batches that set `k<i>` and `last` = i together, a save every 40 batches
/// (which renames the snapshot and removes the log it covers), until stopped.
#[test]
#[ignore = "started by views_beside_a_saving_writer_are_real_states"]
fn writer_child() -> Result<(), Error> {
    let Some(dir) = std::env::var_os(WRITER_DIR) else { return Ok(()) };
    let db = Options::new().durability(Durability::Always).auto_compact(false).open(&dir)?;
    println!("READY");
    for i in 0..1_000_000u64 {
        db.batch(Batch::new().set(format!("k{i}"), json!(i)).set("last", json!(i)))?;
        if i % 40 == 39 {
            db.save()?;
        }
    }
    Ok(())
}

#[test]
fn views_beside_a_saving_writer_are_real_states() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--ignored", "--exact", "read_only::writer_child", "--nocapture", "--test-threads=1", "-q"])
        .env(WRITER_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // libtest may print its own lines first.
    let ready = lines.by_ref().take(20).map_while(Result::ok).any(|l| l.contains("READY"));
    let outcome = (|| -> TestResult {
        assert!(ready, "the writer did not start");
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut views, mut highest) = (0u64, 0u64);
        // Until the writer has saved several times (bounded in time).
        while highest < 200 && Instant::now() < deadline {
            let view = read_only(dir.path())?;
            // One state: every k0..=last, nothing after it.
            if let Some(last) = view.get_value("last").and_then(|v| v.as_u64()) {
                assert_eq!(view.len() as u64, last + 2, "view at last={last} holds {} keys", view.len());
                for i in [0, last / 2, last] {
                    assert_eq!(view.get_value(&format!("k{i}")), Some(json!(i)), "k{i} missing at last={last}");
                }
                assert!(view.get(&format!("k{}", last + 1)).is_none(), "a key after last={last}");
                assert!(last >= highest, "a view went back in time: {last} after {highest}");
                highest = last;
                views += 1;
            }
            view.close()?;
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            views >= 10 && highest > 80,
            "only {views} views, up to last={highest}: the writer or the reader stalled"
        );
        Ok(())
    })();
    child.kill()?;
    child.wait()?;
    outcome
}
