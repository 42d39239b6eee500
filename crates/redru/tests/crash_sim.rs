//! Power loss on a simulated file system: no acknowledged write is ever lost.
//!
//! Random workloads (set, delete, batch, `update` increments, batches with a
//! condition, clear, index create/drop, save,
//! automatic compaction, sync, reopen, torn writes) run on `tests/sim`; a crash
//! is taken before every mutating file-system operation, several crash images
//! each (a prefix of the unsynced writes, the last one torn, unsynced
//! directory operations dropped), some with a second crash during recovery.
//! Every image must reopen to the state after some record between "last
//! acknowledged" and "last started", indexes equal to a rebuild. Negative
//! controls (acknowledge before fsync, no directory fsync) must be caught.
//! `REDRU_CRASH_SCALE=<n>` multiplies the work; `REDRU_CRASH_SEED=<seed>` reruns one seed.

use redru_testkit::sim;

use std::path::Path;
use std::sync::Arc;

use redru::{Durability, Options, json};
use sim::explore::{RECOVER, Tally, check_image, check_run};
use sim::model::{Config, Run, workload};
use sim::{Broken, OpKind, Rng, SimFs};

fn scale() -> u64 {
    std::env::var("REDRU_CRASH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}

fn only_seed() -> Option<u64> {
    std::env::var("REDRU_CRASH_SEED").ok().and_then(|s| s.parse().ok())
}

/// How the explored database is broken, for negative controls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Control {
    None,
    SkipSync,
    NoDirSync,
}

/// Runs the workload of `seed` once, then crashes before every mutation.
fn explore(seed: u64, config: Config, control: Control, len: usize, images: u64, tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    let ops = workload(&mut rng, len);
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/"));
    let vfs: Arc<dyn redru::vfs::Vfs> = match control {
        Control::NoDirSync => Arc::new(Broken { inner: fs.clone(), no_dir_sync: true, swallow_sync_errors: false }),
        _ => fs.vfs(),
    };
    let config = Config { skip_sync: control == Control::SkipSync, ..config };
    fs.record(true);
    let mut run = Run::start(fs.clone(), vfs, config);
    run.run_all(&ops);
    run.close();
    fs.record(false);
    let mut points = fs.take_history();
    points.push(Arc::new(fs.state()));
    let context = |n: usize| format!("seed {seed} ({config:?}), crash before mutation {n} of {}", points.len() - 1);
    check_run(&run, &fs, &format!("seed {seed} ({config:?})"), tally);
    for (n, state) in points.iter().enumerate() {
        tally.crash_points += 1;
        for _ in 0..images {
            if let Err(why) = check_image(&run, n as u64, state.crash_image(&mut rng), &mut rng, tally) {
                tally.failures.push(format!("{}: {why}", context(n)));
            }
        }
    }
}

const CONFIGS: [Config; 4] = [
    Config { durability: Durability::Always, auto_compact: None, skip_sync: false },
    Config { durability: Durability::Always, auto_compact: Some(700), skip_sync: false },
    Config { durability: Durability::Never, auto_compact: None, skip_sync: false },
    Config { durability: Durability::Never, auto_compact: Some(700), skip_sync: false },
];

/// Modes where only `sync`, `save` and close make writes durable, with a log
/// buffer of a few records (`sim::model::SIM_BUFFER_BYTES`).
const BUFFERED: [Config; 2] = [
    Config { durability: Durability::Buffered, auto_compact: None, skip_sync: false },
    Config { durability: Durability::Buffered, auto_compact: Some(700), skip_sync: false },
];

/// Explores `seeds` on two threads (the work is CPU-bound and independent),
/// seed `s` in `configs[s % configs.len()]`.
/// No failures and no ordering breaches, and (over the whole seed range) at
/// least `min_states` x `scale()` crash states explored.
fn assert_clean(tally: &Tally, min_states: u64) {
    let first = |v: &[String]| v[..v.len().min(10)].join("\n");
    assert!(tally.failures.is_empty(), "{} failures, first ones:\n{}", tally.failures.len(), first(&tally.failures));
    assert!(tally.rule_breaches.is_empty(), "ordering rules broken:\n{}", first(&tally.rule_breaches));
    if only_seed().is_none() {
        assert!(tally.states >= min_states * scale(), "only {} crash states explored", tally.states);
    }
}

fn explore_all(seeds: &[u64], configs: &[Config], control: Control, images: u64) -> Tally {
    let halves: Vec<Vec<u64>> =
        vec![seeds.iter().copied().step_by(2).collect(), seeds.iter().copied().skip(1).step_by(2).collect()];
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = halves
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    for seed in part {
                        let config = configs[(seed % configs.len() as u64) as usize];
                        explore(seed, config, control, 30, images, &mut tally);
                    }
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut total = Tally::default();
    for t in tallies {
        total.merge(t);
    }
    total
}

#[test]
fn power_loss_never_loses_acknowledged_writes() {
    let started = std::time::Instant::now();
    let seeds: Vec<u64> = match only_seed() {
        Some(seed) => vec![seed],
        None => (0..180 * scale()).collect(),
    };
    let tally = explore_all(&seeds, &CONFIGS, Control::None, 6);
    eprintln!(
        "crash_sim: {} crash states ({} crash points x 6 images, {} crashes during recovery, {} writes after recovery) from {} workloads in {:.1?}",
        tally.states,
        tally.crash_points,
        tally.recovery_crashes,
        tally.writes_after_recovery,
        seeds.len(),
        started.elapsed()
    );
    assert_clean(&tally, 100_000);
}

/// `Durability::Buffered`: after any power loss the recovered state is the
/// state after some record between the last one a completed `sync`, `save`
/// or close covered and the last one written (a prefix of the writes, in order).
#[test]
fn buffered_power_loss_keeps_a_prefix_with_everything_synced() {
    let started = std::time::Instant::now();
    let seeds: Vec<u64> = match only_seed() {
        Some(seed) => vec![seed],
        None => (3000..3000 + 24 * scale()).collect(),
    };
    let tally = explore_all(&seeds, &BUFFERED, Control::None, 6);
    eprintln!(
        "crash_sim, buffered: {} crash states ({} crash points x 6 images) from {} workloads in {:.1?}",
        tally.states,
        tally.crash_points,
        seeds.len(),
        started.elapsed()
    );
    assert_clean(&tally, 12_000);
}

fn log_appends(fs: &SimFs) -> usize {
    let is_log = |p: &Path| {
        redru::internal::log::parse_segment_name(
            &p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        )
        .is_some()
    };
    fs.trace().iter().filter(|t| t.kind == OpKind::Append && is_log(&t.path)).count()
}

fn buffered(fs: &SimFs) -> Options {
    Options::new().vfs(fs.vfs()).durability(Durability::Buffered).buffer_flush_interval(None)
}

#[test]
fn buffered_writes_reach_the_file_system_only_at_sync() -> Result<(), Box<dyn std::error::Error>> {
    // The control: in `Never` mode every write is handed to the OS at once.
    let fs = SimFs::new();
    // These count the log's writes: no preallocation's among them.
    fs.set_preallocation(0);
    fs.mkdir_durable(Path::new("/db"));
    let db = Options::new().vfs(fs.vfs()).durability(Durability::Never).open("/db")?;
    let before = log_appends(&fs);
    db.set("k", json!({"small": true}))?;
    assert_eq!(log_appends(&fs), before + 1);
    drop(db);

    let fs = SimFs::new();
    // These count the log's writes: no preallocation's among them.
    fs.set_preallocation(0);
    fs.mkdir_durable(Path::new("/db"));
    let db = buffered(&fs).open("/db")?;
    let before = log_appends(&fs);
    db.set("k", json!({"small": true}))?;
    db.batch(redru::Batch::new().set("b", json!(2)).delete("k"))?;
    db.create_index("small")?;
    assert_eq!(log_appends(&fs), before, "a buffered write reached the file system before sync");
    let segment = redru::internal::log::list_segments(&fs, Path::new("/db"))?.remove(0).path;
    // Only the segment's header is there.
    let data = fs.contents(&segment)?;
    assert!(crate::util::log_data(&data).split_inclusive(|&b| b == b'\n').all(redru::internal::record::is_marker));
    let logical = db.stats().wal_bytes;
    assert!(logical > 0, "stats count the buffered records");
    // A crash of the process now loses the buffer.
    let crashed = SimFs::from_state(fs.state().process_crash_image());
    assert_eq!(RECOVER.options(crashed.vfs()).open("/db")?.stats().last_seq, 0);
    db.sync()?;
    assert_eq!(log_appends(&fs), before + 1, "sync hands the whole buffer to the OS in one write");
    assert_eq!(crate::util::log_data(&fs.contents(&segment)?).len() as u64, logical);
    assert_eq!(db.stats().wal_bytes, logical);
    // Synced: it survives the strictest power loss.
    let db = RECOVER.options(durable_only(&fs).vfs()).open("/db")?;
    assert_eq!(db.stats().last_seq, 3);
    assert_eq!(db.get_value("b").as_ref(), Some(&json!(2)));
    assert!(db.get("k").is_none());
    Ok(())
}

#[test]
fn a_full_buffer_is_written_and_a_process_crash_loses_at_most_the_buffer() -> Result<(), Box<dyn std::error::Error>> {
    let fs = SimFs::new();
    // These count the log's writes: no preallocation's among them.
    fs.set_preallocation(0);
    fs.mkdir_durable(Path::new("/db"));
    let db = buffered(&fs).buffer_bytes(1024).open("/db")?;
    let before = log_appends(&fs);
    for i in 0..200 {
        db.set(format!("k{i:03}"), json!({"i": i, "pad": "xxxxxxxxxxxxxxxxxxxx"}))?;
    }
    let logical = db.stats().wal_bytes;
    let segment = redru::internal::log::list_segments(&fs, Path::new("/db"))?.remove(0).path;
    let in_file = crate::util::log_data(&fs.contents(&segment)?).len() as u64;
    let appends = (log_appends(&fs) - before) as u64;
    // Each write hands over at least the buffer's size, and leaves less than that behind.
    assert!(appends >= 1 && in_file >= appends * 1024, "{appends} appends of {in_file} bytes");
    assert!(logical - in_file < 1024, "{} bytes still buffered", logical - in_file);
    // A crash of the process alone: what was handed to the OS survives, in order.
    let crashed = SimFs::from_state(fs.state().process_crash_image());
    let recovered = RECOVER.options(crashed.vfs()).open("/db")?;
    let k = recovered.stats().last_seq;
    assert!(k > 0 && k < 200 && recovered.recovery().torn_tail.is_none(), "recovered up to record {k}");
    assert_eq!(recovered.stats().wal_bytes, in_file);
    assert_eq!(recovered.keys(), (0..k).map(|i| format!("k{i:03}")).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn negative_control_acknowledging_before_fsync_is_caught() {
    let seeds: Vec<u64> = (1000..1012).collect();
    let tally = explore_all(&seeds, &CONFIGS, Control::SkipSync, 3);
    let lost = tally.failures.iter().filter(|f| f.contains("lost acknowledged records")).count();
    eprintln!(
        "negative control (ack before fsync): {lost} of {} crash states lost acknowledged writes",
        tally.states + lost as u64
    );
    assert!(lost > 0, "the power-loss suite did not notice writes acknowledged before fsync");
}

#[test]
fn negative_control_skipping_the_directory_fsync_is_caught() {
    let seeds: Vec<u64> = (2000..2012).collect();
    let tally = explore_all(&seeds, &CONFIGS, Control::NoDirSync, 3);
    let lost = tally.failures.iter().filter(|f| f.contains("lost acknowledged") || f.contains("backup")).count();
    eprintln!(
        "negative control (no directory fsync): {lost} crash states lost acknowledged data; {} ordering-rule breaches flagged",
        tally.rule_breaches.len()
    );
    assert!(lost > 0, "the power-loss suite did not notice lost creations and renames");
    assert!(!tally.rule_breaches.is_empty(), "the ordering rules did not notice missing directory syncs");
}

/// A crash that keeps nothing unsynced: the strictest power loss.
fn durable_only(fs: &SimFs) -> SimFs {
    SimFs::from_state(fs.state().durable_image())
}

#[test]
fn a_new_data_directory_and_its_first_write_survive_power_loss() -> Result<(), redru::Error> {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/"));
    let db = RECOVER.options(fs.vfs()).open("/data/db")?;
    db.set("k", redru::json!(1))?;
    let after = durable_only(&fs);
    drop(db);
    let db = RECOVER.options(after.vfs()).open("/data/db")?;
    assert_eq!(
        db.get_value("k").as_ref(),
        Some(&redru::json!(1)),
        "the directory's entry in its parent was never synced"
    );
    Ok(())
}

#[test]
fn an_acknowledged_backup_survives_power_loss() -> Result<(), redru::Error> {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/db"));
    let db = RECOVER.options(fs.vfs()).open("/db")?;
    db.set("k", redru::json!(1))?;
    let info = db.backup()?;
    let after = durable_only(&fs);
    drop(db);
    assert!(
        after.contents(&info.path).is_ok(),
        "backup {} lost: `backups/` was created but its parent never synced",
        info.path.display()
    );
    Ok(())
}

/// A crash at each step of a rotation (sync, the header's `.tmp`, its sync,
/// the rename, the directory sync, the seal, its sync), several power-loss
/// images each: every image opens, with every acknowledged write, a chain
/// `verify` finds clean, and takes a write and a second save.
#[test]
fn a_crash_at_each_step_of_a_rotation_opens_clean() -> Result<(), Box<dyn std::error::Error>> {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/"));
    let options = |fs: &SimFs| Options::new().vfs(fs.vfs()).durability(Durability::Always).auto_compact(false);
    let db = options(&fs).open("/db")?;
    for i in 0..40u64 {
        db.set(format!("k{i}"), json!(i))?;
    }
    // Fail the snapshot's creation so that the history is the rotation's alone.
    fs.set_path_fault(Some(sim::PathFault {
        name: "database.json".into(),
        kinds: vec![OpKind::Create],
        errno: sim::Errno::NoSpace,
    }));
    fs.record(true);
    assert!(db.save().is_err());
    fs.record(false);
    fs.set_path_fault(None);
    let points = fs.take_history();
    assert!(points.len() >= 7, "a rotation is at least 7 operations, saw {}", points.len());
    let mut rng = Rng::new(11);
    let mut images = 0;
    for (n, state) in points.iter().enumerate() {
        for attempt in 0..12 {
            let image = if attempt == 0 { state.durable_image() } else { state.crash_image(&mut rng) };
            let crashed = SimFs::from_state(image);
            let db = options(&crashed).open("/db").map_err(|e| format!("crash before op {n}: {e}"))?;
            assert_eq!(db.len(), 40, "crash before op {n}");
            db.set("after", json!(1))?;
            db.save()?;
            drop(db);
            let report = redru::verify_dir_with(Path::new("/db"), &options(&crashed))?;
            assert!(report.is_clean(), "crash before op {n}: {report}");
            assert_eq!(options(&crashed).open("/db")?.len(), 41);
            images += 1;
        }
    }
    eprintln!("crash_sim rotation: {} crash points, {images} images", points.len());
    Ok(())
}

/// The line the engine logs for `set(key, value)` as record `seq`.
fn set_line(seq: u64, key: &str, value: serde_json::Value) -> Vec<u8> {
    use redru::internal::record::{Record, encode};
    let mut line = Vec::new();
    encode(redru::Seq(seq), &Record::Set(key.into(), redru::Doc::from(value)), &mut line);
    line
}

/// The phantom write: a crash left bytes of unacknowledged records after a
/// gap of zeros (their pages reached the disk before the page before them).
/// Appending at the gap must never put them back in line: here the new
/// record 4 fills the gap exactly, so without the open's cut of everything
/// after the data the stale records 5 and 6 would follow it as valid ones.
/// (Checked: with the open's cut removed, `stale_after_data` and the
/// truncation in `Writer::open`, this fails at preallocation 0: records 5
/// and 6 come back.)
#[test]
fn stale_records_after_a_zero_gap_never_come_back() -> Result<(), Box<dyn std::error::Error>> {
    for chunk in [0, sim::SIM_PREALLOCATION] {
        let fs = SimFs::new();
        fs.set_preallocation(chunk);
        fs.mkdir_durable(Path::new("/db"));
        let options = || Options::new().vfs(fs.vfs()).durability(Durability::Always).auto_compact(false);
        let db = options().open("/db")?;
        for i in 1..=3 {
            db.set(format!("k{i}"), json!({"v": i}))?;
        }
        drop(db);
        let segment = redru::internal::log::list_segments(&fs, Path::new("/db"))?.remove(0).path;
        let mut bytes = crate::util::log_data(&fs.contents(&segment)?).to_vec();
        let new4 = set_line(4, "k4", json!({"v": 4}));
        bytes.resize(bytes.len() + new4.len(), 0);
        bytes.extend(set_line(5, "ghost", json!(5)));
        bytes.extend(set_line(6, "ghost", json!(6)));
        fs.overwrite(&segment, &bytes)?;

        let db = options().open("/db")?;
        assert_eq!(db.stats().last_seq, 3, "preallocation {chunk}");
        let torn = db.recovery().torn_tail.clone().ok_or("the stale records are not reported")?;
        assert!(torn.reason.contains("after the zeros"), "{}", torn.reason);
        db.set("k4", json!({"v": 4}))?;
        for image in [fs.state().process_crash_image(), fs.state().durable_image()] {
            let db = RECOVER.options(SimFs::from_state(image).vfs()).open("/db")?;
            assert_eq!(db.stats().last_seq, 4, "preallocation {chunk}");
            assert_eq!(db.get_value("k4"), Some(json!({"v": 4})));
            assert_eq!(db.get_value("ghost"), None, "preallocation {chunk}: a write never acknowledged");
        }
    }
    Ok(())
}

/// Writes in place over preallocated zeros that were never synced: a power
/// loss keeps a prefix of them (torn anywhere, the rest the old zeros), or
/// any subset (pages written out of order). Either way the reopened log is
/// exactly the records up to some point at or after the last sync, never a
/// gap, a damaged record or a refusal.
#[test]
fn unsynced_overwrites_leave_only_a_prefix_of_the_log() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng::new(only_seed().unwrap_or(18));
    for round in 0..20 * scale() {
        let fs = SimFs::new();
        fs.set_preallocation(1 + rng.below(3) * 2048);
        fs.mkdir_durable(Path::new("/db"));
        let db = Options::new()
            .vfs(fs.vfs())
            .durability(Durability::Never)
            .preallocate_log(true)
            .auto_compact(false)
            .open("/db")?;
        let total = 30 + rng.below(40);
        let synced_at = rng.below(total);
        let mut acknowledged = 0;
        for i in 1..=total {
            db.set(format!("k{i}"), json!({"i": i, "pad": "x".repeat(rng.below_usize(200))}))?;
            if i == synced_at {
                db.sync()?;
                acknowledged = i;
            }
        }
        let state = fs.state();
        for n in 0..20 {
            let image = if n % 2 == 0 { state.crash_image(&mut rng) } else { state.shuffled_crash_image(&mut rng) };
            let what = format!("round {round}, image {n}");
            let db = RECOVER.options(SimFs::from_state(image).vfs()).open("/db").map_err(|e| format!("{what}: {e}"))?;
            let last = db.stats().last_seq;
            assert!(last >= acknowledged && last <= total, "{what}: recovered up to {last}, synced {acknowledged}");
            assert_eq!(db.len() as u64, last, "{what}");
            for i in 1..=last {
                assert_eq!(db.get_value(&format!("k{i}")).map(|v| v["i"].clone()), Some(json!(i)), "{what}");
            }
        }
    }
    Ok(())
}

/// A full disk that refuses only the preallocation's zeros: no write fails,
/// none is lost (the log grows by appending instead).
#[test]
fn a_failed_preallocation_fails_no_write() -> Result<(), Box<dyn std::error::Error>> {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/db"));
    fs.set_path_fault(Some(sim::PathFault {
        name: "wal-".into(),
        kinds: vec![OpKind::Zero],
        errno: sim::Errno::NoSpace,
    }));
    let db = Options::new().vfs(fs.vfs()).durability(Durability::Always).open("/db")?;
    for i in 0..200 {
        db.set(format!("k{i}"), json!({"i": i}))?;
        if i == 100 {
            db.save()?;
        }
    }
    assert!(fs.trace().iter().filter(|t| t.kind == OpKind::Zero && t.failed).count() >= 2, "the fault was reached");
    let db = RECOVER.options(SimFs::from_state(fs.state().durable_image()).vfs()).open("/db")?;
    assert_eq!(db.len(), 200);
    Ok(())
}
