//! A command's view of the data: reads through the writes it (or the
//! transaction it belongs to) has made so far, and those writes collected as
//! one redru batch, applied all together when it commits. A lone command and
//! a whole MULTI/EXEC are the same thing to the database: one atomic record.
//! Deadlines are absolute (ms since the epoch, the database's clock read
//! once when the view starts), so every command of a transaction agrees on
//! what has expired.

use std::cell::RefCell;
use std::collections::HashMap;

use redru::{Batch, Db, Doc, Expiry, Listing, Page, Ttl};

/// Pending writes over a database.
pub struct Tx<'a> {
    db: &'a Db,
    /// The time the view judges deadlines at (ms since the epoch).
    now: u64,
    /// Keys written so far: `Some((value, deadline))` set, `None` deleted.
    overlay: HashMap<String, Option<(Doc, Option<Expiry>)>>,
    /// Whether the whole database was cleared first.
    cleared: bool,
    batch: Batch,
    /// What each key held in the database when this transaction first read
    /// it (keys it had written itself excluded): in a cluster these become
    /// the write's conditions, checked on every node when it is applied.
    reads: RefCell<HashMap<String, Option<Doc>>>,
    /// Whether to fill `reads` (only a cluster's writes need them).
    record: bool,
}

impl<'a> Tx<'a> {
    /// A view with no writes yet.
    pub fn new(db: &'a Db) -> Tx<'a> {
        Tx {
            db,
            now: db.now_ms(),
            overlay: HashMap::new(),
            cleared: false,
            batch: Batch::new(),
            reads: RefCell::new(HashMap::new()),
            record: false,
        }
    }

    /// A view that remembers what it read, for [`Tx::into_request`].
    pub fn recording(db: &'a Db) -> Tx<'a> {
        Tx { record: true, ..Tx::new(db) }
    }

    /// The time deadlines are judged at, ms since the epoch.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Whether `key` exists and, if it expires, when (ms since the epoch).
    pub fn expiry(&self, key: &str) -> Option<Option<Expiry>> {
        match self.overlay.get(key) {
            Some(entry) => entry.as_ref().map(|(_, exp)| *exp),
            None if self.cleared => None,
            None => match self.db.ttl(key) {
                Ttl::Missing => None,
                Ttl::Persistent => Some(None),
                Ttl::Expires { at, .. } => Some(Some(Expiry::from_system_time(at))),
            },
        }
    }

    /// Sets `key` to expire at `at` (a deadline already past deletes it).
    pub fn set_expiring(&mut self, key: &str, value: Doc, at: Expiry) {
        if at.0 <= self.now {
            self.delete(key);
            return;
        }
        self.batch.push_set_expiring(key, value.clone(), at);
        self.overlay.insert(key.to_owned(), Some((value, Some(at))));
    }

    /// Sets `key`, keeping the deadline it has (INCR, APPEND, JSON.SET and KEEPTTL do).
    pub fn set_keep_ttl(&mut self, key: &str, value: Doc) {
        match self.expiry(key).flatten() {
            Some(at) => self.set_expiring(key, value, at),
            None => self.set(key, value),
        }
    }

    /// Gives an existing `key` the deadline `at` (None: removes its deadline);
    /// whether the key exists. A deadline already past deletes the key.
    pub fn expire(&mut self, key: &str, at: Option<Expiry>) -> bool {
        let Some(value) = self.get(key) else { return false };
        match at {
            Some(at) if at.0 <= self.now => {
                self.delete(key);
            }
            Some(at) => {
                self.batch = std::mem::take(&mut self.batch).expire_at(key, at.to_system_time());
                self.overlay.insert(key.to_owned(), Some((value, Some(at))));
            }
            None => {
                self.batch = std::mem::take(&mut self.batch).persist(key);
                self.overlay.insert(key.to_owned(), Some((value, None)));
            }
        }
        true
    }

    /// The database underneath.
    pub fn db(&self) -> &'a Db {
        self.db
    }

    /// The value of `key` as this transaction sees it.
    pub fn get(&self, key: &str) -> Option<Doc> {
        match self.overlay.get(key) {
            Some(value) => value.as_ref().map(|(doc, _)| doc.clone()),
            None if self.cleared => None,
            None => self.read(key),
        }
    }

    /// Whether `key` exists.
    pub fn contains(&self, key: &str) -> bool {
        match self.overlay.get(key) {
            Some(value) => value.is_some(),
            None if self.cleared => false,
            None if !self.record => self.db.contains(key),
            None => self.read(key).is_some(),
        }
    }

    /// Reads `key` from the database, remembering the first value seen.
    fn read(&self, key: &str) -> Option<Doc> {
        if !self.record {
            return self.db.get(key);
        }
        let mut reads = self.reads.borrow_mut();
        if let Some(seen) = reads.get(key) {
            return seen.clone();
        }
        let value = self.db.get(key);
        reads.insert(key.to_owned(), value.clone());
        value
    }

    /// Sets `key`, removing any deadline it had (as Redis's SET does).
    pub fn set(&mut self, key: &str, value: Doc) {
        self.batch.push_set(key, value.clone());
        self.overlay.insert(key.to_owned(), Some((value, None)));
    }

    /// Whether a write gives a key a deadline (a cluster cannot replicate
    /// one yet: its requests carry values only).
    pub fn sets_deadlines(&self) -> bool {
        self.overlay.values().any(|v| matches!(v, Some((_, Some(_)))))
    }

    /// The writes as a cluster request, with a condition for every key read
    /// from the database (`None` if nothing was written). Deadlines are not
    /// carried: check [`Tx::sets_deadlines`] first.
    pub fn into_request(self) -> Option<redru_cluster::Request> {
        if self.batch.is_empty() {
            return None;
        }
        let mut ops = Vec::with_capacity(self.overlay.len() + 1);
        if self.cleared {
            ops.push(redru_cluster::Op::Clear);
        }
        for (key, value) in self.overlay {
            ops.push(match value {
                Some((doc, _)) => redru_cluster::Op::Set { key, value: doc.as_str().to_owned() },
                None => redru_cluster::Op::Delete { key },
            });
        }
        let conditions = self
            .reads
            .into_inner()
            .into_iter()
            .map(|(key, seen)| redru_cluster::Cond { key, equals: seen.map(|d| d.as_str().to_owned()) })
            .collect();
        Some(redru_cluster::Request { ops, conditions, many: Vec::new() })
    }

    /// Deletes `key`; whether it existed.
    pub fn delete(&mut self, key: &str) -> bool {
        let existed = self.contains(key);
        if existed {
            self.batch.push_delete(key);
            self.overlay.insert(key.to_owned(), None);
        }
        existed
    }

    /// Removes every key; how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.len();
        self.batch = std::mem::take(&mut self.batch).clear();
        self.overlay.clear();
        self.cleared = true;
        n
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        let base = if self.cleared { 0 } else { self.db.len() };
        let mut n = base as i64;
        for (key, value) in &self.overlay {
            let before = !self.cleared && self.db.contains(key);
            n += i64::from(value.is_some()) - i64::from(before);
        }
        n.max(0) as usize
    }

    /// Up to `n` keys after `after` (from the first without it), in key
    /// order, as this transaction sees them, through the ordered listing;
    /// `next` is set when keys may be left (possibly fewer than `n` came,
    /// when the transaction deleted some).
    pub fn keys_after(&self, after: Option<&str>, n: usize) -> Page<String> {
        let mut listing = Listing::all().limit(n.saturating_add(self.overlay.len()));
        if let Some(after) = after {
            listing = listing.after(after);
        }
        let base = if self.cleared { Page::default() } else { self.db.list(&listing) };
        // The page reaches as far as `reach`; the transaction's own keys up to it join in.
        let reach = base.next.clone();
        let mut keys: Vec<String> = base.items.into_iter().filter(|k| !self.overlay.contains_key(k)).collect();
        keys.extend(
            self.overlay
                .iter()
                .filter(|(k, v)| v.is_some() && after.is_none_or(|a| k.as_str() > a))
                .filter(|(k, _)| reach.as_ref().is_none_or(|r| *k <= r))
                .map(|(k, _)| k.clone()),
        );
        keys.sort_unstable();
        let cut = keys.len() > n;
        keys.truncate(n);
        // Everything up to `reach` was looked at: resume after the last key
        // returned if the page was cut here, else after `reach`.
        let next = if cut { keys.last().cloned() } else { reach };
        Page { items: keys, next }
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = if self.cleared { Vec::new() } else { self.db.keys() };
        if !self.overlay.is_empty() {
            keys.retain(|k| !self.overlay.contains_key(k));
            keys.extend(self.overlay.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k.clone()));
            keys.sort();
        }
        keys
    }

    /// Applies every write as one atomic record (nothing if there are
    /// none); returns what it changed, for WATCH.
    pub fn commit(self) -> redru::Result<Changed> {
        if self.batch.is_empty() {
            return Ok(Changed::default());
        }
        self.db.batch(self.batch)?;
        Ok(Changed { keys: self.overlay.into_keys().collect(), all: self.cleared })
    }
}

/// What a committed transaction changed.
#[derive(Debug, Default)]
pub struct Changed {
    /// The keys set or deleted.
    pub keys: Vec<String>,
    /// Whether every key was removed first.
    pub all: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_tx_turns_its_writes_and_reads_into_a_conditional_request() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let db = redru::Options::new().durability(redru::Durability::Never).open(dir.path())?;
        db.set("a", Doc::parse("1")?)?;
        let mut tx = Tx::recording(&db);
        assert!(tx.get("a").is_some()); // read from the database: a condition
        assert!(!tx.contains("absent")); // read as absent: a condition
        tx.set("b", Doc::parse("2")?); // written first, then read: no condition
        assert!(tx.get("b").is_some());
        assert!(tx.delete("a"));
        let request = tx.into_request().ok_or("no request")?;
        let mut ops = request.ops.clone();
        ops.sort_by_key(|op| format!("{op:?}"));
        assert_eq!(
            ops,
            vec![
                redru_cluster::Op::Delete { key: "a".into() },
                redru_cluster::Op::Set { key: "b".into(), value: "2".into() },
            ]
        );
        let mut conditions = request.conditions.clone();
        conditions.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(
            conditions,
            vec![
                redru_cluster::Cond { key: "a".into(), equals: Some("1".into()) },
                redru_cluster::Cond { key: "absent".into(), equals: None },
            ]
        );
        // A plain Tx records nothing, and a Tx without writes is no request.
        let plain = Tx::new(&db);
        assert!(plain.get("a").is_some());
        assert!(plain.into_request().is_none());
        Ok(())
    }

    /// Pages of every size through a transaction that set and deleted keys
    /// join up to exactly what `keys` lists, each key once.
    #[test]
    fn pages_through_the_transaction_equal_its_keys() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = Db::open(dir.path())?;
        for i in 0..40 {
            db.set(format!("k{i:02}"), redru::json!(i))?;
        }
        let mut tx = Tx::new(&db);
        for i in (0..40).step_by(3) {
            tx.delete(&format!("k{i:02}"));
        }
        for key in ["a", "k05x", "k99", "k10"] {
            tx.set(key, Doc::from(redru::json!(0)));
        }
        let all = tx.keys();
        for n in 1..12 {
            let (mut got, mut after) = (Vec::new(), None);
            loop {
                let page = tx.keys_after(after.as_deref(), n);
                assert!(page.items.len() <= n);
                got.extend(page.items);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(got, all, "pages of {n}");
        }
        tx.clear();
        tx.set("z", Doc::from(redru::json!(1)));
        assert_eq!(tx.keys_after(None, 5).items, ["z"]);
        Ok(())
    }
}
