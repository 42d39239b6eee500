//! The shell: a pure line -> `Command` parser, a rustyline helper, the
//! interactive loop, and script mode for when stdin is not a terminal.

pub mod helper;
pub mod parser;
pub mod repl;
pub mod script;

/// The `shell_parser` fuzz target's body (fuzz/, and the corpus replay in
/// this crate's tests): any text, line by line, parses or errors, never panics.
pub fn fuzz_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parser::is_incomplete(text);
    let mut joiner = parser::Joiner::new();
    for line in text.lines() {
        // A parsed command, rendered back as a line, parses to the same command.
        if let Ok(Some(command)) = parser::parse(line)
            && let Some(again) = command.render()
        {
            let back = parser::parse(&again);
            assert!(
                matches!(&back, Ok(Some(c)) if *c == command),
                "{line:?} parsed to {command:?}, rendered as {again:?}, which parses to {back:?}"
            );
        }
        for piece in joiner.push(line) {
            if let parser::Piece::Command { text, .. } = piece {
                let _ = parser::parse(&text);
            }
        }
    }
    let _ = joiner.finish();
}
