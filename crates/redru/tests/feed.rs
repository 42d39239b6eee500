//! The change feed (`Db::subscribe`): every durable change under a prefix,
//! in log order, once each, with its sequence number; resuming from a
//! sequence number after either side restarts (read from the log files);
//! the "resync from a snapshot" answer once compaction removed the records;
//! writers never held by a subscriber that does not read; a record a failed
//! fsync rolled back never delivered (simulated disk); and a long run of
//! concurrent writers against one reader: none missing, none twice, in order;
//! and a mirror kept only from the feed, through random writes, saves and
//! reopens, equal to the database whenever it catches up.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redru::{Batch, Change, Db, Durability, Error, Options, Seq, Subscription, json};
use redru_testkit::sim::{Errno, OpKind, PathFault, SimFs};

use crate::util::TestResult;

/// How long a test waits for a change that must come.
const PATIENCE: Duration = Duration::from_secs(20);

/// (seq, op, key, value) of the next `n` changes, each within [`PATIENCE`].
fn take(sub: &mut Subscription, n: usize) -> Result<Vec<(u64, String, String, String)>, Error> {
    let mut out = Vec::new();
    while out.len() < n {
        let Some(change) = sub.next_timeout(PATIENCE)? else { break };
        out.push(describe(&change));
    }
    Ok(out)
}

fn describe(change: &Change) -> (u64, String, String, String) {
    (
        change.seq().0,
        change.op().to_owned(),
        change.key().unwrap_or("").to_owned(),
        change.value().map(|v| v.as_str().to_owned()).unwrap_or_default(),
    )
}

fn row(seq: u64, op: &str, key: &str, value: &str) -> (u64, String, String, String) {
    (seq, op.into(), key.into(), value.into())
}

#[test]
fn changes_come_in_log_order_with_their_seq_and_only_under_the_prefix() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.set("user:0", json!("before"))?; // 1: before the subscription
    let mut all = db.subscribe("", None)?;
    let mut users = db.subscribe("user:", None)?;
    db.set("user:1", json!({"name": "Alice"}))?; // 2
    db.set("order:1", json!(7))?; // 3
    db.create_index("name")?; // 4: no change to data
    db.delete("user:1")?; // 5
    db.batch(Batch::new().set("user:2", json!(2)).set("order:2", json!(2)).delete("user:0"))?; // 6
    db.clear()?; // 7
    db.set("user:3", json!(true))?; // 8
    assert_eq!(
        take(&mut users, 6)?,
        [
            row(2, "set", "user:1", r#"{"name":"Alice"}"#),
            row(5, "del", "user:1", ""),
            row(6, "set", "user:2", "2"),
            row(6, "del", "user:0", ""),
            row(7, "clear", "", ""),
            row(8, "set", "user:3", "true"),
        ]
    );
    assert_eq!(users.position(), Seq(8));
    let seqs: Vec<u64> = take(&mut all, 8)?.into_iter().map(|c| c.0).collect();
    assert_eq!(seqs, [2, 3, 5, 6, 6, 6, 7, 8]);
    assert!(users.try_next()?.is_none(), "nothing more was written");
    Ok(())
}

#[test]
fn position_never_points_into_a_batch_and_passes_records_not_under_the_prefix() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    let mut sub = db.subscribe("a", None)?;
    db.batch(Batch::new().set("a1", json!(1)).set("a2", json!(2)))?; // 1
    db.set("b", json!(0))?; // 2
    db.set("a3", json!(3))?; // 3
    assert_eq!(sub.next_timeout(PATIENCE)?.map(|c| c.seq()), Some(Seq(1)));
    assert_eq!(sub.position(), Seq(0), "one change of the batch is still to come");
    assert_eq!(sub.next_timeout(PATIENCE)?.map(|c| c.seq()), Some(Seq(1)));
    assert_eq!(sub.position(), Seq(1));
    assert_eq!(sub.next_timeout(PATIENCE)?.map(|c| c.seq()), Some(Seq(3)));
    assert_eq!(sub.position(), Seq(3));
    Ok(())
}

#[test]
fn a_subscriber_resumes_from_its_position_after_the_database_restarts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let position = {
        let db = Db::open(dir.path())?;
        let mut sub = db.subscribe("k", None)?;
        for i in 0..10 {
            db.set(format!("k{i}"), json!(i))?;
        }
        assert_eq!(take(&mut sub, 4)?.len(), 4);
        let position = sub.position();
        db.close()?;
        // The closed database ends the feed, naming where to resume.
        let mut rest = 0;
        let stopped = loop {
            match sub.next_timeout(PATIENCE) {
                Ok(Some(_)) => rest += 1,
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        assert_eq!(rest, 6, "what was durable before the close is still delivered");
        assert!(matches!(stopped, Some(Error::FeedStopped { position: 10, .. })), "{stopped:?}");
        position
    };
    assert_eq!(position, Seq(4));
    let db = Db::open(dir.path())?;
    db.set("k10", json!(10))?;
    let mut sub = db.subscribe("k", Some(position))?;
    let keys: Vec<String> = take(&mut sub, 7)?.into_iter().map(|c| c.2).collect();
    assert_eq!(keys, ["k4", "k5", "k6", "k7", "k8", "k9", "k10"]);
    // A subscriber that restarts (a new subscription from the stored number) too.
    drop(sub);
    let mut again = db.subscribe("k", Some(Seq(9)))?;
    assert_eq!(take(&mut again, 2)?, [row(10, "set", "k9", "9"), row(11, "set", "k10", "10")]);
    Ok(())
}

#[test]
fn after_compaction_an_old_position_is_refused_with_the_first_available_and_resync_works() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    for i in 0..5 {
        db.set(format!("k{i}"), json!(i))?;
    }
    db.save()?; // records 1..=5 folded into the snapshot, their segment removed
    db.set("k5", json!(5))?; // 6
    match db.subscribe("k", Some(Seq(2))) {
        Err(Error::FeedTruncated { from: 2, first_available: 6 }) => {}
        other => return Err(format!("expected FeedTruncated, got {other:?}").into()),
    }
    let message = Error::FeedTruncated { from: 2, first_available: 6 }.to_string();
    assert!(message.contains("resync from a snapshot"), "{message}");
    // From the snapshot's own record on, the log still has everything.
    let mut sub = db.subscribe("k", Some(Seq(5)))?;
    assert_eq!(take(&mut sub, 1)?, [row(6, "set", "k5", "5")]);
    // The resync: the state at one record, then the changes after it.
    let (state, mut sub) = db.subscribe_with_state("k")?;
    assert_eq!(state.len(), 6);
    assert_eq!(sub.position(), Seq(6));
    db.delete("k0")?;
    assert_eq!(take(&mut sub, 1)?, [row(7, "del", "k0", "")]);
    assert!(matches!(db.subscribe("k", Some(Seq(99))), Err(Error::FeedAhead { from: 99, last: 7 })));
    Ok(())
}

#[test]
fn a_subscriber_that_does_not_read_never_holds_writers_and_catches_up_from_the_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    // A ring of 64 records: the subscriber falls behind it at once.
    let db = Options::new().durability(Durability::Never).feed_buffer(64).open(dir.path())?;
    let mut sub = db.subscribe("", None)?;
    // The subscriber is paused (nobody calls `next`) while 20,000 writes
    // complete: if a writer waited for it, this would never return.
    const N: u64 = 20_000;
    for i in 0..N {
        db.set(format!("k{i}"), json!(i))?;
    }
    db.sync()?;
    let mut expected = 1;
    while expected <= N {
        let change = sub.next_timeout(PATIENCE)?.ok_or("the feed stalled")?;
        assert_eq!(change.seq(), Seq(expected));
        assert_eq!(change.key(), Some(format!("k{}", expected - 1).as_str()));
        expected += 1;
    }
    Ok(())
}

#[test]
fn the_relaxed_modes_deliver_without_an_explicit_sync() -> TestResult {
    for durability in [Durability::Never, Durability::Buffered, Durability::Periodic(Duration::from_millis(20))] {
        let dir = tempfile::tempdir()?;
        let db = Options::new().durability(durability).buffer_flush_interval(None).open(dir.path())?;
        let mut sub = db.subscribe("", None)?;
        db.set("a", json!(1))?;
        assert_eq!(take(&mut sub, 1)?, [row(1, "set", "a", "1")], "{durability}");
        // Written (not synced) while nobody subscribed, then followed from an older number.
        drop(sub);
        db.set("b", json!(2))?;
        let mut late = db.subscribe("", Some(Seq(1)))?;
        assert_eq!(take(&mut late, 1)?, [row(2, "set", "b", "2")], "{durability}");
    }
    Ok(())
}

/// Writers on several threads, one reader: every change exactly once, in
/// order. 200,000 changes; `REDRU_FEED_CHANGES=1000000` for the issue's run.
#[test]
fn a_reader_sees_every_change_of_concurrent_writers_once_and_in_order() -> TestResult {
    let total: u64 = std::env::var("REDRU_FEED_CHANGES").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    const WRITERS: u64 = 4;
    let per = total / WRITERS;
    let dir = tempfile::tempdir()?;
    // Automatic compaction only past 64 MiB of log: never in this run, so a
    // reader that falls behind always finds the records in the files.
    let db = Arc::new(
        Options::new()
            .durability(Durability::Never)
            .feed_buffer(4096)
            .auto_compact_min_bytes(64 << 20)
            .open(dir.path())?,
    );
    let mut sub = db.subscribe("w", None)?;
    let failed = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = Arc::clone(&db);
            let failed = Arc::clone(&failed);
            std::thread::spawn(move || {
                for i in 0..per {
                    if db.set(format!("w{w}"), json!(i)).is_err() {
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            })
        })
        .collect();
    let mut next_value = vec![0u64; WRITERS as usize];
    let mut last_seq = 0;
    for _ in 0..per * WRITERS {
        let change = sub.next_timeout(PATIENCE)?.ok_or("the feed stalled")?;
        let (seq, key, value) = match &change {
            Change::Set { seq, key, value } => (seq.0, key.as_str(), value.to_value()),
            other => return Err(format!("unexpected change {other:?}").into()),
        };
        assert!(seq > last_seq, "seq {seq} after {last_seq}");
        last_seq = seq;
        let w: usize = key[1..].parse()?;
        assert_eq!(value, json!(next_value[w]), "writer {w}'s changes in order, none missing or twice");
        next_value[w] += 1;
    }
    for writer in writers {
        writer.join().map_err(|_| "a writer panicked")?;
    }
    assert!(!failed.load(Ordering::Relaxed));
    assert_eq!(next_value, vec![per; WRITERS as usize]);
    assert!(sub.try_next()?.is_none(), "nothing more");
    Ok(())
}

#[test]
fn a_record_rolled_back_after_a_failed_fsync_is_never_delivered() -> TestResult {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/"));
    let db = Options::new().vfs(fs.vfs()).auto_compact(false).open("/db")?;
    let mut sub = db.subscribe("", None)?;
    db.set("kept", json!(1))?;
    fs.set_path_fault(Some(PathFault { name: ".wal".into(), kinds: vec![OpKind::Sync], errno: Errno::Eio }));
    assert!(db.set("lost", json!(2)).is_err(), "the fsync failed: the write is refused");
    fs.set_path_fault(None);
    assert_eq!(take(&mut sub, 1)?, [row(1, "set", "kept", "1")]);
    match sub.next_timeout(PATIENCE) {
        Err(Error::FeedStopped { position: 1, .. }) => {}
        other => return Err(format!("expected the feed to stop after record 1, got {other:?}").into()),
    }
    assert!(sub.next().is_none(), "after its error the iterator ends");
    Ok(())
}

/// In a relaxed mode a write is acknowledged before it is durable; when the
/// sync the waiting subscriber asks for fails, the write is rolled back and
/// the subscriber never sees it (though it was applied and in the feed's ring).
#[test]
fn an_acknowledged_relaxed_write_that_a_failed_sync_takes_back_is_never_delivered() -> TestResult {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/"));
    let db = Options::new().vfs(fs.vfs()).durability(Durability::Never).auto_compact(false).open("/db")?;
    let mut sub = db.subscribe("", None)?;
    db.set("lost", json!(2))?;
    assert_eq!(db.get_value("lost"), Some(json!(2)), "acknowledged and readable, not durable");
    fs.set_path_fault(Some(PathFault { name: ".wal".into(), kinds: vec![OpKind::Sync], errno: Errno::Eio }));
    match sub.next_timeout(PATIENCE) {
        Err(Error::FeedStopped { position: 0, .. }) => {}
        other => return Err(format!("expected the feed to stop before record 1, got {other:?}").into()),
    }
    assert!(fs.fired() > 0, "the subscriber's sync hit the fault");
    assert_eq!(db.get_value("lost"), None, "rolled back");
    Ok(())
}

/// Compaction removes segments while a slow reader reads them from the
/// files: it gets every record in order up to the point where the log no
/// longer has the next one, and then `FeedTruncated`, never a gap.
#[test]
fn compaction_under_a_reader_of_the_files_gives_a_gapless_prefix_then_truncated() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(
        Options::new()
            .durability(Durability::Never)
            .feed_buffer(16)
            .auto_compact_min_bytes(64 << 10)
            .auto_compact_ratio(0.1)
            .open(dir.path())?,
    );
    let mut sub = db.subscribe("", None)?;
    const N: u64 = 30_000;
    let writer = {
        let db = Arc::clone(&db);
        std::thread::spawn(move || -> Result<(), Error> {
            for i in 0..N {
                db.set(format!("k{}", i % 100), json!(i))?;
            }
            db.sync()
        })
    };
    let mut expected = 1;
    let outcome = loop {
        match sub.next_timeout(PATIENCE) {
            Ok(Some(change)) => {
                assert_eq!(change.seq(), Seq(expected), "no gap, nothing twice");
                assert_eq!(change.value().map(|v| v.to_value()), Some(json!(expected - 1)));
                expected += 1;
                if expected > N {
                    break None;
                }
            }
            Ok(None) => return Err("the feed stalled".into()),
            Err(e) => break Some(e),
        }
    };
    writer.join().map_err(|_| "the writer panicked")??;
    match outcome {
        None => {}
        Some(Error::FeedTruncated { from, first_available }) => {
            assert_eq!(from, expected - 1, "it names the last record delivered");
            assert!(first_available > expected, "the log really lost record {expected}");
        }
        Some(other) => return Err(other.into()),
    }
    Ok(())
}

/// A mirror of the keys under a prefix kept only from the feed (resuming
/// from its stored position every few steps, resyncing from the state when
/// compaction removed what it needed) equals the database after every step
/// of a random run of sets, deletes, batches, clears, saves and reopens.
#[test]
fn a_mirror_kept_from_the_feed_matches_the_database_across_reopens_and_saves() -> TestResult {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir()?;
    let open = || Options::new().auto_compact(false).open(dir.path());
    let mut rng = redru_testkit::rng::Rng::new(16);
    let mut db = open()?;
    let mut mirror: BTreeMap<String, String> = BTreeMap::new();
    let mut position = Seq(0);
    let (mut resyncs, mut resumed) = (0, 0);
    for step in 0..300 {
        let key = |rng: &mut redru_testkit::rng::Rng| {
            format!("{}{}", if rng.chance(2, 3) { "m:" } else { "x:" }, rng.below(8))
        };
        match rng.below(20) {
            0 => {
                db.close()?;
                db = open()?;
            }
            1 => {
                db.save()?;
            }
            2 => {
                db.clear()?;
            }
            3 | 4 => {
                let (a, b, c) = (key(&mut rng), key(&mut rng), key(&mut rng));
                db.batch(Batch::new().set(a, json!(step)).delete(b).set(c, json!([step])))?;
            }
            5..=14 => db.set(key(&mut rng), json!({ "step": step }))?,
            _ => {
                db.delete(&key(&mut rng))?;
            }
        }
        // The subscriber comes by now and then: saves in between leave it behind.
        if !rng.chance(1, 3) {
            continue;
        }
        match db.subscribe("m:", Some(position)) {
            Ok(mut feed) => {
                resumed += 1;
                while let Some(change) = feed.try_next()? {
                    match change {
                        Change::Set { key, value, .. } => {
                            mirror.insert(key, value.as_str().to_owned());
                        }
                        Change::Delete { key, .. } => {
                            mirror.remove(&key);
                        }
                        Change::Clear { .. } => mirror.clear(),
                        other => return Err(format!("unexpected {other:?}").into()),
                    }
                }
                position = feed.position();
            }
            Err(Error::FeedTruncated { .. }) => {
                resyncs += 1;
                let (entries, feed) = db.subscribe_with_state("m:")?;
                mirror = entries.into_iter().map(|(k, v)| (k, v.as_str().to_owned())).collect();
                position = feed.position();
            }
            Err(e) => return Err(e.into()),
        }
        let actual: BTreeMap<String, String> =
            db.scan_prefix("m:").into_iter().map(|(k, v)| (k, v.as_str().to_owned())).collect();
        assert_eq!(mirror, actual, "after step {step}");
    }
    assert!(resumed > 50 && resyncs > 0, "both paths ran: {resumed} resumed, {resyncs} resynced");
    Ok(())
}

/// An import that replaces the data (or a restore) is installed as a
/// snapshot at one sequence number with no log record: a subscriber cannot
/// be given its changes one by one, so it is told to resync from the record
/// before it, never left waiting or shown the writes after it as if nothing
/// had happened between.
#[test]
fn a_replace_import_under_a_subscriber_asks_it_to_resync() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.set("k0", json!(0))?; // 1
    // Waiting when the import lands, with nothing written after it.
    let mut waiting = db.subscribe("k", None)?;
    let mut sub = db.subscribe("k", None)?;
    db.import_pairs(vec![("k1", redru::Doc::parse("1")?)], true)?; // 2, the snapshot
    match waiting.next_timeout(Duration::from_secs(5)) {
        Err(Error::FeedTruncated { from: 1, .. }) => {}
        other => return Err(format!("expected FeedTruncated from 1, got {other:?}").into()),
    }
    db.set("k2", json!(2))?; // 3
    match sub.next_timeout(Duration::from_secs(5)) {
        Err(Error::FeedTruncated { from: 1, first_available: 3 }) => {}
        other => return Err(format!("expected FeedTruncated from 1, got {other:?}").into()),
    }
    // A new subscription from before the import is refused the same way.
    assert!(matches!(db.subscribe("k", Some(Seq(1))), Err(Error::FeedTruncated { from: 1, first_available: 3 })));
    let (state, mut sub) = db.subscribe_with_state("k")?;
    assert_eq!(state.len(), 2);
    db.set("k3", json!(3))?;
    assert_eq!(take(&mut sub, 1)?, [row(4, "set", "k3", "3")]);
    Ok(())
}
