//! The command line (clap): global options (derive), and one subcommand per
//! command of the shell's table, built from that table, whose words go to the
//! shell's own parser: a one-shot command accepts exactly what the shell accepts.

use anyhow::bail;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::output::{ColorChoice, Format};
use crate::shell::parser::{COMMANDS, Command, Cursor, Place, Spec, parse_args};
use crate::store::Target;
use crate::store::target::DEFAULT_PORT;
const AFTER_HELP: &str = "\
Without a command, redru opens an interactive shell on the data directory; with
standard input from a pipe or file it runs one command per line instead
(script mode: no prompt, no colour; see --bail). Every command takes the same
words one-shot as in the shell; redru's options may also follow them, and
after `--` every word is the command's. In the shell and in scripts, `begin`
... `commit` makes the writes between them one atomic batch.

Examples:
  redru                                     open the shell on ./data
  redru --dir /tmp/db set user:1 '{\"name\": \"Alice\", \"age\": 30}'
  redru --dir /tmp/db get user:1 --format json
  printf 'set a 1\\nget a\\n' | redru --dir /tmp/db
  redru --dir /tmp/db --durability buffered < load.redru
  redru --connect redis://127.0.0.1:6379    the same shell on a running `redru serve`
  redru -p 7000 list user:                  a one-shot command on the server at 127.0.0.1:7000

Exit codes: 0 success, 1 not found (get, delete, exists) or problems found
(verify, repair), 2 usage error or failure.
Environment: REDRU_DIR (default for --dir), REDRU_HISTORY (shell history file),
NO_COLOR (disables colour).";

const SERVE_HELP: &str = "\
Examples:
  redru serve                     listen on 127.0.0.1:6379
  redru --dir mydb serve --port 7000
  redru serve --bind 0.0.0.0 --requirepass-file /etc/redru/pass

Stops on Ctrl-C, SIGTERM or SHUTDOWN, after syncing. docs/server.md lists the commands.";

/// redru: an embedded JSON key-value database, and its shell.
#[derive(Debug, Parser)]
#[command(name = "redru", version, after_help = AFTER_HELP, max_term_width = 100, disable_help_flag = true)]
pub struct Cli {
    /// The data directory (created by the shell, a script or a one-shot write; a one-shot read
    /// of a missing directory is an error).
    #[arg(short, long, env = "REDRU_DIR", default_value = "data", global = true, value_name = "DIR")]
    pub dir: std::path::PathBuf,

    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true, value_name = "WHEN")]
    pub color: ColorChoice,

    /// How get, list, find, indexes, backups and stats lay out results (default: table in a
    /// terminal, raw when piped).
    #[arg(long, value_enum, global = true, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// The same as --format raw.
    #[arg(long, global = true, conflicts_with = "format")]
    pub raw: bool,

    /// When writes reach stable storage (a crash or power loss during a `buffered` or `never`
    /// run can lose its last writes; see docs/durability.md).
    #[arg(long, value_enum, default_value_t = DurabilityChoice::Always, global = true, value_name = "MODE")]
    pub durability: DurabilityChoice,

    /// Script mode: stop at the first failing command (by default the whole
    /// script runs and the exit code is 2 if any command failed). Not for one-shot commands.
    #[arg(long)]
    pub bail: bool,

    /// In the interactive shell, take a backup every DURATION in the background
    /// (e.g. 30m, 1h, 1d), keeping the newest --backup-keep of them. Not for one-shot commands.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub backup_every: Option<std::time::Duration>,

    /// How many backups the scheduled backups keep (never deleting the newest verified one).
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub backup_keep: usize,

    /// Open the directory read-only: no lock (another program may have it open), no file
    /// changed, every write refused. One-shot reads fall back to it by themselves when the
    /// directory is held by another process or cannot be written.
    #[arg(long, global = true)]
    pub read_only: bool,

    /// Open the shell, or run the command, on a running `redru serve` instead of a directory:
    /// redis://[:PASSWORD@]HOST[:PORT] (port 6379 by default).
    #[arg(long, value_name = "URL", conflicts_with_all = ["host", "port"])]
    pub connect: Option<String>,

    /// Connect to the server on this host, as redis-cli -h does (port 6379 unless -p).
    #[arg(short = 'h', long, value_name = "HOST")]
    pub host: Option<String>,

    /// Connect to the server on this port, as redis-cli -p does (host 127.0.0.1 unless -h).
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,

    /// The server's password (AUTH), as redis-cli -a takes it; a URL may hold it instead.
    #[arg(short = 'a', long, value_name = "PASSWORD")]
    pub pass: Option<String>,

    /// Print help (-h is the host, as in redis-cli).
    #[arg(long, action = ArgAction::Help, global = true)]
    help: Option<bool>,

    /// Whether --dir was given on the command line (not taken from REDRU_DIR or the default).
    #[arg(skip)]
    pub dir_given: bool,
}

impl Cli {
    /// The server that --connect, -h, -p and --pass name, if any.
    pub fn target(&self) -> anyhow::Result<Option<Target>> {
        let mut target = match (&self.connect, &self.host, self.port) {
            (Some(url), _, _) => Target::parse(url)?,
            (None, None, None) => {
                if self.pass.is_some() {
                    bail!("--pass is the password of a server: give --connect URL, -h HOST or -p PORT too");
                }
                return Ok(None);
            }
            (None, host, port) => {
                let host = host.as_deref().unwrap_or("127.0.0.1");
                let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                Target { host: host.to_owned(), port: port.unwrap_or(DEFAULT_PORT), user: None, password: None }
            }
        };
        if let Some(password) = &self.pass {
            target.password = Some(password.clone());
        }
        Ok(Some(target))
    }
}

/// `--durability`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DurabilityChoice {
    /// Every write fsynced before its result line.
    #[default]
    Always,
    /// Writes buffered in memory, handed to the OS in large writes; fsynced at the end.
    Buffered,
    /// Writes handed to the OS at once; fsynced at the end.
    Never,
}

impl DurabilityChoice {
    /// The library's mode.
    pub fn mode(self) -> redru::Durability {
        match self {
            DurabilityChoice::Always => redru::Durability::Always,
            DurabilityChoice::Buffered => redru::Durability::Buffered,
            DurabilityChoice::Never => redru::Durability::Never,
        }
    }
}

/// What a command line asks for.
pub enum Action {
    /// The shell (or a script on stdin).
    Shell,
    /// One command.
    Command(Command),
    /// `serve`: the Redis protocol server.
    Serve(crate::serve::ServeArgs),
}

/// The whole command line: global options and the subcommands of the table.
pub fn command() -> clap::Command {
    let shell_only = Cli::command()
        .get_arguments()
        .filter(|a| SHELL_ONLY.contains(&a.get_id().as_str()))
        .cloned()
        .collect::<Vec<_>>();
    let shell = clap::Command::new("shell")
        .about("Open the interactive shell (the default); runs a script when stdin is not a terminal")
        .args(shell_only);
    // The commands of a session (begin, commit, rollback, exit) are there only to say where they work.
    let session_only =
        COMMANDS.iter().filter(|s| s.place == Place::Session && s.name != "help").map(|s| subcommand(s).hide(true));
    // The about after augment_args, which would put the struct's doc comment there.
    let serve = crate::serve::ServeArgs::augment_args(clap::Command::new("serve"))
        .about("Serve the database over the Redis protocol (redis-cli, redis-py, any Redis client)")
        .after_help(SERVE_HELP);
    Cli::command()
        .subcommand(shell)
        .subcommand(serve)
        .subcommands(COMMANDS.iter().filter(|s| s.place != Place::Session).map(subcommand))
        .subcommands(session_only)
}

/// One subcommand: its help comes from the table, its words go to the shell's parser.
fn subcommand(spec: &'static Spec) -> clap::Command {
    let summary = capitalized(spec.summary);
    let examples: Vec<String> =
        spec.examples.iter().map(|e| format!("  redru {}", one_shot_example(spec, e))).collect();
    let heading = if examples.len() == 1 { "Example" } else { "Examples" };
    let mut sub = clap::Command::new(spec.name)
        .about(summary.clone())
        .override_usage(format!("redru [OPTIONS] {}", spec.usage))
        .visible_aliases(spec.aliases.iter().copied())
        .after_help(format!("{heading}:\n{}", examples.join("\n")))
        .arg(clap::Arg::new("words").num_args(0..).value_name("ARGS").hide(true).action(clap::ArgAction::Append));
    if !spec.details.is_empty() {
        sub = sub.long_about(format!("{summary}.\n\n{}", spec.details));
    }
    sub
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// A shell example as a command line for sh: the words the shell reads one
/// by one, then the rest of the line (a value or a query) as one word.
fn one_shot_example(spec: &Spec, example: &str) -> String {
    let mut cur = Cursor::new(example);
    let mut words = vec![spec.name.to_owned()];
    let _ = cur.word();
    let rest_of_line = spec.args.last().is_some_and(|a| matches!(*a, "<value>" | "<query>"));
    let single = if rest_of_line { spec.args.len() - 1 } else { usize::MAX };
    while words.len() <= single {
        match cur.word() {
            Ok(Some(word)) => words.push(sh_quote(&word)),
            _ => break,
        }
    }
    let rest = cur.rest();
    if !rest.trim().is_empty() {
        words.push(sh_quote(rest.trim()));
    }
    words.join(" ")
}

/// `word` quoted for sh when it needs it.
pub fn sh_quote(word: &str) -> String {
    let safe = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/=@%+,".contains(c));
    if safe { word.to_owned() } else { format!("'{}'", word.replace('\'', "'\\''")) }
}

/// What the matched command line asks for; a usage error as text.
pub fn action(matches: &ArgMatches) -> Result<Action, String> {
    let Some((name, sub)) = matches.subcommand() else { return Ok(Action::Shell) };
    if name == "shell" {
        return Ok(Action::Shell);
    }
    if name == "serve" {
        return crate::serve::ServeArgs::from_arg_matches(sub).map(Action::Serve).map_err(|e| e.to_string());
    }
    if let Some(spec) = crate::shell::parser::spec(name).filter(|s| s.place == Place::Session) {
        let batch = if spec.name == "exit" {
            ""
        } else {
            ": a batch groups a script's writes (`printf 'begin\\nset a 1\\ncommit\\n' | redru`)"
        };
        return Err(format!("`{name}` works only in the shell and in scripts{batch}"));
    }
    for flag in SHELL_ONLY {
        if matches.value_source(flag) == Some(ValueSource::CommandLine) {
            let flag = format!("--{}", flag.replace('_', "-"));
            return Err(format!("{flag} applies to the shell and to scripts, not to a one-shot `{name}`"));
        }
    }
    let mut words = vec![name.to_owned()];
    words.extend(sub.get_many::<String>("words").into_iter().flatten().cloned());
    match parse_args(&words) {
        Ok(Some(command)) => Ok(Action::Command(command)),
        Ok(None) => Err(format!("`{name}` needs arguments")),
        Err(e) => Err(format!("{e}")),
    }
}

/// Parses the process's command line.
pub fn parse() -> Result<(Cli, ArgMatches), clap::Error> {
    let matches = command().try_get_matches_from(reorder(std::env::args_os().collect()))?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.dir_given = matches.value_source("dir") == Some(ValueSource::CommandLine);
    // `redru shell --bail ...`: the shell's own options may follow its name.
    if let Some(("shell", sub)) = matches.subcommand() {
        cli.bail |= sub.get_flag("bail");
        if let Some(every) = sub.get_one::<std::time::Duration>("backup_every") {
            cli.backup_every = Some(*every);
        }
        if let (Some(ValueSource::CommandLine), Some(keep)) =
            (sub.value_source("backup_keep"), sub.get_one::<usize>("backup_keep"))
        {
            cli.backup_keep = *keep;
        }
    }
    Ok((cli, matches))
}

/// The options that take a value.
const VALUED: &[&str] = &[
    "--dir",
    "-d",
    "--color",
    "--format",
    "--durability",
    "--backup-every",
    "--backup-keep",
    "--connect",
    "--host",
    "-h",
    "--port",
    "-p",
    "--pass",
    "-a",
];
/// The options that follow a command's words: long names only, so that a
/// word such as `-d` or `-done` stays a word (it never moves the directory).
/// The server's (`--connect`, `-h`, `-p`, `--pass`) come before the command,
/// as in redis-cli: they are not global, since `serve` has a `--port` of its own.
const AFTER_WORDS: &[&str] = &["--dir", "--color", "--format", "--durability", "--backup-every", "--backup-keep"];
/// The flags that follow a command's words.
const FLAGS_AFTER_WORDS: &[&str] = &["--raw", "--bail", "--help"];
/// The options the shell (and script mode) alone takes.
const SHELL_ONLY: &[&str] = &["bail", "backup_every", "backup_keep"];

/// redru's own options may also follow a command's words (`redru get k
/// --format json`): they are moved in front of the words, and a `--` put
/// between the two, so that clap reads the options as options and hands
/// every word to the shell's parser as it is (`--unique`, `-5`). A `--`
/// among the words ends this: every word after it is the command's.
pub fn reorder(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let text = |a: &std::ffi::OsString| a.to_str().map(str::to_owned).unwrap_or_default();
    let is_option =
        |a: &str| FLAGS_AFTER_WORDS.contains(&a) || AFTER_WORDS.iter().any(|v| a.starts_with(&format!("{v}=")));
    let mut i = 1;
    while i < args.len() {
        let a = text(&args[i]);
        if VALUED.contains(&a.as_str()) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            break;
        }
    }
    // The shell and the server take options of their own, parsed by clap as
    // they are; so does clap's `help [COMMAND]`, which takes no `--`.
    if i >= args.len() || matches!(text(&args[i]).as_str(), "shell" | "serve" | "help") {
        return args;
    }
    let mut out: Vec<_> = args[..=i].to_vec();
    let mut words = Vec::new();
    let mut rest = args[i + 1..].iter();
    while let Some(arg) = rest.next() {
        let a = text(arg);
        if a == "--" {
            words.extend(rest.by_ref().cloned());
        } else if AFTER_WORDS.contains(&a.as_str()) {
            out.push(arg.clone());
            out.extend(rest.next().cloned());
        } else if is_option(&a) {
            out.push(arg.clone());
        } else {
            words.push(arg.clone());
        }
    }
    out.push("--".into());
    out.extend(words);
    out
}

/// Parses `90s`, `30m`, `1h`, `2d` (a number and a unit; seconds when the unit is missing).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration such as 30m, 1h or 1d"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use s, m, h or d)")),
    };
    if seconds == 0 {
        return Err("the interval must be at least one second".into());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(std::time::Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(std::time::Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(std::time::Duration::from_secs(172_800)));
        for bad in ["", "h", "1w", "0s", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn examples_become_command_lines() {
        let set = crate::shell::parser::spec("set").map(|s| one_shot_example(s, "set \"my key\" [1, 2, 3]"));
        assert_eq!(set.as_deref(), Some("set 'my key' '[1, 2, 3]'"));
        let find = crate::shell::parser::spec("find").map(|s| one_shot_example(s, "find age >= 30 and exists email"));
        assert_eq!(find.as_deref(), Some("find age '>= 30 and exists email'"));
        let export = crate::shell::parser::spec("export").map(|s| one_shot_example(s, "export d.jsonl --lines"));
        assert_eq!(export.as_deref(), Some("export d.jsonl --lines"));
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn options_after_the_words_are_moved_before_them() {
        let reordered = |line: &str| -> String {
            let args = line.split(' ').map(std::ffi::OsString::from).collect();
            reorder(args).iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
        };
        assert_eq!(reordered("redru get k --format json"), "redru get --format json -- k");
        assert_eq!(reordered("redru --dir d index email --unique"), "redru --dir d index -- email --unique");
        assert_eq!(reordered("redru set n -5 --raw"), "redru set --raw -- n -5");
        assert_eq!(reordered("redru set k -- --raw"), "redru set -- k --raw");
        assert_eq!(reordered("redru -d x set k --help"), "redru -d x set --help -- k");
        assert_eq!(reordered("redru set k -d -done"), "redru set -- k -d -done");
        assert_eq!(reordered("redru get k --dir=y"), "redru get --dir=y -- k");
        assert_eq!(reordered("redru --bail"), "redru --bail");
        assert_eq!(reordered("redru shell --bail"), "redru shell --bail");
        // The server's options come before the command; the words after it stay words.
        assert_eq!(reordered("redru -h h -p 7 get k"), "redru -h h -p 7 get -- k");
        assert_eq!(reordered("redru --connect redis://h get k -p"), "redru --connect redis://h get -- k -p");
    }
}
