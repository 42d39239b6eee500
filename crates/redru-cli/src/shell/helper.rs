//! The rustyline helper: Tab completion (command names, existing keys,
//! indexed fields) and usage hints as you type. Its validator accepts every
//! line: a JSON value that stays open continues in the loop instead
//! (`repl`), behind a `...> ` prompt that rustyline could not show.
//!
//! The logic is in pure functions over a [`Source`] of keys and fields, so it
//! is unit-tested without a terminal or a database; the session's store (a
//! local directory or a server) is the source in the shell.

use std::borrow::Cow;
use std::sync::Arc;

use redru::Db;
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hint, Hinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use crate::output::{paint, sgr};
use crate::shell::parser::{Arg, COMMANDS, quote_key, spec};
use crate::store::Store;

/// At most this many keys are offered by one Tab.
const MAX_CANDIDATES: usize = 500;

/// Where completions come from.
pub trait Source {
    /// Sorted keys starting with `prefix`, at most `limit`.
    fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Vec<String>;
    /// The indexed field paths.
    fn indexed_fields(&self) -> Vec<String>;
    /// The backup names.
    fn backup_names(&self) -> Vec<String>;
}

impl Source for Db {
    fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Vec<String> {
        self.scan_prefix(prefix).into_iter().take(limit).map(|(k, _)| k).collect()
    }
    fn indexed_fields(&self) -> Vec<String> {
        self.indexes().into_iter().map(|i| i.field).collect()
    }
    fn backup_names(&self) -> Vec<String> {
        self.backups().map(|b| b.into_iter().map(|b| b.name).collect()).unwrap_or_default()
    }
}

/// The shell's rustyline helper.
pub struct ShellHelper {
    store: Arc<dyn Store>,
    files: FilenameCompleter,
    color: bool,
    prompt: String,
}

impl ShellHelper {
    /// A helper completing from `store`; `color` paints the prompt and hints.
    pub fn new(store: Arc<dyn Store>, color: bool, prompt: &str) -> Self {
        ShellHelper { store, files: FilenameCompleter::new(), color, prompt: paint("1;32", prompt, color) }
    }
}

impl Helper for ShellHelper {}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        match complete(&*self.store, line, pos) {
            Some(found) => Ok(found),
            None => self.files.complete_path(line, pos),
        }
    }
}

/// A usage hint: shown dimmed after the cursor; the right arrow accepts only
/// the rest of a command name, never the placeholders.
pub struct UsageHint {
    display: String,
    completion: Option<String>,
}

impl Hint for UsageHint {
    fn display(&self) -> &str {
        &self.display
    }
    fn completion(&self) -> Option<&str> {
        self.completion.as_deref()
    }
}

impl Hinter for ShellHelper {
    type Hint = UsageHint;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<UsageHint> {
        hint(line, pos)
    }
}

impl Highlighter for ShellHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(&'s self, prompt: &'p str, default: bool) -> Cow<'b, str> {
        if default && self.color { Cow::Borrowed(&self.prompt) } else { Cow::Borrowed(prompt) }
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.color { Cow::Owned(paint(sgr::DIM, hint, true)) } else { Cow::Borrowed(hint) }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        false
    }
}

impl Validator for ShellHelper {
    fn validate(&self, _ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(ValidationResult::Valid(None))
    }
}

/// The words before the cursor.
#[derive(Debug, PartialEq, Eq)]
struct Words {
    /// Finished words (unquoted).
    done: Vec<String>,
    /// The word under the cursor: its start and its text so far (quote
    /// included); empty when the cursor follows whitespace.
    current_start: usize,
    current: String,
}

fn words(before: &str) -> Words {
    let mut done = Vec::new();
    let mut current = String::new();
    let mut start = before.len();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for (i, c) in before.char_indices() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if in_word {
                    done.push(unquote(&current));
                    current.clear();
                    in_word = false;
                }
            }
            None => {
                if !in_word {
                    in_word = true;
                    start = i;
                    if c == '"' || c == '\'' {
                        quote = Some(c);
                    }
                }
                current.push(c);
            }
        }
    }
    if !in_word {
        start = before.len();
    }
    Words { done, current_start: start, current }
}

fn unquote(word: &str) -> String {
    if word.len() >= 2 && word.starts_with('"') && word.ends_with('"') {
        serde_json::from_str(word).unwrap_or_else(|_| word[1..word.len() - 1].to_owned())
    } else if word.len() >= 2 && word.starts_with('\'') && word.ends_with('\'') {
        word[1..word.len() - 1].to_owned()
    } else {
        word.to_owned()
    }
}

/// Completion at `pos`: (start of the replaced text, candidates), or `None`
/// where a file path is expected (the caller completes file names).
pub fn complete(source: &dyn Source, line: &str, pos: usize) -> Option<(usize, Vec<Pair>)> {
    let before = &line[..pos.min(line.len())];
    let w = words(before);
    let start = w.current_start;
    let Some(command) = w.done.first() else {
        return Some((start, command_names(&w.current)));
    };
    let Some(spec) = spec(command) else { return Some((start, Vec::new())) };
    // Only the first argument is completed: later ones are values.
    if w.done.len() != 1 {
        return Some((start, Vec::new()));
    }
    let candidates = match spec.arg {
        Arg::Key | Arg::NewKey | Arg::Pattern => {
            let (quote, prefix) = match w.current.chars().next() {
                Some(q @ ('"' | '\'')) => (Some(q), &w.current[1..]),
                _ => (None, w.current.as_str()),
            };
            source
                .keys_with_prefix(prefix, MAX_CANDIDATES)
                .into_iter()
                .map(|key| {
                    let replacement = match quote {
                        Some('\'') if !key.contains('\'') => format!("'{key}' "),
                        Some(_) => format!("{} ", serde_json::to_string(&key).unwrap_or_else(|_| quote_key(&key))),
                        None => format!("{} ", quote_key(&key)),
                    };
                    Pair { display: key, replacement }
                })
                .collect()
        }
        Arg::IndexedField => source
            .indexed_fields()
            .into_iter()
            .filter(|f| f.starts_with(w.current.as_str()))
            .map(|f| Pair { replacement: format!("{f} "), display: f })
            .collect(),
        Arg::Command => command_names(&w.current),
        Arg::Backup => source
            .backup_names()
            .into_iter()
            .filter(|b| b.starts_with(w.current.as_str()))
            .map(|b| Pair { replacement: format!("{b} "), display: b })
            .collect(),
        Arg::File => return None,
        Arg::Field | Arg::None => Vec::new(),
    };
    Some((start, candidates))
}

fn command_names(prefix: &str) -> Vec<Pair> {
    let prefix = prefix.to_ascii_lowercase();
    COMMANDS
        .iter()
        .filter(|s| s.name.starts_with(prefix.as_str()))
        .map(|s| Pair { display: s.name.to_owned(), replacement: format!("{} ", s.name) })
        .collect()
}

/// The usage still to type, shown after the cursor at the end of a one-line input.
fn hint(line: &str, pos: usize) -> Option<UsageHint> {
    if pos < line.len() || line.contains('\n') {
        return None;
    }
    let w = words(line);
    let Some(command) = w.done.first() else {
        // Typing the command name: complete it when only one command fits.
        if w.current.is_empty() {
            return None;
        }
        let prefix = w.current.to_ascii_lowercase();
        let mut fits = COMMANDS.iter().filter(|s| s.name.starts_with(prefix.as_str()));
        let (Some(only), None) = (fits.next(), fits.next()) else { return None };
        let rest = &only.name[prefix.len()..];
        let args = only.args.join(" ");
        let display = if args.is_empty() { rest.to_owned() } else { format!("{rest} {args}") };
        return (!display.is_empty()).then(|| UsageHint { display, completion: Some(rest.to_owned()) });
    };
    let spec = spec(command)?;
    let typed = w.done.len() - 1 + usize::from(!w.current.is_empty());
    // `set`'s value and `find`'s value take the rest of the line.
    let remaining = spec.args.get(typed..)?;
    if remaining.is_empty() || !w.current.is_empty() {
        return None;
    }
    Some(UsageHint { display: remaining.join(" "), completion: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        keys: Vec<&'static str>,
        fields: Vec<&'static str>,
    }

    impl Source for Fake {
        fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Vec<String> {
            self.keys.iter().filter(|k| k.starts_with(prefix)).take(limit).map(|k| k.to_string()).collect()
        }
        fn indexed_fields(&self) -> Vec<String> {
            self.fields.iter().map(|f| f.to_string()).collect()
        }
        fn backup_names(&self) -> Vec<String> {
            vec!["backup-1.json".into(), "backup-2.json".into()]
        }
    }

    fn fake() -> Fake {
        Fake { keys: vec!["alpha", "alpine", "beta", "my key"], fields: vec!["name", "address.city"] }
    }

    fn replacements(line: &str) -> (usize, Vec<String>) {
        let (start, pairs) = complete(&fake(), line, line.len()).unwrap_or((usize::MAX, Vec::new()));
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_command_names() {
        assert_eq!(replacements("se"), (0, vec!["set ".to_string()]));
        assert_eq!(replacements("  g"), (2, vec!["get ".to_string()]));
        let (_, all) = replacements("");
        assert_eq!(all.len(), COMMANDS.len());
        assert_eq!(replacements("d").1, ["delete ", "drop-index "]);
        assert_eq!(replacements("help dr"), (5, vec!["drop-index ".to_string()]));
    }

    #[test]
    fn completes_keys_quoting_them_when_needed() {
        assert_eq!(replacements("get al"), (4, vec!["alpha ".to_string(), "alpine ".to_string()]));
        assert_eq!(replacements("GET b"), (4, vec!["beta ".to_string()]));
        assert_eq!(replacements("delete m"), (7, vec!["\"my key\" ".to_string()]));
        assert_eq!(replacements("get \"my"), (4, vec!["\"my key\" ".to_string()]));
        assert_eq!(replacements("get 'my"), (4, vec!["'my key' ".to_string()]));
        assert_eq!(replacements("set alp").1.len(), 2);
        assert_eq!(replacements("list a").1.len(), 2);
        // A value is not completed, nor a second word.
        assert!(replacements("set alpha al").1.is_empty());
        assert!(replacements("get alpha ").1.is_empty());
        assert!(replacements("stats ").1.is_empty());
    }

    #[test]
    fn completes_indexed_fields_after_find() {
        assert_eq!(replacements("find n"), (5, vec!["name ".to_string()]));
        assert_eq!(replacements("find ").1, ["name ", "address.city "]);
        assert_eq!(replacements("drop-index ad").1, ["address.city "]);
        assert!(replacements("find name Al").1.is_empty());
    }

    #[test]
    fn completes_backups_and_leaves_files_to_the_caller() {
        assert_eq!(
            replacements("restore backup-"),
            (8, vec!["backup-1.json ".to_string(), "backup-2.json ".to_string()])
        );
        assert!(complete(&fake(), "import da", 9).is_none());
        assert!(complete(&fake(), "backup ", 7).is_none());
    }

    #[test]
    fn hints_show_the_usage_left_to_type() {
        let h = |line: &str| hint(line, line.len()).map(|h| (h.display, h.completion));
        assert_eq!(h("se"), Some(("t <key> <value>".into(), Some("t".into()))));
        assert_eq!(h("set "), Some(("<key> <value>".into(), None)));
        assert_eq!(h("set k "), Some(("<value>".into(), None)));
        assert_eq!(h("set k"), None);
        assert_eq!(h("set k v"), None);
        assert_eq!(h("get "), Some(("<key>".into(), None)));
        assert_eq!(h("sta"), Some(("ts".into(), Some("ts".into()))));
        assert_eq!(h("d"), None, "two commands start with d");
        assert_eq!(h("stats "), None);
        assert_eq!(h(""), None);
        assert_eq!(hint("set ", 2).map(|h| h.display), None, "cursor not at the end");
    }

    #[test]
    fn words_track_quotes() {
        let w = words("set \"a b\" 'c d");
        assert_eq!(w.done, ["set", "a b"]);
        assert_eq!(w.current, "'c d");
        assert_eq!(w.current_start, 10);
    }
}
