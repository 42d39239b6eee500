//! The interactive loop: read a line with rustyline, parse it, run it, print.
//!
//! Ctrl-C abandons the line being typed, Ctrl-D (or `exit`) leaves and closes
//! the database. Every entered line goes to the history file at once, so a
//! crash keeps it; the file's location is [`history_path`].

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use redru::Db;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor};

use crate::exec::{Outcome, Session, print_error};
use crate::output::{Style, paint, sgr};
use crate::shell::helper::ShellHelper;
use crate::shell::parser::parse;

const PROMPT: &str = "redru> ";

/// The history file: `$REDRU_HISTORY` when set (empty disables history),
/// else `$XDG_STATE_HOME/redru/history`, else `~/.local/state/redru/history`.
pub fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDRU_HISTORY") {
        return (!path.is_empty()).then(|| PathBuf::from(path));
    }
    let state = match std::env::var_os("XDG_STATE_HOME").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|p| !p.is_empty())?).join(".local/state"),
    };
    Some(state.join("redru").join("history"))
}

/// Runs the shell until `exit` or Ctrl-D, then closes the database.
pub fn run(db: Db, style: Style, progress: bool, backups: Option<(Duration, usize)>) -> Result<()> {
    let db = Arc::new(db);
    // Scheduled backups hold only a weak reference, and stop when this is dropped.
    let schedule = backups.map(|(every, keep)| db.start_backup_schedule(every, keep));
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_space(true)
        .history_ignore_dups(true)
        .context("configuring the line editor")?
        .max_history_size(10_000)
        .context("configuring the line editor")?
        .completion_type(CompletionType::List)
        .build();
    let mut rl: Editor<ShellHelper, DefaultHistory> =
        Editor::with_config(config).context("starting the line editor")?;
    rl.set_helper(Some(ShellHelper::new(Arc::clone(&db), style.color, PROMPT)));

    let history = history_path();
    if let Some(path) = &history {
        match rl.load_history(path) {
            Ok(()) => {}
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "{} could not read the history {}: {e}",
                paint(sgr::WARNING, "warning:", style.color),
                path.display()
            ),
        }
    }

    println!(
        "redru {} on {} ({} keys). Type `help` for the commands, Ctrl-D to leave.",
        env!("CARGO_PKG_VERSION"),
        db.dir().display(),
        db.len()
    );
    let mut history_failed = false;
    loop {
        let line = match rl.readline(PROMPT) {
            Ok(line) => line,
            // Ctrl-C: the line is dropped, the shell stays.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(anyhow!(e).context("reading a line")),
        };
        if line.trim().is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(line.trim_end());
        let saved = history.as_deref().map(|path| (path, save_history(&mut rl, path)));
        if let Some((path, Err(e))) = saved
            && !history_failed
        {
            // Once: the shell works without history, no need to repeat it each line.
            eprintln!(
                "{} history not saved to {}: {e:#}",
                paint(sgr::WARNING, "warning:", style.color),
                path.display()
            );
            history_failed = true;
        }
        let command = match parse(&line) {
            Ok(Some(command)) => command,
            Ok(None) => continue,
            Err(e) => {
                print_error(&anyhow!(e), style.color);
                continue;
            }
        };
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let mut session = Session { db: &db, style, progress, out: &mut out };
        let mut confirm = |question: &str| -> Result<Option<bool>> {
            // The editor owns the terminal: ask through it (no helper needed).
            let answer = match rustyline::DefaultEditor::new().and_then(|mut ask| ask.readline(question)) {
                Ok(answer) => answer,
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => String::new(),
                Err(e) => return Err(anyhow!(e).context("asking for confirmation")),
            };
            Ok(Some(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")))
        };
        match session.run(command, &mut confirm) {
            Ok(Outcome::Exit) => break,
            Ok(_) => {}
            Err(e) => print_error(&e, style.color),
        }
        let _ = out.flush();
    }
    drop(rl);
    drop(schedule);
    let db = Arc::into_inner(db).ok_or_else(|| anyhow!("the database is still in use"))?;
    let dir = db.dir().to_owned();
    db.close().with_context(|| format!("closing {}", dir.display()))
}

fn save_history(rl: &mut Editor<ShellHelper, DefaultHistory>, path: &std::path::Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    rl.append_history(path).context("appending")?;
    Ok(())
}
