//! Parsing: [`parse`] (a line) and [`parse_args`] (a one-shot command's
//! words) give a [`Command`], or a [`ParseError`] with the command's usage.
//!
//! Invariant: JSON values take the library's raw-text path ([`redru::Doc::parse`]);
//! a value that opens like JSON is JSON or an error, never stored as text.
//!
//! Past 800 lines only with its unit tests (about 300 lines): the parser itself
//! is under 500, and the tests stay beside the grammar they pin.

use std::time::Duration;

use redru::Doc;
use serde_json::Value;
use serde_json::value::RawValue;

use super::command::{Command, Find, KeyRange, SetIf};
use super::glob::Pattern;
use super::table::spec;
use super::tokens::Cursor;

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

/// Splits the trailing flags off `set`'s value, in either order: `--ttl D`
/// and one of `--if-absent`, `--if-seq N` (a plain-text value ending in
/// those words needs quotes: `"... --if-absent"`).
fn set_flags(text: &str) -> Result<(&str, Option<SetIf>, Option<Duration>), String> {
    let (mut text, mut only_if, mut ttl) = (text, None, None);
    for _ in 0..2 {
        let (before, last) = text.rsplit_once(char::is_whitespace).map_or(("", text), |(a, b)| (a.trim_end(), b));
        let (before_flag, flag) =
            before.rsplit_once(char::is_whitespace).map_or(("", before), |(a, b)| (a.trim_end(), b));
        // A quote in the last word: the words are inside a quoted value.
        if ttl.is_none() && flag == "--ttl" && !last.contains(['"', '\'']) {
            ttl = Some(parse_duration(last)?);
            text = before_flag;
        } else if ttl.is_none() && last == "--ttl" {
            return Err("`--ttl` needs a duration: 500ms, 10s, 5m, 2h or 1d".into());
        } else if only_if.is_none() {
            let (rest, condition) = set_condition(text)?;
            if condition.is_none() {
                break;
            }
            (text, only_if) = (rest, condition);
        } else {
            break;
        }
    }
    Ok((text, only_if, ttl))
}

/// A duration as `expire` and `set --ttl` take it: a whole number and a
/// unit, `ms`, `s`, `m`, `h` or `d` (a bare number is seconds, as in Redis).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a duration: a whole number and a unit, like 500ms, 10s, 5m, 2h or 1d");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms_per = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per).map(Duration::from_millis).ok_or_else(|| format!("`{text}` is too long a duration"))
}

/// Splits a trailing `--if-absent` or `--if-seq N` off `set`'s value.
fn set_condition(text: &str) -> Result<(&str, Option<SetIf>), String> {
    fn last_word(t: &str) -> (&str, &str) {
        t.rsplit_once(char::is_whitespace).map_or(("", t), |(a, b)| (a.trim_end(), b))
    }
    let (before, last) = last_word(text);
    if last == "--if-absent" {
        return Ok((before, Some(SetIf::Absent)));
    }
    let (before_n, flag) = last_word(before);
    if flag == "--if-seq" {
        let seq = last.parse().map_err(|_| format!("`--if-seq` needs a sequence number, found `{last}`"))?;
        return Ok((before_n, Some(SetIf::Seq(seq))));
    }
    if last == "--if-seq" {
        return Err("`--if-seq` needs a sequence number (the one `last-seq <key>` prints)".into());
    }
    Ok((text, None))
}

/// Parses one command. `Ok(None)` for a blank line or a `#` comment.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    parse_cursor(Cursor::new(line))
}

/// Parses a one-shot command line: `args[0]` is the command's name, each
/// other element one word as the user's shell split it (so a key needs no
/// second quoting); what the shell reads as "the rest of the line" is the
/// remaining words joined by spaces.
pub fn parse_args(args: &[String]) -> Result<Option<Command>, ParseError> {
    parse_cursor(Cursor::from_args(args))
}

fn parse_cursor(mut cur: Cursor) -> Result<Option<Command>, ParseError> {
    cur.skip_ws();
    if cur.at_end() || cur.rest().starts_with('#') {
        return Ok(None);
    }
    let name = cur.bare_word();
    let spec = spec(&name).ok_or_else(|| ParseError {
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
            let rest = cur.rest();
            let extra = rest.trim_end();
            let hint = if after == "key" { "; quote keys with spaces: \"my key\"" } else { "" };
            Err(err(format!("unexpected `{extra}` after the {after}{hint}")))
        }
    };
    let command = match spec.name {
        "set" => {
            let key = key(&mut cur, "key")?;
            let rest = cur.rest();
            let (text, only_if, ttl) = set_flags(rest.trim()).map_err(err)?;
            if text.is_empty() {
                return Err(err(format!("missing value for `{key}`")));
            }
            Command::Set { key, value: parse_value(text).map_err(err)?, only_if, ttl }
        }
        "expire" => {
            let key = key(&mut cur, "key")?;
            let word =
                cur.word().map_err(err)?.ok_or_else(|| err("missing duration (500ms, 10s, 5m, 2h, 1d)".into()))?;
            let ttl = parse_duration(&word).map_err(err)?;
            end(&mut cur, "duration")?;
            Command::Expire { key, ttl }
        }
        "ttl" | "persist" => {
            let key = key(&mut cur, "key")?;
            end(&mut cur, "key")?;
            if spec.name == "ttl" { Command::Ttl { key } } else { Command::Persist { key } }
        }
        "incr" => {
            let key = key(&mut cur, "key")?;
            let by = match cur.word().map_err(err)? {
                None => 1,
                Some(n) => n.parse().map_err(|_| err(format!("`{n}` is not a whole number to add")))?,
            };
            end(&mut cur, "amount")?;
            Command::Incr { key, by }
        }
        "last-seq" => {
            let key = key(&mut cur, "key")?;
            end(&mut cur, "key")?;
            Command::Seq { key }
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
        "list" => {
            let (pattern, range) = list_args(&mut cur).map_err(err)?;
            Command::List { pattern, range }
        }
        "count" => {
            let pattern = cur.word().map_err(err)?.map(Pattern::new);
            end(&mut cur, "pattern")?;
            Command::Count { pattern }
        }
        "find" => Command::Find(parse_find(cur.rest().trim()).map_err(err)?),
        "explain" => {
            let rest = cur.rest();
            let query = rest.trim();
            if query.is_empty() {
                return Err(err("missing query".into()));
            }
            Command::Explain { query: query.to_owned() }
        }
        "index" => {
            let field = key(&mut cur, "field")?;
            let (unique, ordered) = match cur.word().map_err(err)?.as_deref() {
                None => (false, false),
                Some("unique" | "--unique" | "UNIQUE") => (true, false),
                Some("ordered" | "--ordered" | "ORDERED") => (false, true),
                Some(other) => {
                    return Err(err(format!("expected `unique` or `ordered` after the field, found `{other}`")));
                }
            };
            end(&mut cur, "field")?;
            Command::Index { field, unique, ordered }
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
        "watch" => {
            let mut prefix = None;
            let (mut from, mut count) = (None, None);
            while let Some(word) = cur.word().map_err(err)? {
                match word.as_str() {
                    "--from" | "--count" => {
                        let n = cur.word().map_err(err)?.ok_or_else(|| err(format!("`{word}` needs a number")))?;
                        let n: u64 = n.parse().map_err(|_| err(format!("`{n}` is not a number for `{word}`")))?;
                        *(if word == "--from" { &mut from } else { &mut count }) = Some(n);
                    }
                    _ => prefix = once(prefix, word).map_err(err)?,
                }
            }
            Command::Watch { prefix: prefix.unwrap_or_default(), from, count }
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
        "export" => {
            let (path, flags) = path_and_flags(&mut cur, &["--lines", "--force"]).map_err(err)?;
            Command::Export { path, lines: flags[0], force: flags[1] }
        }
        "import" => {
            let (path, flags) = path_and_flags(&mut cur, &["--replace"]).map_err(err)?;
            let path = path.ok_or_else(|| err("missing file".into()))?;
            Command::Import { path, replace: flags[0] }
        }
        "verify" => {
            let mut file = None;
            let mut json = false;
            while let Some(word) = cur.word().map_err(err)? {
                match word.as_str() {
                    "--json" => json = true,
                    "--file" => {
                        let path = cur.word().map_err(err)?.ok_or_else(|| err("`--file` needs a path".into()))?;
                        file = once(file, path).map_err(err)?;
                    }
                    _ => file = once(file, word).map_err(err)?,
                }
            }
            Command::Verify { file, json }
        }
        "repair" => {
            let (path, flags) = path_and_flags(&mut cur, &["--dry-run"]).map_err(err)?;
            if let Some(extra) = path {
                return Err(err(format!("unexpected `{extra}`")));
            }
            Command::Repair { dry_run: flags[0] }
        }
        "cluster" => {
            let mut args = Vec::new();
            while let Some(word) = cur.word().map_err(err)? {
                args.push(word);
            }
            if args.is_empty() {
                return Err(err("missing subcommand (init, addlearner, membership, status, snapshot)".into()));
            }
            Command::Cluster { args }
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
                "begin" => Command::Begin,
                "commit" => Command::Commit,
                "rollback" => Command::Rollback,
                "compact" => Command::Compact,
                _ => Command::Exit,
            }
        }
    };
    Ok(Some(command))
}

/// `list`'s words: an optional pattern among `--limit N`, `--after KEY`,
/// `--from KEY` and `--to KEY`, in any order. A pattern that starts with
/// `--` is taken for a flag: list it as a glob (`[-]-x`).
fn list_args(cur: &mut Cursor) -> Result<(Option<Pattern>, KeyRange), String> {
    let mut pattern = None;
    let mut range = KeyRange::default();
    while let Some(word) = cur.word()? {
        let mut value = |flag: &str| cur.word()?.ok_or_else(|| format!("`{flag}` needs a key"));
        match word.as_str() {
            "--limit" => {
                let n = value("--limit")?;
                let n = n.parse().map_err(|_| format!("`--limit` needs a whole number, found `{n}`"))?;
                range.limit = Some(n);
            }
            "--after" => range.after = Some(value("--after")?),
            "--from" => range.from = Some(value("--from")?),
            "--to" => range.to = Some(value("--to")?),
            flag if flag.starts_with("--") => {
                return Err(format!("unknown flag `{flag}` (expected --limit, --after, --from or --to)"));
            }
            _ => pattern = once(pattern, word)?,
        }
    }
    if range.after.is_some() && range.from.is_some() {
        return Err("give `--after` or `--from`, not both: both say where to start".into());
    }
    Ok((pattern.map(Pattern::new), range))
}

/// An optional path among flags: which of `flags` were given, in their order.
fn path_and_flags(cur: &mut Cursor, flags: &[&str]) -> Result<(Option<String>, Vec<bool>), String> {
    let mut path = None;
    let mut given = vec![false; flags.len()];
    while let Some(word) = cur.word()? {
        match flags.iter().position(|f| *f == word) {
            Some(i) => given[i] = true,
            None => path = once(path, word)?,
        }
    }
    Ok((path, given))
}

/// The one path a command takes: a second one is an error.
fn once(path: Option<String>, word: String) -> Result<Option<String>, String> {
    match path {
        None => Ok(Some(word)),
        Some(_) => Err(format!("unexpected `{word}`")),
    }
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
    let rest = cur.rest();
    let value = rest.trim();
    if value.is_empty() {
        return Err(format!("missing the value to look for in `{field}`"));
    }
    Ok(Find::Equals { field, value: parse_value(value)?.to_value() })
}

/// A query, rather than `<field> <value>`: its first clause shows an operator
/// (`name = x`, `name=x`, `age >= 3`) or starts with `exists`/`prefix`. Later
/// clauses need no look: a query's first clause always has one of those.
pub fn looks_like_query(text: &str) -> bool {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("");
    let second = words.next().unwrap_or("");
    let is_op = |w: &str| ["=", "==", "!=", "<", "<=", ">", ">="].iter().any(|op| w.starts_with(op));
    let any = |w: &str, words: &[&str]| words.iter().any(|k| w.eq_ignore_ascii_case(k));
    first.contains(['=', '<', '>'])
        || first.starts_with('(')
        || is_op(second)
        || any(first, &["exists", "prefix", "not", "sort", "limit", "offset", "fields"])
        || any(second, &["in", "contains", "prefix", "between"])
}

/// A value as typed: JSON when it parses, text otherwise. JSON goes the way
/// of the library's raw-text write ([`Doc::parse`]): its insignificant
/// whitespace removed, its members in the order given, its numbers' digits
/// as written, and refused (with the library's reason) when it could not be
/// read back, such as `1e400`. Text that opens like JSON (`{`, `[`, `"`) must
/// be JSON: a typo there is an error, never a silently stored string.
/// `'...'` is verbatim text.
pub fn parse_value(text: &str) -> Result<Doc, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("missing value".into());
    }
    match serde_json::from_str::<&RawValue>(text) {
        Ok(_) => json_doc(text),
        Err(e) => {
            if let Some(first) = text.chars().next().filter(|c| matches!(c, '{' | '[' | '"')) {
                let what = match first {
                    '{' => "object",
                    '[' => "array",
                    _ => "string",
                };
                let tip = if what == "string" {
                    "; for text with quotes inside, wrap it in single quotes: 'say \"hi\" twice'"
                } else {
                    ""
                };
                Err(format!("invalid JSON {what}: {e}{tip}"))
            } else if text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'') {
                Ok(Doc::from(Value::String(text[1..text.len() - 1].to_owned())))
            } else {
                Ok(Doc::from(Value::String(text.to_owned())))
            }
        }
    }
}

/// JSON text as the library's raw-text path takes it ([`Doc::parse`]),
/// after dropping the whitespace between tokens (a value that spans lines
/// would otherwise be re-encoded, losing its numbers' digits).
pub fn json_doc(text: &str) -> Result<Doc, String> {
    Doc::parse(&compact(text)).map_err(|e| e.to_string())
}

/// Valid JSON text without the whitespace between its tokens (strings untouched).
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::parser::testing::{fails, ok, set};
    use serde_json::json;

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
    fn watch_takes_a_prefix_and_numbers() {
        assert_eq!(ok("watch"), Command::Watch { prefix: String::new(), from: None, count: None });
        assert_eq!(
            ok("watch user: --from 12 --count 3"),
            Command::Watch { prefix: "user:".into(), from: Some(12), count: Some(3) }
        );
        assert_eq!(ok("watch --count 1 a"), Command::Watch { prefix: "a".into(), from: None, count: Some(1) });
        assert!(fails("watch --from").message.contains("needs a number"));
        assert!(fails("watch --count x").message.contains("not a number"));
        assert!(fails("watch a b").message.contains("unexpected `b`"));
    }

    #[test]
    fn ttls_and_expiry_commands() {
        let with = |value: Value, only_if, ttl: u64| Command::Set {
            key: "k".into(),
            value: Doc::from(value),
            only_if,
            ttl: Some(Duration::from_millis(ttl)),
        };
        assert_eq!(ok("set k 1 --ttl 10s"), with(json!(1), None, 10_000));
        assert_eq!(ok("set k two words --ttl 5m"), with(json!("two words"), None, 300_000));
        assert_eq!(ok("set k 1 --ttl 2h --if-absent"), with(json!(1), Some(SetIf::Absent), 7_200_000));
        assert_eq!(ok("set k 1 --if-seq 4 --ttl 1d"), with(json!(1), Some(SetIf::Seq(4)), 86_400_000));
        assert_eq!(ok("set k 1 --ttl 250ms"), with(json!(1), None, 250));
        assert_eq!(ok("set k 1 --ttl 7"), with(json!(1), None, 7_000));
        assert_eq!(ok("set k \"x --ttl 5s\""), set("k", json!("x --ttl 5s")));
        assert!(fails("set k 1 --ttl").message.contains("needs a duration"));
        assert!(fails("set k 1 --ttl 5y").message.contains("not a duration"));
        assert!(fails("set k 1 --ttl -5s").message.contains("not a duration"));
        assert!(fails("set k --ttl 5s").message.contains("missing value"));
        assert_eq!(ok("expire k 10m"), Command::Expire { key: "k".into(), ttl: Duration::from_secs(600) });
        assert!(fails("expire k").message.contains("missing duration"));
        assert!(fails("expire k 10 m").message.contains("unexpected"));
        assert_eq!(ok("ttl \"my key\""), Command::Ttl { key: "my key".into() });
        assert_eq!(ok("persist k"), Command::Persist { key: "k".into() });
        assert!(fails("ttl").message.contains("missing key"));
        assert!(fails(&format!("set k 1 --ttl {}d", u64::MAX)).message.contains("too long"));
    }

    #[test]
    fn conditional_sets_incr_and_seq() {
        let cond = |key: &str, value: Value, only_if| Command::Set {
            key: key.into(),
            value: Doc::from(value),
            only_if,
            ttl: None,
        };
        assert_eq!(ok("set k 1 --if-absent"), cond("k", json!(1), Some(SetIf::Absent)));
        assert_eq!(ok("set k {\"a\": 1} --if-seq 42"), cond("k", json!({"a": 1}), Some(SetIf::Seq(42))));
        assert_eq!(ok("set k two words --if-absent"), cond("k", json!("two words"), Some(SetIf::Absent)));
        // Quoted, the words are the value.
        assert_eq!(ok("set k \"x --if-absent\""), set("k", json!("x --if-absent")));
        assert!(fails("set k 1 --if-seq x").message.contains("sequence number"));
        assert!(fails("set k 1 --if-seq").message.contains("sequence number"));
        assert!(fails("set k --if-absent").message.contains("missing value"));
        assert_eq!(ok("incr hits"), Command::Incr { key: "hits".into(), by: 1 });
        assert_eq!(ok("incr hits -5"), Command::Incr { key: "hits".into(), by: -5 });
        assert!(fails("incr hits 1.5").message.contains("whole number"));
        assert_eq!(ok("last-seq hits"), Command::Seq { key: "hits".into() });
    }

    #[test]
    fn json_values_keep_their_type() {
        assert_eq!(ok("set n 42"), set("n", json!(42)));
        assert_eq!(
            ok("set n -1.5e3"),
            Command::Set { key: "n".into(), value: Doc::parse("-1.5e3").unwrap(), only_if: None, ttl: None }
        );
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
    fn json_values_keep_their_text_and_refuse_what_cannot_read_back() {
        let text = |line: &str| match ok(line) {
            Command::Set { value, .. } => value.as_str().to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(text("set n 12345678901234567890123"), "12345678901234567890123");
        assert_eq!(text("set o { \"b\" : 1.50, \"a\": [ 1 ,2 ] }"), "{\"b\":1.50,\"a\":[1,2]}");
        assert_eq!(
            text("set o {\n \"n\": 12345678901234567890123,\n \"s\": \"a  b\"\n}"),
            "{\"n\":12345678901234567890123,\"s\":\"a  b\"}"
        );
        assert!(fails("set n 1e400").message.contains("read back"), "{}", fails("set n 1e400"));
        let reserved = fails("set r {\"$serde_json::private::RawValue\": \"1\"}");
        assert!(reserved.message.contains("$serde_json::private::"), "{reserved}");
        assert!(fails("find n 1e400").message.contains("read back"));
    }

    #[test]
    fn one_shot_words_parse_like_the_line() {
        let args = |words: &[&str]| parse_args(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>());
        assert_eq!(
            args(&["set", "my key", "hello", "big", "world"]),
            Ok(Some(set("my key", json!("hello big world"))))
        );
        assert_eq!(args(&["set", "k", "{\"a\": 1}"]), Ok(Some(set("k", json!({"a": 1})))));
        assert_eq!(
            args(&["find", "tags.0 admin"]),
            Ok(Some(Command::Find(Find::Equals { field: "tags.0".into(), value: json!("admin") })))
        );
        assert_eq!(
            args(&["index", "email", "unique"]),
            Ok(Some(Command::Index { field: "email".into(), unique: true, ordered: false }))
        );
        assert_eq!(args(&["rm", "\"q\""]), Ok(Some(Command::Delete { key: "\"q\"".into() })));
        assert_eq!(args(&["get", ""]), Ok(Some(Command::Get { key: "".into() })));
        assert!(args(&["get", "a", "b"]).is_err());
        assert_eq!(
            args(&["verify", "--file", "x", "--json"]),
            Ok(Some(Command::Verify { file: Some("x".into()), json: true }))
        );
        assert!(args(&["verify", "x", "--file", "y"]).is_err());
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
        assert_eq!(ok("list"), Command::List { pattern: None, range: KeyRange::default() });
        assert_eq!(
            ok("list user:"),
            Command::List { pattern: Some(Pattern::Prefix("user:".into())), range: KeyRange::default() }
        );
        assert_eq!(ok("count user:*"), Command::Count { pattern: Some(Pattern::Glob("user:*".into())) });
        assert_eq!(
            ok("list \"a b\""),
            Command::List { pattern: Some(Pattern::Prefix("a b".into())), range: KeyRange::default() }
        );
    }

    #[test]
    fn list_takes_a_limit_and_a_resume_point_in_any_order() {
        let range = |limit, after: Option<&str>, from: Option<&str>, to: Option<&str>| KeyRange {
            limit,
            after: after.map(Into::into),
            from: from.map(Into::into),
            to: to.map(Into::into),
        };
        let prefix = |p: &str| Some(Pattern::Prefix(p.into()));
        assert_eq!(
            ok("list user: --limit 100 --after user:0420"),
            Command::List { pattern: prefix("user:"), range: range(Some(100), Some("user:0420"), None, None) }
        );
        assert_eq!(
            ok("list --after \"a b\" --limit 2 user:"),
            Command::List { pattern: prefix("user:"), range: range(Some(2), Some("a b"), None, None) }
        );
        assert_eq!(
            ok("ls --from a --to m"),
            Command::List { pattern: None, range: range(None, None, Some("a"), Some("m")) }
        );
        assert!(fails("list --limit").message.contains("--limit"));
        assert!(fails("list --limit x").message.contains("whole number"));
        assert!(fails("list --limit -1").message.contains("whole number"));
        assert!(fails("list --after").message.contains("needs a key"));
        assert!(fails("list --after a --from b").message.contains("not both"));
        assert!(fails("list --frobnicate").message.contains("unknown flag"));
        assert!(fails("list a b").message.contains("unexpected `b`"));
        assert_eq!(fails("list --limit x").usage, Some("list [prefix] [--limit N] [--after KEY]"));
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
        assert_eq!(ok("index name"), Command::Index { field: "name".into(), unique: false, ordered: false });
        assert_eq!(ok("index email unique"), Command::Index { field: "email".into(), unique: true, ordered: false });
        assert_eq!(ok("index email --unique"), Command::Index { field: "email".into(), unique: true, ordered: false });
        assert_eq!(ok("index age ordered"), Command::Index { field: "age".into(), unique: false, ordered: true });
        assert!(fails("index email uniq").message.contains("expected `unique` or `ordered`"));
        assert!(fails("index age ordered unique").message.contains("unique"));
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
        assert_eq!(ok("export"), Command::Export { path: None, lines: false, force: false });
        assert_eq!(ok("export --lines"), Command::Export { path: None, lines: true, force: false });
        assert_eq!(
            ok("export d.jsonl --force --lines"),
            Command::Export { path: Some("d.jsonl".into()), lines: true, force: true }
        );
        assert_eq!(ok("begin"), Command::Begin);
        assert_eq!(ok("COMMIT"), Command::Commit);
        assert_eq!(ok("rollback"), Command::Rollback);
        assert_eq!(ok("repair --dry-run"), Command::Repair { dry_run: true });
        assert_eq!(ok("compact"), Command::Compact);
        assert_eq!(ok("import d.json"), Command::Import { path: "d.json".into(), replace: false });
        assert_eq!(ok("import --replace d.json"), Command::Import { path: "d.json".into(), replace: true });
        assert!(fails("import").message.contains("missing file"));
        assert!(fails("import a b").message.contains("unexpected `b`"));
    }

    #[test]
    fn rendered_commands_parse_back() {
        for line in [
            "set \"a key\" {\"n\": 12345678901234567890123}",
            "set k hello world",
            "get '#hash'",
            "delete \"\"",
            "index address.city unique",
            "drop-index tags.0",
            "clear --yes",
            "prune-backups 3",
        ] {
            let command = ok(line);
            let again = command.render().unwrap_or_default();
            assert_eq!(ok(&again), command, "{line} -> {again}");
        }
    }
}
