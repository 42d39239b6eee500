//! [`Remote`]: the [`Store`] of `redru --connect`, each shell command mapped
//! to the commands of `redru serve` (docs/server.md, "The shell as a client").
//!
//! Invariants: a value read keeps its exact stored text (`TYPE` and `GET` in
//! one MULTI, not JSON.GET's re-encoding); writes that belong together (a
//! batch, `clear`'s count and flush) go in one MULTI/EXEC, so the server
//! applies them atomically; a lost connection is an error naming the server,
//! and the next command connects again.

use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use redru::{Doc, IndexInfo, IndexKind, Query, Ttl};

use super::resp::{Connection, Reply};
use super::{FeedLine, Found, NotWritten, Store, Target, Write};
use crate::shell::helper::Source;
use crate::shell::parser::{Pattern, SetIf};

/// How long one address may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys asked for per SCAN call.
const SCAN_COUNT: &str = "1000";

type Args = Vec<Vec<u8>>;

fn args(words: &[&str]) -> Args {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// A running `redru serve`, reached over RESP2.
pub struct Remote {
    target: Target,
    /// `None` after the connection was lost: the next command reconnects.
    conn: Mutex<Option<Connection>>,
    /// `redru 0.1.0`, as HELLO names the server (empty if it would not say).
    server: String,
}

impl Remote {
    /// Connects (and authenticates), or says why not.
    pub fn connect(target: Target) -> Result<Remote> {
        let (conn, server) = open(&target)?;
        Ok(Remote { target, conn: Mutex::new(Some(conn)), server })
    }

    /// The server's name and version, as it gave them.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends the commands in one pipeline and reads their replies.
    fn pipeline(&self, commands: &[Args]) -> Result<Vec<Reply>> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(open(&self.target)?.0);
        }
        let Some(conn) = slot.as_mut() else { bail!("not connected to {}", self.target.url()) };
        match conn.pipeline(commands) {
            Ok(replies) => Ok(replies),
            Err(e) => {
                // The stream may hold half a reply: never reuse it.
                *slot = None;
                Err(e.context(format!("lost the connection to {}", self.target.url())))
            }
        }
    }

    /// One command, one reply; an error reply becomes an error.
    fn call(&self, words: Args) -> Result<Reply> {
        let reply = self.pipeline(&[words])?.pop().ok_or_else(|| anyhow!("no reply from the server"))?;
        refused(reply)
    }

    /// The commands in one MULTI/EXEC: applied atomically; their replies.
    fn transaction(&self, commands: Vec<Args>) -> Result<Vec<Reply>> {
        let n = commands.len();
        let mut all = vec![args(&["MULTI"])];
        all.extend(commands);
        all.push(args(&["EXEC"]));
        let mut replies = self.pipeline(&all)?;
        let exec = replies.pop().ok_or_else(|| anyhow!("no reply to EXEC"))?;
        // A command refused while queueing is the reason EXEC aborted: name it.
        if let Some(Reply::Error(e)) = replies.iter().find(|r| matches!(r, Reply::Error(_))) {
            bail!("{}", message(e));
        }
        match refused(exec)? {
            Reply::Array(results) if results.len() == n => Ok(results),
            Reply::Nil => bail!("the server aborted the transaction"),
            other => bail!("unexpected reply to EXEC: {other:?}"),
        }
    }

    fn scan(&self, pattern: Option<&Pattern>, limit: usize) -> Result<Vec<String>> {
        let prefix = pattern.map(Pattern::literal_prefix).unwrap_or_default();
        let glob = format!("{}*", escape_glob(&prefix));
        let mut keys = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let reply = self.call(args(&["SCAN", &cursor, "MATCH", &glob, "COUNT", SCAN_COUNT]))?;
            let Reply::Array(mut parts) = reply else { bail!("unexpected reply to SCAN: {reply:?}") };
            let (Some(Reply::Array(page)), Some(next)) = (parts.pop(), parts.pop()) else {
                bail!("unexpected reply to SCAN");
            };
            for key in page {
                let key = text(key)?;
                if pattern.is_none_or(|p| p.matches(&key)) {
                    keys.push(key);
                }
            }
            cursor = text(next)?;
            if cursor == "0" || keys.len() >= limit {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        keys.truncate(limit);
        Ok(keys)
    }
}

impl Store for Remote {
    fn name(&self) -> String {
        self.target.url()
    }
    fn local(&self) -> Option<&redru::Db> {
        None
    }
    fn get(&self, key: &str) -> Result<Option<Doc>> {
        let mut results = self.transaction(vec![args(&["TYPE", key]), args(&["GET", key])])?.into_iter();
        let (Some(kind), Some(value)) = (results.next(), results.next()) else { bail!("unexpected reply to GET") };
        let kind = text(refused(kind)?)?;
        match refused(value)? {
            Reply::Nil => Ok(None),
            // A JSON string comes back as its bytes; anything else as its JSON text.
            Reply::Bulk(bytes) if kind == "string" => {
                let s = String::from_utf8(bytes).map_err(|_| anyhow!("the server sent a value that is not UTF-8"))?;
                Ok(Some(Doc::from(serde_json::Value::String(s))))
            }
            Reply::Bulk(bytes) => {
                let s = String::from_utf8(bytes).map_err(|_| anyhow!("the server sent a value that is not UTF-8"))?;
                Ok(Some(Doc::parse(&s).context("the server sent a value that is not JSON")?))
            }
            other => bail!("unexpected reply to GET: {other:?}"),
        }
    }
    fn set(&self, key: &str, value: Doc) -> Result<()> {
        self.call(args(&["JSON.SET", key, "$", value.as_str()]))?;
        Ok(())
    }
    fn set_with_ttl(&self, key: &str, value: Doc, ttl: Duration) -> Result<()> {
        let ms = ttl.as_millis().to_string();
        for result in
            self.transaction(vec![args(&["JSON.SET", key, "$", value.as_str()]), args(&["PEXPIRE", key, &ms])])?
        {
            refused(result)?;
        }
        Ok(())
    }
    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        Ok(int(self.call(args(&["PEXPIRE", key, &ttl.as_millis().to_string()]))?)? > 0)
    }
    fn ttl(&self, key: &str) -> Result<Ttl> {
        Ok(match int(self.call(args(&["PTTL", key]))?)? {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => {
                let left = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                Ttl::Expires { left, at: std::time::SystemTime::now() + left }
            }
        })
    }
    fn persist(&self, key: &str) -> Result<bool> {
        Ok(int(self.call(args(&["PERSIST", key]))?)? > 0)
    }
    fn set_if(&self, key: &str, value: Doc, only_if: SetIf, ttl: Option<Duration>) -> Result<()> {
        if ttl.is_some() {
            bail!(
                "`set --ttl` with a condition needs the data directory: over the network the condition and the \
                 deadline would be two commands (set, then `expire`)"
            );
        }
        match only_if {
            SetIf::Absent => match self.call(args(&["JSON.SET", key, "$", value.as_str(), "NX"]))? {
                Reply::Nil => Err(NotWritten(format!("`{key}` exists on the server; nothing was written")).into()),
                _ => Ok(()),
            },
            SetIf::Seq(_) => bail!(
                "`set --if-seq` needs the data directory: a server keeps no sequence numbers it could compare \
                 (use `--if-absent`, or run `redru --dir DIR set ...` on the server's machine)"
            ),
        }
    }
    fn incr(&self, key: &str, by: i64) -> Result<i64> {
        int(self.call(args(&["INCRBY", key, &by.to_string()]))?)
    }
    fn seq(&self, _key: &str) -> Result<Option<u64>> {
        bail!("`last-seq` needs the data directory: a server keeps no sequence numbers it could report")
    }
    fn delete(&self, key: &str) -> Result<bool> {
        Ok(int(self.call(args(&["DEL", key]))?)? > 0)
    }
    fn contains(&self, key: &str) -> Result<bool> {
        Ok(int(self.call(args(&["EXISTS", key]))?)? > 0)
    }
    fn len(&self) -> Result<usize> {
        Ok(usize::try_from(int(self.call(args(&["DBSIZE"]))?)?).unwrap_or(0))
    }
    fn keys(&self, pattern: Option<&Pattern>) -> Result<Vec<String>> {
        self.scan(pattern, usize::MAX)
    }
    fn query(&self, query: &Query, plan: bool) -> Result<Found> {
        let query_text = query.to_string();
        let mut commands = vec![args(&["REDRU.QUERY", &query_text])];
        if plan {
            commands.push(args(&["REDRU.EXPLAIN", &query_text]));
        }
        let mut replies = self.pipeline(&commands)?.into_iter();
        let Some(Reply::Array(rows)) = replies.next().map(refused).transpose()? else {
            bail!("unexpected reply to REDRU.QUERY");
        };
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let Reply::Array(pair) = row else { bail!("unexpected entry in the reply to REDRU.QUERY") };
            let mut pair = pair.into_iter();
            let (Some(key), Some(value)) = (pair.next(), pair.next()) else { bail!("unexpected entry") };
            let value = text(value)?;
            entries.push((text(key)?, Doc::parse(&value).context("the server sent a value that is not JSON")?));
        }
        let plan = match replies.next() {
            Some(reply) => Some(explained(refused(reply)?)?.0),
            None => None,
        };
        Ok(Found { entries, plan })
    }
    fn explain(&self, query: &Query) -> Result<(String, usize)> {
        explained(self.call(args(&["REDRU.EXPLAIN", &query.to_string()]))?)
    }
    fn create_index(&self, field: &str, unique: bool, ordered: bool) -> Result<()> {
        let mut words = vec!["REDRU.INDEX", field];
        if unique {
            words.push("UNIQUE");
        } else if ordered {
            words.push("ORDERED");
        }
        self.call(args(&words))?;
        Ok(())
    }
    fn drop_index(&self, field: &str) -> Result<()> {
        self.call(args(&["REDRU.DROPINDEX", field]))?;
        Ok(())
    }
    fn indexes(&self) -> Result<Vec<IndexInfo>> {
        let Reply::Array(rows) = self.call(args(&["REDRU.INDEXES"]))? else {
            bail!("unexpected reply to REDRU.INDEXES")
        };
        rows.into_iter().map(index_info).collect()
    }
    fn cluster(&self, words: &[String]) -> Result<String> {
        let mut command = args(&["REDRU.CLUSTER"]);
        command.extend(words.iter().map(|w| w.as_bytes().to_vec()));
        match self.call(command)? {
            Reply::Int(n) => Ok(n.to_string()),
            reply => text(reply),
        }
    }
    fn stats(&self) -> Result<serde_json::Value> {
        let stats = text(self.call(args(&["REDRU.STATS"]))?)?;
        serde_json::from_str(&stats).context("the server's REDRU.STATS is not JSON")
    }
    fn clear(&self) -> Result<usize> {
        let results = self.transaction(vec![args(&["DBSIZE"]), args(&["FLUSHDB"])])?;
        let n = results.into_iter().next().map(refused).transpose()?.map(int).transpose()?.unwrap_or(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }
    fn commit(&self, writes: Vec<Write>) -> Result<()> {
        let commands = writes
            .iter()
            .flat_map(|w| match w {
                Write::Set(key, value) => vec![args(&["JSON.SET", key, "$", value.as_str()])],
                Write::SetTtl(key, value, ttl) => vec![
                    args(&["JSON.SET", key, "$", value.as_str()]),
                    args(&["PEXPIRE", key, &ttl.as_millis().to_string()]),
                ],
                Write::Delete(key) => vec![args(&["DEL", key])],
                Write::Clear => vec![args(&["FLUSHDB"])],
            })
            .collect();
        for result in self.transaction(commands)? {
            refused(result)?;
        }
        Ok(())
    }
    fn save(&self) -> Result<String> {
        self.call(args(&["SAVE"]))?;
        Ok("saved a snapshot on the server".into())
    }
    fn export(&self, out: &mut dyn std::io::Write, lines: bool) -> Result<usize> {
        let pairs = self.all_pairs()?;
        write_pairs(out, &pairs, lines).context("writing the export")?;
        Ok(pairs.len())
    }
    fn backup(&self, path: Option<&str>, keep: Option<usize>) -> Result<Vec<String>> {
        if path.is_some() || keep.is_some() {
            bail!(
                "`backup` with a file or --keep works on the data directory, on the server's machine: \
                 run `redru --dir DIR backup ...` there (here, `backup` alone writes one into the server's backups/)"
            );
        }
        let name = text(self.call(args(&["REDRU.BACKUP"]))?)?;
        Ok(vec![format!("wrote {name} in the server's backups directory")])
    }
    fn changes(&self, prefix: &str, from: Option<u64>, count: usize) -> Result<(u64, Vec<FeedLine>)> {
        let mut words = vec![b"REDRU.CHANGES".to_vec(), prefix.as_bytes().to_vec()];
        if let Some(from) = from {
            words.push(from.to_string().into_bytes());
        }
        words.extend([b"COUNT".to_vec(), count.to_string().into_bytes()]);
        let Reply::Array(reply) = self.call(words)? else { bail!("unexpected reply to REDRU.CHANGES") };
        let mut reply = reply.into_iter();
        let (Some(position), Some(Reply::Array(rows))) = (reply.next(), reply.next()) else {
            bail!("unexpected reply to REDRU.CHANGES")
        };
        let optional = |r: Option<Reply>| -> Result<Option<String>> {
            match r {
                None | Some(Reply::Nil) => Ok(None),
                Some(r) => text(r).map(Some),
            }
        };
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            let Reply::Array(row) = row else { bail!("unexpected change in REDRU.CHANGES's reply") };
            let mut row = row.into_iter();
            let seq = int(row.next().ok_or_else(|| anyhow!("a change without its sequence number"))?)?;
            let op = text(row.next().ok_or_else(|| anyhow!("a change without its operation"))?)?;
            lines.push(FeedLine {
                seq: seq.max(0) as u64,
                op,
                key: optional(row.next())?,
                value: optional(row.next())?,
            });
        }
        Ok((int(position)?.max(0) as u64, lines))
    }
}

impl Remote {
    /// Every pair, read in one command (`prefix ""` matches every key), so
    /// the export is one consistent state of the database.
    fn all_pairs(&self) -> Result<Vec<(String, Doc)>> {
        let everything = Query::parse("prefix \"\"").context("the query of every key")?;
        Ok(Store::query(self, &everything, false)?.entries)
    }
}

/// `pairs` in the shape of [`redru::Db::export`]: one JSON object of pairs,
/// or one `{"key":..,"value":..}` line each.
fn write_pairs(out: &mut dyn std::io::Write, pairs: &[(String, Doc)], lines: bool) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 16, out);
    if !lines {
        w.write_all(if pairs.is_empty() { b"{" } else { b"{\n" })?;
    }
    for (i, (key, value)) in pairs.iter().enumerate() {
        let key = crate::output::quote(key);
        if lines {
            writeln!(w, "{{\"key\":{key},\"value\":{}}}", value.as_str())?;
        } else {
            let sep = if i > 0 { ",\n" } else { "" };
            write!(w, "{sep}{key}:{}", value.as_str())?;
        }
    }
    if !lines {
        w.write_all(if pairs.is_empty() { b"}\n" } else { b"\n}\n" })?;
    }
    w.flush()
}

impl Source for Remote {
    fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Vec<String> {
        self.scan(Some(&Pattern::Prefix(prefix.to_owned())), limit).unwrap_or_default()
    }
    fn indexed_fields(&self) -> Vec<String> {
        Store::indexes(self).map(|all| all.into_iter().map(|i| i.field).collect()).unwrap_or_default()
    }
    fn backup_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Connects to the first address of `target` that answers, authenticates,
/// and asks the server's name (HELLO 2; a server without HELLO is still used).
fn open(target: &Target) -> Result<(Connection, String)> {
    let url = target.url();
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot connect to {url}: resolving {}", target.host))?;
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(stream) = stream else {
        let why = last.map(|e| e.to_string()).unwrap_or_else(|| "no address".into());
        bail!("cannot connect to {url}: {why} (is `redru serve` running there?)");
    };
    let mut conn = Connection::new(stream)?;
    let mut commands = Vec::new();
    if let Some(password) = &target.password {
        let mut auth = vec!["AUTH"];
        auth.extend(target.user.as_deref());
        auth.push(password);
        commands.push(args(&auth));
    }
    commands.push(args(&["HELLO", "2"]));
    let replies = conn.pipeline(&commands).with_context(|| format!("talking to {url}"))?;
    let mut server = String::new();
    for reply in replies {
        match reply {
            Reply::Error(e) if e.starts_with("NOAUTH") => {
                bail!("{url} needs a password: give --pass PASSWORD or redis://:PASSWORD@HOST:PORT")
            }
            Reply::Error(e) if e.starts_with("WRONGPASS") || e.contains("password") => {
                bail!("{url} refused the password: {}", message(&e))
            }
            Reply::Array(fields) => server = hello_server(&fields),
            _ => {}
        }
    }
    Ok((conn, server))
}

/// `redru 0.1.0` from HELLO's fields (`server`, `version`).
fn hello_server(fields: &[Reply]) -> String {
    let field = |name: &str| {
        fields.chunks(2).find(|kv| kv[0].text() == Some(name)).and_then(|kv| kv.get(1)).and_then(|v| v.text())
    };
    match (field("server"), field("version")) {
        (Some(server), Some(version)) => format!("{server} {version}"),
        (Some(server), None) => server.to_owned(),
        _ => String::new(),
    }
}

/// An error reply as an error; any other reply as it is.
fn refused(reply: Reply) -> Result<Reply> {
    match reply {
        Reply::Error(e) => Err(anyhow!("{}", message(&e))),
        other => Ok(other),
    }
}

/// An error reply's text, without Redis's generic `ERR ` prefix.
fn message(error: &str) -> String {
    error.strip_prefix("ERR ").unwrap_or(error).to_owned()
}

fn text(reply: Reply) -> Result<String> {
    match reply {
        Reply::Bulk(bytes) => String::from_utf8(bytes).map_err(|_| anyhow!("the server sent text that is not UTF-8")),
        Reply::Simple(s) => Ok(s),
        other => bail!("expected text from the server, got {other:?}"),
    }
}

fn int(reply: Reply) -> Result<i64> {
    match reply {
        Reply::Int(n) => Ok(n),
        other => bail!("expected an integer from the server, got {other:?}"),
    }
}

/// REDRU.EXPLAIN's `N matches; PLAN` as (plan, N).
fn explained(reply: Reply) -> Result<(String, usize)> {
    let line = text(reply)?;
    let parsed = line.split_once(" matches; ").and_then(|(n, plan)| Some((plan.to_owned(), n.parse().ok()?)));
    parsed.ok_or_else(|| anyhow!("unexpected reply to REDRU.EXPLAIN: {line:?}"))
}

/// One row of REDRU.INDEXES: `field`, `unique`, `distinct_values`, `entries` as pairs.
fn index_info(row: Reply) -> Result<IndexInfo> {
    let Reply::Array(fields) = row else { bail!("unexpected row in the reply to REDRU.INDEXES") };
    let mut info =
        IndexInfo { field: String::new(), unique: false, kind: IndexKind::Hash, distinct_values: 0, entries: 0 };
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let count = |v: Reply| int(v).map(|n| usize::try_from(n).unwrap_or(0));
        match text(name)?.as_str() {
            "field" => info.field = text(value)?,
            "unique" => info.unique = int(value)? != 0,
            "kind" => info.kind = if text(value)? == "ordered" { IndexKind::Ordered } else { IndexKind::Hash },
            "distinct_values" => info.distinct_values = count(value)?,
            "entries" => info.entries = count(value)?,
            _ => {}
        }
    }
    Ok(info)
}

/// `text` with Redis's glob characters escaped, so that it matches itself.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn explain_and_index_rows_read_back() -> Result<()> {
        let (plan, n) = explained(Reply::Bulk(b"2 matches; index lookup on name".to_vec()))?;
        assert_eq!((plan.as_str(), n), ("index lookup on name", 2));
        let row = Reply::Array(vec![
            Reply::Bulk(b"field".to_vec()),
            Reply::Bulk(b"name".to_vec()),
            Reply::Bulk(b"unique".to_vec()),
            Reply::Int(1),
            Reply::Bulk(b"distinct_values".to_vec()),
            Reply::Int(3),
            Reply::Bulk(b"entries".to_vec()),
            Reply::Int(4),
        ]);
        let info = index_info(row)?;
        assert_eq!(
            info,
            IndexInfo { field: "name".into(), unique: true, kind: IndexKind::Hash, distinct_values: 3, entries: 4 }
        );
        let row = Reply::Array(vec![
            Reply::Bulk(b"field".to_vec()),
            Reply::Bulk(b"age".to_vec()),
            Reply::Bulk(b"kind".to_vec()),
            Reply::Bulk(b"ordered".to_vec()),
        ]);
        assert_eq!(index_info(row)?.kind, IndexKind::Ordered);
        Ok(())
    }
}
