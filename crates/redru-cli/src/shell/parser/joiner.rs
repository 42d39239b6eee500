//! [`Joiner`]: lines in, command texts out (with the line each starts on),
//! for the shell, a paste and a script alike.
//!
//! Invariant: an unclosed value costs its own command ([`Piece::Unfinished`]),
//! never the lines after it; each line is scanned once.

use super::tokens::{Brackets, is_incomplete, open_value, starts_command};

/// What the lines fed so far add up to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A command's text (a blank line or a comment is one too: it parses to nothing).
    Command {
        /// The text, lines joined with `\n`.
        text: String,
        /// The line it starts on (1-based).
        line: usize,
    },
    /// A command whose JSON value never closed.
    Unfinished {
        /// The text it had.
        text: String,
        /// The line it starts on.
        line: usize,
        /// Why it ended: the input ended, or the line that starts the next command.
        ended_by: Option<usize>,
    },
}

impl Piece {
    /// The line the piece starts on.
    pub fn line(&self) -> usize {
        match self {
            Piece::Command { line, .. } | Piece::Unfinished { line, .. } => *line,
        }
    }
}

impl std::fmt::Display for Piece {
    /// The error an unfinished command is (a complete one shows its text);
    /// `{:#}` names the line that ended it (a script's lines have numbers, a shell session's do not).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Piece::Command { text, .. } => f.write_str(text),
            Piece::Unfinished { ended_by, .. } => {
                f.write_str("unfinished value: the JSON value that opens it is never closed ")?;
                match ended_by {
                    Some(next) if f.alternate() => write!(f, "(line {next} starts the next command)"),
                    Some(_) => f.write_str("(the next command starts first)"),
                    None => f.write_str("(the input ends first)"),
                }
            }
        }
    }
}

/// Gathers lines into commands.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: String,
    brackets: Brackets,
    first: usize,
    line: usize,
}

impl Joiner {
    /// Nothing read yet.
    pub fn new() -> Joiner {
        Joiner::default()
    }

    /// Whether a value is open (a terminal shows the continuation prompt).
    pub fn is_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The number of the last line fed.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Feeds one line (without its line break); returns the pieces it completes, in order.
    pub fn push(&mut self, line: &str) -> Vec<Piece> {
        self.line += 1;
        let mut done = Vec::new();
        if self.is_pending() {
            if !starts_command(line) {
                self.pending.push('\n');
                self.pending.push_str(line);
                self.brackets.scan("\n");
                self.brackets.scan(line);
                if self.brackets.closed() {
                    done.push(Piece::Command { text: std::mem::take(&mut self.pending), line: self.first });
                }
                return done;
            }
            done.extend(self.unfinished(Some(self.line)));
        }
        if is_incomplete(line) {
            self.pending = line.to_owned();
            self.brackets = Brackets::default();
            self.brackets.scan(open_value(line).unwrap_or_default());
            self.first = self.line;
        } else {
            done.push(Piece::Command { text: line.to_owned(), line: self.line });
        }
        done
    }

    /// Counts a line that could not be read (invalid UTF-8): it ends an open value.
    pub fn skip(&mut self) -> Option<Piece> {
        self.line += 1;
        self.unfinished(Some(self.line))
    }

    /// The end of the input: an open value is unfinished.
    pub fn finish(&mut self) -> Option<Piece> {
        self.unfinished(None)
    }

    fn unfinished(&mut self, ended_by: Option<usize>) -> Option<Piece> {
        self.is_pending().then(|| Piece::Unfinished {
            text: std::mem::take(&mut self.pending),
            line: self.first,
            ended_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Vec<Piece> {
        let mut joiner = Joiner::new();
        let mut out: Vec<Piece> = lines.iter().flat_map(|l| joiner.push(l)).collect();
        out.extend(joiner.finish());
        out
    }

    fn command(text: &str, line: usize) -> Piece {
        Piece::Command { text: text.into(), line }
    }

    #[test]
    fn one_line_one_command_even_with_stray_quotes_and_brackets() {
        assert_eq!(
            feed(&["set height 5\" tall", "set b 2", "list [a", "get b"]),
            [command("set height 5\" tall", 1), command("set b 2", 2), command("list [a", 3), command("get b", 4)]
        );
    }

    #[test]
    fn an_open_value_continues_until_it_closes() {
        assert_eq!(
            feed(&["set doc {", "  \"a\": [1,", "  2]", "}", "get doc"]),
            [command("set doc {\n  \"a\": [1,\n  2]\n}", 1), command("get doc", 5)]
        );
    }

    #[test]
    fn an_unclosed_value_costs_one_command() {
        let unfinished = |ended_by| Piece::Unfinished { text: "set k {\"a\": 1".into(), line: 1, ended_by };
        assert_eq!(feed(&["set k {\"a\": 1", "set b 2"]), [unfinished(Some(2)), command("set b 2", 2)]);
        assert_eq!(feed(&["set k {\"a\": 1"]), [unfinished(None)]);
        // A line that breaks the JSON but is no command goes on until the brackets close: the parser
        // reports the JSON error.
        assert_eq!(feed(&["set k {", "oops }", "get k"]), [command("set k {\noops }", 1), command("get k", 3)]);
        assert_eq!(
            feed(&["set \"k{\" [\"]\",", "\"[\"]"]),
            [command("set \"k{\" [\"]\",\n\"[\"]", 1)],
            "brackets in the key and in strings do not count"
        );
        let mut joiner = Joiner::new();
        assert!(joiner.push("set k [").is_empty() && joiner.is_pending());
        assert_eq!(joiner.skip().map(|p| p.line()), Some(1));
        assert_eq!(joiner.line(), 2);
        assert!(!joiner.is_pending());
    }
}
