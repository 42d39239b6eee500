//! Runs a parsed [`Command`] against the database and writes its result: the
//! one place where shell, script and one-shot commands meet the library.
//!
//! Results go to `out` (stdout), "not found" and errors to stderr. Writes go
//! through `Db` with its default `Durability::Always`, so a result line is
//! printed only after the write is on stable storage.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use redru::{Db, ImportOptions, Query};

use crate::output::{self, Style, paint, sgr};
use crate::progress;
use crate::shell::parser::{COMMANDS, Command, Find, Pattern, quote_key, spec};

/// How a command ended, for exit codes and the shell loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// A key was not found, or `exists` said false (exit code 1 one-shot).
    Missing,
    /// `exit`: leave the shell.
    Exit,
}

/// Asks the person a yes/no question; `None` when nobody can be asked (a script).
pub type Confirm<'a> = &'a mut dyn FnMut(&str) -> Result<Option<bool>>;

/// Where a command runs.
pub struct Session<'a> {
    /// The open database.
    pub db: &'a Db,
    /// How to write values.
    pub style: Style,
    /// Whether a spinner may be drawn on stderr.
    pub progress: bool,
    /// stdout.
    pub out: &'a mut dyn Write,
}

impl Session<'_> {
    /// Runs `command`.
    pub fn run(&mut self, command: Command, confirm: Confirm) -> Result<Outcome> {
        let db = self.db;
        let style = self.style;
        let pretty = style.pretty;
        match command {
            Command::Set { key, value } => {
                db.set(key.clone(), value).with_context(|| format!("setting {}", quote_key(&key)))?;
                self.line("OK")?;
            }
            Command::Get { key } => match db.get(&key) {
                Some(value) => self.line(&output::doc(&value, style))?,
                None => return not_found(&key),
            },
            Command::Delete { key } => {
                if !db.delete(&key).with_context(|| format!("deleting {}", quote_key(&key)))? {
                    return not_found(&key);
                }
                self.line("OK")?;
            }
            Command::Exists { key } => {
                let exists = db.contains(&key);
                self.line(if exists { "true" } else { "false" })?;
                if !exists {
                    return Ok(Outcome::Missing);
                }
            }
            Command::List { pattern } => {
                let keys = matching_keys(db, pattern.as_ref());
                if keys.is_empty() && pretty {
                    self.line(&paint(sgr::DIM, "(no keys)", style.color))?;
                }
                for key in keys {
                    // Quoted for people (so it can be pasted back), exact for programs.
                    let shown = if pretty { quote_key(&key) } else { key };
                    self.line(&shown)?;
                }
            }
            Command::Count { pattern } => {
                let n = match &pattern {
                    None => db.len(),
                    Some(p) => matching_keys(db, Some(p)).len(),
                };
                self.line(&n.to_string())?;
            }
            Command::Find(find) => {
                let (query, shown) = match find {
                    Find::Equals { field, value } => {
                        let shown = format!("{field} = {value}");
                        (Query::eq(&field, value).with_context(|| format!("finding `{shown}`"))?, shown)
                    }
                    Find::Query(text) => (Query::parse(&text).with_context(|| format!("query `{text}`"))?, text),
                };
                let result = db.query(&query).with_context(|| format!("finding `{shown}`"))?;
                self.entries(&result.entries)?;
                if pretty {
                    let n = result.entries.len();
                    let note = format!("({n} match{}; {})", if n == 1 { "" } else { "es" }, result.plan);
                    self.line(&paint(sgr::DIM, &note, style.color))?;
                }
            }
            Command::Explain { query } => {
                let parsed = Query::parse(&query).with_context(|| format!("query `{query}`"))?;
                let result = db.query(&parsed).with_context(|| format!("running `{query}`"))?;
                let n = result.entries.len();
                self.line(&format!("{}; {n} match{}", result.plan, if n == 1 { "" } else { "es" }))?;
            }
            Command::Index { field, unique } => {
                let made = if unique { db.create_unique_index(&field) } else { db.create_index(&field) };
                made.with_context(|| format!("creating an index on `{field}`"))?;
                self.line("OK")?;
            }
            Command::DropIndex { field } => {
                db.drop_index(&field).with_context(|| format!("dropping the index on `{field}`"))?;
                self.line("OK")?;
            }
            Command::Indexes => {
                let indexes = db.indexes();
                if pretty {
                    if indexes.is_empty() {
                        self.line(&paint(sgr::DIM, "(no indexes; create one with `index <field>`)", style.color))?;
                    } else {
                        let width = indexes.iter().map(|i| i.field.len()).max().unwrap_or(5).max(5);
                        let head = format!("{:<width$}  {:<6}  {:>8}  {:>8}", "field", "kind", "values", "keys");
                        self.line(&paint(sgr::BOLD, &head, style.color))?;
                    }
                }
                for i in indexes {
                    let kind = if i.unique { "unique" } else { "plain" };
                    let row = if pretty {
                        let width = i.field.len().max(5);
                        format!("{:<width$}  {:<6}  {:>8}  {:>8}", i.field, kind, i.distinct_values, i.entries)
                    } else {
                        format!("{}\t{}\t{}\t{}", i.field, kind, i.distinct_values, i.entries)
                    };
                    self.line(&row)?;
                }
            }
            Command::Stats => {
                let stats = serde_json::to_value(db.stats()).context("encoding the statistics")?;
                self.line(&output::json(&stats, style))?;
            }
            Command::Save => {
                let report =
                    progress::spin(self.progress, "saving a snapshot", || db.save()).context("saving a snapshot")?;
                let text = if report.unchanged {
                    format!("nothing changed since the last save ({} keys)", report.keys)
                } else {
                    format!(
                        "saved {} keys ({} bytes) in {} ms; {} log segment(s) removed",
                        report.keys,
                        report.bytes,
                        report.duration.as_millis(),
                        report.segments_removed
                    )
                };
                self.line(&text)?;
            }
            Command::Sync => {
                db.sync().context("syncing the log")?;
                self.line("OK")?;
            }
            Command::Clear { yes } => {
                let n = db.len();
                if !yes && n > 0 {
                    let question = format!("remove all {n} keys from {}? [y/N] ", db.dir().display());
                    match confirm(&question)? {
                        Some(true) => {}
                        Some(false) => {
                            self.line("cancelled")?;
                            return Ok(Outcome::Done);
                        }
                        None => bail!("`clear` removes every key; where it cannot ask, write `clear --yes`"),
                    }
                }
                let removed = db.clear().context("clearing")?;
                self.line(&format!("cleared {removed} keys"))?;
            }
            Command::Backup { path, keep } => {
                let info = progress::spin(self.progress, "writing a backup", || match &path {
                    None => db.backup(),
                    Some(p) => db.backup_to(Path::new(p)),
                })
                .context("writing a backup")?;
                if let Some(keep) = keep {
                    for removed in db.prune_backups(keep).context("pruning the backups")? {
                        self.line(&format!("removed {}", removed.display()))?;
                    }
                }
                let checked = if info.verified { "verified" } else { "NOT verified" };
                self.line(&format!(
                    "wrote {} (up to record {}, {} keys, {} bytes, {checked})",
                    info.path.display(),
                    info.seq,
                    info.keys,
                    info.bytes
                ))?;
            }
            Command::Backups => {
                let backups = db.backups().context("listing the backups")?;
                if backups.is_empty() && pretty {
                    self.line(&paint(sgr::DIM, "(no backups; write one with `backup`)", style.color))?;
                }
                for info in backups {
                    self.line(&info.to_string())?;
                }
            }
            Command::Restore { name, file } => {
                let report = progress::spin(self.progress, "restoring", || {
                    if file { db.restore_file(Path::new(&name)) } else { db.restore(&name) }
                })
                .with_context(|| format!("restoring {name}"))?;
                self.line(&report.to_string())?;
            }
            Command::PruneBackups { keep } => {
                let removed = db.prune_backups(keep).context("pruning the backups")?;
                for path in &removed {
                    self.line(&format!("removed {}", path.display()))?;
                }
                self.line(&format!("{} backup(s) removed", removed.len()))?;
            }
            Command::Export { path, lines } => match path {
                None => {
                    db.export(self.out, lines).context("exporting")?;
                }
                Some(path) => {
                    let n = export_to_file(db, Path::new(&path), lines)?;
                    self.line(&format!("exported {n} pairs to {path}"))?;
                }
            },
            Command::Import { path, replace } => {
                let options = ImportOptions { replace, ..ImportOptions::default() };
                let n = import(db, Path::new(&path), options, self.progress)
                    .with_context(|| format!("importing {path}"))?;
                let how = if replace { "replaced the data with" } else { "imported" };
                self.line(&format!("{how} {n} pairs from {path}"))?;
            }
            Command::Help { topic } => {
                let text = help(topic.as_deref(), style.color)?;
                self.out.write_all(text.as_bytes())?;
            }
            Command::Exit => return Ok(Outcome::Exit),
        }
        Ok(Outcome::Done)
    }

    fn line(&mut self, text: &str) -> Result<()> {
        writeln!(self.out, "{text}").context("writing to stdout")
    }

    fn entries(&mut self, entries: &[(String, redru::Doc)]) -> Result<()> {
        let style = self.style;
        for (key, value) in entries {
            let line = if style.pretty {
                // One line per match even in a terminal: compact, but coloured.
                let compact = Style { pretty: false, ..style };
                format!("{}  {}", paint(sgr::BOLD, &quote_key(key), style.color), output::doc(value, compact))
            } else {
                format!("{key}\t{}", output::doc(value, Style::PLAIN))
            };
            self.line(&line)?;
        }
        Ok(())
    }
}

/// Exports into a new file, through a temporary name so a failed export
/// leaves no half-written file under the chosen name.
fn export_to_file(db: &Db, path: &Path, lines: bool) -> Result<usize> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = (|| -> Result<usize> {
        let mut file = private_file().open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let n = db.export(&mut file, lines).with_context(|| format!("exporting to {}", tmp.display()))?;
        file.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(n)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Options that create (or truncate) a file with mode 0600, as the engine
/// creates its own: an export holds the whole database.
fn private_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Imports with a byte progress bar on stderr (parsing is the long part).
fn import(db: &Db, path: &Path, options: ImportOptions, progress: bool) -> Result<usize> {
    if !progress {
        return Ok(db.import_with(path, options, &mut |_, _| {})?);
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("importing {bar:30} {bytes}/{total_bytes} ({eta})") {
        bar.set_style(style);
    }
    let n = db.import_with(path, options, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    Ok(n?)
}

fn not_found(key: &str) -> Result<Outcome> {
    eprintln!("not found: {}", quote_key(key));
    Ok(Outcome::Missing)
}

/// Sorted keys matching `pattern` (all keys without one).
pub fn matching_keys(db: &Db, pattern: Option<&Pattern>) -> Vec<String> {
    match pattern {
        None => db.keys(),
        Some(p) => db.scan_prefix(&p.literal_prefix()).into_iter().map(|(k, _)| k).filter(|k| p.matches(k)).collect(),
    }
}

/// `help` (every command, one line each) or `help <command>`.
pub fn help(topic: Option<&str>, color: bool) -> Result<String> {
    let mut out = String::new();
    match topic {
        None => {
            let width = COMMANDS.iter().map(|s| s.usage.len()).max().unwrap_or(10);
            out.push_str(&paint(sgr::BOLD, "Commands:", color));
            out.push('\n');
            for s in COMMANDS {
                let usage = format!("{:<width$}", s.usage);
                out.push_str(&format!("  {}  {}\n", paint(sgr::BOLD, &usage, color), s.summary));
            }
            out.push_str(
                "Values are JSON when they parse, plain text otherwise. Quote keys with spaces.\n\
                 Type `help <command>` for details and examples. Tab completes; Ctrl-R searches history.\n",
            );
        }
        Some(name) => {
            let Some(s) = spec(name) else { bail!("unknown command `{name}`; type `help` for the list") };
            out.push_str(&format!("{}\n  {}\n", paint(sgr::BOLD, s.usage, color), s.summary));
            if !s.details.is_empty() {
                out.push_str(&format!("\n{}\n", wrap(s.details, 78)));
            }
            if !s.aliases.is_empty() {
                out.push_str(&format!("\nAlso: {}\n", s.aliases.join(", ")));
            }
            out.push_str(if s.examples.len() == 1 { "\nExample:\n" } else { "\nExamples:\n" });
            for e in s.examples {
                out.push_str(&format!("  {}\n", paint(sgr::DIM, e, color)));
            }
        }
    }
    Ok(out)
}

fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split_whitespace() {
        if line_len > 0 && line_len + 1 + word.len() > width {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out
}

/// Prints `error: ...` (with anyhow's cause chain) on stderr, followed on
/// the same line by the command that helps, when the error has one.
pub fn print_error(error: &anyhow::Error, color: bool) {
    let hint = error.chain().find_map(|e| e.downcast_ref::<redru::Error>()).and_then(hint);
    let hint = hint.map(|h| format!("; {h}")).unwrap_or_default();
    eprintln!("{} {error:#}{hint}", paint(sgr::ERROR, "error:", color));
}

/// How to put the newest backup back in place of a missing snapshot, with
/// the commands (the database cannot be opened to run `restore`).
fn restore_hint(snapshot: &std::path::Path, first: u64) -> String {
    let dir = snapshot.parent().unwrap_or(std::path::Path::new("."));
    let newest = redru::list_backups(dir).ok().and_then(|b| b.into_iter().rev().find(|b| b.verified));
    match newest {
        Some(b) if b.seq + 1 >= first => format!(
            "the newest backup holds every record the log lacks: `cp {} {}`",
            b.path.display(),
            snapshot.display()
        ),
        Some(b) => format!(
            "the newest backup ends at record {}: records {}..{} are in no file any more, and the log (from record \
             {first}) cannot continue it; `cp {} {}` brings the data back to record {}",
            b.seq,
            b.seq + 1,
            first - 1,
            b.path.display(),
            snapshot.display(),
            b.seq
        ),
        None => format!("there is no verified backup in {}", dir.join(redru::BACKUP_DIR).display()),
    }
}

/// The shell command that deals with a library error: the library's messages
/// name library calls, a person at the prompt needs the command line.
fn hint(error: &redru::Error) -> Option<String> {
    use redru::Error;
    match error {
        Error::Corrupt { path, .. } => {
            let dir = path.parent().map(|p| p.display().to_string()).unwrap_or_else(|| ".".into());
            Some(format!("run `redru repair --dir {dir}` (see `redru repair --dry-run` first)"))
        }
        Error::BadSnapshot { .. } => {
            Some("`redru backups` lists the backups, `redru restore NAME` restores one".into())
        }
        Error::MissingSnapshot { path, first } => Some(restore_hint(path, *first)),
        Error::NoIndex { field } => Some(format!("create one with `index {field}`")),
        Error::BackupNotFound { .. } | Error::BadBackupName { .. } => {
            Some("`redru backups` lists the backups; `restore --file PATH` takes a file elsewhere".into())
        }
        _ => None,
    }
}
