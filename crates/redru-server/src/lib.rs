//! `redru serve`: the Redis protocol over a redru database, so that every
//! Redis client library, redis-cli and redis-benchmark can use it.
//!
//! RESP2 and RESP3 (`HELLO 3`), inline commands, pipelines; the strings and
//! keyspace commands, MULTI/EXEC as one atomic batch, RedisJSON's JSON.* on
//! simple paths, and REDRU.* for indexes and queries (docs/server.md lists
//! every command). A reply to a write is sent only once the write is
//! durable; pipelines and connections share fsyncs. By default it listens on
//! loopback only and refuses any other address without a password.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let db = redru::Options::new().durability(redru::Durability::Buffered).open("data")?;
//! // Blocks until SIGINT, SIGTERM or SHUTDOWN; then syncs and returns.
//! redru_server::serve(Arc::new(db), redru_server::Config::default())?;
//! # Ok(())
//! # }
//! ```
//!
//! Open the database with [`redru::Durability::Buffered`] (as `redru serve`
//! does): the server makes every reply's writes durable itself, once per
//! batch. A database in `Durability::Always` mode is refused: each write
//! would fsync on its own, on the async runtime's threads.

mod cluster;
mod commands;
mod config;
mod connection;
mod exec;
mod glob;
mod reply;
mod request;
mod shared;
mod syncer;
mod tls;
mod tx;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redru::Db;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{Config, Durability, Tls};
pub use request::Limits;
use shared::Shared;

/// The `resp_request` fuzz target's body (fuzz/, and the corpus replay in
/// this crate's tests): any bytes parse to requests or a protocol error,
/// never a panic, and every parsed request, encoded again as a RESP array,
/// parses back to the same arguments.
#[doc(hidden)]
pub fn fuzz_request(data: &[u8]) {
    let limits = Limits { max_args: 64, max_bytes: 4096 };
    let mut at = 0;
    while let Ok(Some((args, used))) = request::parse(&data[at..], &limits) {
        assert!(used > 0 && at + used <= data.len(), "a request must consume bytes within the buffer");
        at += used;
        if args.is_empty() {
            continue;
        }
        let mut again = format!("*{}\r\n", args.len()).into_bytes();
        for arg in &args {
            again.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            again.extend_from_slice(arg);
            again.extend_from_slice(b"\r\n");
        }
        assert_eq!(request::parse(&again, &limits), Ok(Some((args, again.len()))), "re-encoded request differs");
    }
}

/// How long a stopping server waits for connections to finish their batch.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `db` until SIGINT, SIGTERM or a client's SHUTDOWN, then stops
/// accepting, lets every connection finish what it is running, syncs the
/// database and returns. Blocks the calling thread (it runs its own tokio
/// runtime).
///
/// # Errors
/// The configuration is refused ([`Config::check`]: a non-loopback address
/// without a password), the address cannot be bound, or the final sync failed.
pub fn serve(db: Arc<Db>, config: Config) -> io::Result<()> {
    serve_ready(db, config, |_| {})
}

/// [`serve`], calling `ready` with the address once it listens (useful with
/// port 0, which picks a free port).
///
/// # Errors
/// As [`serve`].
pub fn serve_ready(db: Arc<Db>, config: Config, ready: impl FnOnce(SocketAddr)) -> io::Result<()> {
    runtime()?.block_on(async move {
        let server = Server::bind(db, config).await?;
        let signal = stop_signal();
        ready(server.addr);
        let stop = server.stopper();
        tokio::spawn(async move {
            signal.await;
            stop.stop();
        });
        server.run().await
    })
}

/// Serves a cluster node (`redru serve --cluster`): starts the node (its
/// Raft instance and peer port) from `node`, then serves its database as
/// [`serve`] does, with writes through Raft and linearizable reads
/// (docs/cluster.md). Calls `ready` with the client address and the node
/// once both listen. Blocks until SIGINT, SIGTERM or SHUTDOWN.
///
/// # Errors
/// The node does not start (its storage, its peer port), or as [`serve`].
pub fn serve_cluster(
    node: redru_cluster::NodeConfig,
    config: Config,
    ready: impl FnOnce(SocketAddr, &redru_cluster::Node),
) -> io::Result<()> {
    runtime()?.block_on(async move {
        let node = redru_cluster::Node::start(node).await.map_err(io::Error::from)?;
        let config = Config { cluster: Some(Arc::clone(&node)), ..config };
        let server = Server::bind(node.db(), config).await?;
        let signal = stop_signal();
        ready(server.addr, &node);
        let stop = server.stopper();
        tokio::spawn(async move {
            signal.await;
            stop.stop();
        });
        let served = server.run().await;
        node.shutdown().await;
        served
    })
}

/// A server running on a thread of its own, for tests and for programs that
/// serve their database beside their own work. Dropping it stops it.
pub struct Running {
    addr: SocketAddr,
    stopper: Stopper,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Running {
    /// Starts serving `db` on a new thread; returns once it listens.
    ///
    /// # Errors
    /// As [`serve`], for the configuration and the bind.
    pub fn start(db: Arc<Db>, config: Config) -> io::Result<Running> {
        let runtime = runtime()?;
        let server = runtime.block_on(Server::bind(db, config))?;
        let (addr, stopper) = (server.addr, server.stopper());
        let thread =
            std::thread::Builder::new().name("redru-serve".into()).spawn(move || runtime.block_on(server.run()))?;
        Ok(Running { addr, stopper, thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it and waits until it has stopped.
    ///
    /// # Errors
    /// The final sync failed.
    pub fn stop(mut self) -> io::Result<()> {
        self.stopper.stop();
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Stops a server from anywhere.
#[derive(Clone)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    /// Asks the server to stop (it finishes what is in flight first).
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A bound server, not yet running.
struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    async fn bind(db: Arc<Db>, config: Config) -> io::Result<Server> {
        config.check().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if db.durability() == redru::Durability::Always {
            // Each write would fsync on its own, on the async runtime's
            // threads; the server syncs every batch itself instead.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "open the database with Durability::Buffered (or Never) to serve it: the server makes \
                 every reply's writes durable itself, one sync per batch",
            ));
        }
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let listener = TcpListener::bind(config.addr()).await?;
        let addr = listener.local_addr()?;
        let mut config = config;
        config.port = addr.port();
        Ok(Server { listener, addr, shared: Arc::new(Shared::new(db, config)?), tls })
    }

    fn stopper(&self) -> Stopper {
        Stopper(self.shared.shutdown.clone())
    }

    async fn run(self) -> io::Result<()> {
        let shared = self.shared;
        let mut shutdown = shared.shutdown.subscribe();
        let mut connections = JoinSet::new();
        if shared.config.durability == Durability::EverySecond {
            connections.spawn(sync_every_second(Arc::clone(&shared)));
        }
        while !*shutdown.borrow() {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let Ok((stream, peer)) = accepted else {
                        // Out of file descriptors and the like: wait, do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    admit(&shared, &mut connections, stream, peer, self.tls.clone()).await;
                }
                _ = shutdown.changed() => {}
            }
            while connections.try_join_next().is_some() {}
        }
        drop(self.listener);
        if tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await.is_err() {
            connections.abort_all();
        }
        let db = Arc::clone(&shared.db);
        tokio::task::spawn_blocking(move || db.sync()).await.map_err(io::Error::other)?.map_err(io::Error::other)
    }
}

/// Starts serving a new connection, or refuses it past the client limit.
async fn admit(
    shared: &Arc<Shared>,
    connections: &mut JoinSet<()>,
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    shared.total_connections.fetch_add(1, Ordering::Relaxed);
    if shared.connected.load(Ordering::Relaxed) >= shared.config.max_clients {
        shared.rejected_connections.fetch_add(1, Ordering::Relaxed);
        use tokio::io::AsyncWriteExt;
        let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
        return;
    }
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::clone(shared);
    connections.spawn(async move {
        match tls {
            None => connection::handle(stream, peer.to_string(), Arc::clone(&shared)).await,
            Some(acceptor) => {
                // A client that never finishes its handshake is dropped.
                if let Ok(Ok(stream)) = tokio::time::timeout(tls::HANDSHAKE, acceptor.accept(stream)).await {
                    connection::handle(stream, peer.to_string(), Arc::clone(&shared)).await;
                }
            }
        }
        shared.connected.fetch_sub(1, Ordering::Relaxed);
    });
}

/// `Durability::EverySecond`: the log is synced once a second.
async fn sync_every_second(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tick.tick() => {
                let db = Arc::clone(&shared.db);
                let _ = tokio::task::spawn_blocking(move || db.sync()).await;
            }
            _ = shutdown.changed() => {}
        }
    }
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("redru-serve").build()
}

/// SIGINT or SIGTERM. The handlers are registered here, before the caller
/// reports that it listens: a signal sent right after the ready line must
/// stop the server cleanly, not kill it with the default action (a future
/// that registers on its first poll can be too late on a loaded machine).
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
