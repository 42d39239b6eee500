//! Replays every checked-in fuzz corpus file (fuzz/corpus/<target>/) through
//! the same target functions the fuzzers run, so `cargo test` guards every
//! input the fuzzers found interesting, without cargo-fuzz.

use std::path::Path;

use redru_testkit::fuzz as targets;

type Target = fn(&[u8]);

// The shell parser's corpus is replayed by redru-cli's tests, beside the parser.
const TARGETS: [(&str, Target); 5] = [
    ("record_decode", targets::record_decode),
    ("record_fixed_crc", targets::record_fixed_crc),
    ("wal_replay", targets::wal_replay),
    ("snapshot_load", targets::snapshot_load),
    ("model", targets::model),
];

#[test]
fn every_corpus_file_replays_cleanly() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut total = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<Vec<_>, _>>()?;
        files.sort_by_key(|e| e.file_name());
        assert!(!files.is_empty(), "no corpus for {name} in {}", dir.display());
        for entry in files {
            let bytes = std::fs::read(entry.path())?;
            eprintln!("{name}: {}", entry.path().display());
            target(&bytes);
            total += 1;
        }
    }
    eprintln!("fuzz_corpus: {total} inputs replayed");
    Ok(())
}

/// The negative controls of the fuzz oracles: each planted bug, switched on
/// in this thread, makes its target fail on some checked-in input. (Before
/// the oracles compared with an independent reading, both bugs passed every
/// corpus file: only the model target caught the first.)
#[test]
fn the_oracles_catch_the_planted_bugs() -> std::io::Result<()> {
    use redru::internal::planted;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let cases: [(u8, &str, Target); 3] = [
        (planted::SKIP_DELETES, "wal_replay", targets::wal_replay),
        (planted::DROP_SNAPSHOT_HEADER, "snapshot_load", targets::snapshot_load),
        (planted::ACK_BEFORE_SYNC, "model", targets::model),
    ];
    // The oracles' panics are expected here (and printed, as any panic).
    let mut caught = Vec::new();
    for (flag, name, target) in cases {
        let mut failures = 0;
        for entry in std::fs::read_dir(root.join(name))? {
            let bytes = std::fs::read(entry?.path())?;
            planted::set(flag);
            failures += usize::from(std::panic::catch_unwind(|| target(&bytes)).is_err());
            planted::set(0);
        }
        caught.push((name, failures));
    }
    for (name, failures) in caught {
        assert!(failures > 0, "{name}: the planted bug passed every corpus file");
    }
    Ok(())
}
