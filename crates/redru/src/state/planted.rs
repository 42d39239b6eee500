//! Planted bugs, for the fuzz targets' negative controls only: each flag
//! switches one deliberate defect on, in the calling thread, so a test can
//! show that its target's oracle catches it. Compiled only with the
//! `__internal_whitebox` feature; never on in any build a user gets.

use std::cell::Cell;

/// Replay skips every delete record.
pub const SKIP_DELETES: u8 = 1;
/// Loading a snapshot drops its sequence number and index definitions.
pub const DROP_SNAPSHOT_HEADER: u8 = 2;
/// Writes are acknowledged before their fsync (the `model` target reads it
/// and calls `Db::__test_skip_sync`).
pub const ACK_BEFORE_SYNC: u8 = 4;

thread_local! {
    static PLANTED: Cell<u8> = const { Cell::new(0) };
}

/// Switches the planted bugs `flags` on (0: all off) in this thread.
pub fn set(flags: u8) {
    PLANTED.with(|p| p.set(flags));
}

/// Whether `flag` is on in this thread.
pub fn on(flag: u8) -> bool {
    PLANTED.with(|p| p.get() & flag != 0)
}
