//! `watch`: follows the engine's change feed (`Db::subscribe`), or polls a
//! server's (`REDRU.CHANGES`), and prints each change once it is durable,
//! until `--count` changes or Ctrl-C.
//!
//! Ctrl-C: the first `watch` installs a handler that stops a running watch
//! (back to the prompt, or exit code 0 one-shot); outside a watch it ends the
//! process with exit code 130, as the default action would.

use std::io::Write;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use redru::Seq;

use crate::output::{Format, Style, paint, raw_key, sgr};
use crate::shell::parser::quote_key;
use crate::store::{FeedLine, Store};

static WATCHING: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// While alive, Ctrl-C stops the watch instead of the process.
struct Interruptible;

impl Interruptible {
    fn new() -> Interruptible {
        HANDLER.call_once(|| {
            // Without the handler Ctrl-C still ends a one-shot watch (the
            // default action), so failing to install it is no error.
            let _ = ctrlc::set_handler(|| {
                if WATCHING.load(Ordering::SeqCst) {
                    STOP.store(true, Ordering::SeqCst);
                } else {
                    std::process::exit(130);
                }
            });
        });
        STOP.store(false, Ordering::SeqCst);
        WATCHING.store(true, Ordering::SeqCst);
        Interruptible
    }

    fn stopped(&self) -> bool {
        STOP.load(Ordering::SeqCst)
    }
}

impl Drop for Interruptible {
    fn drop(&mut self) {
        WATCHING.store(false, Ordering::SeqCst);
    }
}

/// How often the loop looks for Ctrl-C while no change comes (and how
/// often a server is asked for new changes).
const POLL: Duration = Duration::from_millis(100);

/// Changes asked of a server at a time.
const REMOTE_BATCH: usize = 1000;

/// Prints the changes under `prefix` after record `from` (or from now):
/// following the local database's feed, or polling the server's
/// `REDRU.CHANGES` over `--connect`.
pub fn watch(
    store: &dyn Store,
    prefix: &str,
    from: Option<u64>,
    count: Option<u64>,
    format: Format,
    style: Style,
    out: &mut dyn Write,
) -> Result<()> {
    let interrupt = Interruptible::new();
    let shown = if prefix.is_empty() { "every key".to_owned() } else { format!("keys under {}", quote_key(prefix)) };
    let mut printed = 0;
    let mut print = |line: &FeedLine| -> Result<()> {
        writeln!(out, "{}", render(line, format, style)).context("writing to stdout")?;
        // Each change as it comes: the reader of a pipe may be waiting for it.
        out.flush().context("writing to stdout")
    };
    let more = |printed: u64| count.is_none_or(|n| printed < n) && !interrupt.stopped();
    if let Some(db) = store.local() {
        let mut feed = db.subscribe(prefix, from.map(Seq)).with_context(|| format!("watching {shown}"))?;
        while more(printed) {
            if let Some(change) = feed.next_timeout(POLL).with_context(|| format!("watching {shown}"))? {
                print(&FeedLine::of(&change))?;
                printed += 1;
            }
        }
        return Ok(());
    }
    let mut position = from;
    while more(printed) {
        let (next, lines) =
            store.changes(prefix, position, REMOTE_BATCH).with_context(|| format!("watching {shown}"))?;
        position = Some(next);
        for line in &lines {
            if !more(printed) {
                break;
            }
            print(line)?;
            printed += 1;
        }
        if lines.is_empty() {
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

/// One change as one line, in the session's format.
fn render(line: &FeedLine, format: Format, style: Style) -> String {
    let FeedLine { seq, op, key, value } = line;
    match format {
        Format::Json | Format::Jsonl => {
            // Members in the order the line reads; the value as stored (numbers keep their digits).
            let mut text = format!("{{\"seq\":{seq},\"op\":\"{op}\"");
            if let Some(key) = key {
                text.push_str(",\"key\":");
                text.push_str(&serde_json::Value::from(key.as_str()).to_string());
            }
            if let Some(value) = value {
                text.push_str(",\"value\":");
                text.push_str(value);
            }
            text.push('}');
            text
        }
        Format::Raw => {
            let fields = [Some(seq.to_string()), Some(op.clone()), key.as_deref().map(raw_key), value.clone()];
            fields.into_iter().flatten().collect::<Vec<_>>().join("\t")
        }
        Format::Table => {
            let mut text = format!("{} {op}", paint(sgr::DIM, &seq.to_string(), style.color));
            for part in [key.as_deref().map(quote_key), value.clone()].into_iter().flatten() {
                text.push(' ');
                text.push_str(&part);
            }
            text
        }
    }
}
