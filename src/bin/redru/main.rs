//! The redru command line (placeholder until the shell lands).

fn main() {}
