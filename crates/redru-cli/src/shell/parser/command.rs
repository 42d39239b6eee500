//! The [`Command`] model: what one parsed line asks for, as plain data.
//!
//! Invariant: no parsing and no I/O here; a `Command` holds its arguments
//! already unquoted and typed (keys as text, values as checked JSON text that
//! keeps its numbers' digits; a `find` query stays text for the engine's query
//! parser), ready to run.

use std::time::Duration;

use redru::Doc;
use serde_json::Value;

use super::glob::Pattern;

/// One shell command, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `set <key> <value> [--ttl D] [--if-absent | --if-seq N]`
    Set { key: String, value: Doc, only_if: Option<SetIf>, ttl: Option<Duration> },
    /// `expire <key> <duration>`
    Expire { key: String, ttl: Duration },
    /// `ttl <key>`: the time left before the key expires.
    Ttl { key: String },
    /// `persist <key>`: remove the key's deadline.
    Persist { key: String },
    /// `incr <key> [by]`
    Incr { key: String, by: i64 },
    /// `last-seq <key>`: the sequence number of the key's last write.
    Seq { key: String },
    /// `get <key>`
    Get { key: String },
    /// `delete <key>`
    Delete { key: String },
    /// `exists <key>`
    Exists { key: String },
    /// `list [prefix|glob] [--limit N] [--after KEY | --from KEY] [--to KEY]`
    List { pattern: Option<Pattern>, range: KeyRange },
    /// `count [prefix|glob]`
    Count { pattern: Option<Pattern> },
    /// `find <field> <value>` or `find <query>`
    Find(Find),
    /// `explain <query>`
    Explain { query: String },
    /// `index <field> [unique|ordered]`
    Index { field: String, unique: bool, ordered: bool },
    /// `drop-index <field>`
    DropIndex { field: String },
    /// `indexes`
    Indexes,
    /// `stats`
    Stats,
    /// `save`
    Save,
    /// `sync`
    Sync,
    /// `clear [--yes]`
    Clear { yes: bool },
    /// `watch [prefix] [--from N] [--count N]`: follow the change feed.
    Watch { prefix: String, from: Option<u64>, count: Option<u64> },
    /// `backup [file] [--keep N]`
    Backup { path: Option<String>, keep: Option<usize> },
    /// `backups`
    Backups,
    /// `restore <backup name>` or `restore --file <path>`
    Restore { name: String, file: bool },
    /// `prune-backups <keep>`
    PruneBackups { keep: usize },
    /// `export [file] [--lines] [--force]`
    Export { path: Option<String>, lines: bool, force: bool },
    /// `import <file> [--replace]`
    Import { path: String, replace: bool },
    /// `help [command]`
    Help { topic: Option<String> },
    /// `begin`: start collecting writes into one atomic batch.
    Begin,
    /// `commit`: apply the batch.
    Commit,
    /// `rollback`: drop the batch.
    Rollback,
    /// `verify [file] [--file PATH] [--json]` (one-shot only: the directory must be closed)
    Verify { file: Option<String>, json: bool },
    /// `repair [--dry-run]` (one-shot only)
    Repair { dry_run: bool },
    /// `compact` (one-shot only)
    Compact,
    /// `cluster <subcommand> [args...]`: REDRU.CLUSTER on a cluster node (over `--connect`).
    Cluster { args: Vec<String> },
    /// `exit`
    Exit,
}

/// Where `list` starts and stops, and how many keys it prints: the one-shot
/// and shell form of the library's [`redru::Listing`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// `--limit N`: at most N keys, then a hint with the `--after` cursor.
    pub limit: Option<usize>,
    /// `--after KEY`: start after KEY (a cursor from a cut listing).
    pub after: Option<String>,
    /// `--from KEY`: start at KEY (included).
    pub from: Option<String>,
    /// `--to KEY`: stop before KEY (excluded).
    pub to: Option<String>,
}

impl Command {
    /// The command's name, as the table has it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Set { .. } => "set",
            Command::Expire { .. } => "expire",
            Command::Ttl { .. } => "ttl",
            Command::Persist { .. } => "persist",
            Command::Get { .. } => "get",
            Command::Incr { .. } => "incr",
            Command::Seq { .. } => "last-seq",
            Command::Delete { .. } => "delete",
            Command::Exists { .. } => "exists",
            Command::List { .. } => "list",
            Command::Count { .. } => "count",
            Command::Find(_) => "find",
            Command::Explain { .. } => "explain",
            Command::Index { .. } => "index",
            Command::DropIndex { .. } => "drop-index",
            Command::Indexes => "indexes",
            Command::Stats => "stats",
            Command::Save => "save",
            Command::Sync => "sync",
            Command::Clear { .. } => "clear",
            Command::Watch { .. } => "watch",
            Command::Backup { .. } => "backup",
            Command::Backups => "backups",
            Command::Restore { .. } => "restore",
            Command::PruneBackups { .. } => "prune-backups",
            Command::Export { .. } => "export",
            Command::Import { .. } => "import",
            Command::Help { .. } => "help",
            Command::Begin => "begin",
            Command::Commit => "commit",
            Command::Rollback => "rollback",
            Command::Verify { .. } => "verify",
            Command::Repair { .. } => "repair",
            Command::Compact => "compact",
            Command::Cluster { .. } => "cluster",
            Command::Exit => "exit",
        }
    }

    /// Whether the command may bring a new database into being: run one-shot
    /// on a directory that does not exist, the others say "no such database".
    /// Whether it only reads the data: a one-shot read of a directory that
    /// another process holds (or that cannot be written) opens it read-only.
    pub fn only_reads(&self) -> bool {
        matches!(
            self,
            Command::Get { .. }
                | Command::Ttl { .. }
                | Command::Seq { .. }
                | Command::Exists { .. }
                | Command::List { .. }
                | Command::Count { .. }
                | Command::Find(_)
                | Command::Explain { .. }
                | Command::Indexes
                | Command::Stats
                | Command::Export { .. }
                | Command::Backups
        )
    }

    /// Whether running it creates a missing directory.
    pub fn creates(&self) -> bool {
        matches!(
            self,
            Command::Set { .. }
                | Command::Incr { .. }
                | Command::Import { .. }
                | Command::Index { .. }
                | Command::Restore { .. }
        )
    }
}

impl Command {
    /// The command as a line the parser reads back to the same command, for
    /// the commands whose arguments are keys, fields, values and queries (the
    /// fuzz target checks the round trip); `None` for the others.
    pub fn render(&self) -> Option<String> {
        use super::tokens::quote_key as q;
        Some(match self {
            Command::Set { key, value, only_if, ttl } => {
                let condition = match only_if {
                    None => String::new(),
                    Some(SetIf::Absent) => " --if-absent".into(),
                    Some(SetIf::Seq(n)) => format!(" --if-seq {n}"),
                };
                let ttl = ttl.map(|t| format!(" --ttl {}ms", t.as_millis())).unwrap_or_default();
                format!("set {} {}{ttl}{condition}", q(key), value.as_str())
            }
            Command::Expire { key, ttl } => format!("expire {} {}ms", q(key), ttl.as_millis()),
            Command::Ttl { key } => format!("ttl {}", q(key)),
            Command::Persist { key } => format!("persist {}", q(key)),
            Command::Get { key } => format!("get {}", q(key)),
            Command::Delete { key } => format!("delete {}", q(key)),
            Command::Exists { key } => format!("exists {}", q(key)),
            Command::Index { field, unique, ordered } => {
                let kind = if *unique {
                    " unique"
                } else if *ordered {
                    " ordered"
                } else {
                    ""
                };
                format!("index {}{kind}", q(field))
            }
            Command::DropIndex { field } => format!("drop-index {}", q(field)),
            Command::Clear { yes } => (if *yes { "clear --yes" } else { "clear" }).to_owned(),
            Command::Indexes => "indexes".into(),
            Command::Stats => "stats".into(),
            Command::Save => "save".into(),
            Command::Sync => "sync".into(),
            Command::Backups => "backups".into(),
            Command::Begin => "begin".into(),
            Command::Commit => "commit".into(),
            Command::Rollback => "rollback".into(),
            Command::Exit => "exit".into(),
            Command::PruneBackups { keep } => format!("prune-backups {keep}"),
            _ => return None,
        })
    }
}

/// The condition of a conditional `set`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetIf {
    /// `--if-absent`: only if the key does not exist.
    Absent,
    /// `--if-seq N`: only if the key exists and nothing wrote it after record N.
    Seq(u64),
}

/// What `find` looks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Find {
    /// `find name Alice`: equality through the index on the field.
    Equals { field: String, value: Value },
    /// `find name = Alice and age >= 30`: handed to the query parser as written.
    Query(String),
}
