//! The tools built on the layers below: offline verification ([`verify`])
//! and repair ([`repair`]) of a data directory, compaction ([`compact`]),
//! backups and restore ([`backup`]), JSON import/export ([`transfer`]), and
//! a one-shot read of one key from a closed directory ([`get_once`]).
//! Backup, restore and import/export are methods of the `Db` handle defined
//! here, beside the file formats they read and write.

pub mod backup;
pub mod compact;
pub mod get_once;
pub mod repair;
pub mod transfer;
pub mod verify;
