//! Listing keys in order: what to list ([`Listing`]: a range, a prefix, a
//! resume point, a limit) and one page of the answer ([`Page`]), run over the
//! map's ordered key sets ([`crate::state::key_order`]).
//!
//! Invariant: a page holds the matching keys in byte order, at most `limit`
//! of them, and `next` is set exactly when matching keys were left out, so
//! that listing again `after(next)` continues with no key lost or repeated.

use std::ops::{Bound, RangeBounds};

use crate::state::doc::Doc;
use crate::state::store::Map;

/// Which keys to list, in key order (byte order of their UTF-8): all of them,
/// a range, the keys under a prefix, from a resume point, up to a limit.
/// Every condition given must hold; [`Db::list`](crate::Db::list) runs it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = redru::Db::open(dir.path())?;
/// use redru::{Listing, json};
/// for id in ["0001", "0002", "0003", "0004"] {
///     db.set(&format!("user:{id}"), json!({"id": id}))?;
/// }
/// db.set("order:1", json!({}))?;
/// // The first page of two, then the next one from its cursor.
/// let page = db.list(&Listing::prefix("user:").limit(2));
/// assert_eq!(page.items, ["user:0001", "user:0002"]);
/// let cursor = page.next.ok_or("a cut page has a cursor")?;
/// let page = db.list(&Listing::prefix("user:").after(&cursor).limit(2));
/// assert_eq!(page.items, ["user:0003", "user:0004"]);
/// assert_eq!(page.next, None); // nothing left
/// // A range: from "order:" (included) to "user:0002" (excluded).
/// let page = db.list(&Listing::range("order:".."user:0002"));
/// assert_eq!(page.items, ["order:1", "user:0001"]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    lower: Bound<String>,
    upper: Bound<String>,
    prefix: Option<String>,
    limit: Option<usize>,
}

impl Default for Listing {
    fn default() -> Listing {
        Listing { lower: Bound::Unbounded, upper: Bound::Unbounded, prefix: None, limit: None }
    }
}

impl Listing {
    /// Every key (the default).
    pub fn all() -> Listing {
        Listing::default()
    }

    /// The keys in `range`: `"a".."m"`, `"a"..="m"`, `"k"..`, `..` (any
    /// `RangeBounds<str>`, or `(Bound<&str>, Bound<&str>)`).
    pub fn range<'a>(range: impl RangeBounds<&'a str>) -> Listing {
        let owned = |b: Bound<&&str>| b.map(|s| (*s).to_owned());
        Listing { lower: owned(range.start_bound()), upper: owned(range.end_bound()), ..Listing::default() }
    }

    /// The keys starting with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Listing {
        Listing::default().with_prefix(prefix)
    }

    /// Also requires the keys to start with `prefix` (replacing any prefix
    /// given before).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Listing {
        self.prefix = Some(prefix.into());
        self
    }

    /// Starts at `key` (included), replacing any start given before.
    pub fn from(mut self, key: impl Into<String>) -> Listing {
        self.lower = Bound::Included(key.into());
        self
    }

    /// Starts after `key` (excluded), replacing any start given before: the
    /// resume point, given a page's [`Page::next`]. `key` need not exist.
    pub fn after(mut self, key: impl Into<String>) -> Listing {
        self.lower = Bound::Excluded(key.into());
        self
    }

    /// Stops before `key` (excluded), replacing any end given before.
    pub fn to(mut self, key: impl Into<String>) -> Listing {
        self.upper = Bound::Excluded(key.into());
        self
    }

    /// Stops at `key` (included), replacing any end given before.
    pub fn through(mut self, key: impl Into<String>) -> Listing {
        self.upper = Bound::Included(key.into());
        self
    }

    /// At most `n` keys in a page (no limit by default); a page cut short
    /// says where to resume in [`Page::next`].
    pub fn limit(mut self, n: usize) -> Listing {
        self.limit = Some(n);
        self
    }

    /// The page limit, if any.
    pub fn max(&self) -> Option<usize> {
        self.limit
    }

    /// The lower bound the walk starts from: the start given, or the prefix
    /// if that is later (every key with the prefix sorts at or after it).
    fn start(&self) -> Bound<&str> {
        let given = self.lower.as_ref().map(String::as_str);
        let Some(prefix) = self.prefix.as_deref() else { return given };
        match given {
            Bound::Included(k) | Bound::Excluded(k) if k >= prefix => given,
            _ => Bound::Included(prefix),
        }
    }

    /// Whether a key reached by the walk (so at or after the start) still
    /// matches; false means no later key can (the keys under a prefix are
    /// one run in key order, and so are the keys below an end).
    fn still_matches(&self, key: &str) -> bool {
        let below_end = match &self.upper {
            Bound::Unbounded => true,
            Bound::Included(end) => key <= end.as_str(),
            Bound::Excluded(end) => key < end.as_str(),
        };
        below_end && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
    }

    /// Walks `map` in key order: each matching key, with `f`'s item for it,
    /// until the limit; never reads past the first key that fails. A key
    /// for which `f` gives nothing (expired) is skipped, and counts for no
    /// cursor.
    pub fn run<'m, T>(&self, map: &'m Map, mut f: impl FnMut(&'m str) -> Option<T>) -> Page<T> {
        let mut keys = map.keys_from(self.start()).take_while(|k| self.still_matches(k));
        let mut items = Vec::new();
        let limit = self.limit.unwrap_or(usize::MAX);
        let mut last = None;
        while items.len() < limit {
            let Some(key) = keys.next() else { return Page { items, next: None } };
            if let Some(item) = f(key) {
                items.push(item);
                last = Some(key);
            }
        }
        // Cut by the limit: a cursor only if a matching key is left.
        let more = keys.any(|k| f(k).is_some());
        Page { items, next: if more { last.map(str::to_owned) } else { None } }
    }

    /// The matching keys of `map` live at `now` (not expired), one page.
    pub fn keys(&self, map: &Map, now: u64) -> Page<String> {
        self.run(map, |k| map.get(k, now).map(|_| k.to_owned()))
    }

    /// The matching keys of `map` live at `now`, with their values, one page.
    pub fn entries(&self, map: &Map, now: u64) -> Page<(String, Doc)> {
        self.run(map, |k| map.get(k, now).map(|doc| (k.to_owned(), doc.clone())))
    }
}

/// One page of a [`Listing`]: the items in key order, and where to resume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page<T> {
    /// The keys (or entries) in key order.
    pub items: Vec<T>,
    /// Set when the limit cut the listing and more keys match: the last key
    /// of this page, to pass to [`Listing::after`] for the next page.
    pub next: Option<String>,
}
