//! Runs a parsed [`Command`] against a [`Store`] (the database, or a server
//! with `--connect`) and writes its result: the one place where shell, script
//! and one-shot commands meet the data, so both stores print alike.
//!
//! Results go to `out` (stdout) laid out as the [`Format`] says, "not found"
//! and errors to stderr. With `--durability always` (the default) a write's
//! result line is printed only after the write is on stable storage. Between
//! `begin` and `commit` the session holds the writes in one [`Batch`].
//!
//! One file past 800 lines because [`Session`]'s one `match` over every command
//! is the point of it: each arm is a few lines, and the helpers after it (export,
//! import, listing pages, help and error hints) are the ones those arms share.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use redru::{Db, Expiry, IndexKind, Listing, Page, Query};

use crate::cli::sh_quote;
use crate::import;
use crate::output::{self, Format, Style, paint, raw_key, sgr};
use crate::progress;
use crate::shell::parser::{COMMANDS, Command, Find, KeyRange, Pattern, quote_key, spec};
use crate::store::{Store, Write as Queued};

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

/// Where commands run: one session per shell, script or one-shot command.
pub struct Session<'a> {
    /// Where the data is: the open database, or a server.
    pub store: &'a dyn Store,
    /// Colour, and whether values are indented.
    pub style: Style,
    /// How results are laid out.
    pub format: Format,
    /// Whether a spinner may be drawn on stderr.
    pub progress: bool,
    /// stdout.
    pub out: &'a mut dyn Write,
    /// The script line being run, named in "not found" messages.
    pub line: Option<usize>,
    /// The writes collected since `begin`.
    pub batch: Option<Vec<Queued>>,
    /// Whether `import -` may read standard input (not when it holds a script or the shell's terminal).
    pub stdin_free: bool,
}

impl<'a> Session<'a> {
    /// A session writing `format` to `out`, coloured as `style` says (indented in `table`).
    pub fn new(store: &'a dyn Store, style: Style, format: Format, out: &'a mut dyn Write) -> Session<'a> {
        let style = Style { pretty: format == Format::Table, ..style };
        Session { store, style, format, progress: false, out, line: None, batch: None, stdin_free: false }
    }

    /// Runs `command`.
    pub fn run(&mut self, command: Command, confirm: Confirm) -> Result<Outcome> {
        let Some(command) = self.queue(command)? else { return Ok(Outcome::Done) };
        let store = self.store;
        let style = self.style;
        let pretty = self.format == Format::Table;
        match command {
            Command::Set { key, value, only_if: None, ttl } => {
                match ttl {
                    None => store.set(&key, value),
                    Some(ttl) => store.set_with_ttl(&key, value, ttl),
                }
                .with_context(|| format!("setting {}", quote_key(&key)))?;
                self.line("OK")?;
            }
            Command::Expire { key, ttl } => {
                if !store.expire(&key, ttl).with_context(|| format!("setting the expiry of {}", quote_key(&key)))? {
                    return self.not_found(&key);
                }
                self.line("OK")?;
            }
            Command::Ttl { key } => match store.ttl(&key).with_context(|| format!("looking up {}", quote_key(&key)))? {
                redru::Ttl::Missing => return self.not_found(&key),
                redru::Ttl::Persistent => self.line("no expiry")?,
                redru::Ttl::Expires { left, .. } => {
                    self.line(&format!("{}.{:03}s", left.as_secs(), left.subsec_millis()))?
                }
            },
            Command::Persist { key } => {
                let context = || format!("removing the expiry of {}", quote_key(&key));
                match store.ttl(&key).with_context(context)? {
                    redru::Ttl::Missing => return self.not_found(&key),
                    redru::Ttl::Persistent => self.line("no expiry")?,
                    redru::Ttl::Expires { .. } => {
                        // It may have expired in between: then it is gone.
                        if !store.persist(&key).with_context(context)? {
                            return self.not_found(&key);
                        }
                        self.line("OK")?;
                    }
                }
            }
            Command::Set { key, value, only_if: Some(only_if), ttl } => {
                let done = store.set_if(&key, value, only_if, ttl);
                if let Err(e) = done {
                    // A condition that does not hold is an answer, not a failure: exit code 1.
                    if e.downcast_ref::<crate::store::NotWritten>().is_some() {
                        self.out.flush().context("writing to stdout")?;
                        let at = self.line.map(|n| format!("line {n}: ")).unwrap_or_default();
                        eprintln!("{at}not written: {e}");
                        return Ok(Outcome::Missing);
                    }
                    return Err(e.context(format!("setting {}", quote_key(&key))));
                }
                self.line("OK")?;
            }
            Command::Incr { key, by } => {
                let n = store.incr(&key, by).with_context(|| format!("incrementing {}", quote_key(&key)))?;
                self.line(&n.to_string())?;
            }
            Command::Seq { key } => match store.seq(&key).with_context(|| format!("looking up {}", quote_key(&key)))? {
                Some(seq) => self.line(&seq.to_string())?,
                None => return self.not_found(&key),
            },
            Command::Get { key } => match store.get(&key).with_context(|| format!("getting {}", quote_key(&key)))? {
                Some(value) => self.line(&output::doc(&value, style))?,
                None => return self.not_found(&key),
            },
            Command::Delete { key } => {
                if !store.delete(&key).with_context(|| format!("deleting {}", quote_key(&key)))? {
                    return self.not_found(&key);
                }
                self.line("OK")?;
            }
            Command::Exists { key } => {
                let exists = store.contains(&key).with_context(|| format!("looking up {}", quote_key(&key)))?;
                self.line(if exists { "true" } else { "false" })?;
                if !exists {
                    return Ok(Outcome::Missing);
                }
            }
            Command::List { pattern, range } => {
                let page = store.list(pattern.as_ref(), &range).context("listing the keys")?;
                self.keys(page.items)?;
                if let Some(next) = page.next {
                    self.more(pattern.as_ref(), &range, &next)?;
                }
            }
            Command::Count { pattern } => {
                let n = match &pattern {
                    None => store.len(),
                    Some(p) => store.keys(Some(p)).map(|k| k.len()),
                }
                .context("counting the keys")?;
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
                let result = store.query(&query, pretty).with_context(|| format!("finding `{shown}`"))?;
                self.entries(&result.entries)?;
                if pretty {
                    let n = result.entries.len();
                    let note = format!("({}; {})", count(n, "match", "matches"), result.plan.unwrap_or_default());
                    self.line(&paint(sgr::DIM, &note, style.color))?;
                }
            }
            Command::Explain { query } => {
                let parsed = Query::parse(&query).with_context(|| format!("query `{query}`"))?;
                let (plan, n) = store.explain(&parsed).with_context(|| format!("running `{query}`"))?;
                self.line(&format!("{plan}; {}", count(n, "match", "matches")))?;
            }
            Command::Index { field, unique, ordered } => {
                store
                    .create_index(&field, unique, ordered)
                    .with_context(|| format!("creating an index on `{field}`"))?;
                self.line("OK")?;
            }
            Command::DropIndex { field } => {
                store.drop_index(&field).with_context(|| format!("dropping the index on `{field}`"))?;
                self.line("OK")?;
            }
            Command::Indexes => self.indexes(store.indexes().context("listing the indexes")?)?,
            Command::Stats => {
                let stats = store.stats().context("reading the statistics")?;
                self.line(&output::json(&stats, style))?;
            }
            Command::Save => {
                let text =
                    progress::spin(self.progress, "saving a snapshot", || store.save()).context("saving a snapshot")?;
                self.line(&text)?;
            }
            Command::Watch { prefix, from, count } => {
                crate::watch::watch(store, &prefix, from, count, self.format, style, self.out)?;
            }
            Command::Sync => {
                self.local(&command)?.sync().context("syncing the log")?;
                self.line("OK")?;
            }
            Command::Clear { yes } => {
                let n = store.len().context("counting the keys")?;
                if !yes && n > 0 {
                    let question = format!("remove {} from {}? [y/N] ", all(n), store.name());
                    match confirm(&question)? {
                        Some(true) => {}
                        Some(false) => {
                            self.line("cancelled")?;
                            return Ok(Outcome::Done);
                        }
                        None => bail!("`clear` removes every key; where it cannot ask, write `clear --yes`"),
                    }
                }
                let removed = store.clear().context("clearing")?;
                self.line(&format!("cleared {}", count(removed, "key", "keys")))?;
            }
            Command::Backup { path, keep } => {
                let lines = progress::spin(self.progress, "writing a backup", || store.backup(path.as_deref(), keep))
                    .context("writing a backup")?;
                for line in lines {
                    self.line(&line)?;
                }
            }
            Command::Backups => {
                let backups = self.local(&command)?.backups().context("listing the backups")?;
                self.backups(backups)?;
            }
            Command::Restore { ref name, file } => {
                let db = self.local(&command)?;
                if file {
                    refuse_export(Path::new(name))?;
                }
                let report = progress::spin(self.progress, "restoring", || {
                    if file { db.restore_file(Path::new(name)) } else { db.restore(name) }
                })
                .with_context(|| format!("restoring {name}"))?;
                self.line(&report.to_string())?;
            }
            Command::PruneBackups { keep } => {
                let removed = self.local(&command)?.prune_backups(keep).context("pruning the backups")?;
                for path in &removed {
                    self.line(&format!("removed {}", path.display()))?;
                }
                self.line(&format!("{} removed", count(removed.len(), "backup", "backups")))?;
            }
            Command::Export { path, lines, force } => match path {
                None => {
                    store.export(self.out, lines).context("exporting")?;
                }
                Some(path) => {
                    if !force && Path::new(&path).exists() {
                        bail!("{path} already exists; `export {path} --force` replaces it");
                    }
                    let n = export_to_file(store, Path::new(&path), lines)?;
                    self.line(&format!("exported {} to {path}", count(n, "pair", "pairs")))?;
                }
            },
            Command::Import { path, replace } => {
                if !self.stdin_free && (path == "-" || path == "/dev/stdin") {
                    bail!("`import {path}` reads standard input, which holds the commands here; run it one-shot");
                }
                let n = match store.local() {
                    Some(db) => import_with_bar(db, &path, replace, self.progress),
                    None => import_to(store, &path, replace),
                }
                .with_context(|| format!("importing {path}"))?;
                let how = if replace { "replaced the data with" } else { "imported" };
                self.line(&format!("{how} {} from {path}", count(n, "pair", "pairs")))?;
            }
            Command::Begin | Command::Commit | Command::Rollback => self.batch_command(&command)?,
            Command::Verify { .. } | Command::Repair { .. } | Command::Compact => {
                let db = self.local(&command)?;
                bail!(
                    "`{}` works on the closed directory, so it is a one-shot command; leave and run: {}",
                    command.name(),
                    one_shot_line(&command, db.dir())
                );
            }
            Command::Cluster { args } => {
                let answer = store.cluster(&args).context("running the cluster command")?;
                self.line(&answer)?;
            }
            Command::Help { topic } => {
                let text = help(topic.as_deref(), style.color)?;
                self.out.write_all(text.as_bytes())?;
            }
            Command::Exit => return Ok(Outcome::Exit),
        }
        Ok(Outcome::Done)
    }

    /// The local database, for a command that needs the data directory; over
    /// `--connect` an error that says where to run it instead.
    fn local(&self, command: &Command) -> Result<&'a Db> {
        match self.store.local() {
            Some(db) => Ok(db),
            None if matches!(command, Command::Sync) => {
                bail!(
                    "`sync` is the server's to do: with --appendfsync always (its default) each write is synced before its reply"
                )
            }
            None => bail!(
                "`{name}` works on the data directory, on the server's machine, which the server holds open: \
                 stop the server there and run `redru --dir DIR {name}`",
                name = command.name()
            ),
        }
    }

    /// After a listing the limit cut: the command that prints the next page.
    /// On stdout in a table (a person reads it), on stderr otherwise (so a
    /// program's output stays keys only).
    fn more(&mut self, pattern: Option<&Pattern>, range: &KeyRange, next: &str) -> Result<()> {
        let mut command = String::from("list");
        if let Some(p) = pattern {
            command.push(' ');
            command.push_str(&quote_key(match p {
                Pattern::Prefix(text) | Pattern::Glob(text) => text,
            }));
        }
        if let Some(n) = range.limit {
            command.push_str(&format!(" --limit {n}"));
        }
        if let Some(to) = &range.to {
            command.push_str(&format!(" --to {}", quote_key(to)));
        }
        command.push_str(&format!(" --after {}", quote_key(next)));
        let hint = format!("(more: {command})");
        if self.format == Format::Table {
            self.line(&paint(sgr::DIM, &hint, self.style.color))
        } else {
            eprintln!("{hint}");
            Ok(())
        }
    }

    fn line(&mut self, text: &str) -> Result<()> {
        writeln!(self.out, "{text}").context("writing to stdout")
    }

    /// Inside a batch: queues a set or a delete (`None`: nothing more to
    /// run), refuses what cannot join a batch, hands back everything else.
    fn queue(&mut self, command: Command) -> Result<Option<Command>> {
        let Some(batch) = &mut self.batch else { return Ok(Some(command)) };
        match command {
            Command::Set { key, value, only_if: None, ttl: None } => batch.push(Queued::Set(key, value)),
            Command::Set { key, value, only_if: None, ttl: Some(ttl) } => batch.push(Queued::SetTtl(key, value, ttl)),
            Command::Set { only_if: Some(_), .. } | Command::Incr { .. } => {
                bail!(
                    "`{}` with a condition reads the data: it cannot run inside a batch (`commit` first)",
                    command.name()
                )
            }
            Command::Delete { key } => batch.push(Queued::Delete(key)),
            Command::Clear { .. }
            | Command::Import { .. }
            | Command::Restore { .. }
            | Command::Index { .. }
            | Command::DropIndex { .. }
            | Command::Expire { .. }
            | Command::Persist { .. }
            | Command::Begin => {
                bail!("`{}` cannot run inside a batch: `commit` or `rollback` the batch first", command.name())
            }
            other => return Ok(Some(other)),
        }
        self.line("QUEUED")?;
        Ok(None)
    }

    /// `begin`, `commit`, `rollback`.
    fn batch_command(&mut self, command: &Command) -> Result<()> {
        match command {
            Command::Begin => {
                self.batch = Some(Vec::new());
                self.line("OK")
            }
            Command::Commit => {
                let Some(batch) = self.batch.take() else { bail!("`commit` without `begin`") };
                let n = batch.len();
                if !batch.is_empty() {
                    self.store.commit(batch).context("committing the batch (none of its writes was applied)")?;
                }
                self.line(&format!("committed {}", count(n, "write", "writes")))
            }
            _ => {
                let Some(batch) = self.batch.take() else { bail!("`rollback` without `begin`") };
                self.line(&format!("rolled back {}", count(batch.len(), "write", "writes")))
            }
        }
    }

    /// `list`'s keys: quoted for people (so they can be pasted back), unambiguous for programs.
    fn keys(&mut self, keys: Vec<String>) -> Result<()> {
        match self.format {
            Format::Table if keys.is_empty() => self.line(&paint(sgr::DIM, "(no keys)", self.style.color)),
            Format::Json => {
                let all: Vec<String> = keys.iter().map(|k| output::quote(k)).collect();
                self.line(&format!("[{}]", all.join(",")))
            }
            format => keys.iter().try_for_each(|key| {
                self.line(&match format {
                    Format::Table => quote_key(key),
                    Format::Jsonl => output::quote(key),
                    _ => raw_key(key),
                })
            }),
        }
    }

    /// `indexes`: a table for people, tab-separated or JSON for programs.
    fn indexes(&mut self, indexes: Vec<redru::IndexInfo>) -> Result<()> {
        let color = self.style.color;
        match self.format {
            Format::Json | Format::Jsonl => {
                return self.json_rows(serde_json::to_value(&indexes).context("encoding the indexes")?);
            }
            Format::Table if indexes.is_empty() => {
                return self.line(&paint(sgr::DIM, "(no indexes; create one with `index <field>`)", color));
            }
            Format::Table => {
                let width = indexes.iter().map(|i| i.field.len()).max().unwrap_or(5).max(5);
                let head = format!("{:<width$}  {:<6}  {:>8}  {:>8}", "field", "kind", "values", "keys");
                self.line(&paint(sgr::BOLD, &head, color))?;
            }
            Format::Raw => {}
        }
        for i in indexes {
            let kind = match (i.unique, i.kind) {
                (true, _) => "unique",
                (false, IndexKind::Ordered) => "ordered",
                (false, _) => "plain",
            };
            let row = if self.format == Format::Table {
                let width = i.field.len().max(5);
                format!("{:<width$}  {:<6}  {:>8}  {:>8}", i.field, kind, i.distinct_values, i.entries)
            } else {
                format!("{}\t{}\t{}\t{}", i.field, kind, i.distinct_values, i.entries)
            };
            self.line(&row)?;
        }
        Ok(())
    }

    /// `backups`: one line each, or JSON.
    fn backups(&mut self, backups: Vec<redru::BackupInfo>) -> Result<()> {
        match self.format {
            Format::Json | Format::Jsonl => {
                self.json_rows(serde_json::to_value(&backups).context("encoding the backups")?)
            }
            Format::Table if backups.is_empty() => {
                self.line(&paint(sgr::DIM, "(no backups; write one with `backup`)", self.style.color))
            }
            _ => backups.iter().try_for_each(|info| self.line(&info.to_string())),
        }
    }

    fn not_found(&mut self, key: &str) -> Result<Outcome> {
        self.out.flush().context("writing to stdout")?;
        let at = self.line.map(|n| format!("line {n}: ")).unwrap_or_default();
        eprintln!("{at}not found: {}", quote_key(key));
        Ok(Outcome::Missing)
    }

    /// Rows as one JSON array (`json`) or one object per line (`jsonl`).
    fn json_rows(&mut self, rows: serde_json::Value) -> Result<()> {
        let rows = match rows {
            serde_json::Value::Array(rows) => rows,
            other => vec![other],
        };
        if self.format == Format::Json {
            self.line(&serde_json::to_string(&rows).context("encoding the rows")?)?;
        } else {
            for row in &rows {
                self.line(&serde_json::to_string(row).context("encoding a row")?)?;
            }
        }
        Ok(())
    }

    fn entries(&mut self, entries: &[(String, redru::Doc)]) -> Result<()> {
        let style = self.style;
        if self.format == Format::Json {
            let members: Vec<String> =
                entries.iter().map(|(k, v)| format!("{}:{}", output::quote(k), v.as_str())).collect();
            return self.line(&format!("{{{}}}", members.join(",")));
        }
        for (key, value) in entries {
            let line = match self.format {
                // One line per match even in a terminal: compact, but coloured.
                Format::Table => {
                    let compact = Style { pretty: false, ..style };
                    format!("{}  {}", paint(sgr::BOLD, &quote_key(key), style.color), output::doc(value, compact))
                }
                Format::Jsonl => format!("{{\"key\":{},\"value\":{}}}", output::quote(key), value.as_str()),
                _ => format!("{}\t{}", raw_key(key), output::doc(value, Style::PLAIN)),
            };
            self.line(&line)?;
        }
        Ok(())
    }
}

/// `n thing` or `n things`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "the 1 key" / "all 3 keys".
fn all(n: usize) -> String {
    if n == 1 { "the 1 key".into() } else { format!("all {n} keys") }
}

/// The command line that runs a one-shot-only command on `dir`.
pub fn one_shot_line(command: &Command, dir: &Path) -> String {
    let mut line = format!("redru --dir {}", sh_quote(&dir.to_string_lossy()));
    match command {
        Command::Verify { file, json } => {
            line.push_str(" verify");
            if let Some(file) = file {
                line.push_str(&format!(" {}", sh_quote(file)));
            }
            if *json {
                line.push_str(" --json");
            }
        }
        Command::Repair { dry_run } => line.push_str(if *dry_run { " repair --dry-run" } else { " repair" }),
        _ => line.push_str(" compact"),
    }
    line
}

/// `restore --file` of an export: say what it is and what loads it, rather
/// than that a snapshot is damaged.
fn refuse_export(path: &Path) -> Result<()> {
    use std::io::Read;
    const SNAPSHOT: &[u8] = b"{\"format\":\"redru-snapshot\"";
    let Ok(file) = std::fs::File::open(path) else { return Ok(()) };
    // A snapshot is told by its first bytes; only something else is read whole.
    let mut head = Vec::new();
    if file.take(64).read_to_end(&mut head).is_err() || head.trim_ascii_start().starts_with(SNAPSHOT) {
        return Ok(());
    }
    let Ok(bytes) = std::fs::read(path) else { return Ok(()) };
    if import::pairs(&bytes, &mut |_, _| {}).is_ok() {
        let p = path.display();
        bail!("{p} is an export (written by `export`), not a backup; load it with `import {p} --replace`");
    }
    Ok(())
}

/// Exports into a new file, through a temporary name so a failed export
/// leaves no half-written file under the chosen name.
fn export_to_file(store: &dyn Store, path: &Path, lines: bool) -> Result<usize> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = (|| -> Result<usize> {
        let mut file = private_file().open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let n = store.export(&mut file, lines).with_context(|| format!("exporting to {}", tmp.display()))?;
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

/// Imports into a server: the pairs read here, sent as one atomic batch.
fn import_to(store: &dyn Store, path: &str, replace: bool) -> Result<usize> {
    let bytes = import::read_input(path)?;
    let pairs = import::pairs(&bytes, &mut |_, _| {})?;
    let n = pairs.len();
    let mut writes = Vec::with_capacity(n + 1);
    if replace {
        writes.push(Queued::Clear);
    }
    let now = std::time::SystemTime::now();
    for (key, value, expires) in pairs {
        let key = key.into_owned();
        match expires.map(|at| Expiry(at).to_system_time().duration_since(now)) {
            None => writes.push(Queued::Set(key, value)),
            Some(Ok(left)) if !left.is_zero() => writes.push(Queued::SetTtl(key, value, left)),
            // Expired already: not imported.
            Some(_) => {}
        }
    }
    if !writes.is_empty() {
        store.commit(writes).context("applying the pairs (nothing was imported)")?;
    }
    Ok(n)
}

/// Imports with a byte progress bar on stderr while parsing (the long part).
fn import_with_bar(db: &Db, path: &str, replace: bool, progress: bool) -> Result<usize> {
    let bytes = import::read_input(path)?;
    if !progress {
        return import::apply(db, &bytes, replace, &mut |_, _| {});
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("importing {bar:30} {bytes}/{total_bytes} ({eta})") {
        bar.set_style(style);
    }
    let n = import::apply(db, &bytes, replace, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    n
}

/// Sorted keys matching `pattern` (all keys without one).
pub fn matching_keys(db: &Db, pattern: Option<&Pattern>) -> Vec<String> {
    match pattern {
        None => db.keys(),
        Some(p) => db.scan_prefix(&p.literal_prefix()).into_iter().map(|(k, _)| k).filter(|k| p.matches(k)).collect(),
    }
}

/// One page of the keys matching `pattern` in `range`, in key order, through
/// the ordered key sets: a glob is matched on the keys under its literal
/// prefix, and the page has a cursor exactly when another matching key is
/// left (so `--after` it loses and repeats nothing).
pub fn matching_page(db: &Db, pattern: Option<&Pattern>, range: &KeyRange) -> Page<String> {
    let mut listing = Listing::prefix(pattern.map(Pattern::literal_prefix).unwrap_or_default());
    if let Some(key) = &range.from {
        listing = listing.from(key.as_str());
    }
    if let Some(key) = &range.after {
        listing = listing.after(key.as_str());
    }
    if let Some(key) = &range.to {
        listing = listing.to(key.as_str());
    }
    let matches = |k: &str| pattern.is_none_or(|p| p.matches(k));
    let Some(limit) = range.limit else {
        let mut page = db.list(&listing);
        page.items.retain(|k| matches(k));
        return page;
    };
    let mut items: Vec<String> = Vec::new();
    loop {
        // Pages of at least 256 keys: a glob that matches rarely needs few of them.
        let page = db.list(&listing.clone().limit((limit - items.len()).max(256)));
        for key in page.items {
            if !matches(&key) {
                continue;
            }
            if items.len() == limit {
                let next = items.last().cloned();
                return Page { items, next };
            }
            items.push(key);
        }
        match page.next {
            Some(next) => listing = listing.after(next),
            None => return Page { items, next: None },
        }
    }
}

/// [`matching_page`] over keys already listed and sorted (a store that
/// cannot start mid-way lists everything first).
pub fn page_of(mut keys: Vec<String>, range: &KeyRange) -> Page<String> {
    keys.sort_unstable();
    let mut within = keys.into_iter().filter(|k| {
        range.after.as_ref().is_none_or(|a| k > a)
            && range.from.as_ref().is_none_or(|f| k >= f)
            && range.to.as_ref().is_none_or(|t| k < t)
    });
    let items: Vec<String> = within.by_ref().take(range.limit.unwrap_or(usize::MAX)).collect();
    let next = if within.next().is_some() { items.last().cloned() } else { None };
    Page { items, next }
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
    eprintln!("{} {}{hint}", paint(sgr::ERROR, "error:", color), causes(error));
}

/// The chain of causes joined by `: `, each said once: a library error's
/// message already holds the OS error it wraps (`... : Not a directory (os
/// error 20)`), which anyhow would print a second time as the next cause.
pub fn causes(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
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
        Error::ReadOnly { .. } => {
            Some("it was opened with --read-only, or read-only because another process holds it".into())
        }
        Error::BackupNotFound { .. } | Error::BadBackupName { .. } => {
            Some("`redru backups` lists the backups; `restore --file PATH` takes a file elsewhere".into())
        }
        _ => None,
    }
}
