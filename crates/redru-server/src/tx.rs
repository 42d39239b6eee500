//! A command's view of the data: reads through the writes it (or the
//! transaction it belongs to) has made so far, and those writes collected as
//! one redru batch, applied all together when it commits. A lone command and
//! a whole MULTI/EXEC are the same thing to the database: one atomic record.
//! Deadlines are absolute (ms since the epoch, the database's clock read
//! once when the view starts), so every command of a transaction agrees on
//! what has expired.

use std::collections::HashMap;

use redru::{Batch, Db, Doc, Expiry, Ttl};

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
}

impl<'a> Tx<'a> {
    /// A view with no writes yet.
    pub fn new(db: &'a Db) -> Tx<'a> {
        Tx { db, now: db.now_ms(), overlay: HashMap::new(), cleared: false, batch: Batch::new() }
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
            None => self.db.get(key),
        }
    }

    /// Whether `key` exists.
    pub fn contains(&self, key: &str) -> bool {
        match self.overlay.get(key) {
            Some(value) => value.is_some(),
            None => !self.cleared && self.db.contains(key),
        }
    }

    /// Sets `key`, removing any deadline it had (as Redis's SET does).
    pub fn set(&mut self, key: &str, value: Doc) {
        self.batch.push_set(key, value.clone());
        self.overlay.insert(key.to_owned(), Some((value, None)));
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
