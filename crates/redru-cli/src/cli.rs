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

Exit codes: 0 success, 1 not found (get, delete, exists) or problems found
(verify, repair), 2 usage error or failure.
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

    /// In the interactive shell, take a backup every DURATION in the background
    /// (e.g. 30m, 1h, 1d), keeping the newest --backup-keep of them.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub backup_every: Option<std::time::Duration>,

    /// How many backups the scheduled backups keep (never deleting the newest verified one).
    #[arg(long, global = true, value_name = "N", default_value_t = 24)]
    pub backup_keep: usize,

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

    /// Find entries whose field equals a value, or that match a query (key<TAB>value per line).
    #[command(
        after_help = "A query compares fields with = != < <= > >=, tests `exists FIELD` or `prefix KEYPREFIX`,\n\
                            and joins conditions with `and`. An index on a compared field turns a scan into a lookup.\n\n\
                            Examples:\n  redru find name Alice\n  redru find 'age >= 30 and exists email'"
    )]
    Find {
        /// `FIELD VALUE` or a query.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        query: Vec<String>,
    },

    /// Show how a query runs (index lookup or scan) and how many entries match.
    #[command(after_help = "Example:\n  redru explain 'name = Alice and age >= 30'")]
    Explain {
        /// The query.
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

    /// Write a verified point-in-time copy into DIR/backups/ (or to FILE).
    #[command(after_help = "Examples:\n  redru backup\n  redru backup --keep 7\n  redru backup /mnt/usb/copy.json")]
    Backup {
        /// Write here instead (must not exist).
        file: Option<PathBuf>,
        /// Afterwards keep only the newest N backups in DIR/backups/ (never deleting the newest verified one).
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
    },

    /// List the backups, oldest first, each checked.
    Backups,

    /// Replace the data with a backup (the current state is backed up first).
    #[command(after_help = "Examples:\n  redru restore backup-20250101T120000Z-seq00000000000000000042.json\n  \
                            redru restore --file /mnt/usb/copy.json")]
    Restore {
        /// A name from `redru backups` (.json optional), looked up only inside DIR/backups/.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        backup: Option<String>,
        /// A backup file anywhere else.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },

    /// Delete all but the newest KEEP backups (never the newest verified one).
    PruneBackups {
        /// How many backups to keep.
        keep: usize,
    },

    /// Write every pair as one JSON object (or JSON lines) to stdout or FILE.
    #[command(after_help = "Examples:\n  redru export > dump.json\n  redru export --lines dump.jsonl")]
    Export {
        /// Write to this file instead of stdout.
        file: Option<PathBuf>,
        /// One {"key": ..., "value": ...} object per line.
        #[arg(long)]
        lines: bool,
    },

    /// Merge the pairs of an export file (either shape) in one atomic batch.
    #[command(after_help = "Example:\n  redru import dump.json")]
    Import {
        /// The file.
        file: PathBuf,
        /// Replace the whole content instead of merging.
        #[arg(long)]
        replace: bool,
    },

    /// Check the data directory (or one snapshot/backup FILE) without changing it.
    /// Exit code 0 clean, 1 problems found.
    #[command(after_help = "Examples:\n  redru verify\n  redru verify data/backups/backup-...json")]
    Verify {
        /// A snapshot or backup file to check instead of the directory.
        #[arg(conflicts_with = "file_flag")]
        file: Option<PathBuf>,
        /// The same, as a flag: `redru verify --file PATH`.
        #[arg(long = "file", value_name = "PATH")]
        file_flag: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Cut a damaged log at its first bad record, moving the rest aside.
    /// Exit code 0 when nothing is left wrong, 1 otherwise (or damage found with --dry-run).
    Repair {
        /// Say what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
    },

    /// Rewrite the snapshot and drop the log it covers (offline; the directory must not be open).
    Compact,

    /// Serve the database over the Redis protocol (redis-cli, redis-py, any Redis client).
    #[command(after_help = "Examples:\n  redru serve                     listen on 127.0.0.1:6379\n  \
                            redru serve --port 7000\n  \
                            redru serve --bind 0.0.0.0 --requirepass-file /etc/redru/pass\n\n\
                            Stops on Ctrl-C, SIGTERM or SHUTDOWN, after syncing. docs/server.md lists the commands.")]
    Serve(crate::serve::ServeArgs),

    /// Remove every key (asks in a terminal; needs --yes otherwise).
    #[command(after_help = "Example:\n  redru clear --yes")]
    Clear {
        /// Do not ask.
        #[arg(short, long)]
        yes: bool,
    },
}

/// What a command line asks for.
pub enum Action {
    /// The shell (or a script on stdin).
    Shell,
    /// One shell command.
    Command(Command),
    /// A tool that works on the closed directory.
    Offline(Offline),
    /// `serve`: the Redis protocol server.
    Serve(crate::serve::ServeArgs),
}

/// The tools that take the directory lock themselves.
pub enum Offline {
    /// `verify [FILE] [--json]`
    Verify { file: Option<PathBuf>, json: bool },
    /// `repair [--dry-run]`
    Repair { dry_run: bool },
    /// `compact`
    Compact,
}

/// Parses `90s`, `30m`, `1h`, `2d` (a number and a unit; seconds when the unit is missing).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration such as 30m, 1h or 1d"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use s, m, h or d)")),
    };
    if seconds == 0 {
        return Err("the interval must be at least one second".into());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

impl Sub {
    /// What this subcommand runs.
    pub fn action(self) -> Result<Action, String> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let command = match self {
            Sub::Shell => return Ok(Action::Shell),
            Sub::Verify { file, file_flag, json } => {
                return Ok(Action::Offline(Offline::Verify { file: file.or(file_flag), json }));
            }
            Sub::Repair { dry_run } => return Ok(Action::Offline(Offline::Repair { dry_run })),
            Sub::Compact => return Ok(Action::Offline(Offline::Compact)),
            Sub::Serve(args) => return Ok(Action::Serve(args)),
            Sub::Set { key, value } => {
                let value = parse_value(&value.join(" ")).map_err(|e| format!("the value for `{key}`: {e}"))?;
                Command::Set { key, value }
            }
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
                    // The shell split the words already: the first is the field.
                    let (field, value) = query.split_first().ok_or("missing field")?;
                    if value.is_empty() {
                        return Err(format!("missing the value to look for in `{field}`"));
                    }
                    Command::Find(Find::Equals { field: field.clone(), value: parse_value(&value.join(" "))? })
                }
            }
            Sub::Explain { query } => Command::Explain { query: query.join(" ") },
            Sub::Index { field, unique } => Command::Index { field, unique },
            Sub::DropIndex { field } => Command::DropIndex { field },
            Sub::Indexes => Command::Indexes,
            Sub::Stats => Command::Stats,
            Sub::Save => Command::Save,
            Sub::Sync => Command::Sync,
            Sub::Backup { file, keep } => Command::Backup { path: file.map(path), keep },
            Sub::Backups => Command::Backups,
            Sub::Restore { backup, file } => match (backup, file) {
                (_, Some(file)) => Command::Restore { name: path(file), file: true },
                (Some(name), None) => Command::Restore { name, file: false },
                (None, None) => return Err("restore needs a backup name or --file PATH".into()),
            },
            Sub::PruneBackups { keep } => Command::PruneBackups { keep },
            Sub::Export { file, lines } => Command::Export { path: file.map(path), lines },
            Sub::Import { file, replace } => Command::Import { path: path(file), replace },
            Sub::Clear { yes } => Command::Clear { yes },
        };
        Ok(Action::Command(command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(std::time::Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(std::time::Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(std::time::Duration::from_secs(172_800)));
        for bad in ["", "h", "1w", "0s", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
