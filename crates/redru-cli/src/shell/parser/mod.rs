//! The shell's command language: one line (or a multi-line JSON value) -> [`Command`].
//!
//! Pure: no I/O, no database, no rustyline, so every rule is unit-tested here.
//! The first word names the command (any case); a key is one word or is quoted
//! (`"..."` with JSON escapes, `'...'` verbatim); a value is the rest of the
//! line: JSON when it parses, plain text otherwise, and an error when it opens
//! like JSON (`{`, `[`, `"`) but is not valid JSON.

use serde_json::Value;

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

/// Which keys `list` and `count` look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Keys starting with this text.
    Prefix(String),
    /// Keys matching a glob: `*` any run, `?` one character, `[abc]`, `[a-z]`,
    /// `[!x]` one of (or none of) a set, `\` escapes the next character.
    Glob(String),
}

impl Pattern {
    /// A glob when the text holds a glob character, a prefix otherwise.
    pub fn new(text: String) -> Pattern {
        if text.contains(['*', '?', '[']) { Pattern::Glob(text) } else { Pattern::Prefix(text) }
    }

    /// The longest literal prefix every matching key starts with (to narrow a scan).
    pub fn literal_prefix(&self) -> String {
        match self {
            Pattern::Prefix(p) => p.clone(),
            Pattern::Glob(g) => {
                let mut out = String::new();
                let mut chars = g.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '*' | '?' | '[' => break,
                        '\\' => match chars.next() {
                            Some(n) => out.push(n),
                            None => break,
                        },
                        c => out.push(c),
                    }
                }
                out
            }
        }
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Pattern::Prefix(p) => key.starts_with(p.as_str()),
            Pattern::Glob(g) => {
                let pattern: Vec<char> = g.chars().collect();
                let text: Vec<char> = key.chars().collect();
                glob_match(&pattern, &text)
            }
        }
    }
}

/// Iterative glob matcher with single backtracking point for `*` (linear
/// in practice, no recursion to blow the stack on hostile patterns).
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == '[' {
                        // An unclosed `[` is a literal.
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                '\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `pattern[start] == '['`:
/// `Some((matched, index after the class))`, or `None` if the class is unclosed.
fn class_match(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        let lo = pattern[i];
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&hi| hi != ']') {
            let hi = pattern[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    None
}

/// A line the shell could not understand, with the usage of the command it named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// The usage line of the command, when the command was recognised.
    pub usage: Option<&'static str>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(usage) = self.usage {
            write!(f, " (usage: {usage})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

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

/// Parses one command. `Ok(None)` for a blank line or a `#` comment.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let mut cur = Cursor::new(line);
    cur.skip_ws();
    if cur.at_end() || cur.rest().starts_with('#') {
        return Ok(None);
    }
    let name = cur.bare_word();
    let spec = spec(name).ok_or_else(|| ParseError {
        message: format!("unknown command `{name}`; type `help` for the list"),
        usage: None,
    })?;
    let usage = spec.usage;
    let err = |message: String| ParseError { message, usage: Some(usage) };
    let key = |cur: &mut Cursor, what: &str| -> Result<String, ParseError> {
        cur.word().map_err(err)?.ok_or_else(|| err(format!("missing {what}")))
    };
    let end = |cur: &mut Cursor, after: &str| -> Result<(), ParseError> {
        cur.skip_ws();
        if cur.at_end() {
            Ok(())
        } else {
            let extra = cur.rest().trim_end();
            let hint = if after == "key" { "; quote keys with spaces: \"my key\"" } else { "" };
            Err(err(format!("unexpected `{extra}` after the {after}{hint}")))
        }
    };
    let command = match spec.name {
        "set" => {
            let key = key(&mut cur, "key")?;
            let text = cur.rest().trim();
            if text.is_empty() {
                return Err(err(format!("missing value for `{key}`")));
            }
            Command::Set { key, value: parse_value(text).map_err(err)? }
        }
        "get" | "delete" | "exists" => {
            let key = key(&mut cur, "key")?;
            end(&mut cur, "key")?;
            match spec.name {
                "get" => Command::Get { key },
                "delete" => Command::Delete { key },
                _ => Command::Exists { key },
            }
        }
        "list" | "count" => {
            let pattern = cur.word().map_err(err)?.map(Pattern::new);
            end(&mut cur, "pattern")?;
            if spec.name == "list" { Command::List { pattern } } else { Command::Count { pattern } }
        }
        "find" => Command::Find(parse_find(cur.rest().trim()).map_err(err)?),
        "explain" => {
            let query = cur.rest().trim();
            if query.is_empty() {
                return Err(err("missing query".into()));
            }
            Command::Explain { query: query.to_owned() }
        }
        "index" => {
            let field = key(&mut cur, "field")?;
            let unique = match cur.word().map_err(err)?.as_deref() {
                None => false,
                Some("unique" | "--unique" | "UNIQUE") => true,
                Some(other) => return Err(err(format!("expected `unique` after the field, found `{other}`"))),
            };
            end(&mut cur, "field")?;
            Command::Index { field, unique }
        }
        "drop-index" => {
            let field = key(&mut cur, "field")?;
            end(&mut cur, "field")?;
            Command::DropIndex { field }
        }
        "clear" => {
            let yes = match cur.word().map_err(err)?.as_deref() {
                None => false,
                Some("--yes" | "-y" | "yes") => true,
                Some(other) => return Err(err(format!("unexpected `{other}`"))),
            };
            end(&mut cur, "flag")?;
            Command::Clear { yes }
        }
        "backup" => {
            let mut path = None;
            let mut keep = None;
            while let Some(word) = cur.word().map_err(err)? {
                if word == "--keep" {
                    let n = cur.word().map_err(err)?.ok_or_else(|| err("`--keep` needs a number".into()))?;
                    keep = Some(n.parse().map_err(|_| err(format!("`{n}` is not a number of backups")))?);
                } else if path.is_none() {
                    path = Some(word);
                } else {
                    return Err(err(format!("unexpected `{word}`")));
                }
            }
            Command::Backup { path, keep }
        }
        "restore" => {
            let first = key(&mut cur, "backup name (or --file <path>)")?;
            let (name, file) = if first == "--file" { (key(&mut cur, "backup file")?, true) } else { (first, false) };
            end(&mut cur, "backup name")?;
            Command::Restore { name, file }
        }
        "prune-backups" => {
            let keep = key(&mut cur, "number of backups to keep")?;
            let keep = keep.parse().map_err(|_| err(format!("`{keep}` is not a number of backups")))?;
            end(&mut cur, "number")?;
            Command::PruneBackups { keep }
        }
        "export" | "import" => {
            let mut path = None;
            let mut flag = false;
            let wanted = if spec.name == "export" { "--lines" } else { "--replace" };
            while let Some(word) = cur.word().map_err(err)? {
                if word == wanted {
                    flag = true;
                } else if path.is_none() {
                    path = Some(word);
                } else {
                    return Err(err(format!("unexpected `{word}`")));
                }
            }
            if spec.name == "export" {
                Command::Export { path, lines: flag }
            } else {
                let path = path.ok_or_else(|| err("missing file".into()))?;
                Command::Import { path, replace: flag }
            }
        }
        "help" => {
            let topic = cur.word().map_err(err)?;
            end(&mut cur, "command name")?;
            Command::Help { topic }
        }
        other => {
            end(&mut cur, "command")?;
            match other {
                "indexes" => Command::Indexes,
                "stats" => Command::Stats,
                "save" => Command::Save,
                "sync" => Command::Sync,
                "backups" => Command::Backups,
                _ => Command::Exit,
            }
        }
    };
    Ok(Some(command))
}

/// `find`'s argument text: `<field> <value>` or a query.
pub fn parse_find(text: &str) -> Result<Find, String> {
    if text.is_empty() {
        return Err("missing field and value".into());
    }
    if looks_like_query(text) {
        return Ok(Find::Query(text.to_owned()));
    }
    let mut cur = Cursor::new(text);
    let field = cur.word()?.ok_or("missing field")?;
    let value = cur.rest().trim();
    if value.is_empty() {
        return Err(format!("missing the value to look for in `{field}`"));
    }
    Ok(Find::Equals { field, value: parse_value(value)? })
}

/// A query, rather than `<field> <value>`: its first clause shows an operator
/// (`name = x`, `name=x`, `age >= 3`) or starts with `exists`/`prefix`. Later
/// clauses need no look: a query's first clause always has one of those.
pub fn looks_like_query(text: &str) -> bool {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("");
    let second = words.next().unwrap_or("");
    let is_op = |w: &str| ["=", "==", "!=", "<", "<=", ">", ">="].iter().any(|op| w.starts_with(op));
    first.contains(['=', '<', '>'])
        || is_op(second)
        || first.eq_ignore_ascii_case("exists")
        || first.eq_ignore_ascii_case("prefix")
}

/// A value as typed: JSON when it parses, text otherwise. Text that opens
/// like JSON (`{`, `[`, `"`) must be JSON: a typo there is an error, never a
/// silently stored string. `'...'` is verbatim text.
pub fn parse_value(text: &str) -> Result<Value, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("missing value".into());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => Ok(value),
        Err(e) => {
            if text.starts_with(['{', '[', '"']) {
                let what = match text.as_bytes()[0] {
                    b'{' => "object",
                    b'[' => "array",
                    _ => "string",
                };
                let tip = if what == "string" {
                    "; for text with quotes inside, wrap it in single quotes: 'say \"hi\" twice'"
                } else {
                    ""
                };
                Err(format!("invalid JSON {what}: {e}{tip}"))
            } else if text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'') {
                Ok(Value::String(text[1..text.len() - 1].to_owned()))
            } else {
                Ok(Value::String(text.to_owned()))
            }
        }
    }
}

/// Whether more lines are needed: a `{`/`[` or a `"` is still open. Single
/// quotes are not tracked (an apostrophe in `set note it's fine` must not
/// hold the line open).
pub fn is_incomplete(text: &str) -> bool {
    let mut depth: usize = 0;
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    in_string || depth > 0
}

/// Quotes a key for the shell when it needs it (spaces, quotes, empty, `#`).
pub fn quote_key(key: &str) -> String {
    let plain = !key.is_empty()
        && !key.starts_with(['"', '\'', '#'])
        && !key.chars().any(|c| c.is_whitespace() || c.is_control());
    if plain { key.to_owned() } else { serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}")) }
}

/// A position in a line, for reading words.
pub struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// At the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    /// Skips whitespace (newlines included).
    pub fn skip_ws(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// Whether nothing is left.
    pub fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    /// The text not read yet.
    pub fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    /// A word up to whitespace, without quote handling.
    fn bare_word(&mut self) -> &'a str {
        self.skip_ws();
        let rest = self.rest();
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// The next word, unquoted: `"..."` (JSON escapes), `'...'` (verbatim) or
    /// bare. `Ok(None)` at the end.
    pub fn word(&mut self) -> Result<Option<String>, String> {
        self.skip_ws();
        let rest = self.rest();
        let word = if rest.starts_with('"') {
            let close = closing_double_quote(rest).ok_or("unterminated \" quote")?;
            let quoted = &rest[..=close];
            let word: String = serde_json::from_str(quoted).map_err(|e| format!("bad quoted word {quoted}: {e}"))?;
            self.pos += close + 1;
            word
        } else if let Some(body) = rest.strip_prefix('\'') {
            let close = body.find('\'').ok_or("unterminated ' quote")?;
            self.pos += close + 2;
            body[..close].to_owned()
        } else if rest.is_empty() {
            return Ok(None);
        } else {
            return Ok(Some(self.bare_word().to_owned()));
        };
        if !self.at_end() && !self.rest().starts_with(char::is_whitespace) {
            return Err(format!("expected a space after the closing quote, found `{}`", self.rest().trim_end()));
        }
        Ok(Some(word))
    }
}

/// Index of the `"` closing the string that opens `text`.
fn closing_double_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(line: &str) -> Command {
        match parse(line) {
            Ok(Some(c)) => c,
            other => panic!("{line:?} -> {other:?}"),
        }
    }

    fn fails(line: &str) -> ParseError {
        match parse(line) {
            Err(e) => e,
            other => panic!("{line:?} should fail, got {other:?}"),
        }
    }

    fn set(key: &str, value: Value) -> Command {
        Command::Set { key: key.into(), value }
    }

    #[test]
    fn blank_and_comment_lines_are_nothing() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   \t "), Ok(None));
        assert_eq!(parse("# a comment"), Ok(None));
        assert_eq!(parse("  # indented comment"), Ok(None));
    }

    #[test]
    fn quoted_and_bare_strings_store_the_same_text() {
        assert_eq!(ok("set name Alice"), set("name", json!("Alice")));
        assert_eq!(ok("set name \"Alice\""), set("name", json!("Alice")));
        assert_eq!(ok("set name 'Alice'"), set("name", json!("Alice")));
    }

    #[test]
    fn value_is_the_rest_of_the_line() {
        assert_eq!(ok("set greeting hello   big world  "), set("greeting", json!("hello   big world")));
        assert_eq!(ok("set note it's fine"), set("note", json!("it's fine")));
        assert_eq!(ok("set q 'say \"hi\" twice'"), set("q", json!("say \"hi\" twice")));
        assert_eq!(ok("set url http://x/?a=b#c"), set("url", json!("http://x/?a=b#c")));
    }

    #[test]
    fn json_values_keep_their_type() {
        assert_eq!(ok("set n 42"), set("n", json!(42)));
        assert_eq!(ok("set n -1.5e3"), set("n", json!(-1500.0)));
        assert_eq!(ok("set b true"), set("b", json!(true)));
        assert_eq!(ok("set z null"), set("z", json!(null)));
        assert_eq!(ok("set o {\"a\": [1, {\"b\": null}]}"), set("o", json!({"a": [1, {"b": null}]})));
        assert_eq!(ok("set a [1, 2, 3]"), set("a", json!([1, 2, 3])));
        assert_eq!(ok("set s \"line\\nbreak \\u00e9\""), set("s", json!("line\nbreak é")));
        // Not JSON numbers: kept as text exactly as typed.
        assert_eq!(ok("set zip 007"), set("zip", json!("007")));
        assert_eq!(ok("set v 1.2.3"), set("v", json!("1.2.3")));
        assert_eq!(ok("set t True"), set("t", json!("True")));
    }

    #[test]
    fn multi_line_json_values_parse() {
        assert_eq!(
            ok("set user {\n  \"name\": \"Alice\",\n  \"age\": 30\n}"),
            set("user", json!({"name": "Alice", "age": 30}))
        );
    }

    #[test]
    fn broken_json_is_an_error_not_a_string() {
        for line in ["set k {\"a\":", "set k [1, 2", "set k {a: 1}", "set k [1,]", "set k \"open", "set k \"a\" b"] {
            let e = fails(line);
            assert!(e.message.contains("invalid JSON"), "{line:?}: {e}");
            assert_eq!(e.usage, Some("set <key> <value>"));
        }
    }

    #[test]
    fn keys_with_spaces_are_quoted() {
        assert_eq!(ok("set \"my key\" 1"), set("my key", json!(1)));
        assert_eq!(ok("set 'my key' 1"), set("my key", json!(1)));
        assert_eq!(ok("get \"my key\""), Command::Get { key: "my key".into() });
        assert_eq!(ok("get \"tab\\there\""), Command::Get { key: "tab\there".into() });
        assert_eq!(ok("get \"\""), Command::Get { key: "".into() });
        assert_eq!(ok("delete 'it\"s'"), Command::Delete { key: "it\"s".into() });
        let e = fails("get my key");
        assert!(e.message.contains("unexpected `key`") && e.message.contains("quote keys"), "{e}");
        assert!(fails("get \"open").message.contains("unterminated"));
        assert!(fails("get 'open").message.contains("unterminated"));
        assert!(fails("get \"a\"b").message.contains("after the closing quote"));
    }

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
    fn missing_arguments_name_the_usage() {
        let e = fails("set");
        assert_eq!(e.message, "missing key");
        assert_eq!(e.usage, Some("set <key> <value>"));
        assert!(fails("set k").message.contains("missing value"));
        assert!(fails("set k    ").message.contains("missing value"));
        assert_eq!(fails("get").usage, Some("get <key>"));
        assert!(fails("index").message.contains("missing field"));
        assert!(fails("find").message.contains("missing"));
        assert!(fails("find name").message.contains("missing the value"));
        assert!(fails("stats now").message.contains("unexpected `now`"));
        let unknown = fails("frobnicate x");
        assert!(unknown.message.contains("unknown command `frobnicate`"));
        assert_eq!(unknown.usage, None);
    }

    #[test]
    fn list_takes_a_prefix_or_a_glob() {
        assert_eq!(ok("list"), Command::List { pattern: None });
        assert_eq!(ok("list user:"), Command::List { pattern: Some(Pattern::Prefix("user:".into())) });
        assert_eq!(ok("count user:*"), Command::Count { pattern: Some(Pattern::Glob("user:*".into())) });
        assert_eq!(ok("list \"a b\""), Command::List { pattern: Some(Pattern::Prefix("a b".into())) });
    }

    #[test]
    fn globs_match() {
        let g = |p: &str, k: &str| Pattern::new(p.into()).matches(k);
        assert!(g("user:*", "user:1"));
        assert!(g("user:*", "user:"));
        assert!(!g("user:*", "use"));
        assert!(g("*:name", "user:1:name"));
        assert!(!g("*:name", "user:1:names"));
        assert!(g("a?c", "abc") && !g("a?c", "ac"));
        assert!(g("[ab]*", "banana") && !g("[ab]*", "cherry"));
        assert!(g("[a-c]x", "bx") && !g("[a-c]x", "dx"));
        assert!(g("[!a]x", "bx") && !g("[!a]x", "ax"));
        assert!(g("a\\*b", "a*b") && !g("a\\*b", "axb"));
        assert!(g("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!g("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(g("é*", "été"));
        assert!(g("[x", "[x"));
        assert_eq!(Pattern::new("user:*:x".into()).literal_prefix(), "user:");
        assert_eq!(Pattern::new("a\\*b*".into()).literal_prefix(), "a*b");
    }

    #[test]
    fn find_is_equality_or_a_query() {
        assert_eq!(ok("find name Alice"), Command::Find(Find::Equals { field: "name".into(), value: json!("Alice") }));
        assert_eq!(ok("find age 30"), Command::Find(Find::Equals { field: "age".into(), value: json!(30) }));
        assert_eq!(
            ok("find name Alice Smith"),
            Command::Find(Find::Equals { field: "name".into(), value: json!("Alice Smith") })
        );
        for q in
            ["name = Alice and age >= 30", "name=Alice", "age > 3", "exists address.city", "age != 3", "prefix user:"]
        {
            assert_eq!(ok(&format!("find {q}")), Command::Find(Find::Query(q.into())), "{q}");
        }
        assert!(fails("find tags [1,").message.contains("invalid JSON"));
        assert_eq!(ok("explain name = x"), Command::Explain { query: "name = x".into() });
    }

    #[test]
    fn index_clear_and_flags() {
        assert_eq!(ok("index name"), Command::Index { field: "name".into(), unique: false });
        assert_eq!(ok("index email unique"), Command::Index { field: "email".into(), unique: true });
        assert_eq!(ok("index email --unique"), Command::Index { field: "email".into(), unique: true });
        assert!(fails("index email uniq").message.contains("expected `unique`"));
        assert_eq!(ok("drop-index name"), Command::DropIndex { field: "name".into() });
        assert_eq!(ok("clear"), Command::Clear { yes: false });
        assert_eq!(ok("clear --yes"), Command::Clear { yes: true });
        assert!(fails("clear now").message.contains("unexpected"));
    }

    #[test]
    fn backup_and_transfer_commands() {
        assert_eq!(ok("backup"), Command::Backup { path: None, keep: None });
        assert_eq!(ok("backup \"/tmp/a b.json\""), Command::Backup { path: Some("/tmp/a b.json".into()), keep: None });
        assert_eq!(ok("backup --keep 3"), Command::Backup { path: None, keep: Some(3) });
        assert!(fails("backup --keep x").message.contains("not a number"));
        assert_eq!(ok("restore --file /x/b.json"), Command::Restore { name: "/x/b.json".into(), file: true });
        assert_eq!(ok("backups"), Command::Backups);
        assert_eq!(ok("restore b1"), Command::Restore { name: "b1".into(), file: false });
        assert!(fails("restore").message.contains("missing backup name"));
        assert_eq!(ok("prune-backups 3"), Command::PruneBackups { keep: 3 });
        assert!(fails("prune-backups x").message.contains("not a number"));
        assert_eq!(ok("export"), Command::Export { path: None, lines: false });
        assert_eq!(ok("export --lines"), Command::Export { path: None, lines: true });
        assert_eq!(ok("export d.jsonl --lines"), Command::Export { path: Some("d.jsonl".into()), lines: true });
        assert_eq!(ok("import d.json"), Command::Import { path: "d.json".into(), replace: false });
        assert_eq!(ok("import --replace d.json"), Command::Import { path: "d.json".into(), replace: true });
        assert!(fails("import").message.contains("missing file"));
        assert!(fails("import a b").message.contains("unexpected `b`"));
    }

    #[test]
    fn incomplete_while_brackets_or_double_quotes_are_open() {
        assert!(is_incomplete("set k {"));
        assert!(is_incomplete("set k {\"a\": [1,"));
        assert!(is_incomplete("set k \"open"));
        assert!(is_incomplete("set k {\"a\": \"}\""));
        assert!(is_incomplete("set k \"esc \\\" still open"));
        assert!(!is_incomplete("set k {\"a\": \"}\"}"));
        assert!(!is_incomplete("set k {\"a\": [1, 2]}"));
        assert!(!is_incomplete("set note it's fine"));
        assert!(!is_incomplete("set k }"));
        assert!(!is_incomplete("get k"));
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

    #[test]
    fn quote_key_round_trips() {
        for key in ["plain", "my key", "", "\"q", "'s", "#tag", "tab\there", "été"] {
            let line = format!("get {}", quote_key(key));
            assert_eq!(ok(&line), Command::Get { key: key.into() }, "{line}");
        }
        assert_eq!(quote_key("user:1"), "user:1");
    }
}
