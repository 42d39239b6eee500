//! What redru's tests, fuzz targets and benches share, in one unpublished
//! crate instead of files linked by `#[path]`: the simulated file system and
//! the model ([`sim`]), the seeded generator ([`rng`]), the fuzz targets' bodies ([`fuzz`]), a linearizability checker ([`linearizability`]), the benchmark
//! harness ([`bench`](mod@bench)). It reaches the
//! engine's internals through the `__internal_whitebox` feature.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod fuzz;
pub mod linearizability;
pub mod rng;
pub mod sim;
