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
    match c.int(1) {
        Ok(0) => Ok(Reply::ok()),
        _ => Err(Reply::err("DB index is out of range (redru has one database, 0)")),
    }
}

/// Checks a password (the only user is `default`).
fn check_password(c: &mut Ctx, user: &[u8], password: &[u8]) -> R {
    let Some(expected) = &c.shared.config.requirepass else {
        return Err(Reply::err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    };
    // Compare every byte whatever the first difference, so timing tells nothing.
    let same =
        expected.len() == password.len() && expected.bytes().zip(password).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if user != b"default" || !same {
        return Err(Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into()));
    }
    c.client.authed = true;
    Ok(Reply::ok())
}

pub fn auth(c: &mut Ctx) -> R {
    let args = c.args;
    match args.len() {
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
                    "syntax error in HELLO option '{}'",
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

/// COMMAND DOCS' arguments for `usage` (`key value [NX|XX] [GET]`).
fn arguments(usage: &str) -> Reply {
    let mut out = Vec::new();
    for word in usage.split_whitespace() {
        if word == "..." || word.ends_with("...]") {
            continue;
        }
        let optional = word.starts_with('[');
        let name = word.trim_matches(|ch| ch == '[' || ch == ']').to_ascii_lowercase();
        let kind = if name == "key" || name == "newkey" {
            "key"
        } else if name.contains('|') {
            "oneof"
        } else {
            "string"
        };
        let mut fields =
            vec![(Reply::text("name"), Reply::text(name.clone())), (Reply::text("type"), Reply::text(kind))];
        if optional {
            fields.push((Reply::text("flags"), Reply::Array(vec![Reply::Simple("optional".into())])));
        }
        if kind == "oneof" {
            let choices = name
                .split('|')
                .map(|choice| {
                    Reply::Map(vec![
                        (Reply::text("name"), Reply::text(choice)),
                        (Reply::text("type"), Reply::text("pure-token")),
                        (Reply::text("token"), Reply::text(choice.to_ascii_uppercase())),
                    ])
                })
                .collect();
            fields.push((Reply::text("arguments"), Reply::Array(choices)));
        }
        out.push(Reply::Map(fields));
    }
    Reply::Array(out)
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
    section("replication", "Replication", vec!["role:master".into(), "connected_slaves:0".into()]);
    let keyspace =
        if stats.keys > 0 { vec![format!("db0:keys={},expires=0,avg_ttl=0", stats.keys)] } else { Vec::new() };
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
    std::thread::Builder::new()
        .name("redru-bgsave".into())
        .spawn(move || {
            if db.save().is_ok() {
                saves.last.store(unix_now(), Ordering::Relaxed);
            }
            saves.running.store(false, Ordering::Release);
        })
        .map_err(|e| Reply::err(format!("cannot start the background save: {e}")))?;
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
