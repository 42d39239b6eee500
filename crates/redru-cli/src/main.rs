//! The `redru` binary: everything is in the `redru_cli` library (`run`).

fn main() -> std::process::ExitCode {
    redru_cli::run()
}
