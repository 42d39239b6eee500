//! The shell: a pure line -> `Command` parser, a rustyline helper, the
//! interactive loop, and script mode for when stdin is not a terminal.

pub mod helper;
pub mod parser;
pub mod repl;
pub mod script;
