//! Replays the checked-in corpus of the `shell_parser` fuzz target
//! (fuzz/corpus/shell_parser/) through the function the fuzzer runs, so
//! `cargo test` guards every input the fuzzer found interesting.

use std::path::Path;

use crate::util::TestResult;

#[test]
fn shell_parser_corpus_replays() -> TestResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/shell_parser");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        redru_cli::shell::fuzz_parse(&std::fs::read(&path)?);
        replayed += 1;
    }
    assert!(replayed > 0, "no corpus files in {}", dir.display());
    Ok(())
}
