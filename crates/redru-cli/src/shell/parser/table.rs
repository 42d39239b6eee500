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

/// Where a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In the shell, in a script and as a one-shot command.
    Everywhere,
    /// Only as a one-shot command: it needs the directory closed (the shell
    /// says so and shows the command line to run).
    OneShot,
    /// Only in the shell or a script: it makes no sense on its own.
    Session,
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
    /// Where it runs.
    pub place: Place,
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
        place: Place::Everywhere,
        summary: "store a JSON value (or plain text) under a key",
        details: "The value is the rest of the line: JSON when it parses (42, true, null, \"text\", {...}, [...]), \
                  plain text otherwise, so `set name Alice` and `set name \"Alice\"` both store the string Alice. \
                  JSON is stored as written (numbers keep their digits), without the blanks between its tokens. \
                  A value that starts with { [ or \" must be valid JSON, and it alone may continue on the next \
                  lines, while a bracket or string of it is open (behind a `...>` prompt in a terminal). \
                  Quote keys with spaces: set \"my key\" 1. With --if-absent the key is written only if it \
                  does not exist; with --if-seq N only if it exists and nothing wrote it after record N (the number \
                  `last-seq <key>` prints). Otherwise nothing is written and the error says what was found (exit code 1 \
                  as a one-shot command). With --ttl D the key expires D from now (500ms, 10s, 5m, 2h, 1d; a bare \
                  number is seconds); a set without --ttl removes any deadline the key had. A plain-text value \
                  ending in these words needs quotes.",
        examples: &[
            "set name Alice",
            "set user:1 {\"name\": \"Alice\", \"age\": 30}",
            "set \"my key\" [1, 2, 3]",
            "set lock:job1 me --if-absent",
            "set user:1 {\"name\": \"Al\"} --if-seq 42",
            "set session:9 {\"user\": 1} --ttl 30m",
        ],
    },
    Spec {
        name: "expire",
        usage: "expire <key> <duration>",
        aliases: &[],
        args: &["<key>", "<duration>"],
        arg: Arg::Key,
        place: Place::Everywhere,
        summary: "make a key expire after a time (500ms, 10s, 5m, 2h, 1d)",
        details: "Replaces any deadline the key had. From its deadline on the key is gone for every read; the \
                  database removes it in the background. The deadline is kept as a wall-clock time, so it holds \
                  across restarts. A duration of 0 deletes the key. Says `not found` when the key does not exist \
                  (exit code 1 as a one-shot command).",
        examples: &["expire session:9 10m", "expire cache:home 30s"],
    },
    Spec {
        name: "ttl",
        usage: "ttl <key>",
        aliases: &[],
        args: &["<key>"],
        arg: Arg::Key,
        place: Place::Everywhere,
        summary: "print the time left before a key expires",
        details: "Prints the time left in seconds with milliseconds (`599.998s`), or `no expiry` for a key that \
                  never expires. Says `not found` when the key does not exist (exit code 1 as a one-shot command).",
        examples: &["ttl session:9"],
    },
    Spec {
        name: "persist",
        usage: "persist <key>",
        aliases: &[],
        args: &["<key>"],
        arg: Arg::Key,
        place: Place::Everywhere,
        summary: "remove a key's deadline: it no longer expires",
        details: "Prints OK, or `no expiry` when the key had none. Says `not found` when the key does not exist \
                  (exit code 1 as a one-shot command).",
        examples: &["persist session:9"],
    },
    Spec {
        name: "incr",
        usage: "incr <key> [by]",
        aliases: &[],
        args: &["<key>", "[by]"],
        arg: Arg::NewKey,
        place: Place::Everywhere,
        summary: "add to an integer (1 unless given), atomically; print the new value",
        details: "A missing key counts as 0. Refused, changing nothing, when the key holds anything but a \
                  whole number or the sum would not fit in 64 bits. `by` may be negative.",
        examples: &["incr visits", "incr stock -3"],
    },
    Spec {
        name: "last-seq",
        usage: "last-seq <key>",
        aliases: &[],
        args: &["<key>"],
        arg: Arg::Key,
        place: Place::Everywhere,
        summary: "print the sequence number of the key's last write",
        details: "For `set <key> <value> --if-seq N`. After a reopen, a key loaded from the snapshot reports \
                  the snapshot's number (never less than its own). Says `not found` when the key does not exist.",
        examples: &["last-seq user:1"],
    },
    Spec {
        name: "get",
        usage: "get <key>",
        aliases: &[],
        args: &["<key>"],
        arg: Arg::Key,
        place: Place::Everywhere,
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
        place: Place::Everywhere,
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
        place: Place::Everywhere,
        summary: "print true or false",
        details: "As a one-shot command the exit code is 0 for true and 1 for false.",
        examples: &["exists user:1"],
    },
    Spec {
        name: "list",
        usage: "list [prefix] [--limit N] [--after KEY]",
        aliases: &["keys", "ls"],
        args: &["[prefix|glob]"],
        arg: Arg::Pattern,
        place: Place::Everywhere,
        summary: "list keys in key order, optionally by prefix or glob, a page at a time",
        details: "The prefix may be a glob: a pattern with * ? or [ is a glob (`user:*:name`, `log-202?`, `[ab]*`); anything else is a prefix. \
                  Keys come in byte order, read from the ordered key sets, so a page costs the same in a large \
                  database as in a small one. --limit N prints at most N keys and, when more are left, a last \
                  line `(more: ... --after KEY)` with the command that prints the next page (on stderr unless \
                  --format is table). --after KEY starts after KEY, --from KEY at it (KEY need not exist), \
                  --to KEY stops before KEY.",
        examples: &[
            "list",
            "list user:",
            "list user:*",
            "list user: --limit 100",
            "list user: --limit 100 --after user:0420",
            "list --from order:2026-01 --to order:2026-02",
        ],
    },
    Spec {
        name: "count",
        usage: "count [prefix|glob]",
        aliases: &[],
        args: &["[prefix|glob]"],
        arg: Arg::Pattern,
        place: Place::Everywhere,
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
        place: Place::Everywhere,
        summary: "find entries by field value, or by a query",
        details: "`find <field> <value>`: the value is the rest of the line, read like `set`'s. A query compares \
                  fields with = != < <= > >=, `in [..]`, `contains` (an array member), `prefix` (a string's \
                  start) or `between a and b`, tests `exists <field>` or `prefix <key prefix>`, and combines \
                  conditions with `and`, `or`, `not` and parentheses; then optionally `sort by <field> [desc]`, \
                  `limit N`, `offset N` and `fields a, b.c`. An index on a field compared for equality makes \
                  it a lookup instead of a scan (see `explain`). The grammar: docs/design.md, \"Queries\".",
        examples: &[
            "find name Alice",
            "find address.city \"Paris\"",
            "find age >= 30 and exists email",
            "find (city = Oslo or city = Bergen) and not exists deleted",
            "find tags contains admin sort by age desc limit 10 fields name, age",
        ],
    },
    Spec {
        name: "explain",
        usage: "explain <query>",
        aliases: &[],
        args: &["<query>"],
        arg: Arg::IndexedField,
        place: Place::Everywhere,
        summary: "show how a query would run (index lookup or full scan)",
        details: "",
        examples: &["explain name = Alice and age >= 30"],
    },
    Spec {
        name: "index",
        usage: "index <field> [unique|ordered]",
        aliases: &["create-index"],
        args: &["<field>", "[unique|ordered]"],
        arg: Arg::Field,
        place: Place::Everywhere,
        summary: "index a field path (`unique` refuses duplicates; `ordered` serves <, >, between, sort by)",
        details: "Field paths use dots: name, address.city, tags.0.",
        examples: &["index name", "index email unique", "index age ordered"],
    },
    Spec {
        name: "drop-index",
        usage: "drop-index <field>",
        aliases: &[],
        args: &["<field>"],
        arg: Arg::IndexedField,
        place: Place::Everywhere,
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
        place: Place::Everywhere,
        summary: "list the indexes with their sizes",
        details: "",
        examples: &["indexes"],
    },
    Spec {
        name: "cluster",
        usage: "cluster <init|addlearner|membership|status|snapshot> [args...]",
        aliases: &[],
        args: &["<subcommand>", "[args...]"],
        arg: Arg::None,
        place: Place::Everywhere,
        summary: "run REDRU.CLUSTER on a cluster node (over --connect)",
        details: "`cluster status` prints the node's role, term, log positions and lag as JSON; \
                  `cluster init`, `cluster addlearner 2 127.0.0.1:7382`, `cluster membership 1 2 3` \
                  and `cluster snapshot` change the cluster (docs/cluster.md).",
        examples: &["cluster status", "cluster membership 1 2 3"],
    },
    Spec {
        name: "stats",
        usage: "stats",
        aliases: &["info"],
        args: &[],
        arg: Arg::None,
        place: Place::Everywhere,
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
        place: Place::Everywhere,
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
        place: Place::Everywhere,
        summary: "make every write durable (each already is with --durability always, the default)",
        details: "",
        examples: &["sync"],
    },
    Spec {
        name: "watch",
        usage: "watch [prefix] [--from N] [--count N]",
        aliases: &[],
        args: &["[prefix]", "[--from N]", "[--count N]"],
        arg: Arg::Pattern,
        place: Place::Everywhere,
        summary: "print every change to keys under a prefix as it becomes durable, until Ctrl-C",
        details: "One line per change: its sequence number, `set`, `del` or `clear`, the key and the new value \
                  (tab-separated in a pipe; `--format jsonl` gives {\"seq\":..,\"op\":..,\"key\":..,\"value\":..}). \
                  A change is printed once it is durable, so nothing printed can be lost. With --from N it \
                  starts after record N (`last-seq`, or the last number it printed), reading older records from \
                  the log; a number older than the last save is refused (the log no longer has it: start from \
                  `list` and a fresh `watch`). --count N stops after N changes. A directory is open in one process \
                  at a time, so to watch live what others write, watch the server they write to: \
                  `redru --connect redis://HOST:PORT watch` (it polls `REDRU.CHANGES` every 100 ms).",
        examples: &["watch user:", "watch --from 0 --count 10", "watch order: --from 1200"],
    },
    Spec {
        name: "clear",
        usage: "clear [--yes]",
        aliases: &["flush"],
        args: &["[--yes]"],
        arg: Arg::None,
        place: Place::Everywhere,
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
        place: Place::Everywhere,
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
        place: Place::Everywhere,
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
        place: Place::Everywhere,
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
        place: Place::Everywhere,
        summary: "delete all but the newest <keep> backups",
        details: "The newest verified backup is never deleted.",
        examples: &["prune-backups 5"],
    },
    Spec {
        name: "export",
        usage: "export [file] [--lines] [--force]",
        aliases: &[],
        args: &["[file]", "[--lines]", "[--force]"],
        arg: Arg::File,
        place: Place::Everywhere,
        summary: "write every pair as one JSON object (or JSON lines) to stdout or a new file",
        details: "An existing file is refused unless --force is given (the old file is replaced only once the \
                  new one is complete).",
        examples: &["export", "export dump.jsonl --lines", "export dump.json --force"],
    },
    Spec {
        name: "import",
        usage: "import <file> [--replace]",
        aliases: &[],
        args: &["<file>", "[--replace]"],
        arg: Arg::File,
        place: Place::Everywhere,
        summary: "merge an export file in one atomic batch (--replace: replace all)",
        details: "Either shape of `export` is accepted. An invalid file changes nothing. Every value is read \
                  like `set`'s: numbers keep their digits, and a value the library would not read back is refused. \
                  As a one-shot command, `-` (or /dev/stdin, or a pipe) reads standard input.",
        examples: &["import dump.json", "import dump.jsonl --replace", "import -"],
    },
    Spec {
        name: "begin",
        usage: "begin",
        aliases: &["multi"],
        args: &[],
        arg: Arg::None,
        place: Place::Session,
        summary: "collect the following set/delete commands into one atomic batch",
        details: "Until `commit`, `set` and `delete` are queued (they print QUEUED) and reads see the data as it \
                  was before `begin`. `commit` applies them all as one write (one fsync), `rollback` drops them. \
                  A script that ends inside a batch, or a shell left inside one, rolls it back.",
        examples: &["begin"],
    },
    Spec {
        name: "commit",
        usage: "commit",
        aliases: &["exec"],
        args: &[],
        arg: Arg::None,
        place: Place::Session,
        summary: "apply the batch started by `begin`, all or nothing",
        details: "",
        examples: &["commit"],
    },
    Spec {
        name: "rollback",
        usage: "rollback",
        aliases: &["discard"],
        args: &[],
        arg: Arg::None,
        place: Place::Session,
        summary: "drop the batch started by `begin`",
        details: "",
        examples: &["rollback"],
    },
    Spec {
        name: "verify",
        usage: "verify [file] [--json]",
        aliases: &[],
        args: &["[file]", "[--json]"],
        arg: Arg::File,
        place: Place::OneShot,
        summary: "check the data directory (or one snapshot or backup file); one-shot only",
        details: "Runs on the closed directory: from the shell, leave it and run `redru --dir DIR verify`. \
                  Exit code 0 clean, 1 problems found. `--file PATH` is the same as giving the file.",
        examples: &["verify", "verify --json", "verify data/backups/backup-1.json"],
    },
    Spec {
        name: "repair",
        usage: "repair [--dry-run]",
        aliases: &[],
        args: &["[--dry-run]"],
        arg: Arg::None,
        place: Place::OneShot,
        summary: "cut a damaged log at its first bad record; one-shot only",
        details: "Runs on the closed directory. The rest of the log is moved aside, not deleted. Exit code 0 when \
                  nothing is left wrong, 1 otherwise (or damage found with --dry-run).",
        examples: &["repair --dry-run", "repair"],
    },
    Spec {
        name: "compact",
        usage: "compact",
        aliases: &[],
        args: &[],
        arg: Arg::None,
        place: Place::OneShot,
        summary: "rewrite the snapshot and drop the log it covers; one-shot only",
        details: "Runs on the closed directory; in the shell, `save` does the same on the open database.",
        examples: &["compact"],
    },
    Spec {
        name: "help",
        usage: "help [command]",
        aliases: &["?", ".help"],
        args: &["[command]"],
        arg: Arg::Command,
        place: Place::Session,
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
        place: Place::Session,
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
        assert_eq!(ok("keys"), Command::List { pattern: None, range: Default::default() });
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
