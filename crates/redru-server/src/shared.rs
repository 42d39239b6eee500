//! What the connections share (the database, the configuration, the write
//! gate, SCAN cursors, counters) and what each connection keeps (protocol
//! version, authentication, name, a MULTI queue).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use redru::Db;
use tokio::sync::watch;

use crate::config::Config;
use crate::reply::Protocol;
use crate::syncer::Syncer;
use crate::tx::Changed;

/// Server-wide state.
pub struct Shared {
    /// The database.
    pub db: Arc<Db>,
    /// The configuration.
    pub config: Config,
    /// Held while a write command checks and applies (not while it waits
    /// for its fsync): conditional writes (NX, XX, GETSET, RENAME, JSON
    /// paths, INCR) and MULTI/EXEC see no other write between their read
    /// and their write.
    write_gate: Mutex<()>,
    /// Open SCAN cursors.
    pub cursors: Mutex<Cursors>,
    next_client_id: AtomicU64,
    /// Clients connected now.
    pub connected: AtomicUsize,
    /// Connections accepted since start.
    pub total_connections: AtomicU64,
    /// Commands run since start.
    pub total_commands: AtomicU64,
    /// Connections refused (max clients).
    pub rejected_connections: AtomicU64,
    /// When the server started.
    pub started: Instant,
    /// Saves: the last one's time, whether BGSAVE runs (shared with its thread).
    pub saves: Arc<Saves>,
    /// Set to true to stop the server (SHUTDOWN, a signal, `Running::stop`).
    pub shutdown: watch::Sender<bool>,
    /// Makes batches durable before their replies go out.
    pub syncer: Syncer,
    /// Keys clients WATCH, and the clients whose watched keys changed.
    pub watches: Mutex<Watches>,
    /// The negative control of the cluster tests: every read skips the read
    /// index (set by the environment variable [`UNSAFE_READS_ENV`]).
    pub unsafe_reads: bool,
}

/// Set to `1` only in tests: a cluster node answers every read from its
/// own state, as if each connection had sent READONLY. The linearizability
/// tests use it to show that their checker catches stale reads.
pub const UNSAFE_READS_ENV: &str = "REDRU_TEST_UNSAFE_LOCAL_READS";

/// WATCH: which clients watch which keys, and which of them saw a watched
/// key change (their next EXEC fails). Only writes through this server are
/// seen: a program writing to the same `Db` directly bypasses it.
#[derive(Default)]
pub struct Watches {
    by_key: HashMap<String, HashSet<u64>>,
    dirty: HashSet<u64>,
}

impl Watches {
    /// Client `id` watches `key`.
    pub fn watch(&mut self, id: u64, key: &str) {
        self.by_key.entry(key.to_owned()).or_default().insert(id);
    }

    /// Client `id` watches nothing any more; whether a watched key had changed.
    pub fn unwatch(&mut self, id: u64, keys: &[String]) -> bool {
        for key in keys {
            if let Some(ids) = self.by_key.get_mut(key) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
        self.dirty.remove(&id)
    }

    /// Forgets client `id` entirely (its connection closed).
    pub fn forget(&mut self, id: u64) {
        self.by_key.retain(|_, ids| {
            ids.remove(&id);
            !ids.is_empty()
        });
        self.dirty.remove(&id);
    }

    /// Marks the watchers of what `changed` touched.
    pub fn touched(&mut self, changed: &Changed) {
        if self.by_key.is_empty() {
            return;
        }
        if changed.all {
            let all: Vec<u64> = self.by_key.values().flatten().copied().collect();
            self.dirty.extend(all);
            return;
        }
        for key in &changed.keys {
            if let Some(ids) = self.by_key.get(key) {
                self.dirty.extend(ids.iter().copied());
            }
        }
    }
}

impl Shared {
    /// Server-wide state for `db`.
    pub fn new(db: Arc<Db>, config: Config) -> std::io::Result<Shared> {
        Ok(Shared {
            syncer: Syncer::start(Arc::clone(&db))?,
            watches: Mutex::new(Watches::default()),
            db,
            config,
            write_gate: Mutex::new(()),
            cursors: Mutex::new(Cursors::default()),
            next_client_id: AtomicU64::new(1),
            connected: AtomicUsize::new(0),
            total_connections: AtomicU64::new(0),
            total_commands: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            started: Instant::now(),
            saves: Arc::new(Saves {
                last: AtomicU64::new(unix_now()),
                running: AtomicBool::new(false),
                thread: Mutex::new(None),
            }),
            shutdown: watch::Sender::new(false),
            unsafe_reads: std::env::var(UNSAFE_READS_ENV).is_ok_and(|v| v == "1"),
        })
    }

    /// A new client id.
    pub fn next_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes the write gate.
    pub fn write_gate(&self) -> MutexGuard<'_, ()> {
        self.write_gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The WATCH registry.
    pub fn lock_watches(&self) -> MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the clients watching what a commit changed.
    pub fn watched_changed(&self, changed: &Changed) {
        if !changed.keys.is_empty() || changed.all {
            self.lock_watches().touched(changed);
        }
    }

    /// Asks the server to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// What LASTSAVE and INFO persistence report.
pub struct Saves {
    /// Unix time of the last successful save.
    pub last: AtomicU64,
    /// A BGSAVE is running.
    pub running: AtomicBool,
    /// The BGSAVE thread, joined when the server's state goes (it holds the database).
    pub thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let thread = self.saves.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// One connection's state.
pub struct Client {
    /// CLIENT ID.
    pub id: u64,
    /// The peer's address.
    pub addr: String,
    /// CLIENT SETNAME.
    pub name: Option<String>,
    /// CLIENT SETINFO LIB-NAME / LIB-VER.
    pub lib: (Option<String>, Option<String>),
    /// RESP2 until HELLO 3.
    pub protocol: Protocol,
    /// Whether AUTH succeeded (or no password is set).
    pub authed: bool,
    /// Commands queued since MULTI.
    pub multi: Option<Vec<Vec<Vec<u8>>>>,
    /// A command queued in MULTI was refused: EXEC will abort.
    pub multi_failed: bool,
    /// The keys this client WATCHes.
    pub watching: Vec<String>,
    /// When it connected.
    pub since: Instant,
    /// The change feed REDRU.CHANGES last read, kept so that the next call
    /// from its position continues in memory instead of reading the log
    /// files again; dropped with the connection.
    pub feed: Option<redru::Subscription>,
    /// READONLY: in a cluster, reads come from this node's state without the
    /// read index (faster, possibly stale).
    pub stale_reads: bool,
}

impl Client {
    /// A new connection's state.
    pub fn new(id: u64, addr: String, authed: bool) -> Client {
        Client {
            id,
            addr,
            name: None,
            lib: (None, None),
            protocol: Protocol::Resp2,
            authed,
            multi: None,
            multi_failed: false,
            watching: Vec::new(),
            since: Instant::now(),
            feed: None,
            stale_reads: false,
        }
    }
}

/// Most SCAN cursors kept at once; the oldest is dropped past it.
const MAX_CURSORS: usize = 256;

/// Open SCAN iterations. A cursor holds the last key its iteration
/// returned (or looked at): the next page lists the keys after it in key
/// order (`Db::list`), so every key that existed throughout the iteration is
/// returned exactly once (keys are visited in order, none twice) and keys
/// added or deleted meanwhile may or may not be, as Redis promises. A page
/// costs its COUNT keys, whatever the database's size; nothing is copied
/// when an iteration starts.
#[derive(Default)]
pub struct Cursors {
    next: u64,
    open: VecDeque<(u64, String)>,
}

impl Cursors {
    /// Opens a cursor that resumes after `key`; its number.
    pub fn open(&mut self, key: String) -> u64 {
        self.next += 1;
        if self.open.len() >= MAX_CURSORS {
            self.open.pop_front();
        }
        self.open.push_back((self.next, key));
        self.next
    }

    /// Takes cursor `id` out: the key it resumes after.
    pub fn take(&mut self, id: u64) -> Option<String> {
        let i = self.open.iter().position(|(c, _)| *c == id)?;
        self.open.remove(i).map(|(_, key)| key)
    }
}
