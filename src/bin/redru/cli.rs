//! The command line (clap derive): global options and one subcommand per
//! shell command, each turned into the same [`Command`] the shell parses.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::output::ColorChoice;
use crate::shell::parser::{Command, Find, Pattern, looks_like_query, parse_value};

const AFTER_HELP: &str = "\
Without a command, redru opens an interactive shell on the data directory; with
standard input from a pipe or file it runs one command per line instead
(script mode: no prompt, no colour; see --bail).

Examples:
  redru                                     open the shell on ./data
  redru --dir /tmp/db set user:1 '{\"name\": \"Alice\", \"age\": 30}'
  redru --dir /tmp/db get user:1
  printf 'set a 1\\nget a\\n' | redru --dir /tmp/db

Exit codes: 0 success, 1 not found (get, delete, exists), 2 usage error or failure.
Environment: REDRU_DIR (default for --dir), REDRU_HISTORY (shell history file),
NO_COLOR (disables colour).";

/// redru: an embedded JSON key-value database, and its shell.
#[derive(Debug, Parser)]
#[command(name = "redru", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// The data directory (created if missing).
    #[arg(short, long, env = "REDRU_DIR", default_value = "data", global = true, value_name = "DIR")]
    pub dir: PathBuf,

    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Script mode: stop at the first failing command (by default the whole
    /// script runs and the exit code is 2 if any command failed).
    #[arg(long, global = true)]
    pub bail: bool,

    #[command(subcommand)]
    pub command: Option<Sub>,
}

/// The subcommands: `shell` and one per shell command.
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Open the interactive shell (the default); runs a script when stdin is not a terminal.
    Shell,

    /// Store a value: JSON when it parses, plain text otherwise.
    #[command(after_help = "Examples:\n  redru set name Alice\n  redru set n 42\n  \
                            redru set user:1 '{\"name\": \"Alice\", \"age\": 30}'")]
    Set {
        /// The key.
        key: String,
        /// The value; several words are joined with spaces.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        value: Vec<String>,
    },

    /// Print a key's value (exit code 1 if the key does not exist).
    #[command(after_help = "Example:\n  redru get user:1")]
    Get {
        /// The key.
        key: String,
    },

    /// Remove a key (exit code 1 if it did not exist).
    #[command(visible_alias = "del", after_help = "Example:\n  redru delete user:1")]
    Delete {
        /// The key.
        key: String,
    },

    /// Print true or false (exit code 0 or 1).
    #[command(after_help = "Example:\n  redru exists user:1 && echo present")]
    Exists {
        /// The key.
        key: String,
    },

    /// List keys, sorted; optionally those with a prefix or matching a glob (* ? [..]).
    #[command(
        visible_alias = "keys",
        after_help = "Examples:\n  redru list\n  redru list user:\n  redru list 'user:*'"
    )]
    List {
        /// A key prefix, or a glob when it has * ? or [.
        pattern: Option<String>,
    },

    /// Count keys; optionally those with a prefix or matching a glob.
    #[command(after_help = "Example:\n  redru count user:")]
    Count {
        /// A key prefix, or a glob when it has * ? or [.
        pattern: Option<String>,
    },

    /// Find keys whose field equals a value, through the index on the field.
    #[command(after_help = "Examples:\n  redru find name Alice\n  redru find age 30")]
    Find {
        /// `<field> <value>`.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        query: Vec<String>,
    },

    /// Create a hash index on a field path (name, address.city, tags.0).
    #[command(after_help = "Examples:\n  redru index name\n  redru index email --unique")]
    Index {
        /// The field path.
        field: String,
        /// Refuse two keys with the same value of the field.
        #[arg(long)]
        unique: bool,
    },

    /// Remove the index on a field.
    #[command(after_help = "Example:\n  redru drop-index name")]
    DropIndex {
        /// The field path.
        field: String,
    },

    /// List the indexes: field, kind, distinct values, keys (tab-separated when piped).
    Indexes,

    /// Print counters and sizes as JSON.
    Stats,

    /// Write a snapshot (database.json) and drop the log records it holds.
    Save,

    /// Make every write durable (they already are by default).
    Sync,

    /// Remove every key (asks in a terminal; needs --yes otherwise).
    #[command(after_help = "Example:\n  redru clear --yes")]
    Clear {
        /// Do not ask.
        #[arg(short, long)]
        yes: bool,
    },
}

impl Sub {
    /// The shell command this subcommand runs; `None` for `shell`.
    pub fn into_command(self) -> Result<Option<Command>, String> {
        let command = match self {
            Sub::Shell => return Ok(None),
            Sub::Set { key, value } => Command::Set { key, value: parse_value(&value.join(" "))? },
            Sub::Get { key } => Command::Get { key },
            Sub::Delete { key } => Command::Delete { key },
            Sub::Exists { key } => Command::Exists { key },
            Sub::List { pattern } => Command::List { pattern: pattern.map(Pattern::new) },
            Sub::Count { pattern } => Command::Count { pattern: pattern.map(Pattern::new) },
            Sub::Find { query } => {
                let text = query.join(" ");
                if looks_like_query(&text) {
                    Command::Find(Find::Query(text))
                } else {
                    // The shell split the words already: the first is the field, even with spaces.
                    let (field, value) = query.split_first().ok_or("missing field")?;
                    if value.is_empty() {
                        return Err(format!("missing the value to look for in `{field}`"));
                    }
                    Command::Find(Find::Equals { field: field.clone(), value: parse_value(&value.join(" "))? })
                }
            }
            Sub::Index { field, unique } => Command::Index { field, unique },
            Sub::DropIndex { field } => Command::DropIndex { field },
            Sub::Indexes => Command::Indexes,
            Sub::Stats => Command::Stats,
            Sub::Save => Command::Save,
            Sub::Sync => Command::Sync,
            Sub::Clear { yes } => Command::Clear { yes },
        };
        Ok(Some(command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
