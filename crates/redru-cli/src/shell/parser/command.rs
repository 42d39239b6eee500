//! The [`Command`] model: what one parsed line asks for, as plain data.
//!
//! Invariant: no parsing and no I/O here; a `Command` holds its arguments
//! already unquoted and typed (keys as text, values as JSON; a `find` query
//! stays text for the engine's query parser), ready to run.

use serde_json::Value;

use super::glob::Pattern;

/// One shell command, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `set <key> <value>`
    Set { key: String, value: Value },
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
    /// `index <field> [unique]`
    Index { field: String, unique: bool },
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
    /// `export [file] [--lines]`
    Export { path: Option<String>, lines: bool },
    /// `import <file> [--replace]`
    Import { path: String, replace: bool },
    /// `help [command]`
    Help { topic: Option<String> },
    /// `exit`
    Exit,
}

/// What `find` looks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Find {
    /// `find name Alice`: equality through the index on the field.
    Equals { field: String, value: Value },
    /// `find name = Alice and age >= 30`: handed to the query parser as written.
    Query(String),
}
