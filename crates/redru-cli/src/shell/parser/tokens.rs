//! The tokenizer: [`Cursor`] reads words from a typed line or a one-shot
//! command's arguments, [`quote_key`] writes a key back, [`is_incomplete`]
//! and [`Brackets`] decide when the input needs another line.
//!
//! Invariants: `quote_key` round-trips through `Cursor::word`; only a value
//! opening with `{`, `[` or `"` ever holds the input open.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::parse::looks_like_query;
use super::table::spec;

/// Whether more lines are needed: the command's value opens with `{`, `[` or
/// `"` and everything typed so far is the beginning of a JSON value that has
/// not ended yet. `set height 5" tall` and `list [a` are complete lines.
pub fn is_incomplete(text: &str) -> bool {
    open_value(text).is_some_and(json_is_open)
}

/// The value of a `set` or `find <field> <value>` command when it opens like JSON.
pub fn open_value(text: &str) -> Option<&str> {
    let mut cur = Cursor::new(text);
    cur.skip_ws();
    if cur.rest().starts_with('#') {
        return None;
    }
    let name = cur.bare_word();
    match spec(&name)?.name {
        "set" => {}
        "find" if !looks_like_query(&cur.rest()) => {}
        _ => return None,
    }
    cur.word().ok()??;
    let Cow::Borrowed(rest) = cur.rest() else { return None };
    let value = rest.trim_start();
    value.starts_with(['{', '[', '"']).then_some(value)
}

/// Whether `text` is JSON cut short: valid so far, but the input ended inside it.
fn json_is_open(text: &str) -> bool {
    matches!(serde_json::from_str::<&RawValue>(text), Err(e) if e.is_eof())
}

/// The brackets and string of a JSON value that spans lines, followed line
/// by line (so a long pasted document costs one pass, not one per line).
#[derive(Clone, Copy, Debug, Default)]
pub struct Brackets {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Brackets {
    /// Follows `text`.
    pub fn scan(&mut self, text: &str) {
        for c in text.chars() {
            if self.in_string {
                match (self.escaped, c) {
                    (true, _) => self.escaped = false,
                    (false, '\\') => self.escaped = true,
                    (false, '"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => self.in_string = true,
                '{' | '[' => self.depth += 1,
                '}' | ']' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
    }

    /// Whether every bracket and string opened so far is closed.
    pub fn closed(&self) -> bool {
        self.depth == 0 && !self.in_string
    }
}

/// Whether `line` starts with a command name: such a line never continues
/// an open value (no JSON line starts with a bare word like `set`).
pub fn starts_command(line: &str) -> bool {
    line.split_whitespace().next().is_some_and(|word| spec(word).is_some())
}

/// Quotes a key for the shell when it needs it (spaces, quotes, empty, `#`).
pub fn quote_key(key: &str) -> String {
    let plain = !key.is_empty()
        && !key.starts_with(['"', '\'', '#'])
        && !key.chars().any(|c| c.is_whitespace() || c.is_control());
    if plain { key.to_owned() } else { serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}")) }
}

/// What a [`Cursor`] reads: a typed line, or the words of a one-shot
/// command line, which the user's shell has already split and unquoted.
#[derive(Clone, Copy)]
enum Source<'a> {
    Text(&'a str),
    Args(&'a [String]),
}

/// A position in a line (or in a command line's arguments), for reading words.
pub struct Cursor<'a> {
    source: Source<'a>,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// At the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Cursor { source: Source::Text(text), pos: 0 }
    }

    /// At the first of `args`: each is one word, taken as it is (no quotes
    /// are read); the rest of the line is the remaining words joined by spaces.
    pub fn from_args(args: &'a [String]) -> Self {
        Cursor { source: Source::Args(args), pos: 0 }
    }

    /// Skips whitespace (newlines included).
    pub fn skip_ws(&mut self) {
        if let Source::Text(text) = self.source {
            let rest = &text[self.pos..];
            self.pos += rest.len() - rest.trim_start().len();
        }
    }

    /// Whether nothing is left.
    pub fn at_end(&self) -> bool {
        match self.source {
            Source::Text(text) => self.pos >= text.len(),
            Source::Args(args) => self.pos >= args.len(),
        }
    }

    /// The text not read yet.
    pub fn rest(&self) -> Cow<'a, str> {
        match self.source {
            Source::Text(text) => Cow::Borrowed(&text[self.pos..]),
            Source::Args(args) => Cow::Owned(args.get(self.pos..).unwrap_or_default().join(" ")),
        }
    }

    /// A word up to whitespace, without quote handling.
    pub(super) fn bare_word(&mut self) -> Cow<'a, str> {
        match self.source {
            Source::Text(text) => {
                self.skip_ws();
                let rest = &text[self.pos..];
                let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
                self.pos += len;
                Cow::Borrowed(&rest[..len])
            }
            Source::Args(args) => {
                let word = args.get(self.pos).map(String::as_str).unwrap_or_default();
                self.pos += 1;
                Cow::Borrowed(word)
            }
        }
    }

    /// The next word, unquoted: `"..."` (JSON escapes), `'...'` (verbatim) or
    /// bare. `Ok(None)` at the end.
    pub fn word(&mut self) -> Result<Option<String>, String> {
        let Source::Text(text) = self.source else {
            return Ok((!self.at_end()).then(|| self.bare_word().into_owned()));
        };
        self.skip_ws();
        let rest = &text[self.pos..];
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
            return Ok(Some(self.bare_word().into_owned()));
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
    use crate::shell::parser::Command;
    use crate::shell::parser::testing::{fails, ok, set};
    use serde_json::json;

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
    fn incomplete_while_a_json_value_is_open() {
        assert!(is_incomplete("set k {"));
        assert!(is_incomplete("set k ["));
        assert!(is_incomplete("find tags [\"a\","));
        assert!(is_incomplete("set 'my key' {\"a\":\n  1"));
        assert!(is_incomplete("set k {\"a\": [1,"));
        assert!(is_incomplete("set k \"open"));
        assert!(is_incomplete("set k {\"a\": \"}\""));
        assert!(is_incomplete("set k \"esc \\\" still open"));
        assert!(!is_incomplete("set k {\"a\": \"}\"}"));
        assert!(!is_incomplete("set k {\"a\": [1, 2]}"));
        assert!(!is_incomplete("set note it's fine"));
        assert!(!is_incomplete("set k }"));
        assert!(!is_incomplete("get k"));
        // A stray quote or bracket that does not open the value never holds the line.
        assert!(!is_incomplete("set height 5\" tall"));
        assert!(!is_incomplete("list [a"));
        assert!(!is_incomplete("get \"open"));
        assert!(!is_incomplete("find name = {"));
        assert!(!is_incomplete("set k {\"a\": 1,, "), "no longer JSON: complete, and an error");
        assert!(!is_incomplete("# set k {"));
        assert!(starts_command("  set b 2") && starts_command("GET b") && !starts_command("\"a\": 1"));
        assert!(!starts_command("true]") && !starts_command(""));
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
