//! Script mode: stdin is not a terminal, so read one command per line, with
//! no prompt, banner or colour, like `sqlite3 < script.sql`.
//!
//! Invariant: every problem is its line's alone (`error: line N: ...`, exit
//! code 2 at the end); `--bail` stops at the first; an open batch rolls back.

use std::io::BufRead;

use anyhow::{Context, Result, anyhow};

use crate::exec::{Outcome, Session, count, print_error};
use crate::shell::parser::{Joiner, Piece, parse};

/// What a script run ended with.
#[derive(Debug, PartialEq, Eq)]
pub struct ScriptEnd {
    /// Commands that failed.
    pub failures: usize,
}

/// Runs every command read from `input` in `session`.
pub fn run(session: &mut Session, input: &mut dyn BufRead, bail: bool) -> Result<ScriptEnd> {
    let mut failures = 0;
    let mut joiner = Joiner::new();
    let mut buf = Vec::new();
    'lines: loop {
        buf.clear();
        let read = input.read_until(b'\n', &mut buf).context("reading the script from stdin")?;
        let pieces: Vec<Result<Piece, anyhow::Error>> = if read == 0 {
            joiner.finish().into_iter().map(Ok).collect()
        } else {
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match std::str::from_utf8(line) {
                Ok(text) => joiner.push(text).into_iter().map(Ok).collect(),
                Err(e) => {
                    let mut pieces: Vec<_> = joiner.skip().into_iter().map(Ok).collect();
                    let at = e.valid_up_to();
                    pieces.push(Err(anyhow!("line {}: not valid UTF-8 (at byte {at} of the line)", joiner.line())));
                    pieces
                }
            }
        };
        for piece in pieces {
            let failed = match piece {
                Err(e) => Some(e),
                Ok(piece @ Piece::Unfinished { .. }) => Some(anyhow!("line {}: {piece:#}", piece.line())),
                Ok(Piece::Command { text, line }) => {
                    session.line = Some(line);
                    match run_one(session, &text) {
                        Ok(Outcome::Exit) => break 'lines,
                        Ok(_) => None,
                        Err(e) => Some(e.context(format!("line {line}"))),
                    }
                }
            };
            if let Some(e) = failed {
                session.out.flush().context("writing to stdout")?;
                print_error(&e, false);
                failures += 1;
                if bail {
                    break 'lines;
                }
            }
        }
        if read == 0 {
            break;
        }
    }
    if let Some(batch) = session.batch.take() {
        session.out.flush().context("writing to stdout")?;
        let e = anyhow!(
            "the script ended inside a batch (`begin` without `commit`): its {} rolled back",
            count(batch.len(), "queued write was", "queued writes were")
        );
        print_error(&e, false);
        failures += 1;
    }
    session.out.flush().context("writing to stdout")?;
    Ok(ScriptEnd { failures })
}

fn run_one(session: &mut Session, text: &str) -> Result<Outcome> {
    let Some(command) = parse(text)? else { return Ok(Outcome::Done) };
    // Nobody can answer a question in a script: `clear` needs `--yes`.
    session.run(command, &mut |_| Ok(None))
}
