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
mod import;
mod output;
mod progress;
mod serve;
#[doc(hidden)]
pub mod shell;
mod store;
mod watch;

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use redru::{Db, Options};

use crate::cli::{Action, Cli};
use crate::exec::{Outcome, Session, print_error};
use crate::output::{ColorChoice, Format, Style, paint, sgr};
use crate::shell::parser::Command;
use crate::store::{Remote, Store, Target};

/// Exit code for "not found".
const NOT_FOUND: u8 = 1;
/// Exit code for usage errors and failures.
const FAILURE: u8 = 2;

/// Runs the command line on this process's arguments and returns its exit code.
pub fn run() -> ExitCode {
    let (cli, matches) = match cli::parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            // clap prints help/version on stdout (exit 0) and usage errors on stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { FAILURE } else { 0 });
        }
    };
    let stderr_color = cli.color.enabled(std::io::stderr().is_terminal());
    let result = cli::action(&matches).map_err(|e| anyhow!(e)).and_then(|action| dispatch(&cli, action));
    match result {
        Ok(code) => code,
        Err(e) => {
            print_error(&e, stderr_color);
            ExitCode::from(FAILURE)
        }
    }
}

fn dispatch(cli: &Cli, action: Action) -> Result<ExitCode> {
    let stdin_tty = std::io::stdin().is_terminal();
    let stdout_tty = std::io::stdout().is_terminal();
    let stderr_tty = std::io::stderr().is_terminal();
    let asked = if cli.raw { Some(Format::Raw) } else { cli.format };
    if let Some(target) = cli.target()? {
        return remote(cli, action, target);
    }
    let options = Options::new().durability(cli.durability.mode()).read_only(cli.read_only).progress(progress::observe);
    let command = match action {
        Action::Command(command) => command,
        Action::Serve(args) => return serve::run(args, &cli.dir),
        // The shell: interactive at a terminal, script mode otherwise.
        Action::Shell if stdin_tty => {
            let db = Arc::new(open(&cli.dir, options, stderr_tty, cli.color)?);
            // Scheduled backups hold only a weak reference, and stop when this is dropped.
            let schedule = cli.backup_every.map(|every| db.start_backup_schedule(every, cli.backup_keep));
            let format = Format::or_default(asked, stdout_tty);
            let place = format!("on {}", db.dir().display());
            let store: Arc<dyn Store> = Arc::clone(&db) as Arc<dyn Store>;
            shell::repl::run(store, &place, Style::for_stdout(cli.color), format, stderr_tty)?;
            drop(schedule);
            let db = Arc::into_inner(db).ok_or_else(|| anyhow!("the database is still in use"))?;
            close(db)?;
            return Ok(ExitCode::SUCCESS);
        }
        Action::Shell => {
            let db = open(&cli.dir, options, false, cli.color)?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let style = Style { color: cli.color == ColorChoice::Always, pretty: false };
            let mut session = Session::new(&db, style, asked.unwrap_or(Format::Raw), &mut out);
            let end = shell::script::run(&mut session, &mut std::io::stdin().lock(), cli.bail)?;
            drop(session);
            close(db)?;
            return Ok(if end.failures > 0 { ExitCode::from(FAILURE) } else { ExitCode::SUCCESS });
        }
    };
    if matches!(command, Command::Verify { .. } | Command::Repair { .. } | Command::Compact) {
        return offline(command, &cli.dir, stderr_tty);
    }
    if !cli.dir.exists() && !command.creates() {
        bail!(
            "no such database: {} does not exist (only a write such as `set` or `import` creates one)",
            cli.dir.display()
        );
    }

    if let Command::Get { key } = &command
        && !cli.read_only
        && let Some(code) = get_once(cli, key, &options, Format::or_default(asked, stdout_tty))?
    {
        return Ok(code);
    }
    let db = if command.only_reads() && !cli.read_only {
        open_for_reading(&cli.dir, options, stderr_tty, cli.color)?
    } else {
        open(&cli.dir, options, stderr_tty, cli.color)?
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut session = Session::new(&db, Style::for_stdout(cli.color), Format::or_default(asked, stdout_tty), &mut out);
    session.progress = stderr_tty;
    session.stdin_free = true;
    let mut confirm = |question: &str| ask(stdin_tty, question);
    let outcome = session.run(command, &mut confirm)?;
    session.out.flush().context("writing to stdout")?;
    drop(session);
    close(db)?;
    Ok(exit_code(outcome))
}

fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Missing => ExitCode::from(NOT_FOUND),
        Outcome::Done | Outcome::Exit => ExitCode::SUCCESS,
    }
}

/// `--connect` (or `-h`/`-p`): the shell, a script or one command on a
/// running `redru serve`, through the same [`Session`] as a local directory.
fn remote(cli: &Cli, action: Action, target: Target) -> Result<ExitCode> {
    const NOT_SERVE: &str = "`serve` serves a data directory; --connect, -h and -p are for the shell and its commands";
    if matches!(action, Action::Serve(_)) {
        bail!(NOT_SERVE);
    }
    if cli.dir_given {
        bail!("--dir and --connect (or -h/-p) name two databases: give one");
    }
    if cli.backup_every.is_some() {
        bail!("--backup-every schedules backups of a local directory; on a server, schedule `redis-cli REDRU.BACKUP`");
    }
    let stdin_tty = std::io::stdin().is_terminal();
    let stdout_tty = std::io::stdout().is_terminal();
    let asked = if cli.raw { Some(Format::Raw) } else { cli.format };
    let remote = Arc::new(Remote::connect(target)?);
    let place = match remote.server() {
        "" => format!("connected to {}", remote.name()),
        server => format!("connected to {server} at {}", remote.name()),
    };
    match action {
        Action::Shell if stdin_tty => {
            let format = Format::or_default(asked, stdout_tty);
            let store: Arc<dyn Store> = remote;
            shell::repl::run(store, &place, Style::for_stdout(cli.color), format, std::io::stderr().is_terminal())?;
            Ok(ExitCode::SUCCESS)
        }
        Action::Shell => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let style = Style { color: cli.color == ColorChoice::Always, pretty: false };
            let mut session = Session::new(&*remote, style, asked.unwrap_or(Format::Raw), &mut out);
            let end = shell::script::run(&mut session, &mut std::io::stdin().lock(), cli.bail)?;
            Ok(if end.failures > 0 { ExitCode::from(FAILURE) } else { ExitCode::SUCCESS })
        }
        Action::Command(command) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let format = Format::or_default(asked, stdout_tty);
            let mut session = Session::new(&*remote, Style::for_stdout(cli.color), format, &mut out);
            session.progress = std::io::stderr().is_terminal();
            session.stdin_free = true;
            let mut confirm = |question: &str| ask(stdin_tty, question);
            let outcome = session.run(command, &mut confirm)?;
            session.out.flush().context("writing to stdout")?;
            Ok(exit_code(outcome))
        }
        Action::Serve(_) => bail!(NOT_SERVE),
    }
}

/// A yes/no question on stderr, answered on stdin; `None` when stdin is not a terminal.
fn ask(stdin_tty: bool, question: &str) -> Result<Option<bool>> {
    if !stdin_tty {
        return Ok(None);
    }
    eprint!("{question}");
    std::io::stderr().flush().context("writing to stderr")?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("reading the answer")?;
    Ok(Some(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")))
}

/// verify, repair, compact: they lock the directory themselves.
fn offline(tool: Command, dir: &Path, progress: bool) -> Result<ExitCode> {
    let options = Options::new().progress(progress::observe);
    let problems = match tool {
        Command::Verify { file, json } => {
            let report = match &file {
                Some(file) => {
                    progress::spin(progress, "verifying", || redru::verify_file_with(Path::new(file), &options))
                        .with_context(|| format!("verifying {file}"))?
                }
                None => {
                    if !dir.exists() {
                        bail!("verifying {}: no such database (the directory does not exist)", dir.display());
                    }
                    progress::spin(progress, "verifying", || redru::verify_dir_with(dir, &options))
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
        Command::Repair { dry_run } => {
            let report = progress::spin(progress, "repairing", || redru::repair_with(dir, dry_run, &options))
                .with_context(|| format!("repairing {}", dir.display()))?;
            println!("{report}");
            // Dry run: damage found is a problem; otherwise, what the repair left.
            !report.unfixable.is_empty() || (report.damage.is_some() && (dry_run || !report.is_repaired()))
        }
        _ => {
            let report = progress::spin(progress, "compacting", || redru::compact_with(dir, options))
                .with_context(|| format!("compacting {}", dir.display()))?;
            println!("{report}");
            false
        }
    };
    Ok(if problems { ExitCode::from(NOT_FOUND) } else { ExitCode::SUCCESS })
}

/// `get KEY` on a closed directory: reads the one value from the files
/// (`redru::get_once`) instead of loading everything; None when the files
/// need a real open (recovery, another process, another layout), which then
/// answers as before. Prints what the session's `get` prints.
fn get_once(cli: &Cli, key: &str, options: &Options, format: Format) -> Result<Option<ExitCode>> {
    match redru::get_once(&cli.dir, key, options) {
        redru::GetOnce::Found(doc) => {
            let style = Style { pretty: format == Format::Table, ..Style::for_stdout(cli.color) };
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", output::doc(&doc, style)).and_then(|()| out.flush()).context("writing to stdout")?;
            Ok(Some(ExitCode::SUCCESS))
        }
        redru::GetOnce::Absent => {
            eprintln!("not found: {}", shell::parser::quote_key(key));
            Ok(Some(exit_code(Outcome::Missing)))
        }
        _ => Ok(None),
    }
}

/// Opens the database (with a spinner when it takes a while) and reports
/// what recovery did.
fn open(dir: &Path, options: Options, progress: bool, color: ColorChoice) -> Result<Db> {
    let message = format!("opening {}", dir.display());
    let db = progress::spin(progress, &message, || Db::open_with(dir, options))
        .with_context(|| format!("opening the database in {}", dir.display()))?;
    if let Some(warning) = db.recovery().warning() {
        let color = color.enabled(std::io::stderr().is_terminal());
        eprintln!("{} {warning}", paint(sgr::WARNING, "warning:", color));
    }
    Ok(db)
}

/// Opens for a one-shot read: normally, or read-only (saying so once) when
/// another process holds the directory or it cannot be written.
fn open_for_reading(dir: &Path, options: Options, progress: bool, color: ColorChoice) -> Result<Db> {
    let why = match Db::open_with(dir, options.clone()) {
        Ok(db) => {
            if let Some(warning) = db.recovery().warning() {
                let color = color.enabled(std::io::stderr().is_terminal());
                eprintln!("{} {warning}", paint(sgr::WARNING, "warning:", color));
            }
            return Ok(db);
        }
        Err(redru::Error::Locked { pid, .. }) => match pid {
            Some(pid) => format!("it is open in another process (pid {pid})"),
            None => "it is open in another process".to_owned(),
        },
        Err(redru::Error::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            format!("it cannot be written ({source})")
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("opening the database in {}", dir.display()))),
    };
    let color = color.enabled(std::io::stderr().is_terminal());
    eprintln!("{} reading {} read-only: {why}", paint(sgr::WARNING, "note:", color), dir.display());
    open(dir, options.read_only(true), progress, ColorChoice::Never)
}

fn close(db: Db) -> Result<()> {
    let dir = db.dir().to_owned();
    db.close().with_context(|| format!("closing the database in {}", dir.display()))
}
