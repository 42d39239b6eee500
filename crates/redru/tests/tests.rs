//! The engine's integration tests, one binary (ripgrep's layout): one module
//! per concern, each opening with what it guards; helpers in `util`, the
//! simulated file system and the model in the redru-testkit crate.

mod concurrency;
mod conditional;
mod crash_damage;
mod crash_io_errors;
mod crash_kill;
mod crash_sim;
mod expiry;
mod expiry_model;
mod feed;
mod format_fixtures;
mod fuzz_corpus;
mod index;
mod listing;
mod model;
mod progress;
mod read_only;
mod real_faults;
mod recovery;
mod reopen;
mod tools_backup;
mod tools_import_export;
mod tools_repair;
mod tools_verify;
mod util;
