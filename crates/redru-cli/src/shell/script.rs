//! Script mode: stdin is not a terminal, so read one command per line (a JSON
//! value may still span lines while a bracket or string is open), with no
//! prompt, banner or colour, like `sqlite3 < script.sql`.
//!
//! A failing command prints `error: line N: ...` and the script goes on; the
//! exit code is then 2. With `--bail` the first failure stops the script.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, anyhow};
use redru::Db;

use crate::exec::{Outcome, Session, print_error};
use crate::output::Style;
use crate::shell::parser::{is_incomplete, parse};

/// What a script run ended with.
#[derive(Debug, PartialEq, Eq)]
pub struct ScriptEnd {
    /// Commands that failed.
    pub failures: usize,
}

/// Runs every command read from `input`.
pub fn run(db: &Db, input: &mut dyn BufRead, out: &mut dyn Write, style: Style, bail: bool) -> Result<ScriptEnd> {
    let mut failures = 0;
    let mut line_no = 0usize;
    let mut first_line = 0usize;
    let mut text = String::new();
    let mut buf = String::new();
    loop {
        buf.clear();
        let read = input.read_line(&mut buf).context("reading the script from stdin")?;
        let eof = read == 0;
        if !eof {
            line_no += 1;
            if text.is_empty() {
                first_line = line_no;
            }
            text.push_str(&buf);
            if is_incomplete(&text) {
                continue;
            }
        } else if text.trim().is_empty() {
            break;
        }
        let command_text = std::mem::take(&mut text);
        let failed = if eof && is_incomplete(&command_text) {
            Some(anyhow!("line {first_line}: unexpected end of input: a JSON bracket or string is still open"))
        } else {
            run_one(db, &command_text, out, style).map_err(|e| e.context(format!("line {first_line}"))).err()
        };
        match failed {
            Some(e) if e.downcast_ref::<Stop>().is_some() => break,
            Some(e) => {
                out.flush().context("writing to stdout")?;
                print_error(&e, false);
                failures += 1;
                if bail {
                    break;
                }
            }
            None => {}
        }
        if eof {
            break;
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(ScriptEnd { failures })
}

/// `exit` in a script: not a failure, just the end.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("exit")
    }
}

impl std::error::Error for Stop {}

fn run_one(db: &Db, text: &str, out: &mut dyn Write, style: Style) -> Result<()> {
    let Some(command) = parse(text)? else { return Ok(()) };
    let mut session = Session { db, style, progress: false, out };
    // Nobody can answer a question in a script: `clear` needs `--yes`.
    let outcome = session.run(command, &mut |_| Ok(None))?;
    if outcome == Outcome::Exit {
        return Err(Stop.into());
    }
    Ok(())
}
