//! Storage: the only code that touches the disk, and only through the I/O
//! seam ([`vfs`]). The log line codec ([`record`], pure), the write-ahead log
//! ([`log`]: segments, scanning and the torn-tail rule, the writer and group
//! commit), the snapshot ([`snapshot`]) and the names of every file in a
//! data directory ([`files`]); the zero-tail rule ([`zero_tail`], pure), public
//! for redru-cluster's Raft log.
//!
//! Above the state (it persists the state's types), below the tools and the handle.

pub mod files;
pub mod log;
pub mod record;
pub mod snapshot;
pub mod vfs;
pub mod zero_tail;
