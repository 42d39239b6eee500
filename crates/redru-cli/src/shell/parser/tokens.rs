//! The tokenizer: [`Cursor`] reads words (`"..."` with JSON escapes, `'...'`
//! verbatim, or bare), [`quote_key`] writes a key back, and [`is_incomplete`]
//! decides when the input needs another line.
//!
//! Invariants: `quote_key` round-trips through `Cursor::word`; only an open
//! `{`/`[` or `"` holds the input open, never a `'`.

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
    pub(super) fn bare_word(&mut self) -> &'a str {
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
    fn quote_key_round_trips() {
        for key in ["plain", "my key", "", "\"q", "'s", "#tag", "tab\there", "été"] {
            let line = format!("get {}", quote_key(key));
            assert_eq!(ok(&line), Command::Get { key: key.into() }, "{line}");
        }
        assert_eq!(quote_key("user:1"), "user:1");
    }
}
