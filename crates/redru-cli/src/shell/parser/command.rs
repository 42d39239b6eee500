//! The [`Command`] model: what one parsed line asks for, as plain data.
//!
//! Invariant: no parsing and no I/O here; a `Command` holds its arguments
//! already unquoted and typed (keys as text, values as checked JSON text that
//! keeps its numbers' digits; a `find` query stays text for the engine's query
//! parser), ready to run.

use redru::Doc;
use serde_json::Value;

use super::glob::Pattern;

/// One shell command, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `set <key> <value>`
    Set { key: String, value: Doc },
    /// `get <key>`
    Get { key: String },
    /// `delete <key>`
    Delete { key: String },
    /// `exists <key>`
    Exists { key: String },
    /// `list [prefix|glob]`
    List { pattern: Option<Pattern> },
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
    /// `exit`
    Exit,
}

impl Command {
    /// The command's name, as the table has it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Set { .. } => "set",
            Command::Get { .. } => "get",
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
        matches!(self, Command::Set { .. } | Command::Import { .. } | Command::Index { .. } | Command::Restore { .. })
    }
}

/// What `find` looks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Find {
    /// `find name Alice`: equality through the index on the field.
    Equals { field: String, value: Value },
    /// `find name = Alice and age >= 30`: handed to the query parser as written.
    Query(String),
}
