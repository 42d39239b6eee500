//! The fuzz targets' bodies, shared with `tests/fuzz_corpus.rs` (which
//! includes `targets.rs` by path), so `cargo test` replays the corpus through
//! exactly the code the fuzzers run.

pub mod targets;
