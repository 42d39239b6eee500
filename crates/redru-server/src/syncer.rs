//! The server's one syncing thread: connections hand it a request once their
//! batch has run and await the answer; it makes everything applied so far
//! durable with one `Db::sync` for all requests waiting, then answers them.
//!
//! Why a thread of its own: an fsync blocks, and must not block the async
//! runtime's workers; one thread doing it for everyone costs one hand-off per
//! sync round instead of one per batch, and the requests that arrive during
//! a sync share the next one (group commit at the server's level, on top of
//! the log's own).

use std::sync::Arc;
use std::sync::mpsc;

use redru::Db;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

/// A handle to the syncing thread. Dropping it ends the thread and waits
/// for it, so that the thread's handle on the database is gone when the
/// server's state is (the caller may then close the `Db`).
pub struct Syncer {
    requests: Option<mpsc::Sender<Waiter>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Syncer {
    /// Starts the thread for `db`; it ends when the last handle is dropped.
    pub fn start(db: Arc<Db>) -> std::io::Result<Syncer> {
        let (requests, waiting) = mpsc::channel::<Waiter>();
        let thread = std::thread::Builder::new().name("redru-sync".into()).spawn(move || {
            while let Ok(first) = waiting.recv() {
                let mut round = vec![first];
                round.extend(waiting.try_iter());
                // Started after every request in the round was sent, so it
                // covers every write their batches applied.
                let result = db.sync().map_err(|e| e.to_string());
                for waiter in round {
                    let _ = waiter.send(result.clone());
                }
            }
        })?;
        Ok(Syncer { requests: Some(requests), thread: Some(thread) })
    }

    /// Returns once everything applied before the call is durable.
    pub async fn sync(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or_else(|| "the sync thread has stopped".to_owned())?;
        requests.send(tx).map_err(|_| "the sync thread has stopped".to_owned())?;
        rx.await.map_err(|_| "the sync thread has stopped".to_owned())?
    }
}
