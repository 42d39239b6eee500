//! The server's integration tests, one binary: each module starts its own
//! server in-process (`Running::start`, port 0, a temporary database) and
//! talks to it over loopback TCP, raw or through redis-rs. The tests with
//! redis-cli, redis-benchmark, redis-py and a real redis-server drive the
//! `redru serve` binary and live with the command line's tests.

mod commands;
mod protocol;
mod redis_rs;
mod tls;
mod util;
