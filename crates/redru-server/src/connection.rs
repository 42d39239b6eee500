//! One client connection: read what arrived, run every complete request in
//! it (a pipeline) on a blocking thread, make what the replies show durable
//! with one sync, then send the replies.
//!
//! Why one sync per batch: `Db::sync` joins the group commit, so a pipeline
//! of 16 SETs costs one fsync, and many connections syncing at once share
//! fsyncs too. Why after reads as well: a read may show another connection's
//! write that is applied but not yet durable; the reply waits until it is,
//! so no client ever sees a write that a crash could still take back.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::Durability;
use crate::exec::{After, Prepared, prepare};
use crate::reply::{Protocol, Reply};
use crate::request::{self, ProtocolError};
use crate::shared::{Client, Shared};

/// Most requests run in one batch (the rest wait for the next).
const MAX_BATCH: usize = 1024;

/// Serves one connection until it closes, errs, idles out or the server stops.
pub async fn handle<S: AsyncRead + AsyncWrite + Unpin>(stream: S, addr: String, shared: Arc<Shared>) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut shutdown = shared.shutdown.subscribe();
    let authed = shared.config.requirepass.is_none();
    let mut client = Client::new(shared.next_id(), addr, authed);
    let _forget = Forget(&shared, client.id);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        let (requests, error) = take_requests(&mut buf, &shared.config.limits);
        if !requests.is_empty() {
            // Commands run here: they only touch memory (the log's buffer
            // and page cache at most); the fsync is the sync thread's.
            let (mut replies, close) = run_batch(&shared, &mut client, &requests).await;
            // A cluster node's writes are durable once Raft answers (its
            // state machine syncs before reporting them applied).
            if shared.config.durability == Durability::Always
                && shared.config.cluster.is_none()
                && let Err(e) = shared.syncer.sync().await
            {
                not_durable(&mut replies, &e);
            }
            out.clear();
            for (reply, protocol) in &replies {
                reply.encode(*protocol, &mut out);
            }
            if writer.write_all(&out).await.is_err() || close || *shutdown.borrow() {
                let _ = writer.shutdown().await;
                return;
            }
            continue;
        }
        if let Some(ProtocolError(message)) = error {
            let _ = writer.write_all(format!("-ERR Protocol error: {message}\r\n").as_bytes()).await;
            let _ = writer.shutdown().await;
            return;
        }
        buf.reserve(16 * 1024);
        let idle = shared.config.idle_timeout;
        tokio::select! {
            read = async {
                match idle {
                    Some(limit) => tokio::time::timeout(limit, reader.read_buf(&mut buf)).await.ok(),
                    None => Some(reader.read_buf(&mut buf).await),
                }
            } => match read {
                Some(Ok(n)) if n > 0 => {}
                _ => return, // closed, failed or idle too long
            },
            _ = shutdown.changed() => {
                let _ = writer.shutdown().await;
                return;
            }
        }
    }
}

/// Forgets a closed connection's WATCHed keys.
struct Forget<'a>(&'a Shared, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut watches = self.0.lock_watches();
        watches.forget(self.1);
    }
}

/// Splits the complete requests off the front of `buf`; a protocol error
/// stops at the bad request (the ones before it still run).
fn take_requests(buf: &mut Vec<u8>, limits: &request::Limits) -> (Vec<Vec<Vec<u8>>>, Option<ProtocolError>) {
    let mut requests = Vec::new();
    let mut at = 0;
    let mut error = None;
    while requests.len() < MAX_BATCH {
        match request::parse(&buf[at..], limits) {
            Ok(Some((args, used))) => {
                at += used;
                if !args.is_empty() {
                    requests.push(args);
                }
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    buf.drain(..at);
    (requests, error)
}

/// Runs a batch: the replies, each with the protocol to encode it in, and
/// whether to close after sending them.
async fn run_batch(shared: &Shared, client: &mut Client, requests: &[Vec<Vec<u8>>]) -> (Vec<(Reply, Protocol)>, bool) {
    // Each reply with the protocol in force once its command ran: a HELLO in
    // the batch changes it for the replies after it (HELLO's own included).
    let mut replies = Vec::with_capacity(requests.len());
    for args in requests {
        let (reply, after) = match prepare(shared, client, args) {
            Prepared::Done(reply, after) => (reply, after),
            Prepared::Cluster(spec) => (crate::cluster::run(shared, client, spec, args).await, After::Continue),
        };
        replies.push((reply, client.protocol));
        if after == After::Close || *shared.shutdown.borrow() {
            return (replies, true);
        }
    }
    (replies, false)
}

/// Nothing in a batch whose sync failed may be acknowledged: its writes, or
/// the writes its reads saw, are not known durable.
fn not_durable(replies: &mut [(Reply, Protocol)], error: &str) {
    let message = format!("ERR not durable: {error}; the database refuses writes until `redru serve` is restarted");
    for (reply, _) in replies {
        if !matches!(reply, Reply::None) {
            *reply = Reply::Error(message.clone());
        }
    }
}
