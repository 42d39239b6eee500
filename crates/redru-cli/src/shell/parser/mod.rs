//! The shell's command language: one line (or a multi-line JSON value) -> [`Command`].
//!
//! Pure: no I/O, no database, no rustyline, so every rule is unit-tested beside it.
//! The first word names the command (any case); a key is one word or is quoted
//! (`"..."` with JSON escapes, `'...'` verbatim); a value is the rest of the
//! line: JSON when it parses, plain text otherwise, and an error when it opens
//! like JSON (`{`, `[`, `"`) but is not valid JSON.
//!
//! Split by concern (as ripgrep splits `flags/`); the rest of the crate imports
//! only the re-exports below, as `parser::parse`, `parser::Command`, ...:
//! - `command`: the [`Command`] model (with [`Find`]).
//! - `table`: the command table, [`COMMANDS`]: names, aliases, usage, help text.
//! - `tokens`: the tokenizer ([`Cursor`], [`quote_key`]) and the multi-line rule, [`is_incomplete`].
//! - `glob`: [`Pattern`], prefix and glob matching of keys.
//! - `parse`: [`parse`](fn@parse) and [`parse_args`] themselves, built on the four above.
//! - `joiner`: [`Joiner`], lines to command texts (a JSON value may span lines).

mod command;
mod glob;
mod joiner;
mod parse;
mod table;
mod tokens;

pub use self::command::{Command, Find, KeyRange, SetIf};
pub use self::glob::Pattern;
pub use self::joiner::{Joiner, Piece};
pub use self::parse::{ParseError, json_doc, looks_like_query, parse, parse_args, parse_find, parse_value};
pub use self::table::{Arg, COMMANDS, Place, Spec, spec};
pub use self::tokens::{Cursor, is_incomplete, quote_key};

/// Helpers the submodules' tests share.
#[cfg(test)]
mod testing {
    use serde_json::Value;

    use super::{Command, ParseError, parse};

    pub(super) fn ok(line: &str) -> Command {
        match parse(line) {
            Ok(Some(c)) => c,
            other => panic!("{line:?} -> {other:?}"),
        }
    }

    pub(super) fn fails(line: &str) -> ParseError {
        match parse(line) {
            Err(e) => e,
            other => panic!("{line:?} should fail, got {other:?}"),
        }
    }

    pub(super) fn set(key: &str, value: Value) -> Command {
        Command::Set { key: key.into(), value: redru::Doc::from(value), only_if: None, ttl: None }
    }
}
