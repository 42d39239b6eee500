//! The write-ahead log: segment files, appending with group commit, and
//! scanning with the torn-tail policy.
//!
//! Invariants: sequence numbers are strictly increasing by one across all
//! segments; a segment this build creates starts with a header naming the
//! one before it and exists only with it, and a segment is sealed (a last
//! line naming its successor) only once that successor is durable; every segment but the last was fsynced before the next was
//! created, so damage there is always corruption; only the last segment can
//! have a torn tail, and only bytes after its last valid record count as one.
//! A record is acknowledged (in `Durability::Always`) only once an fsync that
//! started after its append has returned. In `Durability::Buffered` records
//! wait in the writer's buffer and reach the file as one append of whole
//! lines; every sync, rotation and freeze writes the buffer out first.
//!
//! Laid out as fjall's journal: `segment` (which files), `reader` (one
//! segment's records and the torn-tail rule), `recovery` (the whole log at
//! open, cutting a torn tail), `writer` (appending, rotation), `zeros` (the
//! open segment's preallocated zeros), `writeback` (a relaxed log's pages
//! handed to the kernel's writeback instead) and `group_commit` (shared
//! fsyncs, poisoning); for the change feed, `watch`
//! (the durable point, published) and `follow` (reading from a sequence
//! number while the log is written).

mod follow;
mod group_commit;
mod lookahead;
mod reader;
mod recovery;
mod segment;
#[cfg(test)]
mod tests;
mod watch;
mod writeback;
mod writer;
mod zeros;

// The log's whole interface; some of it only the whitebox tests use.
pub use follow::{Followed, Follower};
#[allow(unused_imports)]
pub use group_commit::Wal;
#[allow(unused_imports)]
pub use reader::{Damage, Found, ScanOutcome, Scanned, Tail, is_torn_seal, scan, scan_prepared};
#[allow(unused_imports)]
pub use recovery::{
    LogScan, TornFound, after_zeros, check_continuation, complete_seal, cut_torn_tail, missing_successor, read_log,
    read_log_prepared, set_aside, stale_after_data, starts_with_header, stray_bytes, torn_bytes,
};
#[allow(unused_imports)]
pub use segment::{Segment, create_segment, list_segments, parse_segment_name, remove_segments, segment_name};
pub use watch::DurableWatch;
#[allow(unused_imports)]
pub use writer::{RotateFailed, Writer};
