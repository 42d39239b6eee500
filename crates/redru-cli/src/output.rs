//! How results look: [`Format`] (`--format`) lays them out, JSON indented and
//! coloured for people, the stored text for programs.
//!
//! Invariants: no key can pass for another ([`raw_key`]); colour (hand-written
//! ANSI) only on a terminal without `NO_COLOR`, unless `--color` says otherwise.

use std::io::IsTerminal;

use clap::ValueEnum;
use serde_json::Value;

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Whether to colour a stream that is (or is not) a terminal.
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
            }
        }
    }
}

/// `--format`: how results (get, list, find, indexes, backups, stats) are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: indented JSON, quoted keys, aligned tables, notes. The default in a terminal.
    Table,
    /// For pipes: the stored JSON text, one key or entry per line, tab-separated columns.
    /// The default when stdout is not a terminal.
    Raw,
    /// One JSON document (an array of keys, an object of entries, ...).
    Json,
    /// One JSON value per line.
    Jsonl,
}

impl Format {
    /// The format asked for, or the default for stdout (table in a terminal, raw otherwise).
    pub fn or_default(asked: Option<Format>, stdout_is_terminal: bool) -> Format {
        asked.unwrap_or(if stdout_is_terminal { Format::Table } else { Format::Raw })
    }
}

/// A key for line-per-key output: as it is, unless it could be misread (it
/// is empty, holds a control character such as a line break or a tab, or
/// starts with `"`); then as a JSON string.
pub fn raw_key(key: &str) -> String {
    let ambiguous = key.is_empty() || key.starts_with('"') || key.chars().any(char::is_control);
    if ambiguous { quote(key) } else { key.to_owned() }
}

/// How values are written on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours.
    pub color: bool,
    /// Indented, multi-line JSON and human touches (`(no keys)`, table headers).
    pub pretty: bool,
}

impl Style {
    /// Compact, uncoloured: for pipes and scripts.
    pub const PLAIN: Style = Style { color: false, pretty: false };

    /// Pretty when stdout is a terminal; coloured as `choice` says.
    pub fn for_stdout(choice: ColorChoice) -> Style {
        let tty = std::io::stdout().is_terminal();
        Style { color: choice.enabled(tty), pretty: tty }
    }
}

/// SGR codes used.
pub mod sgr {
    /// Object keys.
    pub const KEY: &str = "1;34";
    /// Strings.
    pub const STRING: &str = "32";
    /// Numbers.
    pub const NUMBER: &str = "36";
    /// true / false.
    pub const BOOL: &str = "33";
    /// null, hints and other quiet text.
    pub const DIM: &str = "90";
    /// Errors.
    pub const ERROR: &str = "1;31";
    /// Warnings.
    pub const WARNING: &str = "1;33";
    /// Headings and the prompt.
    pub const BOLD: &str = "1";
}

/// `text` wrapped in an SGR code when `on`.
pub fn paint(code: &str, text: &str, on: bool) -> String {
    if on { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
}

/// A value as `style` wants it: the same bytes as serde_json's compact or
/// pretty form when colour is off.
pub fn json(value: &Value, style: Style) -> String {
    let mut out = String::new();
    write_json(&mut out, value, style, 0);
    out
}

/// A stored value as `style` wants it. Plain compact output is the stored
/// text itself (what scripts and pipes get); indented or coloured output is
/// laid out from that text's tokens, never through a `Value`, so members
/// keep their order and numbers their digits (`12345678901234567890123`
/// would print as `1.2345678901234568e22` from a `Value`).
pub fn doc(doc: &redru::Doc, style: Style) -> String {
    if !style.color && !style.pretty { doc.as_str().to_owned() } else { layout(doc.as_str(), style) }
}

/// Valid JSON text re-laid out token by token: the same bytes as
/// serde_json's compact or pretty form of the same members in the same order.
fn layout(text: &str, style: Style) -> String {
    let c = style.color;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0;
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        match ch {
            '{' | '[' => {
                let close = if ch == '{' { '}' } else { ']' };
                let after = rest[1..].trim_start();
                if after.starts_with(close) {
                    out.push(ch);
                    out.push(close);
                    rest = &after[1..];
                    continue;
                }
                out.push(ch);
                depth += 1;
                newline(&mut out, style, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, style, depth);
                out.push(ch);
            }
            ',' => {
                out.push(',');
                newline(&mut out, style, depth);
            }
            ':' => out.push_str(if style.pretty { ": " } else { ":" }),
            '"' => {
                let len = string_len(rest);
                let is_key = rest[len..].trim_start().starts_with(':');
                out.push_str(&paint(if is_key { sgr::KEY } else { sgr::STRING }, &rest[..len], c));
                rest = &rest[len..];
                continue;
            }
            c if c.is_ascii_whitespace() => {}
            _ => {
                let len = rest.find(|c: char| matches!(c, ',' | ']' | '}' | ':') || c.is_ascii_whitespace());
                let token = &rest[..len.unwrap_or(rest.len())];
                let code = match token {
                    "null" => sgr::DIM,
                    "true" | "false" => sgr::BOOL,
                    _ => sgr::NUMBER,
                };
                out.push_str(&paint(code, token, c));
                rest = &rest[token.len()..];
                continue;
            }
        }
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// The length of the JSON string token `text` starts with, quotes included.
fn string_len(text: &str) -> usize {
    let mut escaped = false;
    for (i, ch) in text.char_indices().skip(1) {
        match (escaped, ch) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return i + 1,
            _ => {}
        }
    }
    text.len()
}

fn write_json(out: &mut String, value: &Value, style: Style, depth: usize) {
    let c = style.color;
    match value {
        Value::Null => out.push_str(&paint(sgr::DIM, "null", c)),
        Value::Bool(b) => out.push_str(&paint(sgr::BOOL, if *b { "true" } else { "false" }, c)),
        Value::Number(n) => out.push_str(&paint(sgr::NUMBER, &n.to_string(), c)),
        Value::String(s) => out.push_str(&paint(sgr::STRING, &quote(s), c)),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, style, depth + 1);
                write_json(out, item, style, depth + 1);
            }
            newline(out, style, depth);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, style, depth + 1);
                out.push_str(&paint(sgr::KEY, &quote(k), c));
                out.push_str(if style.pretty { ": " } else { ":" });
                write_json(out, v, style, depth + 1);
            }
            newline(out, style, depth);
            out.push('}');
        }
    }
}

fn newline(out: &mut String, style: Style, depth: usize) {
    if style.pretty {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
}

/// `s` as a JSON string.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_output_is_serde_json_output() -> Result<(), serde_json::Error> {
        let v = json!({"name": "Al\"ice\n", "tags": [1, 2.5, null, true, {}, []], "nested": {"a": {"b": []}}});
        assert_eq!(json(&v, Style::PLAIN), serde_json::to_string(&v)?);
        assert_eq!(json(&v, Style { color: false, pretty: true }), serde_json::to_string_pretty(&v)?);
        Ok(())
    }

    #[test]
    fn stored_text_is_laid_out_like_serde_json_without_losing_digits() -> Result<(), Box<dyn std::error::Error>> {
        let v = json!({"name": "Al\"i:ce\n", "tags": [1, 2.5, null, true, {}, []], "nested": {"a": {"b": []}}});
        let d = redru::Doc::from(&v);
        let pretty = Style { color: false, pretty: true };
        assert_eq!(doc(&d, pretty), serde_json::to_string_pretty(&v)?);
        assert!(doc(&d, Style { color: true, pretty: true }).len() > doc(&d, pretty).len());
        let big = redru::Doc::parse("{\"n\":12345678901234567890123,\"a\":[1.50]}")?;
        assert_eq!(doc(&big, pretty), "{\n  \"n\": 12345678901234567890123,\n  \"a\": [\n    1.50\n  ]\n}");
        let coloured = doc(&big, Style { color: true, pretty: false });
        assert!(coloured.contains("\x1b[1;34m\"n\"\x1b[0m:\x1b[36m12345678901234567890123\x1b[0m"), "{coloured}");
        Ok(())
    }

    #[test]
    fn raw_keys_are_never_ambiguous() {
        assert_eq!(raw_key("user:1"), "user:1");
        assert_eq!(raw_key("my key"), "my key");
        assert_eq!(raw_key(""), "\"\"");
        assert_eq!(raw_key("two\nlines"), "\"two\\nlines\"");
        assert_eq!(raw_key("tab\there"), "\"tab\\there\"");
        assert_eq!(raw_key("\"quoted\""), "\"\\\"quoted\\\"\"");
    }

    #[test]
    fn colour_wraps_tokens_and_strips_back_to_plain() {
        let v = json!({"k": ["s", 1, false, null]});
        let coloured = json(&v, Style { color: true, pretty: false });
        assert!(coloured.contains("\x1b[1;34m\"k\"\x1b[0m"));
        assert!(coloured.contains("\x1b[32m\"s\"\x1b[0m"));
        assert!(coloured.contains("\x1b[36m1\x1b[0m"));
        let mut stripped = String::new();
        let mut in_escape = false;
        for ch in coloured.chars() {
            match (in_escape, ch) {
                (false, '\x1b') => in_escape = true,
                (true, 'm') => in_escape = false,
                (false, c) => stripped.push(c),
                _ => {}
            }
        }
        assert_eq!(stripped, json(&v, Style::PLAIN));
    }
}
