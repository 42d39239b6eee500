//! The state: everything the database holds in memory, pure (no I/O), so unit
//! tests and fuzz targets need no files. Values ([`doc`]), keys ([`key`]),
//! the change records the log replays ([`change`]), the conditions of
//! conditional writes ([`precondition`]), the sharded map ([`map`], its keys
//! in order in [`key_order`]), the state that applies records to it with its
//! indexes ([`store`], [`index`]), a log's replay on every core
//! ([`replay`]) and queries over them ([`query`]); the check of a value's
//! JSON grammar a snapshot load makes ([`json_check`]).
//!
//! The lowest layer: it names nothing of storage, tools or the handle.

pub mod change;
pub mod deadlines;
pub mod doc;
pub mod index;
pub mod json_check;
pub mod key;
pub mod key_order;
pub mod listing;
pub mod map;
#[cfg(feature = "__internal_whitebox")]
pub mod planted;
pub mod precondition;
pub mod query;
pub mod replay;
pub mod store;
