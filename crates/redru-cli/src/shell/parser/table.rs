//! The command table: [`COMMANDS`], one [`Spec`] per command (name, aliases,
//! usage, argument kinds, help text), and [`spec`] to look a name up.
//!
//! Invariant: the single source for `help`, hints, completion and the usage in
//! errors; every usage starts with its command's name and every example parses.

/// What a command's words are, for completion and hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// No arguments.
    None,
    /// An existing key.
    Key,
    /// A key that may not exist yet (completion still offers existing ones).
    NewKey,
    /// A key prefix or glob.
    Pattern,
    /// An indexed field.
    IndexedField,
    /// Any field path.
    Field,
    /// A command name.
    Command,
    /// A backup name.
    Backup,
    /// A file path.
    File,
}

/// One command's documentation: the single source for `help`, hints and completion.
#[derive(Debug)]
pub struct Spec {
    /// The name typed.
    pub name: &'static str,
    /// Other names accepted.
    pub aliases: &'static [&'static str],
    /// `name <args>`, as `help` and errors show it.
    pub usage: &'static str,
    /// The arguments' placeholders, one per word (hints show the ones not typed yet).
    pub args: &'static [&'static str],
    /// What the first argument is.
    pub arg: Arg,
    /// One line.
    pub summary: &'static str,
    /// More details for `help <command>` (may be empty).
    pub details: &'static str,
    /// Example lines.
    pub examples: &'static [&'static str],
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "set",
        usage: "set <key> <value>",
        aliases: &[],
        args: &["<key>", "<value>"],
        arg: Arg::NewKey,
        summary: "store a JSON value (or plain text) under a key",
        details: "The value is the rest of the line: JSON when it parses (42, true, null, \"text\", {...}, [...]), \
                  plain text otherwise, so `set name Alice` and `set name \"Alice\"` both store the string Alice. \
                  A value that starts with { [ or \" must be valid JSON; an open bracket or quote continues on the \
                  next line. Quote keys with spaces: set \"my key\" 1.",
        examples: &["set name Alice", "set user:1 {\"name\": \"Alice\", \"age\": 30}", "set \"my key\" [1, 2, 3]"],
    },
    Spec {
        name: "get",
        usage: "get <key>",
        aliases: &[],
        args: &["<key>"],
        arg: Arg::Key,
        summary: "print the value of a key",
        details: "Says `not found` when the key does not exist (exit code 1 as a one-shot command).",
        examples: &["get user:1"],
    },
    Spec {
        name: "delete",
        usage: "delete <key>",
        aliases: &["del", "rm"],
        args: &["<key>"],
        arg: Arg::Key,
        summary: "remove a key",
        details: "Says `not found` when the key does not exist (exit code 1 as a one-shot command).",
        examples: &["delete user:1"],
    },
    Spec {
        name: "exists",
        usage: "exists <key>",
        aliases: &[],
        args: &["<key>"],
        arg: Arg::Key,
        summary: "print true or false",
        details: "As a one-shot command the exit code is 0 for true and 1 for false.",
        examples: &["exists user:1"],
    },
    Spec {
        name: "list",
        usage: "list [prefix|glob]",
        aliases: &["keys", "ls"],
        args: &["[prefix|glob]"],
        arg: Arg::Pattern,
        summary: "list keys, sorted, optionally by prefix or glob",
        details: "A pattern with * ? or [ is a glob (`user:*:name`, `log-202?`, `[ab]*`); anything else is a prefix.",
        examples: &["list", "list user:", "list user:*"],
    },
    Spec {
        name: "count",
        usage: "count [prefix|glob]",
        aliases: &[],
        args: &["[prefix|glob]"],
        arg: Arg::Pattern,
        summary: "count keys, optionally by prefix or glob",
        details: "",
        examples: &["count", "count user:"],
    },
    Spec {
        name: "find",
        usage: "find <field> <value> | find <query>",
        aliases: &[],
        args: &["<field>", "<value>"],
        arg: Arg::IndexedField,
        summary: "find entries by field value, or by a query",
        details: "`find <field> <value>`: the value is the rest of the line, read like `set`'s. A query compares \
                  fields with = != < <= > >=, tests `exists <field>` or `prefix <key prefix>`, and joins \
                  conditions with `and`. An index on a compared field makes it a lookup instead of a scan \
                  (see `explain`).",
        examples: &["find name Alice", "find address.city \"Paris\"", "find age >= 30 and exists email"],
    },
    Spec {
        name: "explain",
        usage: "explain <query>",
        aliases: &[],
        args: &["<query>"],
        arg: Arg::IndexedField,
        summary: "show how a query would run (index lookup or full scan)",
        details: "",
        examples: &["explain name = Alice and age >= 30"],
    },
    Spec {
        name: "index",
        usage: "index <field> [unique]",
        aliases: &["create-index"],
        args: &["<field>", "[unique]"],
        arg: Arg::Field,
        summary: "index a field path (`unique` refuses duplicates)",
        details: "Field paths use dots: name, address.city, tags.0.",
        examples: &["index name", "index email unique"],
    },
    Spec {
        name: "drop-index",
        usage: "drop-index <field>",
        aliases: &[],
        args: &["<field>"],
        arg: Arg::IndexedField,
        summary: "remove the index on a field",
        details: "",
        examples: &["drop-index name"],
    },
    Spec {
        name: "indexes",
        usage: "indexes",
        aliases: &[],
        args: &[],
        arg: Arg::None,
        summary: "list the indexes with their sizes",
        details: "",
        examples: &["indexes"],
    },
    Spec {
        name: "stats",
        usage: "stats",
        aliases: &["info"],
        args: &[],
        arg: Arg::None,
        summary: "print counters and sizes as JSON",
        details: "",
        examples: &["stats"],
    },
    Spec {
        name: "save",
        usage: "save",
        aliases: &[],
        args: &[],
        arg: Arg::None,
        summary: "write a snapshot and drop the log it covers",
        details: "Also happens by itself when the log grows large.",
        examples: &["save"],
    },
    Spec {
        name: "sync",
        usage: "sync",
        aliases: &[],
        args: &[],
        arg: Arg::None,
        summary: "make every write durable (already the default)",
        details: "",
        examples: &["sync"],
    },
    Spec {
        name: "clear",
        usage: "clear [--yes]",
        aliases: &["flush"],
        args: &["[--yes]"],
        arg: Arg::None,
        summary: "remove every key (index definitions stay)",
        details: "Asks for confirmation in a terminal. Where it cannot ask (a script, a pipe) it refuses \
                  unless given --yes.",
        examples: &["clear", "clear --yes"],
    },
    Spec {
        name: "backup",
        usage: "backup [file] [--keep N]",
        aliases: &[],
        args: &["[file]", "[--keep N]"],
        arg: Arg::File,
        summary: "write a verified copy to backups/ (or a file)",
        details: "Writers are held only for a moment. Each backup gets a .sha256 file beside it. With \
                  `--keep N`, only the newest N backups are kept afterwards (never deleting the newest verified one).",
        examples: &["backup", "backup --keep 7", "backup /mnt/usb/redru-copy.json"],
    },
    Spec {
        name: "backups",
        usage: "backups",
        aliases: &[],
        args: &[],
        arg: Arg::None,
        summary: "list the backups, oldest first, each checked",
        details: "",
        examples: &["backups"],
    },
    Spec {
        name: "restore",
        usage: "restore <backup> | restore --file <path>",
        aliases: &[],
        args: &["<backup>"],
        arg: Arg::Backup,
        summary: "replace the data with a backup (after backing up the current state)",
        details: "A name from `backups` (`.json` optional), looked up only inside the backups directory; a backup \
                  file elsewhere needs `--file`. The backup is verified before anything changes; the report names \
                  the undo backup.",
        examples: &[
            "restore backup-20250101T120000Z-seq00000000000000000042.json",
            "restore --file /mnt/usb/redru-copy.json",
        ],
    },
    Spec {
        name: "prune-backups",
        usage: "prune-backups <keep>",
        aliases: &[],
        args: &["<keep>"],
        arg: Arg::None,
        summary: "delete all but the newest <keep> backups",
        details: "The newest verified backup is never deleted.",
        examples: &["prune-backups 5"],
    },
    Spec {
        name: "export",
        usage: "export [file] [--lines]",
        aliases: &[],
        args: &["[file]", "[--lines]"],
        arg: Arg::File,
        summary: "write every pair as one JSON object (or JSON lines)",
        details: "",
        examples: &["export", "export dump.jsonl --lines"],
    },
    Spec {
        name: "import",
        usage: "import <file> [--replace]",
        aliases: &[],
        args: &["<file>", "[--replace]"],
        arg: Arg::File,
        summary: "merge an export file in one atomic batch (--replace: replace all)",
        details: "Either shape of `export` is accepted. An invalid file changes nothing.",
        examples: &["import dump.json", "import dump.jsonl --replace"],
    },
    Spec {
        name: "help",
        usage: "help [command]",
        aliases: &["?", ".help"],
        args: &["[command]"],
        arg: Arg::Command,
        summary: "list the commands, or show one in detail",
        details: "",
        examples: &["help", "help set"],
    },
    Spec {
        name: "exit",
        usage: "exit",
        aliases: &["quit", ".exit", ".quit"],
        args: &[],
        arg: Arg::None,
        summary: "close the database and leave (Ctrl-D does the same)",
        details: "",
        examples: &["exit"],
    },
];

/// The command named `name` (any case, aliases included).
pub fn spec(name: &str) -> Option<&'static Spec> {
    let name = name.to_ascii_lowercase();
    COMMANDS.iter().find(|s| s.name == name || s.aliases.contains(&name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::parser::testing::ok;
    use crate::shell::parser::{Command, parse};

    #[test]
    fn command_names_ignore_case_and_accept_aliases() {
        assert_eq!(ok("GET a"), Command::Get { key: "a".into() });
        assert_eq!(ok("del a"), Command::Delete { key: "a".into() });
        assert_eq!(ok("keys"), Command::List { pattern: None });
        assert_eq!(ok("quit"), Command::Exit);
        assert_eq!(ok(".exit"), Command::Exit);
        assert_eq!(ok("?"), Command::Help { topic: None });
        assert_eq!(ok("help set"), Command::Help { topic: Some("set".into()) });
    }

    #[test]
    fn every_spec_has_a_usage_and_an_example_that_parses() {
        for s in COMMANDS {
            assert!(s.usage.starts_with(s.name), "{} has a bad usage", s.name);
            assert!(!s.examples.is_empty(), "{} has no example", s.name);
            for example in s.examples {
                assert!(matches!(parse(example), Ok(Some(_))), "example {example:?} does not parse");
            }
        }
    }
}
