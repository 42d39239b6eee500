//! The sharded map: key -> value, the seq that wrote it and its deadline,
//! in 64 copy-on-write shards, each with its keys in order (`key_order`).
//!
//! Pure: no I/O, no clock of its own (reads take the time, or a caller's clock
//! read only for a key with a deadline: [`Now`]). Invariant: `orders[i]` holds
//! exactly the keys of `shards[i]` unless shard `i` is deferred (`unordered`,
//! as every shard is after a load until the first listing), and `len` counts
//! them all.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::state::change::{Expiry, Record, Seq};
use crate::state::doc::Doc;
use crate::state::key_order::{KeyOrder, Merged};

pub use crate::state::key::Key;

/// How many shards the map has.
pub const SHARDS: usize = 64;
// `Map::unordered` has a bit per shard.
const _: () = assert!(SHARDS <= 64);

/// One shard's table. foldhash (hashbrown's default hasher, randomly seeded
/// per table) instead of std's SipHash: hashing every key was the largest
/// single cost of loading a snapshot (17 % of the open's samples) and a
/// visible part of each get; a per-table random seed keeps chosen-key
/// collisions impractical, as hashbrown accepts for its own default.
type Shard = HashMap<Key, Slot, foldhash::fast::RandomState>;

/// A value, the record that last wrote it (conditional writes compare
/// it) and its deadline. The seq and the deadline cost 8 bytes each per key
/// in the table (a 40-byte slot becomes 56; docs/design.md, "Values in memory").
#[derive(Clone)]
struct Slot {
    doc: Doc,
    seq: Seq,
    /// Milliseconds since the Unix epoch at which the key expires; 0: never.
    /// A bare u64 rather than `Option<Expiry>`, which would take 16 bytes.
    exp: u64,
}

impl Slot {
    /// Whether the key is visible at `now` (ms since the epoch). `now` 0
    /// sees every key, expired or not (what replay and the tools need).
    /// `now` is asked only for a key with a deadline.
    fn live(&self, now: impl Now) -> bool {
        self.exp == 0 || self.exp > now.ms()
    }
}

/// The time a read judges expiry at, in ms since the epoch (0 sees every
/// key): a number, or a clock (`|| db_now()`) that a single-key read calls
/// only when the key it found has a deadline. Reading the clock on every get
/// (the trait call, `clock_gettime`, the ms conversion, the handle's
/// never-backwards atomic) took a get from 240 to 381 instructions; without
/// it, 248 (issue 18, docs/benchmarks.md "Random gets, round five").
pub trait Now {
    /// The time, read now.
    fn ms(&self) -> u64;
}

impl Now for u64 {
    fn ms(&self) -> u64 {
        *self
    }
}

impl<F: Fn() -> u64> Now for F {
    fn ms(&self) -> u64 {
        self()
    }
}

/// What a key held before a write: its value, seq and deadline (0: none).
pub type Old = (Doc, Seq, u64);

/// Entry lists by shard (one list per shard), as [`Map::from_parts`] takes
/// them: key, value, deadline (0: none).
pub type ShardLists = Vec<Vec<(Key, Doc, u64)>>;

/// A hash map from key to shared value, cheap to clone (copy-on-write shards),
/// that also lists its keys in order.
#[derive(Clone)]
pub struct Map {
    shards: Vec<Arc<Shard>>,
    /// Each shard's keys in order (`orders[i]` holds exactly the keys of
    /// `shards[i]`), copy-on-write like the shards, so that a frozen view
    /// lists in order too and a writer copies only the one it touches.
    orders: Vec<Arc<KeyOrder>>,
    /// Bit `i` set: `orders[i]` is not kept (and empty) ([`Map::defer_orders`]:
    /// after a snapshot's load and a replay, every shard until the first
    /// listing) and is built once, by [`Map::build_orders`].
    unordered: u64,
    /// Bit `i` set: a listing is building `orders[i]` on a frozen copy
    /// ([`Map::start_catch_up`]), and every key written to shard `i` since is
    /// noted in `touched[i]` for [`Map::finish_catch_up`] to apply.
    catching_up: u64,
    touched: Touched,
    len: usize,
    /// The least seq a key reports: the snapshot's for a map loaded from
    /// one (the file keeps no per-key seq, and every key in it was last
    /// written at or before the snapshot's seq, so conditions stay safe:
    /// one may fail that would have passed, none passes wrongly).
    floor: Seq,
}

impl Default for Map {
    fn default() -> Self {
        Map {
            shards: (0..SHARDS).map(|_| Arc::new(Shard::default())).collect(),
            orders: (0..SHARDS).map(|_| Arc::new(KeyOrder::default())).collect(),
            unordered: 0,
            catching_up: 0,
            touched: Touched::default(),
            len: 0,
            floor: Seq(0),
        }
    }
}

/// The keys written to each shard whose order a listing is building
/// ([`Map::start_catch_up`]). Empty (no allocation) outside a catch-up. A
/// copy keeps them: a map built from a clone of the live one (an import's
/// install) goes on noting, so the orders it installs miss nothing.
#[derive(Clone, Default)]
struct Touched(Vec<Vec<Key>>);

impl Map {
    /// The shard a key lives in. A cheap multiplicative hash, not the keyed
    /// SipHash the shards' own tables use: choosing one of 64 shards needs no
    /// protection against chosen keys (the worst case is one large shard,
    /// not a slow table), and hashing every key twice with SipHash was a
    /// visible part of each get and set.
    pub fn shard_of(key: &str) -> usize {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h: u64 = key.len() as u64;
        let mut chunks = key.as_bytes().chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
        // The top bits of a multiplication are the well-mixed ones.
        (h >> 58) as usize % SHARDS
    }

    // Every read takes `now` (ms since the epoch, or a clock: [`Now`]): a
    // key whose deadline is at or before it is invisible, so no read path
    // can forget the check. `now` 0 sees every key.

    /// The value of `key`, if it is live at `now`.
    pub fn get(&self, key: &str, now: impl Now) -> Option<&Doc> {
        self.shards[Map::shard_of(key)].get(key).filter(|s| s.live(now)).map(|s| &s.doc)
    }

    /// The value of `key` and the seq of the record that last wrote it
    /// (at least [`Map::set_floor`]'s), if it is live at `now`.
    pub fn get_with_seq(&self, key: &str, now: impl Now) -> Option<(&Doc, Seq)> {
        self.shards[Map::shard_of(key)].get(key).filter(|s| s.live(now)).map(|s| (&s.doc, s.seq.max(self.floor)))
    }

    /// The deadline of `key` (None: it has none), if it is live at `now`.
    pub fn expiry(&self, key: &str, now: impl Now) -> Option<Option<Expiry>> {
        self.shards[Map::shard_of(key)].get(key).filter(|s| s.live(now)).map(|s| (s.exp != 0).then_some(Expiry(s.exp)))
    }

    /// The key as the map holds it, and its value, if it is live at `now`.
    pub fn get_key_value(&self, key: &str, now: impl Now) -> Option<(&Key, &Doc)> {
        self.shards[Map::shard_of(key)].get_key_value(key).filter(|(_, s)| s.live(now)).map(|(k, s)| (k, &s.doc))
    }

    /// Inserts or replaces, as written by record `seq`, with no deadline;
    /// returns the key as the map holds it (the existing one when the key
    /// was there) and what it held before.
    pub fn insert(&mut self, key: Key, value: Doc, seq: Seq) -> (Key, Option<Old>) {
        self.put(key, value, seq, 0)
    }

    /// [`Map::insert`] with a deadline (`exp` ms since the epoch; 0: none).
    pub fn put(&mut self, key: Key, value: Doc, seq: Seq, exp: u64) -> (Key, Option<Old>) {
        use std::collections::hash_map::Entry;
        let i = Map::shard_of(&key);
        let slot = Slot { doc: value, seq, exp };
        match Arc::make_mut(&mut self.shards[i]).entry(key) {
            Entry::Occupied(mut e) => (Key::clone(e.key()), Some(e.insert(slot)).map(|s| (s.doc, s.seq, s.exp))),
            Entry::Vacant(e) => {
                let key = Key::clone(e.key());
                e.insert(slot);
                if self.unordered & (1 << i) == 0 {
                    Arc::make_mut(&mut self.orders[i]).insert(&key);
                } else {
                    self.note_touched(i, &key);
                }
                self.len += 1;
                (key, None)
            }
        }
    }

    /// Removes (live or expired); returns what the key held.
    pub fn remove(&mut self, key: &str) -> Option<Old> {
        let i = Map::shard_of(key);
        if !self.shards[i].contains_key(key) {
            return None;
        }
        let old = Arc::make_mut(&mut self.shards[i]).remove(key);
        if old.is_some() {
            if self.unordered & (1 << i) == 0 {
                Arc::make_mut(&mut self.orders[i]).remove(key);
            } else if self.catching_up & (1 << i) != 0 {
                self.note_touched(i, &Key::from(key));
            }
            self.len -= 1;
        }
        old.map(|s| (s.doc, s.seq, s.exp))
    }

    /// Sets the deadline of `key` (ms since the epoch; 0: none) without
    /// counting as a write: for a loader that reads deadlines apart from
    /// values. False if the key is absent.
    pub fn set_deadline(&mut self, key: &str, exp: u64) -> bool {
        let i = Map::shard_of(key);
        if !self.shards[i].contains_key(key) {
            return false;
        }
        Arc::make_mut(&mut self.shards[i]).get_mut(key).map(|slot| slot.exp = exp).is_some()
    }

    /// Every key written before `seq` reports `seq` as its last write
    /// (what a snapshot taken at `seq` can say of its keys).
    pub fn set_floor(&mut self, seq: Seq) {
        self.floor = seq;
    }

    /// Number of keys held, expired ones not yet removed included
    /// ([`crate::state::store::State::live_len`] counts the visible ones).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry live at `now`, in no particular order.
    pub fn iter(&self, now: u64) -> impl Iterator<Item = (&Key, &Doc)> {
        self.iter_expiring(now).map(|(k, d, _)| (k, d))
    }

    /// The keys at or after `lower`, in byte order, merged from the shards'
    /// ordered sets: taking `n` of them costs one seek per shard and about
    /// `n * 6` comparisons, whatever the map's size. Expired keys included:
    /// the caller skips those not live at its time.
    pub fn keys_from(&self, lower: Bound<&str>) -> Merged<'_> {
        debug_assert!(self.unordered == 0, "listed before the deferred orders were built");
        Merged::new(self.orders.iter().map(|o| &**o), lower)
    }

    /// Every entry live at `now` with its deadline (0: none), in no particular order.
    pub fn iter_expiring(&self, now: u64) -> impl Iterator<Item = (&Key, &Doc, u64)> {
        self.shards.iter().flat_map(|s| s.iter()).filter(move |(_, s)| s.live(now)).map(|(k, s)| (k, &s.doc, s.exp))
    }

    /// Every key (expired or not) last written by a record after `seq`, by
    /// the seq the map keeps for it (not the floor: a snapshot's keys keep
    /// none). The rollback after a failed sync finds the keys created since
    /// the durable point this way instead of keeping an undo per new key.
    pub fn written_after(&self, seq: Seq) -> Vec<Key> {
        self.shards.iter().flat_map(|s| s.iter()).filter(|(_, s)| s.seq > seq).map(|(k, _)| k.clone()).collect()
    }

    /// Every entry live at `now`, sorted by key (byte order).
    pub fn sorted(&self, now: u64) -> Vec<(&Key, &Doc)> {
        let mut all: Vec<_> = self.iter(now).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// Every entry live at `now` with its deadline (0: none), sorted by key.
    pub fn sorted_expiring(&self, now: u64) -> Vec<(&Key, &Doc, u64)> {
        let mut all: Vec<_> = self.iter_expiring(now).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// Builds a map from entries already split by [`Map::shard_of`]:
    /// `parts[chunk][shard]`, chunks in order (a later entry of a key
    /// replaces an earlier one), its key orders deferred
    /// ([`Map::defer_orders`]: a load sorts no keys). The shards are built
    /// by the calling thread and up to `threads - 1` helpers, each taking
    /// the next unbuilt shard (a helper the OS refuses to start just leaves
    /// more to the others).
    /// `None` if a helper panicked.
    pub fn from_parts(parts: Vec<ShardLists>, threads: usize) -> Option<Map> {
        // Regroup by shard, keeping chunk order within each shard.
        let mut by_shard: Vec<ShardLists> = (0..SHARDS).map(|_| Vec::new()).collect();
        for chunk in parts {
            for (lists, entries) in by_shard.iter_mut().zip(chunk) {
                lists.push(entries);
            }
        }
        let todo: Vec<std::sync::Mutex<Vec<_>>> = by_shard.into_iter().map(Into::into).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || -> Vec<(usize, Shard)> {
            let mut built = Vec::new();
            loop {
                let shard = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(slot) = todo.get(shard) else { return built };
                let lists = std::mem::take(&mut *slot.lock().unwrap_or_else(|p| p.into_inner()));
                let mut table = Shard::with_capacity_and_hasher(lists.iter().map(Vec::len).sum(), Default::default());
                // A snapshot keeps no per-key seq: the loader sets the map's floor.
                table.extend(lists.into_iter().flatten().map(|(k, doc, exp)| (k, Slot { doc, seq: Seq(0), exp })));
                built.push((shard, table));
            }
        };
        let built: Option<Vec<(usize, Shard)>> = std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads.clamp(1, SHARDS))
                .filter_map(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
                .collect();
            let mut all = work();
            for helper in helpers {
                all.extend(helper.join().ok()?);
            }
            Some(all)
        });
        let mut map = Map::default();
        map.defer_orders();
        for (shard, table) in built? {
            map.len += table.len();
            map.shards[shard] = Arc::new(table);
        }
        Some(map)
    }

    /// Stops keeping the key order of every shard, and frees the orders
    /// held, until [`Map::build_orders`]: what a load leaves (a snapshot's
    /// load and a replay), so that an open sorts no keys and the orders'
    /// memory (about 10 bytes a key) is paid only once something lists keys
    /// in order (issue 18: the sort was 13 % of a log open's instructions). Inserted
    /// one at a time, a shard's ordered keys fill their chunks about 70 % (a
    /// full chunk splits in two half-full ones), where one sort at the end
    /// packs them full, with less CPU. Not during a catch-up
    /// ([`Map::start_catch_up`]): only a load calls it, before anyone reads.
    pub fn defer_orders(&mut self) {
        debug_assert!(self.catching_up == 0, "orders deferred during a catch-up");
        let empty = Arc::new(KeyOrder::default());
        for order in &mut self.orders {
            *order = Arc::clone(&empty);
        }
        self.unordered = u64::MAX >> (64 - SHARDS);
    }

    /// Whether some shard's key order is deferred: [`Map::build_orders`]
    /// must run before [`Map::keys_from`].
    pub fn orders_deferred(&self) -> bool {
        self.unordered != 0
    }

    /// Builds the key order of every shard [`Map::defer_orders`] left
    /// unordered, from its table, on the calling thread and up to
    /// `threads - 1` helpers (a sort per shard: 13 % of an open's
    /// instructions when a replay of 200,000 keys ran it), and keeps every
    /// order again. Listing before this call would miss those shards' keys:
    /// the first listing calls it on its frozen copy ([`Map::start_catch_up`]).
    pub fn build_orders(&mut self, threads: usize) {
        let unordered = std::mem::take(&mut self.unordered);
        let todo: Vec<(&Arc<Shard>, &mut Arc<KeyOrder>)> = self
            .shards
            .iter()
            .zip(self.orders.iter_mut())
            .enumerate()
            .filter(|(i, _)| unordered & (1 << i) != 0)
            .map(|(_, pair)| pair)
            .collect();
        let todo: Vec<std::sync::Mutex<_>> = todo.into_iter().map(Into::into).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            while let Some(part) = todo.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                let mut part = part.lock().unwrap_or_else(|p| p.into_inner());
                let (shard, order) = &mut *part;
                **order = Arc::new(order_of_table(shard));
            }
        };
        std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads.clamp(1, todo.len().max(1)))
                .filter_map(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
                .collect();
            work();
            for helper in helpers {
                let _ = helper.join();
            }
        });
        // A helper that panicked (a sort cannot) left its shard unbuilt.
        for i in (0..SHARDS).filter(|i| unordered & (1 << i) != 0) {
            if self.orders[i].len() != self.shards[i].len() {
                self.orders[i] = Arc::new(order_of_table(&self.shards[i]));
            }
        }
    }

    /// Starts noting the keys written to every shard whose order is
    /// deferred, for a listing that builds those orders on a frozen copy
    /// taken under the same lock, outside the locks (issue 17: writers must
    /// not wait for its sort), then hands them to [`Map::finish_catch_up`].
    pub fn start_catch_up(&mut self) {
        self.catching_up = self.unordered;
        self.touched = Touched((0..SHARDS).map(|_| Vec::new()).collect());
    }

    fn note_touched(&mut self, i: usize, key: &Key) {
        if self.catching_up & (1 << i) != 0
            && let Some(keys) = self.touched.0.get_mut(i)
        {
            keys.push(Key::clone(key));
        }
    }

    /// Installs `built[i]` (the orders [`Map::build_orders`] built on the
    /// copy taken at [`Map::start_catch_up`]) as the order of every shard
    /// caught up, after applying the keys written to it since: each is in
    /// the order exactly if it is in the shard now. Under the state's write
    /// lock, costs only those keys (an order shared with the copy would be
    /// copied: the caller drops the copy's first).
    pub fn finish_catch_up(&mut self, built: Vec<Arc<KeyOrder>>) {
        let caught = std::mem::take(&mut self.catching_up);
        let touched = std::mem::take(&mut self.touched).0;
        for (i, mut order) in built.into_iter().enumerate() {
            if caught & (1 << i) == 0 {
                continue;
            }
            let keys = touched.get(i).map_or(&[][..], Vec::as_slice);
            if !keys.is_empty() {
                let order = Arc::make_mut(&mut order);
                for key in keys {
                    if self.shards[i].contains_key(key.as_str()) {
                        order.insert(key.as_str());
                    } else {
                        order.remove(key.as_str());
                    }
                }
            }
            self.orders[i] = order;
            self.unordered &= !(1 << i);
        }
    }

    /// The key orders, taken out of a copy (which then lists nothing): for
    /// [`Map::finish_catch_up`].
    pub fn take_orders(&mut self) -> Vec<Arc<KeyOrder>> {
        std::mem::take(&mut self.orders)
    }

    /// Applies `writes[i]` to shard `i`, each list in its order, on the
    /// calling thread and up to `threads - 1` helpers, each taking the next
    /// shard with writes (a helper the OS refuses to start just leaves more
    /// to the others): a replay's writes to different shards touch no
    /// common memory, so any split gives what applying them one by one in
    /// log order gives. Orders a replay deferred stay unbuilt. Returns
    /// every key whose deadline changed, with its deadline before and after
    /// (0: none), in write order for each key; `None` (the map then holds
    /// only some of the writes) if a helper panicked. The lists are left
    /// empty, their capacity kept for the next call.
    pub fn apply_writes(&mut self, writes: &mut [Vec<ShardWrite>], threads: usize) -> Option<Vec<Moved>> {
        let unordered = self.unordered;
        let todo: Vec<std::sync::Mutex<Part<'_>>> = self
            .shards
            .iter_mut()
            .zip(self.orders.iter_mut())
            .zip(writes.iter_mut())
            .enumerate()
            .filter(|(_, (_, list))| !list.is_empty())
            .map(|(i, ((shard, order), list))| (shard, (unordered & (1 << i) == 0).then_some(order), list).into())
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || -> (isize, Vec<Moved>) {
            let (mut delta, mut moved) = (0, Vec::new());
            while let Some(part) = todo.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                let mut part = part.lock().unwrap_or_else(|p| p.into_inner());
                let (shard, order, list) = &mut *part;
                let table = Arc::make_mut(shard);
                let mut order = order.as_mut().map(|o| Arc::make_mut(o));
                for write in list.drain(..) {
                    delta += apply_one(table, order.as_deref_mut(), write, &mut moved);
                }
            }
            (delta, moved)
        };
        let done: Option<(isize, Vec<Moved>)> = std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads.clamp(1, todo.len().max(1)))
                .filter_map(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
                .collect();
            let (mut delta, mut moved) = work();
            for helper in helpers {
                let (more, also) = helper.join().ok()?;
                delta += more;
                moved.extend(also);
            }
            Some((delta, moved))
        });
        let (delta, moved) = done?;
        self.len = self.len.checked_add_signed(delta)?;
        Some(moved)
    }

    /// Reserves room for `additional` more keys (spread over the shards).
    pub fn reserve(&mut self, additional: usize) {
        for shard in &mut self.shards {
            Arc::make_mut(shard).reserve(additional / SHARDS + 1);
        }
    }
}

/// One write of a replay to one key, for [`Map::apply_writes`]: what
/// [`Map::put`] and [`Map::remove`] do, and a deadline change of a present
/// key (the record's seq becomes the key's, as a write).
///
/// The key is a [`Key`], made when the write is queued: a key up to 23
/// bytes is then inline in the queue, and applying reads no record's
/// string (a cache miss per write, 10-25 % more CPU for the replay when
/// the queue held the record's `String`).
pub enum ShardWrite {
    /// Insert or replace, written by `seq`, expiring at `exp` (0: never).
    Put(Key, Doc, Seq, u64),
    /// Remove (a no-op if absent).
    Remove(Key),
    /// Give a present key the deadline `exp` (0: none), as written by `seq`.
    Expire(Key, Seq, u64),
}

impl ShardWrite {
    /// The record whose one write this is (a deadline of 0 is none: a
    /// record never carries 0, the decoder refuses it).
    pub fn into_record(self) -> Record {
        match self {
            ShardWrite::Put(key, doc, _, 0) => Record::Set(key.to_string(), doc),
            ShardWrite::Put(key, doc, _, exp) => Record::SetExpiring(key.to_string(), doc, Expiry(exp)),
            ShardWrite::Remove(key) => Record::Delete(key.to_string()),
            ShardWrite::Expire(key, _, 0) => Record::Expire(key.to_string(), None),
            ShardWrite::Expire(key, _, exp) => Record::Expire(key.to_string(), Some(Expiry(exp))),
        }
    }
}

/// A key whose deadline a write changed: the key, its deadline before and
/// after (0: none).
pub type Moved = (Key, u64, u64);

/// A shard, its key order (None: deferred) and the writes for it.
type Part<'a> = (&'a mut Arc<Shard>, Option<&'a mut Arc<KeyOrder>>, &'a mut Vec<ShardWrite>);

/// Applies one write to a shard; returns 1 for a key added, -1 for one
/// removed, 0 otherwise. A key whose deadline changes is added to `moved`
/// with its deadline before and after (0: none).
fn apply_one(table: &mut Shard, order: Option<&mut KeyOrder>, write: ShardWrite, moved: &mut Vec<Moved>) -> isize {
    use std::collections::hash_map::Entry;
    match write {
        ShardWrite::Put(key, doc, seq, exp) => match table.entry(key) {
            Entry::Occupied(mut e) => {
                let before = e.insert(Slot { doc, seq, exp }).exp;
                if before != exp {
                    moved.push((e.key().clone(), before, exp));
                }
                0
            }
            Entry::Vacant(e) => {
                if let Some(order) = order {
                    order.insert(e.key());
                }
                if exp != 0 {
                    moved.push((e.key().clone(), 0, exp));
                }
                e.insert(Slot { doc, seq, exp });
                1
            }
        },
        ShardWrite::Remove(key) => {
            let Some((key, slot)) = table.remove_entry(key.as_str()) else { return 0 };
            if let Some(order) = order {
                order.remove(&key);
            }
            if slot.exp != 0 {
                moved.push((key, slot.exp, 0));
            }
            -1
        }
        ShardWrite::Expire(key, seq, exp) => {
            let Some(slot) = table.get_mut(key.as_str()) else { return 0 };
            slot.seq = seq;
            let before = std::mem::replace(&mut slot.exp, exp);
            // The key as stored: an index shares a long key's allocation.
            if let Some((stored, _)) = table.get_key_value(key.as_str()).filter(|_| before != exp) {
                moved.push((stored.clone(), before, exp));
            }
            0
        }
    }
}

/// The ordered set of a table's keys, sorted.
fn order_of_table(table: &Shard) -> KeyOrder {
    let mut keys: Vec<&str> = table.keys().map(Key::as_str).collect();
    keys.sort_unstable();
    KeyOrder::from_sorted(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_spread_over_the_shards() {
        for pattern in ["user:", "k", "order/2026-11-26/"] {
            let mut counts = [0usize; SHARDS];
            for i in 0..64_000 {
                counts[Map::shard_of(&format!("{pattern}{i}"))] += 1;
            }
            let (min, max) = (counts.iter().min().copied(), counts.iter().max().copied());
            assert!(min >= Some(700) && max <= Some(1300), "{pattern}: {min:?}..{max:?} per shard, 1000 expected");
        }
    }

    #[test]
    fn map_clone_is_copy_on_write() {
        let mut a = Map::default();
        for i in 0..1000 {
            a.insert(format!("k{i}").into(), Doc::from(json!(i)), Seq(1));
        }
        let frozen = a.clone();
        a.insert("k1".into(), Doc::from(json!("changed")), Seq(2));
        a.remove("k2");
        assert_eq!(frozen.get("k1", 0).map(Doc::to_value), Some(json!(1)));
        assert_eq!(frozen.len(), 1000);
        assert_eq!(a.len(), 999);
        assert_eq!(a.get("k1", 0).map(Doc::to_value), Some(json!("changed")));
    }
    /// A replay's deferred orders end up exactly the keys in order, packed
    /// full; a shard that held keys before is deferred too (its order freed).
    #[test]
    fn deferred_orders_are_built_exact_and_packed() {
        let load = |m: &mut Map| {
            for i in 0..20_000 {
                m.insert(format!("user:{i}").into(), Doc::from(json!(i)), Seq(1));
                if i % 7 == 0 {
                    m.remove(&format!("user:{}", i / 2));
                }
            }
        };
        let mut kept = Map::default();
        kept.insert("user:5".into(), Doc::from(json!(0)), Seq(1));
        let mut deferred = kept.clone();
        load(&mut kept);
        deferred.defer_orders();
        assert_eq!(deferred.unordered.count_ones() as usize, SHARDS);
        assert_eq!(deferred.orders.iter().map(|o| o.len()).sum::<usize>(), 0, "the orders held are freed");
        load(&mut deferred);
        deferred.build_orders(3);
        assert_eq!(deferred.unordered, 0);
        let mut model: Vec<String> = kept.iter(0).map(|(k, _)| k.to_string()).collect();
        model.sort();
        assert!(deferred.keys_from(Bound::Unbounded).eq(model.iter().map(String::as_str)));
        assert!(kept.keys_from(Bound::Unbounded).eq(model.iter().map(String::as_str)));
        let bytes = |m: &Map| m.orders.iter().map(|o| o.heap_bytes()).sum::<usize>();
        let key_bytes: usize = model.iter().map(|k| k.len() + 1).sum();
        eprintln!(
            "ordered keys: {} bytes kept one by one, {} deferred, {key_bytes} of keys",
            bytes(&kept),
            bytes(&deferred)
        );
        assert!(bytes(&deferred) * 10 < bytes(&kept) * 9, "{} vs {}", bytes(&deferred), bytes(&kept));
    }

    /// A map whose every shard defers its order, holding `k0`..`k{n-1}`.
    fn deferred_with(n: usize) -> Map {
        let mut map = Map::default();
        map.defer_orders();
        for i in 0..n {
            map.insert(format!("k{i}").into(), Doc::from(json!(i)), Seq(1));
        }
        map
    }

    /// A listing sorts deferred orders on a frozen copy, outside the locks;
    /// the keys written meanwhile (inserted, removed, inserted again) are
    /// applied when the orders are installed, so none is missed.
    #[test]
    fn orders_built_on_a_copy_catch_up_with_the_writes_made_meanwhile() {
        let mut live = deferred_with(5000);
        live.start_catch_up();
        let mut frozen = live.clone();
        frozen.build_orders(2);
        live.insert("new key".into(), Doc::from(json!(0)), Seq(2));
        live.remove("k17");
        live.remove("k18");
        live.insert("k18".into(), Doc::from(json!(1)), Seq(3));
        live.insert("gone".into(), Doc::from(json!(1)), Seq(4));
        live.remove("gone");
        assert!(frozen.keys_from(Bound::Unbounded).any(|k| k == "k17"), "the copy lists what it froze");
        live.finish_catch_up(frozen.take_orders());
        assert!(!live.orders_deferred());
        let mut model: Vec<String> = live.iter(0).map(|(k, _)| k.to_string()).collect();
        model.sort();
        assert!(live.keys_from(Bound::Unbounded).eq(model.iter().map(String::as_str)));
        // Later writes keep the orders as usual.
        live.insert("later".into(), Doc::from(json!(2)), Seq(5));
        assert!(live.keys_from(Bound::Included("later")).next() == Some("later"));
    }

    /// A map made from a clone of the live one during a catch-up (an
    /// import's install replaces the state with one) goes on noting keys:
    /// the orders installed into it list what it was given meanwhile.
    #[test]
    fn a_clone_taken_during_a_catch_up_goes_on_noting_keys() {
        let mut live = deferred_with(2000);
        live.insert("noted before".into(), Doc::from(json!(0)), Seq(1));
        live.start_catch_up();
        let mut frozen = live.clone();
        frozen.build_orders(1);
        live.insert("noted".into(), Doc::from(json!(0)), Seq(2));
        let mut installed = live.clone();
        installed.insert("imported".into(), Doc::from(json!(0)), Seq(0));
        installed.finish_catch_up(frozen.take_orders());
        let listed: Vec<&str> = installed.keys_from(Bound::Unbounded).collect();
        assert_eq!(listed.len(), 2003);
        assert!(listed.contains(&"imported") && listed.contains(&"noted"));
    }

    /// A clock passed as `Now` is read only for a key with a deadline, and
    /// such a key is judged at its reading (hidden from its deadline on).
    #[test]
    fn a_single_key_read_asks_the_clock_only_for_a_key_with_a_deadline() {
        use std::cell::Cell;
        let mut m = Map::default();
        m.put("plain".into(), Doc::from(json!(1)), Seq(1), 0);
        m.put("session".into(), Doc::from(json!(2)), Seq(2), 100);
        let reads = Cell::new(0);
        let at = |t: u64| {
            let reads = &reads;
            move || {
                reads.set(reads.get() + 1);
                t
            }
        };
        assert!(m.get("plain", at(1_000)).is_some());
        assert!(m.get_with_seq("plain", at(1_000)).is_some());
        assert!(m.expiry("plain", at(1_000)).is_some());
        assert!(m.get_key_value("plain", at(1_000)).is_some());
        assert!(m.get("absent", at(1_000)).is_none());
        assert_eq!(reads.get(), 0);
        assert!(m.get("session", at(99)).is_some());
        assert!(m.get("session", at(100)).is_none());
        assert!(m.get_with_seq("session", at(100)).is_none());
        assert!(m.expiry("session", at(100)).is_none());
        assert!(m.get_key_value("session", at(100)).is_none());
        assert_eq!(reads.get(), 5);
    }
}
