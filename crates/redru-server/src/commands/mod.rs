//! The command table and the dispatcher: each command's name, arity, flags
//! and documentation (what COMMAND and COMMAND DOCS answer), and the handler
//! that runs it. Handlers are grouped by family: [`keys`] (strings and the
//! keyspace), [`json`] (RedisJSON's JSON.*), [`server`] (connection, server
//! and introspection), [`redru`] (REDRU.*: indexes, queries, backups).
//!
//! A handler sees the data through a [`Tx`]: a write command runs under the
//! server's write gate and its writes commit as one atomic batch; inside
//! MULTI/EXEC all queued commands share one `Tx` and one commit.

pub mod json;
pub mod keys;
pub mod redru;
pub mod server;

use crate::reply::Reply;
use crate::shared::{Client, Shared};
use crate::tx::Tx;

/// What a handler gets: the server, the client, the arguments (the command
/// name first) and the data.
pub struct Ctx<'s, 't> {
    /// Server-wide state.
    pub shared: &'s Shared,
    /// The calling connection.
    pub client: &'s mut Client,
    /// The arguments, the command's name at index 0.
    pub args: &'s [Vec<u8>],
    /// The data, with this command's (or transaction's) writes.
    pub tx: &'s mut Tx<'t>,
}

impl Ctx<'_, '_> {
    /// Argument `i` as text; an error reply if it is not UTF-8.
    pub fn text(&self, i: usize) -> Result<&str, Reply> {
        std::str::from_utf8(&self.args[i]).map_err(|_| Reply::err("argument is not valid UTF-8"))
    }

    /// Argument `i` as a key.
    pub fn key(&self, i: usize) -> Result<&str, Reply> {
        std::str::from_utf8(&self.args[i]).map_err(|_| Reply::err("keys must be valid UTF-8 in redru"))
    }

    /// Argument `i` upper-cased (for options like NX, COUNT).
    pub fn upper(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.args[i]).to_ascii_uppercase()
    }

    /// Argument `i` as an integer, read as Redis reads one ([`parse_int`]).
    pub fn int(&self, i: usize) -> Result<i64, Reply> {
        parse_int(&self.args[i]).ok_or_else(|| Reply::err("value is not an integer or out of range"))
    }
}

/// An integer as Redis reads one (its `string2ll`): an optional `-`, then
/// digits without a leading zero (`0` itself excepted), within i64. Unlike
/// Rust's `str::parse`, it refuses `+1`, `01` and `-0`, so that INCR and the
/// integer arguments accept exactly what Redis accepts.
pub fn parse_int(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let canonical = match digits {
        [] => false,
        [b'0'] => digits.len() == text.len(),
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A handler: a reply, or an error reply through `?`.
pub type Handler = fn(&mut Ctx<'_, '_>) -> Result<Reply, Reply>;

/// One command.
pub struct Spec {
    /// Lower-case name (`json.set`).
    pub name: &'static str,
    /// Redis's arity: n exactly n arguments (name included), -n at least n.
    pub arity: i32,
    /// Writes data: runs under the write gate, its writes committed at the end.
    pub write: bool,
    /// Allowed before AUTH (AUTH, HELLO, QUIT).
    pub no_auth: bool,
    /// Redis's command group (for COMMAND DOCS).
    pub group: &'static str,
    /// One line for COMMAND DOCS and docs/server.md.
    pub summary: &'static str,
    /// The arguments after the name, as Redis documents them (`key value [NX|XX]`).
    pub usage: &'static str,
    /// The handler.
    pub run: Handler,
}

/// A command's flags: `w` writes, `r` only reads, `noauth` runs before AUTH.
macro_rules! flags {
    (w) => {
        (true, false)
    };
    (r) => {
        (false, false)
    };
    (noauth) => {
        (false, true)
    };
}

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:ident, $group:literal, $usage:literal, $summary:literal, $run:path) => {
        Spec {
            name: $name,
            arity: $arity,
            write: flags!($flags).0,
            no_auth: flags!($flags).1,
            group: $group,
            summary: $summary,
            usage: $usage,
            run: $run,
        }
    };
}

/// Every command, sorted by name.
pub static COMMANDS: &[Spec] = &[
    spec!("append", 3, w, "string", "key value", "Appends text to a string value.", keys::append),
    spec!("auth", -2, noauth, "connection", "[username] password", "Authenticates the connection.", server::auth),
    spec!("bgsave", -1, r, "server", "[SCHEDULE]", "Writes a snapshot in the background.", server::bgsave),
    spec!(
        "client",
        -2,
        r,
        "connection",
        "subcommand [arg ...]",
        "CLIENT ID, GETNAME, SETNAME, SETINFO, LIST, INFO.",
        server::client
    ),
    spec!("command", -1, r, "server", "[COUNT|DOCS|INFO|LIST [name ...]]", "Describes the commands.", server::command),
    spec!("config", -2, r, "server", "GET pattern [pattern ...]", "Reads configuration parameters.", server::config),
    spec!("dbsize", 1, r, "server", "", "Number of keys.", keys::dbsize),
    spec!("decr", 2, w, "string", "key", "Decrements an integer value by one.", keys::decr),
    spec!("decrby", 3, w, "string", "key decrement", "Decrements an integer value.", keys::decrby),
    spec!("del", -2, w, "generic", "key [key ...]", "Deletes keys; how many existed.", keys::del),
    spec!("discard", 1, r, "transactions", "", "Discards the queued commands of MULTI.", server::discard),
    spec!("echo", 2, r, "connection", "message", "Returns the message.", server::echo),
    spec!("exec", 1, r, "transactions", "", "Runs the queued commands as one atomic batch.", server::exec),
    spec!("exists", -2, r, "generic", "key [key ...]", "How many of the keys exist.", keys::exists),
    spec!(
        "expire",
        -3,
        w,
        "generic",
        "key seconds [NX|XX|GT|LT]",
        "Sets a key's time to live in seconds.",
        keys::expire
    ),
    spec!(
        "expireat",
        -3,
        w,
        "generic",
        "key unix-time-seconds [NX|XX|GT|LT]",
        "Sets a key's deadline as a Unix time in seconds.",
        keys::expire
    ),
    spec!("expiretime", 2, r, "generic", "key", "A key's deadline in Unix seconds: -1 (none), -2 (no key).", keys::ttl),
    spec!("flushall", -1, w, "server", "[ASYNC|SYNC]", "Removes every key.", keys::flushall),
    spec!("flushdb", -1, w, "server", "[ASYNC|SYNC]", "Removes every key.", keys::flushall),
    spec!("get", 2, r, "string", "key", "The value of a key.", keys::get),
    spec!(
        "getex",
        -2,
        w,
        "string",
        "key [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|PERSIST]",
        "Gets a value and changes its deadline.",
        keys::getex
    ),
    spec!("getset", 3, w, "string", "key value", "Sets a key, returning its old value.", keys::getset),
    spec!(
        "hello",
        -1,
        noauth,
        "connection",
        "[protover [AUTH username password] [SETNAME clientname]]",
        "Chooses RESP2 or RESP3, authenticates, names the client.",
        server::hello
    ),
    spec!("incr", 2, w, "string", "key", "Increments an integer value by one.", keys::incr),
    spec!("incrby", 3, w, "string", "key increment", "Increments an integer value.", keys::incrby),
    spec!(
        "info",
        -1,
        r,
        "server",
        "[section ...]",
        "Server, clients, persistence, stats and keyspace information.",
        server::info
    ),
    spec!("json.del", -2, w, "json", "key [path]", "Deletes a value or a path inside it.", json::del),
    spec!("json.forget", -2, w, "json", "key [path]", "Same as JSON.DEL.", json::del),
    spec!("json.get", -2, r, "json", "key [path ...]", "A JSON value, or the values at paths.", json::get),
    spec!("json.mget", -3, r, "json", "key [key ...] path", "The value at a path of several keys.", json::mget),
    spec!("json.set", -4, w, "json", "key path value [NX|XX]", "Sets a JSON value or a path inside it.", json::set),
    spec!("json.type", -2, r, "json", "key [path]", "The JSON type at a path.", json::type_),
    spec!("keys", 2, r, "generic", "pattern", "Keys matching a glob pattern.", keys::keys),
    spec!("lastsave", 1, r, "server", "", "Unix time of the last successful save.", server::lastsave),
    spec!("mget", -2, r, "string", "key [key ...]", "The values of several keys.", keys::mget),
    spec!("mset", -3, w, "string", "key value [key value ...]", "Sets several keys atomically.", keys::mset),
    spec!("msetnx", -3, w, "string", "key value [key value ...]", "Sets several keys if none exists.", keys::msetnx),
    spec!("multi", 1, r, "transactions", "", "Starts queueing commands for EXEC.", server::multi),
    spec!("persist", 2, w, "generic", "key", "Removes a key's deadline: 1 if it had one.", keys::persist),
    spec!(
        "pexpire",
        -3,
        w,
        "generic",
        "key milliseconds [NX|XX|GT|LT]",
        "Sets a key's time to live in milliseconds.",
        keys::expire
    ),
    spec!(
        "pexpireat",
        -3,
        w,
        "generic",
        "key unix-time-milliseconds [NX|XX|GT|LT]",
        "Sets a key's deadline as a Unix time in milliseconds.",
        keys::expire
    ),
    spec!("pexpiretime", 2, r, "generic", "key", "A key's deadline in Unix ms: -1 (none), -2 (no key).", keys::ttl),
    spec!("ping", -1, r, "connection", "[message]", "PONG, or the message.", server::ping),
    spec!(
        "psetex",
        4,
        w,
        "string",
        "key milliseconds value",
        "Sets a key that expires after milliseconds.",
        keys::setex
    ),
    spec!("pttl", 2, r, "generic", "key", "Milliseconds to live: -1 (no expiry), -2 (no key).", keys::ttl),
    spec!("quit", -1, noauth, "connection", "", "Closes the connection.", server::quit),
    spec!(
        "readonly",
        1,
        r,
        "cluster",
        "",
        "Cluster: this connection's reads come from this node without the read index (maybe stale).",
        server::no_cluster
    ),
    spec!(
        "readwrite",
        1,
        r,
        "cluster",
        "",
        "Cluster: this connection's reads are linearizable again (the default).",
        server::no_cluster
    ),
    spec!("redru.backup", 1, r, "redru", "", "Writes a verified backup; its name.", redru::backup),
    spec!(
        "redru.changes",
        -2,
        r,
        "redru",
        "prefix [from] [COUNT count]",
        "The durable changes under a prefix after a sequence number, and the position to poll from next.",
        redru::changes
    ),
    spec!(
        "redru.cluster",
        -2,
        r,
        "cluster",
        "INIT | ADDLEARNER id peer-addr | MEMBERSHIP id [id ...] | STATUS | SNAPSHOT",
        "Cluster membership and status (docs/cluster.md).",
        server::no_cluster
    ),
    spec!("redru.dropindex", 2, w, "redru", "field", "Removes the index on a field.", redru::dropindex),
    spec!("redru.explain", 2, r, "redru", "query", "The plan of a query and how many match.", redru::explain),
    spec!(
        "redru.find",
        3,
        r,
        "redru",
        "field value",
        "Keys whose field equals a JSON value, through its index.",
        redru::find
    ),
    spec!(
        "redru.index",
        -2,
        w,
        "redru",
        "field [UNIQUE|ORDERED]",
        "Creates a hash or ordered index on a field path.",
        redru::index
    ),
    spec!("redru.indexes", 1, r, "redru", "", "Every index with its statistics.", redru::indexes),
    spec!("redru.query", 2, r, "redru", "query", "Key and value pairs matching a query.", redru::query),
    spec!("redru.stats", 1, r, "redru", "", "The database's counters and sizes, as JSON.", redru::stats),
    spec!("rename", 3, w, "generic", "key newkey", "Renames a key.", keys::rename),
    spec!("renamenx", 3, w, "generic", "key newkey", "Renames a key if the new name is free.", keys::renamenx),
    spec!("save", 1, r, "server", "", "Writes a snapshot now.", server::save),
    spec!(
        "scan",
        -2,
        r,
        "generic",
        "cursor [MATCH pattern] [COUNT count] [TYPE type]",
        "Iterates over the keys.",
        keys::scan
    ),
    spec!("select", 2, r, "connection", "index", "Only database 0 exists.", server::select),
    spec!(
        "set",
        -3,
        w,
        "string",
        "key value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|KEEPTTL]",
        "Sets a key to a string.",
        keys::set
    ),
    spec!("setex", 4, w, "string", "key seconds value", "Sets a key that expires after seconds.", keys::setex),
    spec!("setnx", 3, w, "string", "key value", "Sets a key if it does not exist.", keys::setnx),
    spec!(
        "shutdown",
        -1,
        r,
        "server",
        "[NOSAVE|SAVE]",
        "Syncs, closes every connection and stops the server.",
        server::shutdown
    ),
    spec!("strlen", 2, r, "string", "key", "Length of a string value.", keys::strlen),
    spec!("ttl", 2, r, "generic", "key", "Seconds to live: -1 (no expiry), -2 (no key).", keys::ttl),
    spec!("type", 2, r, "generic", "key", "string, ReJSON-RL (other JSON values) or none.", keys::type_),
    spec!("unlink", -2, w, "generic", "key [key ...]", "Deletes keys; how many existed.", keys::del),
    spec!("unwatch", 1, r, "transactions", "", "Forgets every WATCHed key.", server::unwatch),
    spec!(
        "watch",
        -2,
        r,
        "transactions",
        "key [key ...]",
        "EXEC fails if one of these keys changes first.",
        server::watch
    ),
];

/// The command named `name` (any case).
pub fn find(name: &[u8]) -> Option<&'static Spec> {
    // Compared byte by byte, lower-cased on the fly: no allocation per request.
    let lower = name.iter().map(u8::to_ascii_lowercase);
    COMMANDS.binary_search_by(|spec| spec.name.bytes().cmp(lower.clone())).ok().map(|i| &COMMANDS[i])
}

/// Checks the number of arguments against `spec`.
pub fn check_arity(spec: &Spec, args: &[Vec<u8>]) -> Result<(), Reply> {
    let n = args.len() as i64;
    let arity = i64::from(spec.arity);
    let ok = if arity >= 0 { n == arity } else { n >= -arity };
    if ok { Ok(()) } else { Err(Reply::err(format!("wrong number of arguments for '{}' command", spec.name))) }
}

/// Redis's reply to an unknown command.
pub fn unknown(args: &[Vec<u8>]) -> Reply {
    let name = String::from_utf8_lossy(&args[0]);
    let mut message = format!("unknown command '{name}', with args beginning with: ");
    for arg in args.iter().skip(1).take(10) {
        message.push_str(&format!("'{}' ", String::from_utf8_lossy(arg)));
    }
    Reply::err(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_lower_case() {
        for pair in COMMANDS.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} before {}", pair[0].name, pair[1].name);
        }
        assert!(COMMANDS.iter().all(|s| s.name == s.name.to_ascii_lowercase()));
        assert!(find(b"GeT").is_some());
        assert!(find(b"nope").is_none());
    }

    #[test]
    fn integers_are_read_as_redis_reads_them() {
        for (text, want) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("-12", Some(-12)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("", None),
            ("-", None),
            ("+1", None),
            ("01", None),
            ("-0", None),
            ("00", None),
            (" 1", None),
            ("1 ", None),
            ("1.5", None),
            ("1e3", None),
        ] {
            assert_eq!(parse_int(text.as_bytes()), want, "{text:?}");
        }
    }
}
