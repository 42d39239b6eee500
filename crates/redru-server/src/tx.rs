//! A command's view of the data: reads through the writes it (or the
//! transaction it belongs to) has made so far, and those writes collected as
//! one redru batch, applied all together when it commits. A lone command and
//! a whole MULTI/EXEC are the same thing to the database: one atomic record.

use std::collections::HashMap;

use redru::{Batch, Db, Doc, Listing, Page};

/// Pending writes over a database.
pub struct Tx<'a> {
    db: &'a Db,
    /// Keys written so far: `Some(value)` set, `None` deleted.
    overlay: HashMap<String, Option<Doc>>,
    /// Whether the whole database was cleared first.
    cleared: bool,
    batch: Batch,
}

impl<'a> Tx<'a> {
    /// A view with no writes yet.
    pub fn new(db: &'a Db) -> Tx<'a> {
        Tx { db, overlay: HashMap::new(), cleared: false, batch: Batch::new() }
    }

    /// The database underneath.
    pub fn db(&self) -> &'a Db {
        self.db
    }

    /// The value of `key` as this transaction sees it.
    pub fn get(&self, key: &str) -> Option<Doc> {
        match self.overlay.get(key) {
            Some(value) => value.clone(),
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

    /// Sets `key`.
    pub fn set(&mut self, key: &str, value: Doc) {
        self.batch.push_set(key, value.clone());
        self.overlay.insert(key.to_owned(), Some(value));
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
