//! The deadline index: every key that has a deadline, ordered by (deadline,
//! key), so that the sweeper takes the due keys from the front in deadline
//! order and a count of the live keys needs no scan of the map.
//!
//! Invariant: the entries are distinct and in strictly increasing
//! (deadline, key) order across and within the chunks; no chunk is empty and
//! none holds more than [`CHUNK`] entries. docs/design.md (Expiry, "The
//! deadline index") says why chunks rather than a `BTreeSet`.

use std::cmp::Ordering;
use std::collections::VecDeque;

use crate::state::key::Key;

/// Entries per chunk at most: 31 of 32 bytes, a 992-byte allocation. A
/// chunk is a plain sorted `Vec`: a binary search of 5 steps inside it, and an
/// insert or removal in the middle moves under 1 KiB. Not 64: glibc's malloc
/// serves requests over about 1000 bytes past its per-thread cache and small
/// bins, and each such request sorted its backlog of freed blocks first, which
/// cost ~750 instructions per insert under callgrind (docs/benchmarks.md). The
/// per-chunk overhead (24 bytes in the deque, 16 of allocation header) is
/// 1.3 bytes per entry.
const CHUNK: usize = 31;

/// One entry: a deadline (ms since the Unix epoch, never 0) and its key.
type Entry = (u64, Key);

/// A sorted set of (deadline, key) in chunks. Most deadlines arrive in
/// increasing order (a fixed time to live added to a clock that only moves
/// forward), so an insert first tries the end: one comparison and a push,
/// where a B-tree descends and searches every level. Other inserts and every
/// removal find their chunk by binary search over the chunks' first entries.
#[derive(Clone, Default)]
pub struct Deadlines {
    /// A deque so that the sweeper, which empties the front chunk first,
    /// drops it without moving the others.
    chunks: VecDeque<Vec<Entry>>,
    len: usize,
}

/// Orders an entry against (`exp`, `key`).
fn cmp(entry: &Entry, exp: u64, key: &str) -> Ordering {
    entry.0.cmp(&exp).then_with(|| entry.1.as_str().cmp(key))
}

impl Deadlines {
    /// Builds the index from entries in any order (a repeated entry is kept once).
    pub fn from_unsorted(mut entries: Vec<Entry>) -> Deadlines {
        entries.sort_unstable();
        entries.dedup();
        let len = entries.len();
        let mut chunks = VecDeque::with_capacity(len.div_ceil(CHUNK));
        let mut rest = entries.into_iter().peekable();
        while rest.peek().is_some() {
            chunks.push_back(rest.by_ref().take(CHUNK).collect());
        }
        Deadlines { chunks, len }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The earliest entry.
    pub fn first(&self) -> Option<&Entry> {
        self.chunks.front().and_then(|c| c.first())
    }

    /// Every entry, earliest first.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.chunks.iter().flatten()
    }

    /// Number of entries whose deadline is at or before `now`: whole chunks
    /// by their last entry, then a binary search in the one that straddles.
    pub fn due(&self, now: u64) -> usize {
        let mut count = 0;
        for chunk in &self.chunks {
            match chunk.last() {
                Some(last) if last.0 <= now => count += chunk.len(),
                _ => return count + chunk.partition_point(|e| e.0 <= now),
            }
        }
        count
    }

    /// The chunk that holds (`exp`, `key`) or would: the last whose first
    /// entry is at most it (the first chunk for an entry below every first).
    fn chunk_for(&self, exp: u64, key: &str) -> usize {
        self.chunks
            .partition_point(|c| c.first().is_some_and(|f| cmp(f, exp, key) != Ordering::Greater))
            .saturating_sub(1)
    }

    /// Adds (`exp`, `key`); false if it was there.
    pub fn insert(&mut self, exp: u64, key: &Key) -> bool {
        // The usual case: after every entry. A full last chunk is left full
        // and a new one started, so that increasing deadlines pack the
        // chunks completely.
        match self.chunks.back_mut() {
            None => self.chunks.push_back(Vec::new()),
            Some(last) => match last.last().map(|e| cmp(e, exp, key)) {
                Some(Ordering::Less) if last.len() == CHUNK => self.chunks.push_back(Vec::with_capacity(CHUNK)),
                Some(Ordering::Less) => {}
                _ => return self.insert_within(exp, key),
            },
        }
        if let Some(last) = self.chunks.back_mut() {
            last.push((exp, key.clone()));
            self.len += 1;
        }
        true
    }

    /// [`Deadlines::insert`] of an entry that is not after every other.
    fn insert_within(&mut self, exp: u64, key: &Key) -> bool {
        let mut i = self.chunk_for(exp, key);
        let Some(chunk) = self.chunks.get(i) else { return false };
        let mut at = match chunk.binary_search_by(|e| cmp(e, exp, key)) {
            Ok(_) => return false,
            Err(at) => at,
        };
        let full = chunk.len() == CHUNK;
        // What goes in at (`i`, `at`): the new entry, or the entry it pushed
        // out of a full chunk into the next.
        let mut entry = (exp, key.clone());
        if full && self.chunks.get(i + 1).is_some_and(|c| c.len() < CHUNK) {
            // Pass the full chunk's last entry (or the new one, when it goes
            // last) to the next chunk, which has room: entries arriving out
            // of order near a chunk's end (deadlines of one millisecond in
            // no key order, the usual case) then leave the chunks full
            // instead of split in halves.
            if at < CHUNK
                && let Some(chunk) = self.chunks.get_mut(i)
                && let Some(last) = chunk.pop()
            {
                chunk.insert(at, std::mem::replace(&mut entry, last));
            }
            (i, at) = (i + 1, 0);
        } else if full {
            // Split in the middle, except in the last chunk when the entry
            // lands in its upper half: there the left part keeps everything
            // before the entry, so it stays as full as the appends left it.
            let mid = if i + 1 == self.chunks.len() && at >= CHUNK / 2 { at } else { CHUNK / 2 };
            let mut right = Vec::with_capacity(CHUNK);
            if let Some(chunk) = self.chunks.get_mut(i) {
                right.extend(chunk.drain(mid..));
            }
            self.chunks.insert(i + 1, right);
            if at >= mid {
                (i, at) = (i + 1, at - mid);
            }
        }
        if let Some(chunk) = self.chunks.get_mut(i) {
            chunk.insert(at, entry);
            self.len += 1;
        }
        true
    }

    /// Removes (`exp`, `key`); false if it was not there.
    pub fn remove(&mut self, exp: u64, key: &str) -> bool {
        let i = self.chunk_for(exp, key);
        let Some(chunk) = self.chunks.get_mut(i) else { return false };
        let Ok(at) = chunk.binary_search_by(|e| cmp(e, exp, key)) else { return false };
        chunk.remove(at);
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(i);
        } else {
            self.merge_small(i);
        }
        true
    }

    /// Joins chunk `i` with a neighbour when together they fill at most half
    /// a chunk, so that an index that lost most of its entries does not keep
    /// a chunk per few entries.
    fn merge_small(&mut self, i: usize) {
        let j = if i + 1 < self.chunks.len() { i } else { i.saturating_sub(1) };
        let (Some(a), Some(b)) = (self.chunks.get(j), self.chunks.get(j + 1)) else { return };
        if a.len() + b.len() <= CHUNK / 2
            && let Some(next) = self.chunks.remove(j + 1)
            && let Some(chunk) = self.chunks.get_mut(j)
        {
            chunk.extend(next);
        }
    }

    /// Bytes of memory the index holds beyond its own struct, keys' heap
    /// allocations aside (shared with the map).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Vec<Entry>>()
            + self.chunks.iter().map(|c| c.capacity() * std::mem::size_of::<Entry>()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn check(d: &Deadlines, model: &BTreeSet<(u64, Key)>) {
        assert!(d.iter().eq(model.iter()));
        assert_eq!(d.len(), model.len());
        assert_eq!(d.first(), model.first());
        for chunk in &d.chunks {
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK, "a chunk of {}", chunk.len());
        }
        for now in [0, 1, 50, 99, 100, 101, 1000, 5000, u64::MAX] {
            assert_eq!(d.due(now), model.iter().take_while(|(e, _)| *e <= now).count(), "due at {now}");
        }
    }

    /// Deadlines of a fixed time to live as the clock moves (a few keys per
    /// millisecond, in no key order), with overwrites and sweeps.
    #[test]
    fn follows_a_btreeset_through_appends_ties_and_random_changes() {
        let mut d = Deadlines::default();
        let mut model = BTreeSet::new();
        let mut x: u64 = 7;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 33
        };
        for step in 0..30_000u64 {
            let r = next();
            let key = Key::from(format!("k{}", r % 4000));
            let exp = match step % 10 {
                // Random deadlines, anywhere.
                0 | 1 => 1 + next() % 5000,
                // Removals of any entry, present or not.
                2 | 3 => {
                    let e = model.iter().nth((r as usize) % (model.len() + 1)).cloned();
                    let (exp, key) = e.unwrap_or((7, key));
                    assert_eq!(d.remove(exp, &key), model.remove(&(exp, key.clone())));
                    continue;
                }
                // The sweeper: the earliest entry.
                4 => {
                    if let Some(first) = model.pop_first() {
                        assert!(d.remove(first.0, &first.1));
                    }
                    continue;
                }
                // A clock that moves forward, several keys per millisecond.
                _ => 5000 + step / 3,
            };
            assert_eq!(d.insert(exp, &key), model.insert((exp, key)));
        }
        check(&d, &model);
        let rebuilt = Deadlines::from_unsorted(model.iter().cloned().collect());
        check(&rebuilt, &model);
        for (exp, key) in model.clone() {
            assert!(d.remove(exp, &key));
            model.remove(&(exp, key));
        }
        check(&d, &model);
        assert!(d.chunks.is_empty());
        assert!(!d.remove(1, "k1"));
    }

    /// Increasing deadlines fill every chunk but the last completely, and
    /// the same millisecond arriving out of key order keeps them nearly full.
    #[test]
    fn appends_pack_the_chunks() {
        let mut d = Deadlines::default();
        for i in 0..10_000u64 {
            assert!(d.insert(1000 + i, &Key::from(format!("user:{i}"))));
        }
        assert_eq!(d.chunks.len(), 10_000usize.div_ceil(CHUNK));
        let mut ties = Deadlines::default();
        for i in 0..10_000u64 {
            // Four keys per millisecond, keys in no order within it.
            assert!(ties.insert(1000 + i / 4, &Key::from(format!("user:{}", (i * 7919) % 10_000))));
        }
        assert!(ties.chunks.len() <= 10_000 / (CHUNK * 9 / 10), "{} chunks", ties.chunks.len());
        // 32 bytes an entry (a deadline and an inline key) and little else:
        // docs/design.md's figure.
        for (name, d) in [("in order", &d), ("ties", &ties)] {
            eprintln!("{name}: {} bytes per entry, {} chunks", d.heap_bytes() as f64 / 10_000.0, d.chunks.len());
            assert!(d.heap_bytes() <= 10_000 * 36, "{name}: {} bytes", d.heap_bytes());
        }
    }
}
