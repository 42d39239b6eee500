//! Guards `redru serve` against real Redis clients, each test driving the
//! real binary on a free loopback port of its own: redis-cli (commands,
//! odd values, --pipe, --scan, the hints it takes from COMMAND DOCS),
//! redis-benchmark, redis-py with RESP3 and RESP2 (pipelines, MULTI/EXEC,
//! SCAN, JSON, AUTH), the same command sequences compared with a real
//! redis-server, and kill -9 during a pipelined load losing no acknowledged
//! write.
//!
//! The tools are Debian's redis-server and redis-tools and PyPI's redis
//! (`.ci/run` installs them). A missing one fails its test with the package
//! to install, unless REDRU_SKIP_REDIS_TOOLS=1, which skips it with a notice.
//! Every wait is bounded (util::PATIENCE) and nothing asserts a duration.
//!
//! One file, past 800 lines: every test here drives the same real server
//! binary through the same helpers.
#![cfg(unix)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use expectrl::process::unix::WaitStatus;
use expectrl::{Eof, Expect, Session};

use crate::util::{
    BoxError, Frame, PATIENCE, RedisServer, Resp, Serve, assert_lines, have_redis_benchmark, have_redis_cli,
    have_redis_py, have_redis_server, run_bounded,
};

type Result<T = (), E = BoxError> = std::result::Result<T, E>;

/// `redis-cli -h 127.0.0.1 -p PORT ARGS...` with `stdin`, bounded in time.
fn redis_cli(port: u16, args: &[&str], stdin: &str) -> Result<crate::util::Ran> {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args);
    let ran = run_bounded(&mut cmd, stdin.as_bytes())?;
    assert!(ran.status.success(), "redis-cli {args:?} exited with {}; stderr:\n{}", ran.status, ran.stderr);
    Ok(ran)
}

/// The bytes GET returns, through the test's own RESP client.
fn get(client: &mut Resp, key: &str) -> Result<Frame> {
    client.call(&["GET", key])
}

fn bulk(text: &str) -> Frame {
    Frame::Bulk(text.as_bytes().to_vec())
}

#[test]
fn redis_cli_ping_set_get_and_values_with_spaces_and_newlines() -> Result {
    if !have_redis_cli()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &[])?;
    let port = server.port();
    assert_eq!(redis_cli(port, &["PING"], "")?.stdout, "PONG\n");
    assert_eq!(redis_cli(port, &["ping", "hello there"], "")?.stdout, "hello there\n");
    assert_eq!(redis_cli(port, &["SET", "greeting", "hello"], "")?.stdout, "OK\n");
    assert_eq!(redis_cli(port, &["GET", "greeting"], "")?.stdout, "hello\n");
    assert_eq!(redis_cli(port, &["--no-raw", "GET", "nope"], "")?.stdout, "(nil)\n");

    // An argument with spaces, newlines, a CR and a tab, as one argv entry.
    let odd = "two words\nsecond line\r\nthird\tend ✓";
    assert_eq!(redis_cli(port, &["SET", "odd key", odd], "")?.stdout, "OK\n");
    assert_eq!(redis_cli(port, &["GET", "odd key"], "")?.stdout, format!("{odd}\n"));
    assert_eq!(
        redis_cli(port, &["--no-raw", "GET", "odd key"], "")?.stdout,
        "\"two words\\nsecond line\\r\\nthird\\tend \\xe2\\x9c\\x93\"\n"
    );
    // -x: the last argument read from stdin, trailing newline included.
    let from_stdin = "line one\n  line two with  spaces\n\n";
    assert_eq!(redis_cli(port, &["-x", "SET", "from-stdin"], from_stdin)?.stdout, "OK\n");

    // What was stored is exactly what was sent, byte for byte.
    let mut client = server.connect()?;
    assert_eq!(get(&mut client, "odd key")?, bulk(odd));
    assert_eq!(get(&mut client, "from-stdin")?, bulk(from_stdin));
    assert_eq!(client.call(&["STRLEN", "odd key"])?, Frame::Int(odd.len() as i64));
    drop(client);
    server.stop()?;

    // And it is still there after a restart.
    let server = Serve::start(dir.path(), &[])?;
    let mut client = server.connect()?;
    assert_eq!(get(&mut client, "odd key")?, bulk(odd));
    assert_eq!(get(&mut client, "greeting")?, bulk("hello"));
    drop(client);
    server.stop()
}

#[test]
fn redis_cli_reads_commands_from_stdin_and_pipes_raw_protocol() -> Result {
    if !have_redis_cli()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &[])?;
    let port = server.port();

    // Many commands on stdin, one a line, with redis-cli's own quoting.
    let script = "SET a 1\nINCR a\nGET a\nSET q \"quoted \\\"value\\\"\\nwith a newline\"\nGET q\n\
                  MSET x 1 y 2\nMGET x y nope\nDEL x y nope\nDBSIZE\nNOSUCH arg\n";
    let ran = redis_cli(port, &["--no-raw"], script)?;
    assert_lines(
        "redis-cli with commands on stdin",
        &ran.stdout,
        &[
            "OK",
            "(integer) 2",
            "\"2\"",
            "OK",
            "\"quoted \\\"value\\\"\\nwith a newline\"",
            "OK",
            "1) \"1\"",
            "2) \"2\"",
            "3) (nil)",
            "(integer) 2",
            "(integer) 2",
            "(error) ERR unknown command 'NOSUCH', with args beginning with: 'arg' ",
        ],
    );

    // --pipe: raw RESP, 3000 SETs (more than the server runs in one batch),
    // then redis-cli's own ECHO to find the last reply.
    let n = 3000;
    let mut raw = Vec::new();
    for i in 0..n {
        Resp::encode(&["SET".to_owned(), format!("pipe:{i}"), format!("value {i}\r\nline two")], &mut raw);
    }
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--pipe"]);
    let ran = run_bounded(&mut cmd, &raw)?;
    assert!(ran.status.success(), "redis-cli --pipe: {}\n{}\n{}", ran.status, ran.stdout, ran.stderr);
    assert!(ran.stdout.contains(&format!("errors: 0, replies: {n}")), "redis-cli --pipe printed:\n{}", ran.stdout);

    let mut client = server.connect()?;
    assert_eq!(client.call(&["DBSIZE"])?, Frame::Int(n + 2));
    for i in [0, 1, 1023, 1024, 2999] {
        assert_eq!(get(&mut client, &format!("pipe:{i}"))?, bulk(&format!("value {i}\r\nline two")));
    }
    drop(client);
    server.stop()
}

#[test]
fn redis_cli_scan_with_a_pattern_returns_every_match_once() -> Result {
    if !have_redis_cli()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &[])?;
    let mut client = server.connect()?;
    let users: BTreeSet<String> = (0..300).map(|i| format!("user:{i}")).collect();
    let others: Vec<String> = (0..120).map(|i| format!("order:{i}")).collect();
    let sets: Vec<Vec<String>> =
        users.iter().chain(&others).map(|k| vec!["SET".into(), k.clone(), "v".into()]).collect();
    assert!(client.pipeline(&sets)?.iter().all(|r| *r == Frame::Simple("OK".into())));

    // redis-cli 7.0 sends SCAN with MATCH and its default COUNT (10): many cursors.
    for (pattern, want) in [
        ("user:*", users.clone()),
        ("*:1?", (10..20).flat_map(|i| [format!("user:{i}"), format!("order:{i}")]).collect()),
    ] {
        let ran = redis_cli(server.port(), &["--scan", "--pattern", pattern], "")?;
        let lines: Vec<&str> = ran.stdout.lines().collect();
        let found: BTreeSet<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(lines.len(), found.len(), "--scan --pattern {pattern} returned a key twice");
        assert_eq!(found, want, "--scan --pattern {pattern}");
    }
    let ran = redis_cli(server.port(), &["--scan"], "")?;
    assert_eq!(ran.stdout.lines().count(), users.len() + others.len());
    drop(client);
    server.stop()
}

/// Waits for `what` on the terminal; the error names it.
fn expect(cli: &mut expectrl::session::OsSession, what: &str) -> Result {
    cli.expect(what).map_err(|e| format!("redis-cli: waiting for {what:?}: {e}"))?;
    Ok(())
}

/// redis-cli asks `COMMAND DOCS` when it starts interactively and builds its
/// hints and `help` from the answer. REDRU.FIND exists only in redru's
/// answer, and SET's summary is redru's own text: seeing both proves redis-cli
/// parsed redru's COMMAND DOCS (on an error it falls back to built-in help).
#[test]
fn redis_cli_takes_its_hints_and_help_from_command_docs() -> Result {
    if !have_redis_cli()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &[])?;
    let prompt = format!("127.0.0.1:{}> ", server.port());
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        // Neither the user's history nor their preferences: the test's own session.
        .env("REDISCLI_HISTFILE", "/dev/null")
        .env("REDISCLI_RCFILE", "/dev/null");
    let mut cli = Session::spawn(cmd)?;
    cli.set_expect_timeout(Some(PATIENCE));
    expect(&mut cli, prompt.as_str())?;

    // The hint after a command name: its arguments, as COMMAND DOCS gave them.
    cli.send("redru.find ")?;
    expect(&mut cli, "field value")?;
    cli.send("\x15set k ")?; // Ctrl-U clears the line
    expect(&mut cli, "value [NX|XX] [GET]")?;
    cli.send("\x15scan ")?;
    expect(&mut cli, "cursor [MATCH pattern] [COUNT count] [TYPE type]")?;
    cli.send("\x15help redru.find\r")?;
    expect(&mut cli, "REDRU.FIND")?;
    expect(&mut cli, "Keys whose field equals a JSON value, through its index.")?;
    expect(&mut cli, "group:")?;
    expect(&mut cli, "redru")?;
    expect(&mut cli, prompt.as_str())?;
    cli.send("help set\r")?;
    expect(&mut cli, "Sets a key to a string.")?;
    expect(&mut cli, prompt.as_str())?;
    // And it still talks to the server.
    cli.send("set hinted yes\r")?;
    expect(&mut cli, "OK")?;
    expect(&mut cli, prompt.as_str())?;
    cli.send("quit\r")?;
    cli.expect(Eof)?;
    let status = cli.get_process().wait()?;
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "redis-cli ended with {status:?}");

    let mut client = server.connect()?;
    assert_eq!(get(&mut client, "hinted")?, bulk("yes"));
    // The same answer, read directly: a map of command name to its docs.
    let Frame::Array(docs) = client.call(&["COMMAND", "DOCS", "get", "set"])? else {
        return Err("COMMAND DOCS did not answer an array in RESP2".into());
    };
    assert_eq!(docs.len(), 4, "{docs:?}");
    assert_eq!(docs[0], bulk("get"));
    assert!(
        matches!(&docs[1], Frame::Array(fields) if fields.contains(&bulk("summary")) && fields.contains(&bulk("arguments")))
    );
    drop(client);
    server.stop()
}

#[test]
fn redis_benchmark_runs_and_the_keys_it_wrote_exist() -> Result {
    if !have_redis_benchmark()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &[])?;
    let port = server.port().to_string();
    let bench = |extra: &[&str]| -> Result<crate::util::Ran> {
        let mut cmd = Command::new("redis-benchmark");
        cmd.args(["-h", "127.0.0.1", "-p", &port]).args(extra);
        let ran = run_bounded(&mut cmd, b"")?;
        assert!(ran.status.success(), "redis-benchmark {extra:?}: {}\n{}\n{}", ran.status, ran.stdout, ran.stderr);
        Ok(ran)
    };
    let ran = bench(&["-n", "2000", "-c", "20", "-P", "16", "-t", "set,get", "-q"])?;
    for test in ["SET: ", "GET: "] {
        assert!(ran.stdout.contains(test) && ran.stdout.contains("requests per second"), "{}", ran.stdout);
    }
    // Without -r every SET writes the one key `key:__rand_int__`, a 3-byte value.
    let mut client = server.connect()?;
    assert_eq!(client.call(&["STRLEN", "key:__rand_int__"])?, Frame::Int(3));

    // With -r, keys key:000000000NNN; with -d, values of that size.
    bench(&["-n", "2000", "-c", "20", "-P", "16", "-t", "set", "-r", "100", "-d", "64", "-q"])?;
    let Frame::Array(keys) = client.call(&["KEYS", "key:0*"])? else { return Err("KEYS: not an array".into()) };
    assert!(!keys.is_empty() && keys.len() <= 100, "{} keys", keys.len());
    for key in &keys {
        let key = key.text().ok_or("a key that is not text")?;
        assert!(key.len() == "key:000000000000".len(), "{key}");
        assert_eq!(client.call(&["STRLEN", key])?, Frame::Int(64), "{key}");
    }
    drop(client);
    server.stop()?;

    // Everything it was told was written survives a restart.
    let server = Serve::start(dir.path(), &[])?;
    let mut client = server.connect()?;
    assert_eq!(client.call(&["DBSIZE"])?, Frame::Int(keys.len() as i64 + 1));
    drop(client);
    server.stop()
}

/// redis-py against `redru serve`: PROTOCOL is `default` (redis-py 8's RESP3,
/// opened with HELLO 3), `2` or `3`. Prints `ok` at the end.
const REDIS_PY_CLIENT: &str = r#"
import sys, redis
port, proto = int(sys.argv[1]), sys.argv[2]
kw = {} if proto == "default" else {"protocol": int(proto)}
r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=60, **kw)
want = 2 if proto == "2" else 3
info = r.client_info()
assert int(info["resp"]) == want, info
assert r.ping() is True
if want == 3:
    # A password for a server that has none: HELLO 3 AUTH default ... succeeds, as with Redis.
    assert redis.Redis(host="127.0.0.1", port=port, password="unused", socket_timeout=60, **kw).ping() is True
p = f"py-{proto}:"
assert r.set(p + "a", "hello world\nline 2") is True
assert r.get(p + "a") == "hello world\nline 2"
assert r.get(p + "missing") is None
assert r.set(p + "a", "x", nx=True) is None
assert r.set(p + "a", "v2", xx=True, get=True) == "hello world\nline 2"
assert r.get(p + "a") == "v2"

pipe = r.pipeline(transaction=False)
for i in range(50):
    pipe.set(f"{p}k{i}", str(i))
pipe.incr(p + "n")
pipe.get(p + "k7")
got = pipe.execute()
assert got == [True] * 50 + [1, "7"], got

with r.pipeline() as tx:  # MULTI ... EXEC
    tx.incrby(p + "n", 10)
    tx.mset({p + "x": "1", p + "y": "2"})
    tx.mget(p + "x", p + "y", p + "none")
    got = tx.execute()
assert got == [11, True, ["1", "2", None]], got
with r.pipeline() as tx:  # a command refused while queueing aborts the whole transaction
    tx.set(p + "x", "changed")
    tx.execute_command("SET", p + "y")
    try:
        tx.execute()
        raise SystemExit("EXEC after a refused command succeeded")
    except redis.ResponseError as e:
        assert "EXECABORT" in str(e) or "wrong number of arguments" in str(e), repr(e)
assert r.get(p + "x") == "1"

matched = list(r.scan_iter(match=p + "k1*", count=7))
assert len(matched) == len(set(matched)), matched
assert sorted(matched) == sorted([p + "k1"] + [f"{p}k{i}" for i in range(10, 20)]), matched
assert r.exists(p + "x", p + "y", p + "none") == 2
assert r.delete(p + "x", p + "none") == 1

doc = {"name": "Ada", "tags": ["a", "b"], "n": 3, "nested": {"ok": True}}
assert r.json().set(p + "doc", "$", doc) is True
assert r.json().get(p + "doc") == doc, r.json().get(p + "doc")
assert r.json().get(p + "doc", "$.nested.ok") == [True]
assert r.json().get(p + "doc", ".name") == "Ada"
assert r.json().set(p + "doc", "$.n", 4) is True
assert r.json().get(p + "doc", "$.n") == [4]
assert r.type(p + "doc") == "ReJSON-RL"
assert r.json().delete(p + "doc", "$.tags") == 1
assert r.json().get(p + "doc") == {"name": "Ada", "n": 4, "nested": {"ok": True}}
print("ok")
"#;

/// Runs a Python script given on stdin with `args`; asserts it printed `ok`.
fn python(script: &str, args: &[&str]) -> Result {
    let mut cmd = Command::new("python3");
    cmd.arg("-").args(args);
    let ran = run_bounded(&mut cmd, script.as_bytes())?;
    assert!(
        ran.status.success() && ran.stdout.trim_end().ends_with("ok"),
        "python3 {args:?} exited with {}\nstdout:\n{}\nstderr:\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
    Ok(())
}

#[test]
fn redis_py_with_resp3_and_resp2() -> Result {
    if !have_redis_py()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let server = Serve::start(dir.path(), &[])?;
    let port = server.port().to_string();
    for protocol in ["default", "2", "3"] {
        python(REDIS_PY_CLIENT, &[&port, protocol])?;
    }
    // What redis-py wrote, read back by another client.
    let mut client = server.connect()?;
    assert_eq!(get(&mut client, "py-2:a")?, bulk("v2"));
    assert_eq!(get(&mut client, "py-default:n")?, bulk("11"));
    assert_eq!(client.call(&["JSON.GET", "py-3:doc"])?, bulk(r#"{"n":4,"name":"Ada","nested":{"ok":true}}"#));
    drop(client);
    server.stop()
}

/// redis-py with a password: every protocol authenticates with the right one;
/// a wrong password or user is refused; no password gets NOAUTH (redis-py
/// strips the prefix: its AuthenticationError carries Redis's texts).
const REDIS_PY_AUTH: &str = r#"
import sys, redis
from redis.backoff import NoBackoff
from redis.retry import Retry
port, password = int(sys.argv[1]), sys.argv[2]
for kw in [{}, {"protocol": 2}, {"protocol": 3}]:
    def client(**more):
        # No retries: redis-py 8 retries a refused AUTH with backoff, seconds each.
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=60,
                           retry=Retry(NoBackoff(), 0), **kw, **more)
    r = client(password=password)
    assert r.ping() is True
    assert r.set("authed", "yes") is True and r.get("authed") == "yes"
    assert int(r.client_info()["resp"]) == kw.get("protocol", 3)
    for bad in [dict(password="wrong"), dict(username="default", password="wrong"),
                dict(username="other", password=password)]:
        try:
            client(**bad).ping()
            raise SystemExit(f"{kw} {bad}: accepted")
        except redis.AuthenticationError as e:
            assert "invalid username-password pair" in str(e), (kw, bad, repr(e))
    try:
        client().get("authed")
        raise SystemExit(f"{kw}: accepted without a password")
    except redis.AuthenticationError as e:
        # RESP2: the command's NOAUTH; RESP3: HELLO's NOAUTH.
        assert "Authentication required" in str(e) or "HELLO must be called with the client already authenticated" in str(e), (kw, repr(e))
print("ok")
"#;

#[test]
fn redis_py_auth_with_requirepass() -> Result {
    if !have_redis_py()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let password = "s3cret with spaces";
    let server = Serve::start(dir.path(), &["--requirepass", password])?;
    python(REDIS_PY_AUTH, &[&server.port().to_string(), password])?;
    // The raw replies, prefixes included.
    let mut client = server.connect()?;
    assert_eq!(client.call(&["GET", "authed"])?, Frame::Error("NOAUTH Authentication required.".into()));
    assert!(matches!(client.call(&["AUTH", "nope"])?, Frame::Error(e) if e.starts_with("WRONGPASS ")));
    assert_eq!(client.call(&["AUTH", password])?, Frame::Simple("OK".into()));
    assert_eq!(get(&mut client, "authed")?, bulk("yes"));
    drop(client);
    server.stop()
}

// ---------------------------------------------------------------------------
// The differential test.

/// Command sequences, each run on an emptied database (FLUSHDB first) by
/// both servers; every reply must be the same. Arguments are split at spaces;
/// `"..."` holds spaces and `\n \r \t \" \\` escapes, `""` is empty.
///
/// Only commands both implement with the same meaning: one database (redru
/// has only 0, so no SELECT n), no
/// SCAN/KEYS order (Redis's is a hash order), only string values (TYPE and
/// WRONGTYPE on Redis's other types mean nothing in redru).
///
/// Left out, because redru chose differently (docs/server.md): SELECT n
/// other than 0 (redru has one database), keys and values that are not UTF-8 (redru
/// refuses them, it stores text), the order of KEYS and SCAN (Redis's is its
/// hash order; KEYS is compared sorted), HELLO/INFO/CONFIG contents (server
/// name, version, settings).
///
/// A line starting with `^ ` compares an array's elements in any order (KEYS);
/// `? ` only the kind of reply (HELLO's map names the server and its version);
/// `% ` integers within a second (1000) of each other when both are
/// positive, equal otherwise: a TTL read on two servers at two moments.
/// A line starting with `~ ` compares only the error's prefix (`ERR`,
/// `WRONGTYPE`, ...), for errors whose text legitimately differs:
/// - `SELECT 16`, `SELECT -1`: both refuse, redru adds "(redru has one
///   database, 0)" to Redis's "DB index is out of range", because for redru
///   every index but 0 is out of range.
const SEQUENCES: &[(&str, &[&str])] = &[
    (
        "expiry",
        &[
            "SET a 1 EX 100",
            "% TTL a",
            "% PTTL a",
            "SET a 2",
            "TTL a",
            "SET a 3 PX 100000",
            "% PTTL a",
            "SET a 4 KEEPTTL",
            "% PTTL a",
            "GET a",
            "PERSIST a",
            "PERSIST a",
            "PERSIST nope",
            "TTL a",
            "EXPIRE a 100",
            "% TTL a",
            "EXPIRE a 100 NX",
            "EXPIRE a 200 XX",
            "EXPIRE a 50 GT",
            "EXPIRE a 50 LT",
            "% TTL a",
            "EXPIRE a 10 NX XX",
            "EXPIRE a 10 GT LT",
            "EXPIRE a 10 BOGUS",
            "EXPIRE a 9223372036854775807",
            "EXPIRE a x",
            "EXPIRE nope 10",
            "PERSIST a",
            "EXPIRE a 10 XX",
            "EXPIRE a 10 GT",
            "EXPIRE a 10 LT",
            "PEXPIRE a 100000",
            "% PTTL a",
            "EXPIREAT a 4102444800",
            "EXPIRETIME a",
            "PEXPIRETIME a",
            "PEXPIREAT a 4102444800123",
            "PEXPIRETIME a",
            "EXPIRETIME a",
            "EXPIRETIME nope",
            "SET p 1",
            "EXPIRETIME p",
            "PEXPIRETIME p",
            "EXPIRE a 0",
            "EXISTS a",
            "SET a 1",
            "EXPIRE a -5",
            "EXISTS a",
            "SET a 1",
            "PEXPIREAT a 1000",
            "EXISTS a",
            "SET a 1 EX 0",
            "SET a 1 EX -1",
            "SET a 1 EX x",
            "SET a 1 EX 10 PX 10",
            "SET a 1 KEEPTTL EX 10",
            "SET a 1 EX",
            "EXISTS a",
            "SET a 1 EXAT 4102444800",
            "EXPIRETIME a",
            "SET a 1 PXAT 4102444800123",
            "PEXPIRETIME a",
            "SET a 2 NX EX 10",
            "SET a 2 XX GET EX 10",
            "% TTL a",
            "SETEX s 100 v",
            "% TTL s",
            "GET s",
            "SETEX s 0 v",
            "SETEX s x v",
            "PSETEX s 100000 v",
            "% PTTL s",
            "GETEX s",
            "GETEX s PERSIST",
            "TTL s",
            "GETEX s EX 100",
            "% TTL s",
            "GETEX s PX 100000 PERSIST",
            "GETEX nope EX 10",
            "GETEX s EX 0",
            "INCR c",
            "EXPIRE c 100",
            "INCR c",
            "% TTL c",
            "APPEND c x",
            "% TTL c",
            "RENAME c d",
            "% TTL d",
            "EXISTS c",
            "MULTI",
            "SET m 1 PX 100000",
            "PERSIST m",
            "TTL m",
            "EXEC",
            "GETSET d 5",
            "TTL d",
            "DBSIZE",
        ],
    ),
    (
        "connection",
        &[
            "PING",
            "PING hello",
            "PING \"\"",
            "PING a b",
            "ECHO \"hi there\"",
            "ECHO \"\"",
            "ECHO",
            "ECHO a b",
            "SELECT 0",
            "SELECT x",
            "~ SELECT 16",
            "~ SELECT -1",
            "AUTH x",
            "AUTH default x",
            "AUTH other x",
            "AUTH a b c",
            "AUTH",
            "? HELLO 2 AUTH default x",
            "HELLO 2 AUTH other x",
            "HELLO 2 AUTH default",
            "HELLO 4",
            "HELLO x",
            "? HELLO 2",
            "PING",
            "DBSIZE",
            "DBSIZE x",
        ],
    ),
    (
        "set and get",
        &[
            "SET k v",
            "GET k",
            "SET k v2 NX",
            "SET k v3 XX",
            "GET k",
            "SET nope v XX",
            "GET nope",
            "SET k v4 GET",
            "SET k2 v NX GET",
            "SET k3 v XX GET",
            "SET k v nx",
            "set k v5 xx get",
            "SET k v NX XX",
            "SET k v BOGUS",
            "SET k",
            "SET",
            "GET",
            "GET k k",
            "GET k",
            "GET k2",
            "EXISTS k3",
            "SET \"key with spaces\" \"value\\r\\nwith\\nnewlines\\tand tabs\"",
            "GET \"key with spaces\"",
            "STRLEN \"key with spaces\"",
            "SET utf8 \"héllo wörld ✓\"",
            "STRLEN utf8",
            "APPEND utf8 \"✓\"",
            "GET utf8",
            "SET \"\" empty-key",
            "GET \"\"",
            "SET e \"\"",
            "GET e",
            "STRLEN e",
            "EXISTS e \"\"",
            "GETSET k new",
            "GETSET missing x",
            "GET missing",
            "GETSET k",
            "SETNX k z",
            "SETNX fresh z",
            "GET fresh",
            "SETNX a",
            "DBSIZE",
        ],
    ),
    (
        "keyspace",
        &[
            "MSET a 1 b 2 c 3",
            "MSET a 1 b",
            "MSET",
            "MGET a b nope c",
            "MGET",
            "MSETNX a 9 z 9",
            "MGET a z",
            "MSETNX y 1 z 2",
            "MSETNX x 1 x 2",
            "GET x",
            "MSETNX a",
            "MSETNX a 1 b",
            "FLUSHALL x",
            "FLUSHALL",
            "DBSIZE",
            "MSET a 1 b 2",
            "FLUSHALL ASYNC",
            "MSET a 1 b 2 c 3 x 1 y 1 z 1",
            "MSET h1 1 h2 2 hello 3 hallo 4 hxllo 5 h*llo 6 \"a[b\" 7 a\\b 8 \"\" 9",
            "^ KEYS *",
            "^ KEYS h?llo",
            "^ KEYS h*llo",
            "^ KEYS h[ae]llo",
            "^ KEYS h[^e]llo",
            "^ KEYS h[a-h]llo",
            "^ KEYS h\\*llo",
            "^ KEYS a[[]b",
            "^ KEYS a\\\\b",
            "^ KEYS \"\"",
            "^ KEYS nothing*",
            "KEYS",
            "DEL h1 h2 hello hallo hxllo h*llo \"a[b\" a\\b \"\"",
            "DEL a nope b",
            "UNLINK c c",
            "DEL",
            "UNLINK",
            "EXISTS a b y y nope",
            "EXISTS",
            "TYPE y",
            "TYPE nope",
            "TYPE",
            "RENAME y y2",
            "GET y2",
            "EXISTS y",
            "RENAME nope x",
            "RENAME y2 y2",
            "RENAME z y2",
            "GET y2",
            "EXISTS z",
            "RENAMENX y2 x",
            "RENAMENX y2 fresh",
            "GET fresh",
            "RENAMENX nope q",
            "RENAMENX fresh fresh",
            "RENAME",
            "RENAMENX a",
            "DBSIZE",
            "TTL fresh",
            "PTTL fresh",
            "TTL nope",
            "PTTL nope",
            "TTL",
            "PTTL a b",
            "FLUSHDB",
            "DBSIZE",
            "SET a 1",
            "FLUSHDB ASYNC",
            "SET a 1",
            "FLUSHDB SYNC",
            "FLUSHDB bogus",
            "FLUSHDB SYNC ASYNC",
            "DBSIZE",
        ],
    ),
    (
        "counters",
        &[
            "INCR n",
            "INCR n",
            "INCRBY n 10",
            "INCRBY n -3",
            "DECR n",
            "DECRBY n 5",
            "DECRBY n -5",
            "GET n",
            "INCRBY n x",
            "INCRBY n 1.5",
            "INCRBY n \"\"",
            "INCRBY n +1",
            "INCRBY n 01",
            "INCRBY n -0",
            "INCRBY n \" 1\"",
            "INCRBY n 0",
            "DECRBY n 00",
            "GET n",
            "SET s hello",
            "INCR s",
            "DECR s",
            "SET f 1.5",
            "INCR f",
            "SET plus +1",
            "INCR plus",
            "SET lead 01",
            "INCR lead",
            "SET zero 0",
            "INCR zero",
            "SET negzero -0",
            "INCR negzero",
            "SET sp \" 1\"",
            "INCR sp",
            "SET trail \"1 \"",
            "INCR trail",
            "SET e \"\"",
            "INCR e",
            "SET neg -42",
            "INCRBY neg 2",
            "SET big 9223372036854775807",
            "INCR big",
            "GET big",
            "DECR big",
            "SET small -9223372036854775808",
            "DECR small",
            "INCRBY small -1",
            "DECRBY small 9223372036854775807",
            "DECRBY n -9223372036854775808",
            "INCRBY n 9223372036854775808",
            "SET huge 99999999999999999999",
            "INCR huge",
            "INCR",
            "INCR a b",
            "INCRBY n",
            "DECRBY",
            "DECR",
            "APPEND new abc",
            "APPEND new \"\"",
            "APPEND new \" def\"",
            "GET new",
            "STRLEN new",
            "APPEND n 0",
            "GET n",
            "INCR n",
            "APPEND",
            "APPEND a",
            "STRLEN nope",
            "STRLEN",
        ],
    ),
    (
        "transactions",
        &[
            "MULTI",
            "SET t 1",
            "INCR t",
            "GET t",
            "EXEC",
            "GET t",
            "MULTI",
            "EXEC",
            "MULTI",
            "SET t",
            "GET t",
            "EXEC",
            "GET t",
            "MULTI",
            "NOPE x",
            "SET t 9",
            "EXEC",
            "GET t",
            "MULTI",
            "DISCARD",
            "DISCARD",
            "EXEC",
            "MULTI",
            "MULTI",
            "SET t 7",
            "DISCARD",
            "GET t",
            "SET s text",
            "MULTI",
            "INCR s",
            "SET after 1",
            "EXEC",
            "GET after",
            "MULTI",
            "PING",
            "ECHO x",
            "SELECT 0",
            "DBSIZE",
            "EXEC",
            "SET a 1",
            "MULTI",
            "DEL a",
            "EXISTS a",
            "SET a 2",
            "RENAME a b",
            "GET b",
            "GETSET b 3",
            "MSETNX b 1 c 1",
            "EXEC",
            "MGET a b c",
            "MULTI",
            "FLUSHDB",
            "SET only 1",
            "DBSIZE",
            "EXEC",
            "DBSIZE",
            "EXEC x",
            "MULTI x",
            "DISCARD x",
            "MULTI",
            "SET t 5",
            "EXEC x",
            "EXEC",
            "GET t",
            "MULTI",
            "SET t 6",
            "DISCARD x",
            "EXEC",
            "GET t",
            "MULTI",
            "SELECT",
            "DISCARD",
            "gEt t",
        ],
    ),
    (
        "unknown commands and arity",
        &[
            "NOSUCH",
            "NOSUCH a b",
            "nosuch \"with space\"",
            "GET a b",
            "MGET",
            "PING a b c",
            "SET a b c d",
            "SETNX a",
            "GETSET a",
            "EXISTS",
            "RENAME a",
            "STRLEN a b",
            "SELECT",
        ],
    ),
    ("quit", &["PING", "QUIT"]),
    ("quit inside MULTI", &["MULTI", "SET q 1", "QUIT"]),
    ("after a MULTI that quit", &["EXISTS q", "MULTI", "DISCARD"]),
];

/// The password of [`AUTH_SEQUENCES`]' servers.
const PASSWORD: &str = "pass word";

/// Sequences for servers started with a password (no FLUSHDB first; each on
/// a new connection), compared as [`SEQUENCES`] are. Left out: a command
/// with the wrong number of arguments before AUTH (Redis checks the arity
/// first and answers ERR; redru answers NOAUTH first); `~ HELLO` before AUTH:
/// both refuse with NOAUTH, and redru's text is Redis 7.2's ("HELLO <proto>
/// AUTH <user> <pass>"), Debian's 7.0 says "HELLO AUTH <user> <pass>".
const AUTH_SEQUENCES: &[(&str, &[&str])] = &[
    (
        "before AUTH",
        &[
            "PING",
            "GET a",
            "SET a 1",
            "NOSUCH x",
            "MULTI",
            "EXEC",
            "DISCARD",
            "~ HELLO 3",
            "~ HELLO",
            "HELLO 3 AUTH default nope",
            "HELLO 3 AUTH other \"pass word\"",
            "AUTH nope",
            "AUTH other \"pass word\"",
            "AUTH",
            "ECHO x",
            "CLIENT SETNAME x",
            "GET a",
            "QUIT",
        ],
    ),
    (
        "AUTH",
        &[
            "AUTH nope",
            "GET a",
            "AUTH \"pass word\"",
            "SET a 1",
            "GET a",
            "AUTH nope",
            "GET a",
            "AUTH default \"pass word\"",
            "DEL a",
            "QUIT",
        ],
    ),
    (
        "HELLO AUTH",
        &["? HELLO 3 AUTH default \"pass word\"", "SET a 1", "GET a", "GET nope", "? HELLO 2", "GET nope", "DEL a"],
    ),
    ("MULTI after AUTH", &["AUTH \"pass word\"", "MULTI", "SET a 1", "INCR a", "EXEC", "DEL a"]),
];

/// A command line split into arguments (see [`SEQUENCES`]).
fn words(line: &str) -> Result<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ').is_some() {}
        let Some(first) = chars.next() else { return Ok(args) };
        let mut arg = String::new();
        if first == '"' {
            loop {
                match chars.next().ok_or_else(|| format!("unclosed quote in {line:?}"))? {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => arg.push('\n'),
                        Some('r') => arg.push('\r'),
                        Some('t') => arg.push('\t'),
                        Some(c @ ('"' | '\\')) => arg.push(c),
                        other => return Err(format!("bad escape {other:?} in {line:?}").into()),
                    },
                    c => arg.push(c),
                }
            }
        } else {
            arg.push(first);
            while let Some(c) = chars.next_if(|c| *c != ' ') {
                arg.push(c);
            }
        }
        args.push(arg.into_bytes());
    }
}

/// How the sequences are sent.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// RESP2, one command, one reply.
    OneByOne,
    /// RESP2, the whole sequence written at once.
    Pipelined,
    /// RESP3 (after HELLO 3), the whole sequence written at once.
    Resp3Pipelined,
    /// Inline commands (`SET k "a b"` lines, as typed into telnet), all at once.
    Inline,
}

/// `args` as one inline command line: every argument double-quoted, with
/// the escapes Redis's inline parser (`sdssplitargs`) reads.
fn inline(args: &[Vec<u8>], out: &mut Vec<u8>) {
    for (i, arg) in args.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\"" } else { b" \"" });
        for &byte in arg {
            match byte {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', byte]),
                _ => out.push(byte),
            }
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
}

/// The replies of `commands` on a fresh connection to `addr` (emptied
/// first with FLUSHDB if `flush`).
fn replies(addr: SocketAddr, mode: Mode, flush: bool, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Frame>> {
    let mut client = Resp::connect(addr)?;
    if let Mode::Resp3Pipelined = mode {
        let Frame::Map(hello) = client.call(&["HELLO", "3"])? else { return Err("HELLO 3: not a map".into()) };
        assert!(hello.contains(&(bulk("proto"), Frame::Int(3))), "HELLO 3 on {addr}: {hello:?}");
    }
    if flush {
        assert_eq!(client.call(&["FLUSHDB"])?, Frame::Simple("OK".into()));
    }
    match mode {
        Mode::OneByOne => commands.iter().map(|args| client.call(args)).collect(),
        Mode::Pipelined | Mode::Resp3Pipelined => client.pipeline(commands),
        Mode::Inline => {
            let mut out = Vec::new();
            commands.iter().for_each(|args| inline(args, &mut out));
            client.send_raw(&out)?;
            commands.iter().map(|_| client.read()).collect()
        }
    }
}

/// How two replies are compared (see [`SEQUENCES`]).
#[derive(Clone, Copy, Debug)]
enum Compare {
    Exact,
    /// Both errors with the same prefix (`~ `).
    ErrorPrefix,
    /// The same elements in any order (`^ `).
    Sorted,
    /// The same kind of reply, errors with the same text (`? `).
    Kind,
    /// Integers within 1000 of each other when both are positive (`% `).
    Near,
}

impl Compare {
    /// A sequence line's comparison and its command.
    fn of(line: &str) -> (Compare, &str) {
        if let Some(rest) = line.strip_prefix("~ ") {
            (Compare::ErrorPrefix, rest)
        } else if let Some(rest) = line.strip_prefix("^ ") {
            (Compare::Sorted, rest)
        } else if let Some(rest) = line.strip_prefix("? ") {
            (Compare::Kind, rest)
        } else if let Some(rest) = line.strip_prefix("% ") {
            (Compare::Near, rest)
        } else {
            (Compare::Exact, line)
        }
    }

    fn same(self, want: &Frame, got: &Frame) -> bool {
        let error_prefix = |frame: &Frame| match frame {
            Frame::Error(e) => e.split(' ').next().map(str::to_owned),
            _ => None,
        };
        let sorted = |frame: &Frame| match frame {
            Frame::Array(items) => {
                let mut items: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
                items.sort();
                Some(items)
            }
            _ => None,
        };
        match self {
            Compare::Exact => want == got,
            Compare::ErrorPrefix => error_prefix(want).is_some() && error_prefix(want) == error_prefix(got),
            Compare::Sorted => sorted(want).is_some() && sorted(want) == sorted(got),
            Compare::Near => match (want, got) {
                (Frame::Int(a), Frame::Int(b)) if *a > 0 && *b > 0 => (a - b).abs() <= 1000,
                _ => want == got,
            },
            Compare::Kind => match (want, got) {
                (Frame::Error(_), _) | (_, Frame::Error(_)) => want == got,
                _ => std::mem::discriminant(want) == std::mem::discriminant(got),
            },
        }
    }
}

/// Runs `sequences` on both servers in each of `modes`: how many replies
/// were compared, and a description of each difference.
fn compare(
    redis: SocketAddr,
    redru: SocketAddr,
    sequences: &[(&str, &[&str])],
    modes: &[Mode],
    flush: bool,
) -> Result<(usize, Vec<String>)> {
    let (mut compared, mut differences) = (0, Vec::new());
    for (name, lines) in sequences {
        let mut commands = Vec::new();
        let mut compares = Vec::new();
        for line in *lines {
            let (compare, line) = Compare::of(line);
            commands.push(words(line)?);
            compares.push(compare);
        }
        for &mode in modes {
            let want = replies(redis, mode, flush, &commands)?;
            let got = replies(redru, mode, flush, &commands)?;
            for (i, (want, got)) in want.iter().zip(&got).enumerate() {
                compared += 1;
                if !compares[i].same(want, got) {
                    differences.push(format!(
                        "{name} ({mode:?}) `{}`:\n    redis-server: {want:?}\n    redru serve:  {got:?}",
                        lines[i]
                    ));
                }
            }
        }
    }
    Ok((compared, differences))
}

#[test]
fn the_same_replies_as_redis_server() -> Result {
    if !have_redis_server()? {
        return Ok(());
    }
    let redis = RedisServer::start()?;
    let dir = tempfile::tempdir()?;
    let redru = Serve::start(dir.path(), &[])?;
    let all = [Mode::OneByOne, Mode::Pipelined, Mode::Resp3Pipelined, Mode::Inline];
    let (compared, mut differences) = compare(redis.addr, redru.addr, SEQUENCES, &all, true)?;
    assert!(compared > 500, "only {compared} replies compared");
    redru.stop()?;
    redis.stop()?;

    // With a password. RESP3 is reached through HELLO 3 AUTH inside the sequences.
    let redis = RedisServer::start_with(Some(PASSWORD))?;
    let dir = tempfile::tempdir()?;
    let redru = Serve::start(dir.path(), &["--requirepass", PASSWORD])?;
    let modes = [Mode::OneByOne, Mode::Pipelined, Mode::Inline];
    let (compared, more) = compare(redis.addr, redru.addr, AUTH_SEQUENCES, &modes, false)?;
    assert!(compared > 50, "only {compared} replies compared with a password");
    differences.extend(more);
    assert!(differences.is_empty(), "{} replies differ:\n{}", differences.len(), differences.join("\n"));
    redru.stop()?;
    redis.stop()
}

// ---------------------------------------------------------------------------
// kill -9 during load.

/// Pipelines a writer sends at most (it normally stops when the server dies).
const MAX_PIPELINES: usize = 4000;
/// SETs per pipeline.
const PIPELINE: usize = 16;

/// The value written to `key`: derived from the key, so that a value found
/// after a crash can be checked even if its SET was never acknowledged.
fn value_of(key: &str) -> String {
    let n = key.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("{key}={n:x}{}", "#".repeat((n % 97) as usize))
}

/// What one writer saw: the keys whose SET was acknowledged with +OK, and
/// whether it stopped because the connection broke (rather than at its cap).
struct Written {
    acked: Vec<String>,
    broken: bool,
}

/// Writes pipelines of SETs of distinct keys until the connection breaks,
/// recording every +OK it reads; anything but +OK is an error.
fn write_until_killed(addr: SocketAddr, prefix: String, acked_count: Arc<AtomicUsize>) -> Result<Written> {
    let mut client = Resp::connect(addr)?;
    let mut acked = Vec::new();
    let mut n = 0;
    for _ in 0..MAX_PIPELINES {
        let keys: Vec<String> = (0..PIPELINE).map(|i| format!("{prefix}:{}", n + i)).collect();
        n += PIPELINE;
        let mut out = Vec::new();
        for key in &keys {
            Resp::encode(&["SET", key.as_str(), value_of(key).as_str()], &mut out);
        }
        if client.send_raw(&out).is_err() {
            return Ok(Written { acked, broken: true });
        }
        for key in keys {
            match client.read() {
                Ok(Frame::Simple(ok)) if ok == "OK" => {
                    acked.push(key);
                    acked_count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(other) => return Err(format!("SET {key}: {other:?}").into()),
                Err(_) => return Ok(Written { acked, broken: true }),
            }
        }
    }
    Ok(Written { acked, broken: false })
}

/// Asserts that every key in `acked` holds its value, and that every key
/// under `prefix` holds the value written to it (nothing half-written).
fn check_after_restart(server: &Serve, acked: &[String], prefix: &str) -> Result {
    let mut client = server.connect()?;
    for chunk in acked.chunks(500) {
        let gets: Vec<Vec<&str>> = chunk.iter().map(|k| vec!["GET", k.as_str()]).collect();
        for (key, got) in chunk.iter().zip(client.pipeline(&gets)?) {
            assert_eq!(got, bulk(&value_of(key)), "acknowledged SET {key} lost or changed after kill -9");
        }
    }
    let Frame::Array(present) = client.call(&["KEYS", &format!("{prefix}*")])? else {
        return Err("KEYS: not an array".into());
    };
    let present: Vec<String> = present.iter().filter_map(|k| k.text().map(str::to_owned)).collect();
    for chunk in present.chunks(500) {
        let gets: Vec<Vec<&str>> = chunk.iter().map(|k| vec!["GET", k.as_str()]).collect();
        for (key, got) in chunk.iter().zip(client.pipeline(&gets)?) {
            assert_eq!(got, bulk(&value_of(key)), "{key} holds a value that was never written");
        }
    }
    assert!(present.len() >= acked.len(), "{} keys present, {} acknowledged", present.len(), acked.len());
    Ok(())
}

/// Two connections pipeline SETs of distinct keys; the server is SIGKILLed
/// mid-load and restarted on its directory, five times. Every SET whose +OK
/// arrived must be there with its value. It catches a reply sent before the
/// write left the process: run with `--appendfsync everysec` (replies at
/// once, the log buffered in the process) it fails in its first round.
#[test]
fn kill_9_during_pipelined_load_loses_no_acknowledged_set() -> Result {
    let dir = tempfile::tempdir()?;
    let mut acked_so_far: Vec<String> = Vec::new();
    for round in 0..5 {
        let server = Serve::start(dir.path(), &[])?;
        // Every earlier round's acknowledged writes survived this restart too.
        check_after_restart(&server, &acked_so_far, "crash")?;
        let acked: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let writers: Vec<_> = acked
            .iter()
            .enumerate()
            .map(|(conn, count)| {
                let (addr, count) = (server.addr, Arc::clone(count));
                std::thread::spawn(move || write_until_killed(addr, format!("crash:{round}:{conn}"), count))
            })
            .collect();
        // Kill it mid-load: once some pipelines of each writer were
        // acknowledged, more each round (the load itself never pauses).
        let threshold = (round + 1) * 8 * PIPELINE;
        let deadline = Instant::now() + PATIENCE;
        while acked.iter().any(|n| n.load(Ordering::Relaxed) < threshold)
            && Instant::now() < deadline
            && !writers.iter().any(|w| w.is_finished())
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let log = server.stderr();
        server.kill9()?;
        for writer in writers {
            let written = writer.join().map_err(|_| "a writer panicked")??;
            assert!(written.broken, "a writer finished before the kill; server stderr:\n{log}");
            assert!(!written.acked.is_empty(), "round {round}: a writer had nothing acknowledged before the kill");
            acked_so_far.extend(written.acked);
        }
    }
    let server = Serve::start(dir.path(), &[])?;
    check_after_restart(&server, &acked_so_far, "crash")?;
    server.stop()
}
