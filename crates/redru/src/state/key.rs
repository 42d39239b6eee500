//! The key type the map, the indexes and the snapshot loader share: a leaf,
//! so that the indexes need not name the map to hold keys.

/// A key as the map and the indexes hold it: up to 23 bytes inline in the
/// table's slot (`user:123456` and most keys people choose), longer ones in
/// one reference-counted allocation shared between the map and every index
/// that lists the key. Inline keys were the largest single gain for `get`:
/// comparing a key that lives behind a pointer was half of a lookup's time
/// (a cache miss per get), and they save an allocation per key.
pub type Key = smol_str::SmolStr;
