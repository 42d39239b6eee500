//! The command line's integration tests, one binary (ripgrep's layout): one
//! module per concern, helpers in `util`. Each drives the real `redru` binary.

mod cli;
mod cluster;
mod connect;
mod fuzz_corpus;
mod proxy;
mod serve;
mod shell_pty;
mod shell_script;
mod util;
