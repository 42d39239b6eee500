//! The name of every file redru keeps in a data directory, in one place.
//!
//! ```text
//! DIR/redru.lock                      the directory lock (stays after close)
//! DIR/database.json                   the snapshot; database.json.tmp while written
//! DIR/wal-<20-digit first seq>.wal    log segments, sorting in log order
//! DIR/wal-….wal.tmp                   a segment's header being written (renamed into place)
//! DIR/wal-….wal.torn-<offset>         a torn tail cut off at open, kept aside
//! DIR/wal-….wal.quarantine-<offset>   what `repair` set aside
//! DIR/backups/backup-….json           backups (their scheme: tools::backup::backup_name)
//! DIR/backups/backup-…[.sha256].tmp   a backup (or its checksum) being written
//! ```

use crate::state::change::Seq;

/// The lock file's name in a data directory. It stays after close (removing
/// a lock file another process may be opening would let two processes in).
pub const LOCK_NAME: &str = "redru.lock";

/// The snapshot's file name.
pub const SNAPSHOT: &str = "database.json";

/// The snapshot's name while it is being written (renamed over [`SNAPSHOT`] once synced).
pub const SNAPSHOT_TMP: &str = "database.json.tmp";

/// The backups directory's name inside a data directory.
pub const BACKUP_DIR: &str = "backups";

/// The name of the segment whose first record has sequence number `first`.
///
/// The naming scheme, in one place: `wal-` + 20-digit zero-padded first
/// sequence number + `.wal`, so names sort in log order. The torn-tail side
/// file of a segment is the segment's name + `.torn-<offset>`; `repair`'s
/// quarantine file is the segment's name + `.quarantine-<offset>`.
pub fn segment_name(first: Seq) -> String {
    format!("wal-{:020}.wal", first.0)
}

/// The name a new segment has while its header is written and synced: it
/// is renamed to [`segment_name`] only then, so a segment never exists
/// without its header. Left over only by a crash (open removes it).
pub fn segment_tmp_name(first: Seq) -> String {
    format!("{}.tmp", segment_name(first))
}

/// Whether `name` is a segment being created ([`segment_tmp_name`]).
pub fn is_segment_temp(name: &str) -> bool {
    name.strip_suffix(".tmp").and_then(parse_segment_name).is_some()
}

/// Parses a segment name made by [`segment_name`].
pub fn parse_segment_name(name: &str) -> Option<Seq> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Seq)
}

/// Whether `name` (in the backups directory) is a backup or its `.sha256`
/// file still being written: `backup-….json.tmp`, `backup-….json.sha256.tmp`.
/// Left over only by a backup that failed or was killed; opening removes them.
pub fn is_backup_temp(name: &str) -> bool {
    name.starts_with("backup-") && name.ends_with(".tmp")
}
