//! The `redru` command line: an interactive shell, script mode, and one-shot
//! subcommands, built only on the library's public API.
//!
//! Exit codes: 0 success, 1 "not found" (get/delete of a missing key, `exists`
//! false) or "problems found" (verify, repair), 2 usage errors and failures. Results on stdout, errors on stderr.
//!
//! A library only so that the `redru` binary stays a two-line `main` and the
//! fuzz target reaches the shell's parser; nothing here is a stable API.

mod cli;
mod exec;
mod output;
mod progress;
mod serve;
#[doc(hidden)]
pub mod shell;

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use redru::Db;

use crate::cli::{Action, Cli, Offline};
use crate::exec::{Outcome, Session, print_error};
use crate::output::{ColorChoice, Style, paint, sgr};

/// Exit code for "not found".
const NOT_FOUND: u8 = 1;
/// Exit code for usage errors and failures.
const FAILURE: u8 = 2;

/// Runs the command line on this process's arguments and returns its exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version on stdout (exit 0) and usage errors on stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { FAILURE } else { 0 });
        }
    };
    let stderr_color = cli.color.enabled(std::io::stderr().is_terminal());
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            print_error(&e, stderr_color);
            ExitCode::from(FAILURE)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let action = match cli.command {
        None => Action::Shell,
        Some(sub) => sub.action().map_err(|e| anyhow!(e))?,
    };
    let stdin_tty = std::io::stdin().is_terminal();
    let stderr_tty = std::io::stderr().is_terminal();
    let command = match action {
        Action::Command(command) => command,
        Action::Offline(tool) => return offline(tool, &cli.dir, stderr_tty),
        Action::Serve(args) => return serve::run(args, &cli.dir),
        // The shell: interactive at a terminal, script mode otherwise.
        Action::Shell if stdin_tty => {
            let db = open(&cli.dir, stderr_tty, cli.color)?;
            let backups = cli.backup_every.map(|every| (every, cli.backup_keep));
            shell::repl::run(db, Style::for_stdout(cli.color), stderr_tty, backups)?;
            return Ok(ExitCode::SUCCESS);
        }
        Action::Shell => {
            let db = open(&cli.dir, false, cli.color)?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let style = Style { color: cli.color == ColorChoice::Always, pretty: false };
            let end = shell::script::run(&db, &mut std::io::stdin().lock(), &mut out, style, cli.bail)?;
            close(db)?;
            return Ok(if end.failures > 0 { ExitCode::from(FAILURE) } else { ExitCode::SUCCESS });
        }
    };

    let db = open(&cli.dir, stderr_tty, cli.color)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut session = Session { db: &db, style: Style::for_stdout(cli.color), progress: stderr_tty, out: &mut out };
    let mut confirm = |question: &str| -> Result<Option<bool>> {
        if !stdin_tty {
            return Ok(None);
        }
        eprint!("{question}");
        std::io::stderr().flush().context("writing to stderr")?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).context("reading the answer")?;
        Ok(Some(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")))
    };
    let outcome = session.run(command, &mut confirm)?;
    out.flush().context("writing to stdout")?;
    close(db)?;
    Ok(match outcome {
        Outcome::Missing => ExitCode::from(NOT_FOUND),
        Outcome::Done | Outcome::Exit => ExitCode::SUCCESS,
    })
}

/// verify, repair, compact: they lock the directory themselves.
fn offline(tool: Offline, dir: &Path, progress: bool) -> Result<ExitCode> {
    let problems = match tool {
        Offline::Verify { file, json } => {
            let report = match &file {
                Some(file) => progress::spin(progress, "verifying", || redru::verify_file(file))
                    .with_context(|| format!("verifying {}", file.display()))?,
                None => {
                    if !dir.exists() {
                        bail!("verifying {}: there is no such directory", dir.display());
                    }
                    progress::spin(progress, "verifying", || redru::verify_dir(dir))
                        .with_context(|| format!("verifying {}", dir.display()))?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report).context("encoding the report")?);
            } else {
                println!("{report}");
            }
            !report.is_clean()
        }
        Offline::Repair { dry_run } => {
            let report = progress::spin(progress, "repairing", || redru::repair(dir, dry_run))
                .with_context(|| format!("repairing {}", dir.display()))?;
            println!("{report}");
            // Dry run: damage found is a problem; otherwise, what the repair left.
            !report.unfixable.is_empty() || (report.damage.is_some() && (dry_run || !report.is_repaired()))
        }
        Offline::Compact => {
            let report = progress::spin(progress, "compacting", || redru::compact(dir))
                .with_context(|| format!("compacting {}", dir.display()))?;
            println!("{report}");
            false
        }
    };
    Ok(if problems { ExitCode::from(NOT_FOUND) } else { ExitCode::SUCCESS })
}

/// Opens the database (with a spinner when it takes a while) and reports
/// what recovery did.
fn open(dir: &Path, progress: bool, color: ColorChoice) -> Result<Db> {
    let message = format!("opening {}", dir.display());
    let db = progress::spin(progress, &message, || Db::open(dir))
        .with_context(|| format!("opening the database in {}", dir.display()))?;
    if let Some(warning) = db.recovery().warning() {
        let color = color.enabled(std::io::stderr().is_terminal());
        eprintln!("{} {warning}", paint(sgr::WARNING, "warning:", color));
    }
    Ok(db)
}

fn close(db: Db) -> Result<()> {
    let dir = db.dir().to_owned();
    db.close().with_context(|| format!("closing the database in {}", dir.display()))
}
