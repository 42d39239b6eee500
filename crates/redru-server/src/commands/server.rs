//! The connection and the server: PING, HELLO, AUTH, CLIENT, SELECT,
//! MULTI/EXEC, COMMAND, CONFIG GET, INFO, SAVE, SHUTDOWN.

use std::sync::atomic::Ordering;

use super::{COMMANDS, Ctx, Spec};
use crate::exec::{self, error_reply};
use crate::glob;
use crate::reply::{Protocol, Reply};
use crate::shared::unix_now;

type R = Result<Reply, Reply>;

pub fn ping(c: &mut Ctx) -> R {
    match c.args.len() {
        1 => Ok(Reply::Simple("PONG".into())),
        2 => Ok(Reply::Bulk(c.args[1].clone())),
        _ => Err(Reply::err("wrong number of arguments for 'ping' command")),
    }
}

pub fn echo(c: &mut Ctx) -> R {
    Ok(Reply::Bulk(c.args[1].clone()))
}

pub fn quit(_: &mut Ctx) -> R {
    Ok(Reply::ok())
}

pub fn select(c: &mut Ctx) -> R {
    match c.int(1)? {
        0 => Ok(Reply::ok()),
        _ => Err(Reply::err("DB index is out of range (redru has one database, 0)")),
    }
}

/// Checks a user and password (the only user is `default`). Without a
/// password configured, `default` takes any password, as Redis's `nopass`
/// default user does: a client configured with a password (redis-py's
/// `HELLO 3 AUTH default ...`) still connects.
fn check_password(c: &mut Ctx, user: &[u8], password: &[u8]) -> R {
    let wrong = || Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into());
    let Some(expected) = &c.shared.config.requirepass else {
        if user != b"default" {
            return Err(wrong());
        }
        c.client.authed = true;
        return Ok(Reply::ok());
    };
    // Compare every byte whatever the first difference, so timing tells nothing.
    let same =
        expected.len() == password.len() && expected.bytes().zip(password).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if user != b"default" || !same {
        return Err(wrong());
    }
    c.client.authed = true;
    Ok(Reply::ok())
}

pub fn auth(c: &mut Ctx) -> R {
    let args = c.args;
    match args.len() {
        // Only the one-argument form is refused without a password, as in Redis.
        2 if c.shared.config.requirepass.is_none() => Err(Reply::err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        )),
        2 => check_password(c, b"default", &args[1]),
        3 => check_password(c, &args[1], &args[2]),
        _ => Err(Reply::err("syntax error")),
    }
}

pub fn hello(c: &mut Ctx) -> R {
    let args = c.args;
    let mut protocol = c.client.protocol;
    if args.len() >= 2 {
        protocol = match c.int(1) {
            Ok(2) => Protocol::Resp2,
            Ok(3) => Protocol::Resp3,
            Ok(_) => return Err(Reply::Error("NOPROTO unsupported protocol version".into())),
            Err(_) => return Err(Reply::err("Protocol version is not an integer or out of range")),
        };
    }
    let mut i = 2;
    let mut name = None;
    while i < args.len() {
        match c.upper(i).as_str() {
            "AUTH" if i + 2 < args.len() => {
                check_password(c, &args[i + 1], &args[i + 2])?;
                i += 3;
            }
            "SETNAME" if i + 1 < args.len() => {
                name = Some(String::from_utf8_lossy(&args[i + 1]).into_owned());
                i += 2;
            }
            _ => {
                return Err(Reply::err(format!(
                    "Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                )));
            }
        }
    }
    if !c.client.authed {
        return Err(Reply::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into()));
    }
    c.client.protocol = protocol;
    if name.is_some() {
        c.client.name = name;
    }
    let number = |n: i64| Reply::Int(n);
    Ok(Reply::Map(vec![
        (Reply::text("server"), Reply::text("redru")),
        (Reply::text("version"), Reply::text(env!("CARGO_PKG_VERSION"))),
        (Reply::text("proto"), number(if protocol == Protocol::Resp3 { 3 } else { 2 })),
        (Reply::text("id"), number(c.client.id as i64)),
        (Reply::text("mode"), Reply::text("standalone")),
        (Reply::text("role"), Reply::text("master")),
        (Reply::text("modules"), Reply::Array(Vec::new())),
    ]))
}

pub fn client(c: &mut Ctx) -> R {
    let sub = c.upper(1);
    match (sub.as_str(), c.args.len()) {
        ("ID", 2) => Ok(Reply::Int(c.client.id as i64)),
        ("GETNAME", 2) => Ok(c.client.name.clone().map_or(Reply::Nil, Reply::text)),
        ("SETNAME", 3) => {
            let name = c.text(2)?;
            if name.contains(|ch: char| ch.is_whitespace() || !ch.is_ascii_graphic()) {
                return Err(Reply::err("Client names cannot contain spaces, newlines or special characters."));
            }
            c.client.name = (!name.is_empty()).then(|| name.to_owned());
            Ok(Reply::ok())
        }
        ("SETINFO", 4) => {
            let value = c.text(3)?.to_owned();
            match c.upper(2).as_str() {
                "LIB-NAME" => c.client.lib.0 = Some(value),
                "LIB-VER" => c.client.lib.1 = Some(value),
                _ => return Err(Reply::err(format!("Unrecognized option '{}'", c.text(2)?))),
            }
            Ok(Reply::ok())
        }
        ("INFO", 2) => Ok(Reply::text(client_line(c) + "\n")),
        ("LIST", _) => Ok(Reply::text(client_line(c) + "\n")),
        _ => Err(Reply::err(format!("unknown subcommand or wrong number of arguments for 'CLIENT|{sub}'"))),
    }
}

/// This connection as CLIENT LIST prints it (other connections are not listed).
fn client_line(c: &Ctx) -> String {
    format!(
        "id={} addr={} name={} age={} db=0 resp={} lib-name={} lib-ver={}",
        c.client.id,
        c.client.addr,
        c.client.name.as_deref().unwrap_or(""),
        c.client.since.elapsed().as_secs(),
        if c.client.protocol == Protocol::Resp3 { 3 } else { 2 },
        c.client.lib.0.as_deref().unwrap_or(""),
        c.client.lib.1.as_deref().unwrap_or(""),
    )
}

pub fn multi(c: &mut Ctx) -> R {
    if c.client.multi.is_some() {
        return Err(Reply::err("MULTI calls can not be nested"));
    }
    c.client.multi = Some(Vec::new());
    c.client.multi_failed = false;
    Ok(Reply::ok())
}

pub fn discard(c: &mut Ctx) -> R {
    c.client.multi.take().ok_or_else(|| Reply::err("DISCARD without MULTI"))?;
    unwatch(c)
}

pub fn watch(c: &mut Ctx) -> R {
    if c.client.multi.is_some() {
        return Err(Reply::err("WATCH inside MULTI is not allowed"));
    }
    let mut watches = c.shared.lock_watches();
    for i in 1..c.args.len() {
        let key = String::from_utf8_lossy(&c.args[i]).into_owned();
        watches.watch(c.client.id, &key);
        c.client.watching.push(key);
    }
    Ok(Reply::ok())
}

pub fn unwatch(c: &mut Ctx) -> R {
    let watching = std::mem::take(&mut c.client.watching);
    c.shared.lock_watches().unwatch(c.client.id, &watching);
    Ok(Reply::ok())
}

pub fn exec(c: &mut Ctx) -> R {
    let queue = c.client.multi.take().ok_or_else(|| Reply::err("EXEC without MULTI"))?;
    if std::mem::take(&mut c.client.multi_failed) {
        return Err(Reply::Error("EXECABORT Transaction discarded because of previous errors.".into()));
    }
    Ok(exec::exec(c.shared, c.client, queue))
}

/// One argument of COMMAND DOCS, as Redis describes them (and redis-cli
/// renders them into its hints and `help`: `[MATCH pattern]` is an optional
/// `pattern` with the token MATCH, `key [key ...]` a `key` flagged multiple).
#[derive(Clone, Debug, PartialEq)]
struct Arg {
    name: String,
    /// `key`, `string`, `pure-token`, `oneof` or `block`.
    kind: &'static str,
    token: Option<String>,
    optional: bool,
    multiple: bool,
    /// The alternatives of a `oneof`, the parts of a `block`.
    parts: Vec<Arg>,
}

impl Arg {
    fn new(name: &str, kind: &'static str) -> Arg {
        Arg { name: name.to_owned(), kind, token: None, optional: false, multiple: false, parts: Vec::new() }
    }

    /// A word of a usage string: `key`, `value`, `GET` (a token), `NX|XX`.
    fn word(word: &str) -> Arg {
        let is_token = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
        if word.contains('|') {
            let mut arg = Arg::new(&word.to_ascii_lowercase(), "oneof");
            arg.parts = word.split('|').map(Arg::word).collect();
            arg
        } else if is_token(word) {
            let mut arg = Arg::new(&word.to_ascii_lowercase(), "pure-token");
            arg.token = Some(word.to_owned());
            arg
        } else {
            Arg::new(word, if word == "key" || word == "newkey" { "key" } else { "string" })
        }
    }

    fn reply(&self) -> Reply {
        let mut fields =
            vec![(Reply::text("name"), Reply::text(&self.name)), (Reply::text("type"), Reply::text(self.kind))];
        if let Some(token) = &self.token {
            fields.push((Reply::text("token"), Reply::text(token)));
        }
        let flags: Vec<Reply> = [(self.optional, "optional"), (self.multiple, "multiple")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, flag)| Reply::Simple(flag.into()))
            .collect();
        if !flags.is_empty() {
            fields.push((Reply::text("flags"), Reply::Array(flags)));
        }
        if !self.parts.is_empty() {
            fields.push((Reply::text("arguments"), Reply::Array(self.parts.iter().map(Arg::reply).collect())));
        }
        Reply::Map(fields)
    }
}

/// Parses a usage string (`cursor [MATCH pattern] [COUNT count]`) into
/// arguments, up to the `]` closing the group it is in (or the end).
fn parse_usage<'a, I: Iterator<Item = &'a str>>(words: &mut I) -> Vec<Arg> {
    let mut out: Vec<Arg> = Vec::new();
    while let Some(word) = words.next() {
        match word {
            "]" => break,
            "[" => {
                let mut inner = parse_usage(words);
                let repeats = inner.last().is_some_and(|a| a.name == "...");
                if repeats {
                    inner.pop();
                }
                let names = |args: &[Arg]| args.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
                if repeats && inner.len() <= out.len() && names(&out[out.len() - inner.len()..]) == names(&inner) {
                    // `key [key ...]`, `key value [key value ...]`: the arguments before repeat.
                    let repeated = out.split_off(out.len() - inner.len());
                    let mut arg = group(repeated);
                    arg.multiple = true;
                    out.push(arg);
                } else if !inner.is_empty() {
                    let mut arg = group(inner);
                    arg.optional = true;
                    arg.multiple = repeats;
                    out.push(arg);
                }
            }
            "..." => out.push(Arg::new("...", "string")),
            word => out.push(Arg::word(word)),
        }
    }
    out
}

/// Several arguments as one: itself if alone, a token and its value
/// (`MATCH pattern`), or a block (`AUTH username password`).
fn group(mut args: Vec<Arg>) -> Arg {
    if args.len() == 1 {
        return args.remove(0);
    }
    if args[0].kind == "pure-token" {
        let token = args.remove(0);
        if args.len() == 1 && args[0].token.is_none() && args[0].kind != "block" {
            let mut arg = args.remove(0);
            arg.token = token.token;
            return arg;
        }
        let mut block = Arg::new(&token.name, "block");
        block.token = token.token;
        block.parts = args;
        return block;
    }
    let mut block = Arg::new(&args[0].name, "block");
    block.parts = args;
    block
}

/// COMMAND DOCS' arguments for `usage` (`key value [NX|XX] [GET]`).
fn arguments(usage: &str) -> Reply {
    let spaced = usage.replace('[', " [ ").replace(']', " ] ");
    let args = parse_usage(&mut spaced.split_whitespace());
    Reply::Array(args.iter().map(Arg::reply).collect())
}

fn docs(spec: &Spec) -> Reply {
    Reply::Map(vec![
        (Reply::text("summary"), Reply::text(spec.summary)),
        (Reply::text("since"), Reply::text("1.0.0")),
        (Reply::text("group"), Reply::text(spec.group)),
        (Reply::text("arguments"), arguments(spec.usage)),
    ])
}

fn info_entry(spec: &Spec) -> Reply {
    let mut flags = vec![Reply::Simple(if spec.write { "write" } else { "readonly" }.into())];
    if spec.no_auth {
        flags.push(Reply::Simple("no_auth".into()));
    }
    let first_key = i64::from(spec.usage.starts_with("key"));
    Reply::Array(vec![
        Reply::text(spec.name),
        Reply::Int(i64::from(spec.arity)),
        Reply::Array(flags),
        Reply::Int(first_key),
        Reply::Int(first_key),
        Reply::Int(first_key),
    ])
}

fn named(c: &Ctx, from: usize) -> Vec<&'static Spec> {
    (from..c.args.len()).filter_map(|i| super::find(&c.args[i])).collect()
}

pub fn command(c: &mut Ctx) -> R {
    if c.args.len() == 1 {
        return Ok(Reply::Array(COMMANDS.iter().map(info_entry).collect()));
    }
    match c.upper(1).as_str() {
        "COUNT" => Ok(Reply::Int(COMMANDS.len() as i64)),
        "LIST" => Ok(Reply::Array(COMMANDS.iter().map(|s| Reply::text(s.name)).collect())),
        "INFO" => Ok(Reply::Array(if c.args.len() == 2 {
            COMMANDS.iter().map(info_entry).collect()
        } else {
            (2..c.args.len()).map(|i| super::find(&c.args[i]).map_or(Reply::Nil, info_entry)).collect()
        })),
        "DOCS" => {
            let specs = if c.args.len() == 2 { COMMANDS.iter().collect() } else { named(c, 2) };
            Ok(Reply::Map(specs.into_iter().map(|s| (Reply::text(s.name), docs(s))).collect()))
        }
        other => Err(Reply::err(format!("unknown subcommand '{other}'. Try COMMAND HELP."))),
    }
}

/// What CONFIG GET answers: Redis's names, redru's values.
fn config_values(c: &Ctx) -> Vec<(&'static str, String)> {
    let cfg = &c.shared.config;
    vec![
        ("appendonly", "yes".into()),
        ("appendfsync", if cfg.durability == crate::Durability::Always { "always" } else { "everysec" }.into()),
        ("bind", cfg.bind.to_string()),
        ("databases", "1".into()),
        ("maxclients", cfg.max_clients.to_string()),
        ("port", cfg.port.to_string()),
        ("proto-max-bulk-len", cfg.limits.max_bytes.to_string()),
        ("protected-mode", "yes".into()),
        ("save", String::new()),
        ("timeout", cfg.idle_timeout.map_or(0, |d| d.as_secs()).to_string()),
    ]
}

pub fn config(c: &mut Ctx) -> R {
    match c.upper(1).as_str() {
        "GET" if c.args.len() >= 3 => {
            let values = config_values(c);
            let mut out = Vec::new();
            for (name, value) in values {
                if (2..c.args.len()).any(|i| glob::matches(c.args[i].to_ascii_lowercase().as_slice(), name.as_bytes()))
                {
                    out.push((Reply::text(name), Reply::text(value)));
                }
            }
            Ok(Reply::Map(out))
        }
        "RESETSTAT" => Ok(Reply::ok()),
        "SET" => Err(Reply::err("CONFIG SET is not supported by redru: restart `redru serve` with the option")),
        _ => Err(Reply::err("unknown CONFIG subcommand or wrong number of arguments")),
    }
}

pub fn info(c: &mut Ctx) -> R {
    let wanted: Vec<String> = (1..c.args.len()).map(|i| c.upper(i).to_ascii_lowercase()).collect();
    let show = |section: &str| {
        wanted.is_empty() || wanted.iter().any(|w| w == section || w == "all" || w == "everything" || w == "default")
    };
    let shared = c.shared;
    let stats = shared.db.stats();
    let mut out = String::new();
    let mut section = |name: &str, title: &str, lines: Vec<String>| {
        if show(name) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            out.push_str(&format!("# {title}\r\n"));
            for line in lines {
                out.push_str(&line);
                out.push_str("\r\n");
            }
        }
    };
    section(
        "server",
        "Server",
        vec![
            "redis_version:7.0.0".into(),
            format!("redru_version:{}", env!("CARGO_PKG_VERSION")),
            "redis_mode:standalone".into(),
            format!("process_id:{}", std::process::id()),
            format!("tcp_port:{}", shared.config.port),
            format!("uptime_in_seconds:{}", shared.started.elapsed().as_secs()),
            format!("data_dir:{}", stats.dir.display()),
        ],
    );
    section(
        "clients",
        "Clients",
        vec![
            format!("connected_clients:{}", shared.connected.load(Ordering::Relaxed)),
            format!("maxclients:{}", shared.config.max_clients),
        ],
    );
    section(
        "persistence",
        "Persistence",
        vec![
            "loading:0".into(),
            format!("rdb_bgsave_in_progress:{}", u8::from(shared.saves.running.load(Ordering::Relaxed))),
            format!("rdb_last_save_time:{}", shared.saves.last.load(Ordering::Relaxed)),
            "aof_enabled:1".into(),
            format!("redru_last_seq:{}", stats.last_seq),
            format!("redru_durable_seq:{}", stats.durable_seq),
            format!("redru_snapshot_seq:{}", stats.snapshot_seq),
            format!("redru_wal_bytes:{}", stats.wal_bytes),
            format!("redru_wal_syncs:{}", stats.wal_syncs),
            format!("redru_durability:{:?}", shared.config.durability),
        ],
    );
    section(
        "stats",
        "Stats",
        vec![
            format!("total_connections_received:{}", shared.total_connections.load(Ordering::Relaxed)),
            format!("total_commands_processed:{}", shared.total_commands.load(Ordering::Relaxed)),
            format!("rejected_connections:{}", shared.rejected_connections.load(Ordering::Relaxed)),
        ],
    );
    let replication = match &shared.config.cluster {
        Some(node) => crate::cluster::info_replication(node),
        None => vec!["role:master".into(), "connected_slaves:0".into()],
    };
    section("replication", "Replication", replication);
    let keyspace = if stats.keys > 0 {
        vec![format!("db0:keys={},expires={},avg_ttl=0", stats.keys, stats.expiring)]
    } else {
        Vec::new()
    };
    section("keyspace", "Keyspace", keyspace);
    Ok(Reply::text(out))
}

pub fn save(c: &mut Ctx) -> R {
    c.shared.db.save().map_err(|e| error_reply(&e))?;
    c.shared.saves.last.store(unix_now(), Ordering::Relaxed);
    Ok(Reply::ok())
}

pub fn bgsave(c: &mut Ctx) -> R {
    if c.shared.saves.running.swap(true, Ordering::AcqRel) {
        return Err(Reply::err("Background save already in progress"));
    }
    let db = std::sync::Arc::clone(&c.shared.db);
    // The thread reports through LASTSAVE and INFO, as Redis's fork does.
    let saves = std::sync::Arc::clone(&c.shared.saves);
    let spawned = std::thread::Builder::new().name("redru-bgsave".into()).spawn(move || {
        if db.save().is_ok() {
            saves.last.store(unix_now(), Ordering::Relaxed);
        }
        saves.running.store(false, Ordering::Release);
    });
    match spawned {
        Ok(thread) => {
            let previous = c.shared.saves.thread.lock().unwrap_or_else(|p| p.into_inner()).replace(thread);
            // The previous one has finished (`running` was false): reap it.
            if let Some(previous) = previous {
                let _ = previous.join();
            }
        }
        Err(e) => {
            c.shared.saves.running.store(false, Ordering::Release);
            return Err(Reply::err(format!("cannot start the background save: {e}")));
        }
    }
    Ok(Reply::Simple("Background saving started".into()))
}

pub fn lastsave(c: &mut Ctx) -> R {
    Ok(Reply::Int(c.shared.saves.last.load(Ordering::Relaxed) as i64))
}

pub fn shutdown(c: &mut Ctx) -> R {
    let save = match c.args.get(1).map(|_| c.upper(1)) {
        None => false,
        Some(o) if o == "SAVE" => true,
        Some(o) if o == "NOSAVE" => false,
        Some(_) => return Err(Reply::err("syntax error")),
    };
    c.shared.db.sync().map_err(|e| error_reply(&e))?;
    if save {
        c.shared.db.save().map_err(|e| error_reply(&e))?;
    }
    c.shared.request_shutdown();
    Ok(Reply::None)
}

/// READONLY / READWRITE / REDRU.CLUSTER outside a cluster (a cluster node runs them in `cluster.rs`).
pub fn no_cluster(_c: &mut Ctx) -> R {
    Err(Reply::err("this server is not a cluster node (start it with `redru serve --cluster`)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An argument as redis-cli renders it in its hints (`cliAddArgument`).
    fn render(arg: &Arg) -> String {
        let repeat = match arg.kind {
            "oneof" => arg.parts.iter().map(render).collect::<Vec<_>>().join("|"),
            "block" => arg.parts.iter().map(render).collect::<Vec<_>>().join(" "),
            "pure-token" => String::new(),
            _ => arg.name.clone(),
        };
        let mut token = arg.token.clone().unwrap_or_default();
        if !token.is_empty() && arg.kind != "pure-token" {
            token.push(' ');
        }
        let mut out = format!("{token}{repeat}");
        if arg.multiple {
            out = format!("{out} [{repeat} ...]");
        }
        if arg.optional { format!("[{out}]") } else { out }
    }

    fn hint(usage: &str) -> String {
        let spaced = usage.replace('[', " [ ").replace(']', " ] ");
        parse_usage(&mut spaced.split_whitespace()).iter().map(render).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn command_docs_arguments_render_as_the_usage() {
        for spec in COMMANDS {
            let want = match spec.usage {
                // A repeated argument that does not repeat the one before it is optional and multiple.
                "subcommand [arg ...]" => "subcommand [arg [arg ...]]",
                "[section ...]" => "[section [section ...]]",
                "[COUNT|DOCS|INFO|LIST [name ...]]" => "[COUNT|DOCS|INFO|LIST [name [name ...]]]",
                "key [path ...]" => "key [path [path ...]]",
                usage => usage,
            };
            assert_eq!(hint(spec.usage), want, "{}", spec.name);
        }
        let scan = parse_usage(&mut "cursor [ MATCH pattern ] [ COUNT count ]".split_whitespace());
        assert_eq!(scan[1].token.as_deref(), Some("MATCH"));
        assert!(scan[1].optional && scan[1].kind == "string" && scan[1].name == "pattern");
        let mset = parse_usage(&mut "key value [ key value ... ]".split_whitespace());
        assert!(mset.len() == 1 && mset[0].kind == "block" && mset[0].multiple && !mset[0].optional);
    }
}
