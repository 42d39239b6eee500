//! redru: an embedded JSON key-value database.
//!
//! Keys are strings, values are JSON: you write [`serde_json::Value`]s (or
//! anything that converts), and read back a [`Doc`], a shared handle to the
//! value's JSON text that you deserialize into your own type or a `Value`
//! when you need its fields. Everything lives in memory; every write is appended to a checksummed write-ahead log and, by
//! default, fsynced before it returns ([`Durability::Always`], with group
//! commit across threads). [`Db::save`] compacts the log into `database.json`,
//! a plain JSON snapshot with a SHA-256 digest. Opening replays the log, cuts
//! a torn tail (keeping the bytes aside) and refuses real corruption with the
//! file, line and byte offset. Hash indexes on JSON fields answer "which keys
//! have `name` = Alice". [`Db::subscribe`] follows every durable change to
//! keys under a prefix, resumable from a sequence number after a restart.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use serde_json::json;
//! let dir = tempfile::tempdir()?;
//! let db = redru::Db::open(dir.path())?;
//! db.set("user:1", json!({"name": "Alice", "age": 30}))?;
//! db.create_index("name")?;
//! assert_eq!(db.find("name", &json!("Alice"))?, ["user:1"]);
//! assert_eq!(db.get_value("user:1"), Some(json!({"name": "Alice", "age": 30})));
//! let doc = db.get("user:1").ok_or("missing")?;
//! assert_eq!(doc.as_str(), r#"{"age":30,"name":"Alice"}"#);
//! db.close()?;
//! let db = redru::Db::open(dir.path())?; // everything is back
//! assert_eq!(db.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! The file formats and the recovery steps are in `docs/design.md`; what each
//! durability mode can lose is in `docs/durability.md`.

// The layers, lowest first (docs/design.md, "The crates and the layers"):
// `state` (pure) < `storage` (the only disk access) < `options` < `db` (the
// handle) < `tools`. A module names only its own layer and those below;
// `error` is a leaf every layer uses.
mod clock;
mod db;
mod error;
mod options;
pub mod progress;
mod state;
mod storage;
mod tools;

pub use storage::vfs;
/// The rule that tells a last segment's preallocated zeros from a torn
/// write, for redru-cluster's Raft log (whose lines the engine cannot read).
pub use storage::zero_tail;

/// Not an API: the internals redru's own tests, fuzz targets and benches
/// exercise (the log line codec, the log, the snapshot), public only with the
/// `__internal_whitebox` feature. No stability promise whatsoever.
#[cfg(feature = "__internal_whitebox")]
#[doc(hidden)]
pub mod internal {
    pub use crate::state::planted;
    pub use crate::storage::{files, log, record, snapshot};
}

pub use clock::{Clock, ManualClock, SystemClock};
pub use db::{Batch, Change, Db, RecoveryReport, SaveReport, Stats, Subscription, TornTail, Ttl, Update};
pub use error::{Error, Result};
pub use options::{Durability, Options};
pub use serde_json::{Value, json};
pub use state::change::{Expiry, Seq};
pub use state::doc::{Doc, IntoDoc, MAX_DEPTH};
pub use state::index::{FieldPath, IndexInfo, IndexKind};
pub use state::listing::{Listing, Page};
pub use state::precondition::Precondition;
pub use state::query::{CmpOp, Condition, Plan, Query, QueryResult, parse_value};
pub use storage::files::{BACKUP_DIR, LOCK_NAME};
pub use tools::backup::{
    BackupInfo, BackupSchedule, RestoreReport, ScheduleStatus, backup_name, list_backups, list_backups_with,
    parse_backup_name, prune_backups, prune_backups_with,
};
pub use tools::compact::{CompactReport, DiskUsage, compact, compact_with};
pub use tools::get_once::{GetOnce, get_once};
pub use tools::repair::{RepairReport, SetAside, repair, repair_with};
pub use tools::transfer::{ImportFormat, ImportOptions};
pub use tools::verify::{
    Problem, ProblemKind, SegmentChecked, SnapshotChecked, VerifyReport, verify_dir, verify_dir_with, verify_file,
    verify_file_with,
};
