//! redru-cluster: a replicated redru on openraft 0.9.25.
//!
//! The Raft log lives in checksummed JSON-line segments ([`LogStore`]), the
//! state machine is a `redru::Db` ([`StateMachine`]) to which each committed
//! entry is applied as one atomic batch together with the last applied log
//! id and membership. [`open_node_storage`] opens both in a node's directory.
//! [`Node`] runs one over TCP: the peer port authenticated by the cluster
//! [`Secret`], writes from any node, linearizable reads (what `redru serve
//! --cluster` uses). Design, file formats and guarantees: docs/cluster.md.
//!
//! A one-node cluster over the in-process [`router`] (the network of tests):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::BTreeSet;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use redru_cluster::{Raft, Request, Response, open_node_storage, router::Router};
//!
//! let dir = tempfile::tempdir()?;
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let (log, sm) = open_node_storage(dir.path())?;
//!     let router = Router::new();
//!     let config = Arc::new(openraft::Config::default().validate()?);
//!     let raft = Raft::new(1, config, router.network(1), log, sm.clone()).await?;
//!     router.add(1, raft.clone());
//!     raft.initialize(BTreeSet::from([1])).await?;
//!     raft.wait(Some(Duration::from_secs(10))).state(openraft::ServerState::Leader, "elected").await?;
//!     let reply = raft.client_write(Request::set("user:1", r#"{"name":"Alice"}"#)).await?;
//!     assert_eq!(reply.data, Response::Applied { ops: 1 });
//!     assert_eq!(sm.db().get_value("user:1"), Some(redru::json!({"name": "Alice"})));
//!     raft.shutdown().await?;
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod codec;
mod error;
mod files;
mod log_store;
mod network;
mod node;
pub mod router;
mod snapshot_file;
mod state_machine;
mod types;

use std::path::Path;

pub use auth::{MIN_SECRET_LEN, Secret};
pub use error::Error;
pub use log_store::{LogStore, SEGMENT_BYTES};
pub use network::{MAX_FRAME, SNAPSHOT_CHUNK, TcpLink, TcpNetwork, WriteError};
pub use node::{LEADER_WAIT, MAX_GROUP_BYTES, MAX_GROUP_WRITES, Node, NodeConfig, Status, default_raft_config, probe};
pub use snapshot_file::{DEFAULT_MAX_SNAPSHOT_BYTES, SnapshotFile};
pub use state_machine::{APPLIED_KEY, RESERVED_PREFIX, StateMachine};
pub use types::{
    Cond, Entry, LogId, NodeId, Op, Raft, Request, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    Vote,
};

/// Opens (or creates) a node's storage in `dir`: the state machine's
/// database in `dir/db/` (first: its lock keeps a second process out before
/// anything is repaired), snapshots in `dir/snapshots/`, the Raft log in
/// `dir/raft-log/` (with its own lock).
///
/// # Errors
/// As [`LogStore::open`] and [`StateMachine::open`].
pub fn open_node_storage(dir: &Path) -> Result<(LogStore, StateMachine), Error> {
    files::ensure_dir(dir)?;
    let sm = StateMachine::open(&dir.join(files::DB_DIR), &dir.join(files::SNAPSHOT_DIR))?;
    let log = LogStore::open(&dir.join(files::LOG_DIR))?;
    Ok((log, sm))
}
