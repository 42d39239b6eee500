//! Keys in order: one shard's keys as a packed sorted set ([`KeyOrder`]) kept
//! beside the shard's hash table, and the merge of the shards' sets into one
//! stream in key order ([`Merged`]).
//!
//! Invariant: a shard's `KeyOrder` holds exactly the keys of its table, each
//! once, in byte order. It costs about the key's length plus one byte per
//! key (docs/design.md, "Keys in order", says why not a `BTreeSet`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::ops::Bound;

use crate::state::key::Key;

/// A chunk is split before it grows past this many bytes. Small enough that
/// the linear search inside a chunk stays about ten short comparisons (keys
/// have no offsets: an offset table would cost 2-4 bytes per key), large
/// enough that the per-chunk overhead (its first key and that key's 8-byte
/// prefix, its `Vec`, the allocation's header) is about 3.5 bytes per key of
/// 11 bytes. 512 cost a
/// fifth more CPU per insert in the bulk load (docs/benchmarks.md).
const CHUNK_BYTES: usize = 256;

/// A sorted set of keys, packed: runs of keys (each a LEB128 length and its
/// bytes) in chunks of about [`CHUNK_BYTES`], with each chunk's first key
/// kept apart so that finding a chunk reads no chunk.
#[derive(Clone, Default)]
pub struct KeyOrder {
    /// The first key of each chunk, in order.
    firsts: Vec<First>,
    /// The chunks, in order; none is empty.
    chunks: Vec<Vec<u8>>,
    len: usize,
}

impl KeyOrder {
    /// Builds the set from keys in strictly increasing order (the caller
    /// checks), with every chunk filled.
    pub fn from_sorted<'a>(keys: impl IntoIterator<Item = &'a str>) -> KeyOrder {
        let mut order = KeyOrder::default();
        let mut chunk: Vec<u8> = Vec::new();
        for key in keys {
            if !chunk.is_empty() && chunk.len() + encoded_len(key) > CHUNK_BYTES {
                chunk.shrink_to_fit();
                order.chunks.push(std::mem::take(&mut chunk));
            }
            if chunk.is_empty() {
                order.firsts.push(First::of(key));
                chunk.reserve_exact(CHUNK_BYTES.max(encoded_len(key)));
            }
            // Filled to the brim and shrunk: a snapshot's keys cost their
            // bytes (the first insert into a full chunk splits it).
            encode(&mut chunk, key);
            order.len += 1;
        }
        if !chunk.is_empty() {
            chunk.shrink_to_fit();
            order.chunks.push(chunk);
        }
        order.chunks.shrink_to_fit();
        order.firsts.shrink_to_fit();
        order
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk that holds `key` or would: the last whose first key is at
    /// most `key` (the first chunk for a key below every first).
    fn chunk_for(&self, key: &str) -> usize {
        let prefix = prefix_of(key);
        self.firsts
            .partition_point(|f| f.prefix < prefix || (f.prefix == prefix && f.key.as_str() <= key))
            .saturating_sub(1)
    }

    /// Adds `key`; false if it was there.
    pub fn insert(&mut self, key: &str) -> bool {
        if self.chunks.is_empty() {
            let mut chunk = Vec::with_capacity(CHUNK_BYTES.max(encoded_len(key)));
            encode(&mut chunk, key);
            self.chunks.push(chunk);
            self.firsts.push(First::of(key));
            self.len = 1;
            return true;
        }
        let mut i = self.chunk_for(key);
        let (mut at, found) = seek(&self.chunks[i], key);
        if found {
            return false;
        }
        let need = encoded_len(key);
        if self.chunks[i].len() + need > CHUNK_BYTES && at == self.chunks[i].len() {
            // After a full chunk's last key (keys arriving in increasing
            // order): leave it full and start the next, rather than split it
            // into two halves that the keys to come will never fill.
            let mut chunk = Vec::with_capacity(CHUNK_BYTES.max(need));
            encode(&mut chunk, key);
            self.chunks.insert(i + 1, chunk);
            self.firsts.insert(i + 1, First::of(key));
            self.len += 1;
            return true;
        }
        if self.chunks[i].len() + need > CHUNK_BYTES {
            // Split first, so that no chunk's buffer ever grows past the limit.
            if let Some(mid) = self.split(i)
                && at >= mid
            {
                i += 1;
                at -= mid;
            }
        }
        // In place: open a gap of `need` bytes at `at` and write the key into
        // it (no temporary buffer). A chunk made by an insert or a split has
        // room for CHUNK_BYTES, so this rarely reallocates.
        let chunk = &mut self.chunks[i];
        let end = chunk.len();
        if chunk.capacity() < end + need {
            // A snapshot's chunk, built full and shrunk: room for a whole chunk.
            chunk.reserve_exact(CHUNK_BYTES.max(end + need) - end);
        }
        chunk.resize(end + need, 0);
        chunk.copy_within(at..end, at + need);
        write_at(&mut chunk[at..at + need], key);
        if at == 0 {
            self.firsts[i] = First::of(key);
        }
        self.len += 1;
        true
    }

    /// Splits chunk `i` at the key boundary nearest its middle; returns the
    /// byte offset split at, or None if the chunk holds one key.
    fn split(&mut self, i: usize) -> Option<usize> {
        // Boundaries only: no UTF-8 check of every key (the new first key is
        // checked below).
        let chunk = &self.chunks[i];
        // The inner key boundary nearest the middle.
        let (mut mid, mut pos) = (0usize, 0);
        while let Some((_, next)) = decode_bytes(chunk, pos) {
            if next < chunk.len() && next.abs_diff(chunk.len() / 2) < mid.abs_diff(chunk.len() / 2) {
                mid = next;
            }
            pos = next;
        }
        if mid == 0 {
            return None;
        }
        // Both halves get a whole chunk's room: the inserts that fill them
        // then never reallocate (a growing buffer reallocated every few
        // inserts, which cost CPU and fragmented the heap).
        let mut right = Vec::with_capacity(CHUNK_BYTES.max(chunk.len() - mid));
        right.extend_from_slice(&chunk[mid..]);
        let (first, _) = decode(&right, 0)?;
        let first = First::of(first);
        let left = &mut self.chunks[i];
        left.truncate(mid);
        left.reserve_exact(CHUNK_BYTES.saturating_sub(mid));
        self.chunks.insert(i + 1, right);
        self.firsts.insert(i + 1, first);
        Some(mid)
    }

    /// Removes `key`; false if it was not there.
    pub fn remove(&mut self, key: &str) -> bool {
        if self.chunks.is_empty() {
            return false;
        }
        let i = self.chunk_for(key);
        let (at, found) = seek(&self.chunks[i], key);
        if !found {
            return false;
        }
        let chunk = &mut self.chunks[i];
        chunk.drain(at..at + encoded_len(key));
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(i);
            self.firsts.remove(i);
            return true;
        }
        if at == 0
            && let Some((first, _)) = decode(chunk, 0)
        {
            self.firsts[i] = First::of(first);
        }
        self.merge_small(i);
        true
    }

    /// Joins chunk `i` with its successor when both are small, so that a
    /// set that lost most of its keys does not keep a chunk per few keys.
    fn merge_small(&mut self, i: usize) {
        let j = if i + 1 < self.chunks.len() { i } else { i.saturating_sub(1) };
        if j + 1 >= self.chunks.len() {
            return;
        }
        let (a, b) = (self.chunks[j].len(), self.chunks[j + 1].len());
        if a.min(b) < CHUNK_BYTES / 4 && a + b <= CHUNK_BYTES / 2 {
            let next = self.chunks.remove(j + 1);
            self.firsts.remove(j + 1);
            self.chunks[j].extend_from_slice(&next);
        }
    }

    /// The keys at or after `lower` (`Unbounded`: from the first), in order.
    pub fn iter_from(&self, lower: Bound<&str>) -> Iter<'_> {
        let (key, skip_equal) = match lower {
            Bound::Unbounded => return Iter { chunks: &self.chunks, chunk: 0, pos: 0 },
            Bound::Included(k) => (k, false),
            Bound::Excluded(k) => (k, true),
        };
        if self.chunks.is_empty() {
            return Iter { chunks: &self.chunks, chunk: 0, pos: 0 };
        }
        let i = self.chunk_for(key);
        let (mut pos, found) = seek(&self.chunks[i], key);
        if found && skip_equal {
            pos += encoded_len(key);
        }
        Iter { chunks: &self.chunks, chunk: i, pos }
    }

    /// Bytes of memory the set holds beyond its own struct (for tests and
    /// docs/design.md's arithmetic).
    pub fn heap_bytes(&self) -> usize {
        let firsts: usize =
            self.firsts.iter().map(|f| if f.key.is_heap_allocated() { f.key.len() + 16 } else { 0 }).sum();
        self.firsts.capacity() * std::mem::size_of::<First>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<u8>>()
            + self.chunks.iter().map(Vec::capacity).sum::<usize>()
            + firsts
    }
}

/// A chunk's first key and its first 8 bytes as a number, so that most
/// steps of the search for a chunk compare two integers rather than call
/// `memcmp` on two strings (the search was a fifth of an insert's cost).
#[derive(Clone)]
struct First {
    prefix: u64,
    key: Key,
}

impl First {
    fn of(key: &str) -> First {
        First { prefix: prefix_of(key), key: Key::from(key) }
    }
}

/// The first 8 bytes of `key`, big-endian, zero-padded: byte order on keys
/// never disagrees with this number's order (a key is above another only
/// if its prefix is at least the other's), so a search compares the keys
/// themselves only on equal prefixes.
fn prefix_of(key: &str) -> u64 {
    let mut word = [0u8; 8];
    for (slot, byte) in word.iter_mut().zip(key.as_bytes()) {
        *slot = *byte;
    }
    u64::from_be_bytes(word)
}

/// Keys of one [`KeyOrder`] in order, from a starting point.
pub struct Iter<'a> {
    chunks: &'a [Vec<u8>],
    chunk: usize,
    pos: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let chunk = self.chunks.get(self.chunk)?;
            if self.pos < chunk.len() {
                let (key, next) = decode(chunk, self.pos)?;
                self.pos = next;
                return Some(key);
            }
            self.chunk += 1;
            self.pos = 0;
        }
    }
}

/// The keys of several [`KeyOrder`]s (the shards', which share no key) as
/// one stream in order: a heap of each set's next key, so that taking `n`
/// keys costs about `n * log2(sets)` comparisons after one seek per set.
pub struct Merged<'a> {
    iters: Vec<Iter<'a>>,
    heap: BinaryHeap<Reverse<(&'a str, usize)>>,
}

impl<'a> Merged<'a> {
    /// The keys of `orders` at or after `lower`, in order.
    pub fn new(orders: impl IntoIterator<Item = &'a KeyOrder>, lower: Bound<&str>) -> Merged<'a> {
        let mut iters: Vec<Iter<'a>> = orders.into_iter().map(|o| o.iter_from(lower)).collect();
        let mut heap = BinaryHeap::with_capacity(iters.len());
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some(k) = it.next() {
                heap.push(Reverse((k, i)));
            }
        }
        Merged { iters, heap }
    }
}

impl<'a> Iterator for Merged<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        // Replace the top with its set's next key and sift once, rather than
        // a pop and a push (two sifts).
        let mut top = self.heap.peek_mut()?;
        let Reverse((key, i)) = *top;
        match self.iters.get_mut(i).and_then(Iterator::next) {
            Some(next) => *top = Reverse((next, i)),
            None => {
                PeekMut::pop(top);
            }
        }
        Some(key)
    }
}

/// Where `key` is in `chunk`, or would go: the byte offset of the first key
/// not below it, and whether that key is `key`. Compares bytes (byte order
/// is `str`'s order), so the scan validates no UTF-8.
fn seek(chunk: &[u8], key: &str) -> (usize, bool) {
    let key = key.as_bytes();
    let mut pos = 0;
    while let Some((k, next)) = decode_bytes(chunk, pos) {
        match k.cmp(key) {
            std::cmp::Ordering::Less => pos = next,
            std::cmp::Ordering::Equal => return (pos, true),
            std::cmp::Ordering::Greater => return (pos, false),
        }
    }
    (pos, false)
}

fn encoded_len(key: &str) -> usize {
    varint_len(key.len()) + key.len()
}

fn varint_len(mut n: usize) -> usize {
    let mut bytes = 1;
    while n >= 0x80 {
        n >>= 7;
        bytes += 1;
    }
    bytes
}

/// Writes `key` encoded into `out` (`encoded_len(key)` long).
fn write_at(out: &mut [u8], key: &str) {
    let mut length = [0u8; 10];
    let mut n = key.len();
    let mut used = 0;
    while n >= 0x80 {
        length[used] = (n as u8 & 0x7f) | 0x80;
        n >>= 7;
        used += 1;
    }
    length[used] = n as u8;
    let bytes = length.iter().take(used + 1).chain(key.as_bytes());
    for (slot, byte) in out.iter_mut().zip(bytes) {
        *slot = *byte;
    }
}

fn encode(out: &mut Vec<u8>, key: &str) {
    let mut n = key.len();
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(key.as_bytes());
}

/// The key at `pos` and the offset after it; None at the end (or, never
/// expected, on bytes this module did not write).
fn decode(chunk: &[u8], pos: usize) -> Option<(&str, usize)> {
    let (bytes, end) = decode_bytes(chunk, pos)?;
    Some((std::str::from_utf8(bytes).ok()?, end))
}

/// [`decode`] without the UTF-8 check, for comparisons.
fn decode_bytes(chunk: &[u8], mut pos: usize) -> Option<(&[u8], usize)> {
    let first = *chunk.get(pos)?;
    // One byte holds the length of any key under 128 bytes.
    let len = if first < 0x80 {
        pos += 1;
        usize::from(first)
    } else {
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let b = *chunk.get(pos)?;
            pos += 1;
            len |= usize::from(b & 0x7f).checked_shl(shift)?;
            if b < 0x80 {
                break;
            }
            shift += 7;
        }
        len
    };
    let end = pos.checked_add(len)?;
    Some((chunk.get(pos..end)?, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(o: &KeyOrder) -> Vec<String> {
        o.iter_from(Bound::Unbounded).map(str::to_owned).collect()
    }

    fn check(o: &KeyOrder, model: &BTreeSet<String>) {
        assert_eq!(keys(o), model.iter().cloned().collect::<Vec<_>>());
        assert_eq!(o.len(), model.len());
        assert_eq!(o.firsts.len(), o.chunks.len());
        for (first, chunk) in o.firsts.iter().zip(&o.chunks) {
            assert_eq!(decode(chunk, 0).map(|(k, _)| k), Some(first.key.as_str()));
            assert_eq!(first.prefix, prefix_of(&first.key));
            assert!(chunk.len() <= CHUNK_BYTES || decode(chunk, 0).map(|(_, n)| n) == Some(chunk.len()));
        }
    }

    #[test]
    fn follows_a_btreeset_through_inserts_and_removes() {
        let mut o = KeyOrder::default();
        let mut model = BTreeSet::new();
        let mut x: u64 = 1;
        for step in 0..20_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let k = format!("k{}", (x >> 33) % 3000);
            if step % 3 == 2 {
                assert_eq!(o.remove(&k), model.remove(&k));
            } else {
                assert_eq!(o.insert(&k), model.insert(k));
            }
        }
        check(&o, &model);
        for k in model.clone() {
            assert!(o.remove(&k));
            model.remove(&k);
        }
        check(&o, &model);
        assert!(o.chunks.is_empty());
    }

    /// Keys inserted in increasing order fill every chunk but the last, as
    /// a bulk build does.
    #[test]
    fn increasing_inserts_pack_the_chunks() {
        let all: Vec<String> = (0..5000).map(|i| format!("order:{i:08}")).collect();
        let mut o = KeyOrder::default();
        for k in &all {
            assert!(o.insert(k));
        }
        let built = KeyOrder::from_sorted(all.iter().map(String::as_str));
        check(&o, &all.iter().cloned().collect());
        assert_eq!(o.chunks.len(), built.chunks.len());
    }

    #[test]
    fn long_keys_and_bounds() {
        let long = "x".repeat(2000);
        let mut o = KeyOrder::default();
        for k in ["b", long.as_str(), "a", "c", "é", ""] {
            assert!(o.insert(k));
        }
        let all: Vec<&str> = o.iter_from(Bound::Unbounded).collect();
        assert_eq!(all, vec!["", "a", "b", "c", long.as_str(), "é"]);
        let from_b: Vec<&str> = o.iter_from(Bound::Included("b")).collect();
        assert_eq!(from_b.first(), Some(&"b"));
        let after_b: Vec<&str> = o.iter_from(Bound::Excluded("b")).collect();
        assert_eq!(after_b.first(), Some(&"c"));
        let after_bb: Vec<&str> = o.iter_from(Bound::Excluded("bb")).collect();
        assert_eq!(after_bb.first(), Some(&"c"));
        assert_eq!(o.iter_from(Bound::Excluded("é")).next(), None);
    }

    #[test]
    fn bulk_build_equals_inserts_and_merge_is_ordered() {
        let mut all: Vec<String> = (0..5000).map(|i| format!("user:{i}")).collect();
        all.sort();
        let built = KeyOrder::from_sorted(all.iter().map(String::as_str));
        let model: BTreeSet<String> = all.iter().cloned().collect();
        check(&built, &model);
        // Split the keys over 4 sets, merge them back.
        let mut parts = vec![KeyOrder::default(), KeyOrder::default(), KeyOrder::default(), KeyOrder::default()];
        for (i, k) in all.iter().enumerate() {
            parts[i * 7 % 4].insert(k);
        }
        let merged: Vec<&str> = Merged::new(&parts, Bound::Excluded("user:2")).collect();
        let expected: Vec<&str> =
            model.range::<str, _>((Bound::Excluded("user:2"), Bound::Unbounded)).map(String::as_str).collect();
        assert_eq!(merged, expected);
        // Packed: the key's bytes plus one, plus 56 bytes per chunk (its first
        // key with its prefix, and its `Vec`).
        let bytes: usize = all.iter().map(|k| k.len() + 1).sum();
        let chunks = built.chunks.len();
        assert!(chunks <= bytes / (CHUNK_BYTES - 16) + 1, "{chunks} chunks for {bytes} bytes");
        assert_eq!(built.heap_bytes(), bytes + chunks * 56);
    }
}
