//! The interactive loop: read lines with rustyline, gather them into
//! commands ([`Joiner`]), run each, print.
//!
//! Invariant: every line runs as its own command, in order, however it
//! arrived (typed ahead, pasted); a command goes to the history file at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{
    Cmd, CompletionType, ConditionalEventHandler, Config, Editor, Event, EventContext, EventHandler, KeyEvent,
    RepeatCount,
};

use crate::exec::{Outcome, Session, count, print_error};
use crate::output::{Format, Style, paint, sgr};
use crate::shell::helper::ShellHelper;
use crate::shell::parser::{Joiner, Piece, parse};
use crate::store::Store;

const PROMPT: &str = "redru> ";
/// The prompt of a line that continues an open JSON value.
const CONTINUATION: &str = "...> ";
/// Commands longer than this (a pasted 10 MB value) stay out of the history file.
pub const MAX_HISTORY_ENTRY: usize = 4096;

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

/// Runs the shell on `store` until `exit` or Ctrl-D; `place` says in the
/// banner where the data is (`on DIR`, `connected to ...`). The caller closes
/// the store afterwards: every reference to it taken here is gone by then.
pub fn run(store: Arc<dyn Store>, place: &str, style: Style, format: Format, progress: bool) -> Result<()> {
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_space(true)
        .history_ignore_dups(true)
        .context("configuring the line editor")?
        .max_history_size(10_000)
        .context("configuring the line editor")?
        .completion_type(CompletionType::List)
        .build();
    // Bytes typed ahead stay in rustyline's read buffer from one prompt to the
    // next (its `buffer-redux` feature); without it they went with the reader.
    let mut rl: Editor<ShellHelper, DefaultHistory> =
        Editor::with_config(config).context("starting the line editor")?;
    rl.set_helper(Some(ShellHelper::new(Arc::clone(&store), style.color, PROMPT)));
    let abandoned = Arc::new(AtomicBool::new(false));
    rl.bind_sequence(KeyEvent::ctrl('C'), EventHandler::Conditional(Box::new(Abandon(Arc::clone(&abandoned)))));

    let mut history = History { path: history_path(), failed: false };
    if let Some(path) = &history.path {
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

    let keys = store.len().context("counting the keys")?;
    println!(
        "redru {} {place} ({}). Type `help` for the commands, Ctrl-D to leave.",
        env!("CARGO_PKG_VERSION"),
        count(keys, "key", "keys")
    );
    let mut joiner = Joiner::new();
    let mut stdout = std::io::stdout();
    let mut session = Session::new(&*store, style, format, &mut stdout);
    session.progress = progress;
    'input: loop {
        let prompt = if joiner.is_pending() { CONTINUATION } else { PROMPT };
        let input = match rl.readline(prompt) {
            // Ctrl-C: the command is dropped (an unfinished one too), the shell stays.
            Ok(_) if abandoned.swap(false, Ordering::Relaxed) => {
                joiner = Joiner::new();
                continue;
            }
            Err(ReadlineError::Interrupted) => {
                joiner = Joiner::new();
                continue;
            }
            Ok(input) => input,
            Err(ReadlineError::Eof) => {
                if let Some(unfinished) = joiner.finish() {
                    print_error(&anyhow!("{unfinished}"), style.color);
                }
                break;
            }
            Err(e) => return Err(anyhow!(e).context("reading a line")),
        };
        // A paste brings several lines in one input: each is a line of its own.
        for line in input.split('\n') {
            for piece in joiner.push(line) {
                match piece {
                    Piece::Command { text, .. } if !text.trim().is_empty() => {
                        history.remember(&mut rl, &text, style.color);
                        if run_text(&mut session, &text, style.color) == Outcome::Exit {
                            break 'input;
                        }
                    }
                    Piece::Command { .. } => {}
                    unfinished @ Piece::Unfinished { .. } => print_error(&anyhow!("{unfinished}"), style.color),
                }
            }
        }
    }
    if let Some(batch) = session.batch.take() {
        eprintln!(
            "{} left inside a batch: its {} rolled back",
            paint(sgr::WARNING, "warning:", style.color),
            count(batch.len(), "queued write was", "queued writes were")
        );
    }
    Ok(())
}

/// Parses and runs one command's text, printing its error; `Exit` ends the shell.
fn run_text(session: &mut Session, text: &str, color: bool) -> Outcome {
    let command = match parse(text) {
        Ok(Some(command)) => command,
        Ok(None) => return Outcome::Done,
        Err(e) => {
            print_error(&anyhow!(e), color);
            return Outcome::Done;
        }
    };
    let mut confirm = |question: &str| -> Result<Option<bool>> {
        // The editor owns the terminal: ask through it (no helper needed).
        let answer = match rustyline::DefaultEditor::new().and_then(|mut ask| ask.readline(question)) {
            Ok(answer) => answer,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => String::new(),
            Err(e) => return Err(anyhow!(e).context("asking for confirmation")),
        };
        Ok(Some(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")))
    };
    let outcome = session.run(command, &mut confirm);
    let _ = session.out.flush();
    outcome.unwrap_or_else(|e| {
        print_error(&e, color);
        Outcome::Done
    })
}

/// The history file, written after every command.
struct History {
    path: Option<PathBuf>,
    /// Whether saving failed once already (said once: the shell works without history).
    failed: bool,
}

impl History {
    /// Adds `text` (unless it is longer than [`MAX_HISTORY_ENTRY`]) and appends it to the file.
    fn remember(&mut self, rl: &mut Editor<ShellHelper, DefaultHistory>, text: &str, color: bool) {
        if text.len() > MAX_HISTORY_ENTRY {
            return;
        }
        let _ = rl.add_history_entry(text.trim_end());
        let Some(path) = &self.path else { return };
        if let Err(e) = save_history(rl, path)
            && !self.failed
        {
            eprintln!("{} history not saved to {}: {e:#}", paint(sgr::WARNING, "warning:", color), path.display());
            self.failed = true;
        }
    }
}

/// Ctrl-C: accepts the line, marked abandoned for the loop to drop.
///
/// Why not rustyline's own `Cmd::Interrupt`: readline returns it as an
/// error, and on that path rustyline 17 drops the bytes it had read past the
/// Ctrl-C (typed or pasted ahead: the next command was lost, and the shell
/// sat waiting for it) and leaves the line's hint on the screen. An accepted
/// line keeps those bytes for the next prompt and is redrawn without its hint.
struct Abandon(Arc<AtomicBool>);

impl ConditionalEventHandler for Abandon {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, _: &EventContext) -> Option<Cmd> {
        self.0.store(true, Ordering::Relaxed);
        Some(Cmd::AcceptLine)
    }
}

fn save_history(rl: &mut Editor<ShellHelper, DefaultHistory>, path: &std::path::Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    rl.append_history(path).context("appending")?;
    Ok(())
}
