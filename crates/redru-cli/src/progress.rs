//! A spinner on stderr for work that may take a while (opening a big
//! database, saving, backups), drawn only when stderr is a terminal and never
//! in script mode.
//!
//! The library reports no progress from inside one call, so this is a spinner
//! with elapsed time rather than a bar; it appears only after a short delay,
//! so quick work draws nothing.

use std::sync::mpsc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Work shorter than this never shows a spinner.
const QUIET_FOR: Duration = Duration::from_millis(250);

/// Runs `work` on a scoped thread; when `enabled` and it is still running
/// after [`QUIET_FOR`], shows `message` with a spinner until it ends.
pub fn spin<T: Send>(enabled: bool, message: &str, work: impl FnOnce() -> T + Send) -> T {
    if !enabled {
        return work();
    }
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let handle = scope.spawn(move || {
            let out = work();
            let _ = done_tx.send(());
            out
        });
        if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(QUIET_FOR) {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message(message.to_owned());
            bar.enable_steady_tick(Duration::from_millis(100));
            let _ = done_rx.recv();
            bar.finish_and_clear();
        }
        match handle.join() {
            Ok(out) => out,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    })
}
