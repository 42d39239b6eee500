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
//! have `name` = Alice".
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

mod backup;
mod compact;
mod db;
mod doc;
mod error;
mod index;
mod options;
mod query;
mod repair;
mod store;
mod transfer;
mod verify;
pub mod vfs;

/// Declares modules that are private, or public but hidden with the
/// `__internal_whitebox` feature: the internals redru's own tests, fuzz
/// targets and benches exercise. Not an API; no stability promise whatsoever.
macro_rules! internal_modules {
    ($($name:ident),*) => {$(
        #[cfg(feature = "__internal_whitebox")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "__internal_whitebox"))]
        mod $name;
    )*};
}
internal_modules!(record, snapshot, wal);

/// Not an API: see `internal_modules!`.
#[cfg(feature = "__internal_whitebox")]
#[doc(hidden)]
pub mod internal {
    pub use crate::{record, snapshot, wal};
}

pub use backup::{
    BACKUP_DIR, BackupInfo, BackupSchedule, RestoreReport, ScheduleStatus, backup_name, list_backups,
    list_backups_with, parse_backup_name, prune_backups, prune_backups_with,
};
pub use compact::{CompactReport, DiskUsage, compact, compact_with};
pub use db::{Batch, Db, LOCK_NAME, RecoveryReport, SaveReport, Stats, TornTail};
pub use doc::{Doc, IntoDoc, MAX_DEPTH};
pub use error::{Error, Result};
pub use index::{FieldPath, IndexInfo};
pub use options::{Durability, Options};
pub use query::{CmpOp, Condition, Plan, Query, QueryResult, parse_value};
pub use record::Seq;
pub use repair::{RepairReport, SetAside, repair, repair_with};
pub use serde_json::{Value, json};
pub use transfer::{ImportFormat, ImportOptions};
pub use verify::{
    Problem, ProblemKind, SegmentChecked, SnapshotChecked, VerifyReport, verify_dir, verify_dir_with, verify_file,
    verify_file_with,
};
