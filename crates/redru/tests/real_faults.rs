//! Leftovers and honest errors under real faults (issue 13): a failed save or
//! backup removes its temporary file, stale ones are cleaned on open and
//! listed by `verify`, automatic compaction backs off after a failure, and
//! after a failed fsync no read shows a write that was not durable. Faults
//! are injected on the simulated file system (`redru_testkit::sim`).

use std::path::Path;

use redru::{Options, json};
use redru_testkit::sim::{Errno, OpKind, PathFault, SimFs};

use crate::util::TestResult;

fn disk() -> SimFs {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/"));
    fs
}

fn options(fs: &SimFs) -> Options {
    Options::new().vfs(fs.vfs()).auto_compact(false)
}

/// Every mutation of a file whose name contains `name` fails with ENOSPC.
fn full_for(name: &str, kinds: &[OpKind]) -> Option<PathFault> {
    Some(PathFault { name: name.into(), kinds: kinds.to_vec(), errno: Errno::NoSpace })
}

#[test]
fn a_failed_save_removes_its_temporary_file() -> TestResult {
    let fs = disk();
    let db = options(&fs).open("/db")?;
    db.set("a", json!({"pad": "x".repeat(2000)}))?;
    // The snapshot's first write fails half-way (the sim keeps half the bytes).
    fs.set_path_fault(full_for("database.json.tmp", &[OpKind::Append]));
    assert!(db.save().is_err(), "the save must fail");
    assert!(fs.fired() > 0);
    fs.set_path_fault(None);
    let names = fs.names(Path::new("/db"));
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "a failed save left {names:?}");
    // The failure was the snapshot's, not the log's: writes go on.
    db.set("b", json!(2))?;
    db.save()?;
    Ok(())
}
