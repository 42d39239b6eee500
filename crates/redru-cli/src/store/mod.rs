//! What a shell session needs from the data, as the [`Store`] trait, with two
//! implementations: the local [`Db`] (an open data directory) and [`Remote`]
//! (`redru --connect redis://...`, a running `redru serve`).
//!
//! Invariant: the session formats every result itself, so a command prints
//! the same through either store; what only a local directory can do
//! (restore, import, backups, ...) is reached through [`Store::local`].

mod remote;
mod resp;
pub mod target;

pub use self::remote::Remote;
pub use self::target::Target;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use redru::{Batch, Db, Doc, IndexInfo, Query, Ttl};

use crate::exec::{count, matching_keys, matching_page, page_of};
use crate::shell::helper::Source;
use crate::shell::parser::{KeyRange, Pattern, SetIf};

/// One write queued between `begin` and `commit`.
#[derive(Clone, Debug)]
pub enum Write {
    /// `set`
    Set(String, Doc),
    /// `set --ttl`
    SetTtl(String, Doc, Duration),
    /// `delete`
    Delete(String),
    /// Remove every key (`import --replace`): the writes after it apply to an empty database.
    Clear,
}

/// A conditional write whose condition did not hold: nothing was written
/// (an answer, exit code 1, rather than a failure).
#[derive(Debug)]
pub struct NotWritten(pub String);

impl std::fmt::Display for NotWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotWritten {}

/// What a query found.
pub struct Found {
    /// Key and value pairs, in the query's order.
    pub entries: Vec<(String, Doc)>,
    /// The plan in words (asked for only when it is shown).
    pub plan: Option<String>,
}

/// Where a session's commands read and write.
pub trait Store: Source + Send + Sync {
    /// What the banner and questions name: the directory, or the server's URL.
    fn name(&self) -> String;
    /// The open database when it is local: the commands that need the directory use it.
    fn local(&self) -> Option<&Db>;
    /// A key's value.
    fn get(&self, key: &str) -> Result<Option<Doc>>;
    /// Stores a value.
    fn set(&self, key: &str, value: Doc) -> Result<()>;
    /// Stores a value that expires `ttl` from now.
    fn set_with_ttl(&self, key: &str, value: Doc, ttl: Duration) -> Result<()>;
    /// Stores a value (expiring `ttl` from now, if given) only if the
    /// condition holds (an error saying what was found otherwise).
    fn set_if(&self, key: &str, value: Doc, only_if: SetIf, ttl: Option<Duration>) -> Result<()>;
    /// Gives a key a deadline `ttl` from now; whether the key exists.
    fn expire(&self, key: &str, ttl: Duration) -> Result<bool>;
    /// Whether a key exists and when it expires.
    fn ttl(&self, key: &str) -> Result<Ttl>;
    /// Removes a key's deadline; whether it had one.
    fn persist(&self, key: &str) -> Result<bool>;
    /// Adds to an integer atomically; the new value.
    fn incr(&self, key: &str, by: i64) -> Result<i64>;
    /// The sequence number of the key's last write (None: no such key).
    fn seq(&self, key: &str) -> Result<Option<u64>>;
    /// Removes a key; whether it existed.
    fn delete(&self, key: &str) -> Result<bool>;
    /// Whether a key exists.
    fn contains(&self, key: &str) -> Result<bool>;
    /// Number of keys.
    fn len(&self) -> Result<usize>;
    /// Sorted keys matching `pattern` (all keys without one).
    fn keys(&self, pattern: Option<&Pattern>) -> Result<Vec<String>>;
    /// One page of the keys matching `pattern` in `range`, in key order,
    /// with the cursor to resume after when the limit cut it. By default
    /// over [`Store::keys`]; a store that can start mid-way does better.
    fn list(&self, pattern: Option<&Pattern>, range: &KeyRange) -> Result<redru::Page<String>> {
        Ok(page_of(self.keys(pattern)?, range))
    }
    /// Runs a query; with `plan`, says how it ran.
    fn query(&self, query: &Query, plan: bool) -> Result<Found>;
    /// How a query runs and how many entries match.
    fn explain(&self, query: &Query) -> Result<(String, usize)>;
    /// Creates an index (`ordered`: an ordered index; never with `unique`).
    fn create_index(&self, field: &str, unique: bool, ordered: bool) -> Result<()>;
    /// Drops an index.
    fn drop_index(&self, field: &str) -> Result<()>;
    /// Every index with its statistics.
    fn indexes(&self) -> Result<Vec<IndexInfo>>;
    /// The counters and sizes, as JSON.
    fn stats(&self) -> Result<serde_json::Value>;
    /// REDRU.CLUSTER with `args` on a cluster node; its answer as text.
    fn cluster(&self, args: &[String]) -> Result<String>;
    /// Removes every key; how many there were.
    fn clear(&self) -> Result<usize>;
    /// Applies the writes as one atomic batch.
    fn commit(&self, writes: Vec<Write>) -> Result<()>;
    /// Writes a snapshot; the line that says what it did.
    fn save(&self) -> Result<String>;
    /// Writes a backup (to `path`, keeping the newest `keep`); the lines that say what it did.
    fn backup(&self, path: Option<&str>, keep: Option<usize>) -> Result<Vec<String>>;
    /// Writes every pair, sorted by key, as `export` does (one JSON object, or JSON lines); how many.
    fn export(&self, out: &mut dyn std::io::Write, lines: bool) -> Result<usize>;
    /// The durable changes under `prefix` after record `from` (after the last
    /// one written: `None`) that are there now, at most about `count` (a
    /// batch whole), and the position to ask from next (`watch` over
    /// `--connect`; locally `watch` follows the feed itself).
    fn changes(&self, prefix: &str, from: Option<u64>, count: usize) -> Result<(u64, Vec<FeedLine>)>;
}

/// One change of the feed, as `watch` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedLine {
    /// The record's sequence number.
    pub seq: u64,
    /// `set`, `del` or `clear`.
    pub op: String,
    /// The key (none for a clear).
    pub key: Option<String>,
    /// The new value's JSON text (for a set).
    pub value: Option<String>,
}

impl FeedLine {
    /// The line for one change of the engine's feed.
    pub fn of(change: &redru::Change) -> FeedLine {
        FeedLine {
            seq: change.seq().0,
            op: change.op().to_owned(),
            key: change.key().map(str::to_owned),
            value: change.value().map(|v| v.as_str().to_owned()),
        }
    }
}

impl Store for Db {
    fn name(&self) -> String {
        self.dir().display().to_string()
    }
    fn local(&self) -> Option<&Db> {
        Some(self)
    }
    fn get(&self, key: &str) -> Result<Option<Doc>> {
        Ok(Db::get(self, key))
    }
    fn set(&self, key: &str, value: Doc) -> Result<()> {
        Ok(Db::set(self, key.to_owned(), value)?)
    }
    fn set_with_ttl(&self, key: &str, value: Doc, ttl: Duration) -> Result<()> {
        Ok(Db::set_with_ttl(self, key.to_owned(), value, ttl)?)
    }
    fn set_if(&self, key: &str, value: Doc, only_if: SetIf, ttl: Option<Duration>) -> Result<()> {
        let batch = match only_if {
            SetIf::Absent => Batch::new().require_absent(key),
            SetIf::Seq(n) => Batch::new().require_unchanged(key, redru::Seq(n)),
        };
        let batch = match ttl {
            None => batch.set(key, value),
            Some(ttl) => batch.set_with_ttl(key, value, ttl),
        };
        let done = Db::batch(self, batch);
        match done {
            Err(e @ redru::Error::ConditionFailed { .. }) => Err(NotWritten(e.to_string()).into()),
            other => Ok(other?),
        }
    }
    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        Ok(Db::expire(self, key, ttl)?)
    }
    fn ttl(&self, key: &str) -> Result<Ttl> {
        Ok(Db::ttl(self, key))
    }
    fn persist(&self, key: &str) -> Result<bool> {
        Ok(Db::persist(self, key)?)
    }
    fn incr(&self, key: &str, by: i64) -> Result<i64> {
        Ok(Db::incr(self, key, by)?)
    }
    fn seq(&self, key: &str) -> Result<Option<u64>> {
        Ok(Db::get_with_seq(self, key).map(|(_, s)| s.0))
    }
    fn delete(&self, key: &str) -> Result<bool> {
        Ok(Db::delete(self, key)?)
    }
    fn contains(&self, key: &str) -> Result<bool> {
        Ok(Db::contains(self, key))
    }
    fn len(&self) -> Result<usize> {
        Ok(Db::len(self))
    }
    fn keys(&self, pattern: Option<&Pattern>) -> Result<Vec<String>> {
        Ok(matching_keys(self, pattern))
    }
    fn list(&self, pattern: Option<&Pattern>, range: &KeyRange) -> Result<redru::Page<String>> {
        Ok(matching_page(self, pattern, range))
    }
    fn query(&self, query: &Query, _plan: bool) -> Result<Found> {
        let result = Db::query(self, query)?;
        Ok(Found { entries: result.entries, plan: Some(result.plan.to_string()) })
    }
    fn explain(&self, query: &Query) -> Result<(String, usize)> {
        let result = Db::query(self, query)?;
        Ok((result.plan.to_string(), result.entries.len()))
    }
    fn create_index(&self, field: &str, unique: bool, ordered: bool) -> Result<()> {
        Ok(match (unique, ordered) {
            (true, _) => self.create_unique_index(field),
            (false, true) => self.create_ordered_index(field),
            (false, false) => Db::create_index(self, field),
        }?)
    }
    fn drop_index(&self, field: &str) -> Result<()> {
        Ok(Db::drop_index(self, field)?)
    }
    fn indexes(&self) -> Result<Vec<IndexInfo>> {
        Ok(Db::indexes(self))
    }
    fn stats(&self) -> Result<serde_json::Value> {
        serde_json::to_value(Db::stats(self)).context("encoding the statistics")
    }
    fn cluster(&self, _args: &[String]) -> Result<String> {
        anyhow::bail!("`cluster` runs on a cluster node: connect to one (`redru --connect redis://HOST:PORT`)")
    }
    fn clear(&self) -> Result<usize> {
        Ok(Db::clear(self)?)
    }
    fn commit(&self, writes: Vec<Write>) -> Result<()> {
        let mut batch = Batch::new();
        for write in writes {
            match write {
                Write::Set(key, value) => batch.push_set(key, value),
                Write::SetTtl(key, value, ttl) => batch = batch.set_with_ttl(key, value, ttl),
                Write::Delete(key) => batch.push_delete(key),
                Write::Clear => batch = batch.clear(),
            }
        }
        Ok(Db::batch(self, batch)?)
    }
    fn save(&self) -> Result<String> {
        let report = Db::save(self)?;
        Ok(if report.unchanged {
            format!("nothing changed since the last save ({})", count(report.keys, "key", "keys"))
        } else {
            format!(
                "saved {} ({} bytes) in {} ms; {} removed",
                count(report.keys, "key", "keys"),
                report.bytes,
                report.duration.as_millis(),
                count(report.segments_removed, "log segment", "log segments")
            )
        })
    }
    fn export(&self, out: &mut dyn std::io::Write, lines: bool) -> Result<usize> {
        Ok(Db::export(self, out, lines)?)
    }
    fn backup(&self, path: Option<&str>, keep: Option<usize>) -> Result<Vec<String>> {
        let info = match path {
            None => Db::backup(self)?,
            Some(p) => self.backup_to(Path::new(p))?,
        };
        let mut lines = Vec::new();
        if let Some(keep) = keep {
            for removed in self.prune_backups(keep).context("pruning the backups")? {
                lines.push(format!("removed {}", removed.display()));
            }
        }
        let checked = if info.verified { "verified" } else { "NOT verified" };
        lines.push(format!(
            "wrote {} (up to record {}, {}, {} bytes, {checked})",
            info.path.display(),
            info.seq,
            count(info.keys, "key", "keys"),
            info.bytes
        ));
        Ok(lines)
    }
    fn changes(&self, prefix: &str, from: Option<u64>, count: usize) -> Result<(u64, Vec<FeedLine>)> {
        let mut feed = self.subscribe(prefix, from.map(redru::Seq))?;
        let mut lines: Vec<FeedLine> = Vec::new();
        // Past `count` only to finish a batch: the position must not point inside one.
        while lines.len() < count || lines.last().is_some_and(|l| feed.position().0 < l.seq) {
            let Some(change) = feed.try_next()? else { break };
            lines.push(FeedLine::of(&change));
        }
        Ok((feed.position().0, lines))
    }
}
