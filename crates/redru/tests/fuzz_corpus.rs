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
