//! redru-cluster: a replicated redru on openraft 0.9.25.
//!
//! The Raft log lives in checksummed JSON-line segments ([`LogStore`]), the
//! state machine is a `redru::Db` ([`StateMachine`]) to which each committed
//! entry is applied as one atomic batch together with the last applied log
//! id and membership. [`open_node_storage`] opens both in a node's directory.
//! Design, file formats and what is not built yet: docs/cluster.md.

mod codec;
mod error;
mod files;
mod log_store;
pub mod router;
mod state_machine;
mod types;

use std::path::Path;

pub use error::Error;
pub use log_store::{LogStore, SEGMENT_BYTES};
pub use state_machine::{APPLIED_KEY, RESERVED_PREFIX, StateMachine};
pub use types::{
    Entry, LogId, NodeId, Op, Raft, Request, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};

/// Opens (or creates) a node's storage in `dir`: the Raft log in
/// `dir/raft-log/`, the state machine's database in `dir/db/`, snapshots in
/// `dir/snapshots/`.
///
/// # Errors
/// As [`LogStore::open`] and [`StateMachine::open`].
pub fn open_node_storage(dir: &Path) -> Result<(LogStore, StateMachine), Error> {
    files::ensure_dir(dir)?;
    let log = LogStore::open(&dir.join(files::LOG_DIR))?;
    let sm = StateMachine::open(&dir.join(files::DB_DIR), &dir.join(files::SNAPSHOT_DIR))?;
    Ok((log, sm))
}
