//! What stderr shows while work that may take a while runs (opening a big
//! database, saving, backups, restores, verify, repair, compaction): nothing
//! for the first quarter second, then a spinner with the task and the time so
//! far, which becomes a bar with rate and time left whenever the library
//! reports a stage with a known total (through [`observe`], the observer the
//! CLI puts in every `Options`). Drawn only when stderr is a terminal and
//! never in script mode.
//!
//! The library reports from its worker threads (several at once when a
//! snapshot loads on every core); reports only update [`CURRENT`], and the
//! thread waiting for the work draws from it ten times a second, so the bar
//! has one writer and reports cost a lock, not a redraw.

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use redru::progress::{Progress, Stage, Unit};

/// Work shorter than this never shows anything. `REDRU_PROGRESS_DELAY_MS`
/// overrides it (the tests draw at once).
const QUIET_FOR: Duration = Duration::from_millis(250);
/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// The stage running in the current piece of work, as last reported; `None`
/// outside [`spin`] (reports then go nowhere: automatic compaction in the
/// background while the shell waits for input draws nothing).
static CURRENT: Mutex<Option<Running>> = Mutex::new(None);

#[derive(Default)]
struct Running {
    stage: Option<(Stage, u64, u64)>,
}

fn current() -> MutexGuard<'static, Option<Running>> {
    CURRENT.lock().unwrap_or_else(|p| p.into_inner())
}

/// The progress observer for `Options::progress`.
pub fn observe(p: &Progress) {
    let mut current = current();
    let Some(running) = current.as_mut() else { return };
    if p.done >= p.total {
        running.stage = None;
        return;
    }
    running.stage = match running.stage {
        // Reports from several threads may arrive out of order.
        Some((stage, done, total)) if stage == p.stage && total == p.total => Some((stage, done.max(p.done), total)),
        _ => Some((p.stage, p.done, p.total)),
    };
}

fn quiet_for() -> Duration {
    std::env::var("REDRU_PROGRESS_DELAY_MS").ok().and_then(|v| v.parse().ok()).map_or(QUIET_FOR, Duration::from_millis)
}

/// Runs `work` on a scoped thread; when `enabled` and it is still running
/// after [`QUIET_FOR`], shows `message` with a spinner, or the bar of the
/// stage the library reports, until it ends.
pub fn spin<T: Send>(enabled: bool, message: &str, work: impl FnOnce() -> T + Send) -> T {
    if !enabled {
        return work();
    }
    *current() = Some(Running::default());
    let out = std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let handle = scope.spawn(move || {
            let out = work();
            let _ = done_tx.send(());
            out
        });
        if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(quiet_for()) {
            let mut display = Display::new(message);
            display.draw();
            while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(TICK) {
                display.draw();
            }
            display.bar.finish_and_clear();
        }
        match handle.join() {
            Ok(out) => out,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    });
    *current() = None;
    out
}

/// The one bar on stderr, restyled as the stages come and go.
struct Display {
    bar: ProgressBar,
    message: String,
    /// The stage the bar shows, `None` while it spins.
    showing: Option<(Stage, u64)>,
}

impl Display {
    fn new(message: &str) -> Display {
        // Hidden until styled, so the default style is never drawn.
        let bar = ProgressBar::hidden();
        let mut display = Display { bar, message: message.to_owned(), showing: None };
        display.spin();
        display.bar.set_draw_target(ProgressDrawTarget::stderr());
        display
    }

    fn spin(&mut self) {
        self.showing = None;
        self.bar.set_message(self.message.clone());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            self.bar.set_style(style);
        }
        self.bar.unset_length();
    }

    fn draw(&mut self) {
        let stage = current().as_ref().and_then(|r| r.stage);
        match stage {
            None if self.showing.is_some() => self.spin(),
            None => self.bar.tick(),
            Some((stage, done, total)) => {
                if self.showing != Some((stage, total)) {
                    self.showing = Some((stage, total));
                    // A new stage: its own rate and time left.
                    self.bar.reset();
                    // The stage alone names the work: one line fits 80 columns.
                    self.bar.set_message(stage.describe());
                    self.bar.set_length(total);
                    let template = match stage.unit() {
                        Unit::Keys => "{msg} {wide_bar} {human_pos}/{human_len} keys, {per_sec}, {eta} left",
                        _ => "{msg} {wide_bar} {bytes}/{total_bytes}, {binary_bytes_per_sec}, {eta} left",
                    };
                    if let Ok(style) = ProgressStyle::with_template(template) {
                        self.bar.set_style(style);
                    }
                }
                self.bar.set_position(done);
            }
        }
    }
}
