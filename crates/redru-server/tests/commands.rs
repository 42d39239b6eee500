//! The commands: the value mapping, SET's options, MULTI/EXEC as one atomic
//! batch, SCAN's guarantee under concurrent writes, JSON.* paths, REDRU.*,
//! and the introspection clients call on connect.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::util::{Server, TestResult, encode_bytes};

#[test]
fn set_stores_a_json_string_and_get_returns_the_bytes() -> TestResult {
    let server = Server::start()?;
    let mut c = server.client()?;
    assert_eq!(c.call(&["SET", "k", "line 1\nline \"2\""])?, "+OK");
    assert_eq!(c.call(&["GET", "k"])?, "$line 1\nline \"2\"");
    // redru keeps it as a JSON string, which every other interface reads.
    assert_eq!(server.db.get_value("k"), Some(redru::json!("line 1\nline \"2\"")));
    // A value that is not a string comes back as its JSON text.
    server.db.set("j", redru::json!({"a": [1, 2.5]}))?;
    assert_eq!(c.call(&["GET", "j"])?, r#"${"a":[1,2.5]}"#);
    assert_eq!(c.call(&["TYPE", "j"])?, "+ReJSON-RL");
    assert_eq!(c.call(&["TYPE", "k"])?, "+string");
    assert_eq!(c.call(&["TYPE", "none"])?, "+none");
    // Bytes that are not UTF-8 are refused, never mangled.
    c.send(&encode_bytes(&[b"SET", b"bin", b"\xff\xfe"]))?;
    assert!(c.read()?.starts_with("-ERR the value is not valid UTF-8"));
    assert_eq!(c.call(&["EXISTS", "bin"])?, ":0");
    Ok(())
}

#[test]
fn set_options_and_friends() -> TestResult {
    let server = Server::start()?;
    let mut c = server.client()?;
    assert_eq!(c.call(&["SET", "k", "1", "XX"])?, "$nil");
    assert_eq!(c.call(&["SET", "k", "1", "NX"])?, "+OK");
    assert_eq!(c.call(&["SET", "k", "2", "NX"])?, "$nil");
    assert_eq!(c.call(&["SET", "k", "3", "XX", "GET"])?, "$1");
    assert_eq!(c.call(&["GETSET", "k", "4"])?, "$3");
    assert_eq!(c.call(&["SET", "k", "5", "NX", "XX"])?, "-ERR syntax error");
    assert_eq!(c.call(&["SET", "k", "4", "EX", "10"])?, "+OK");
    assert_eq!(c.call(&["TTL", "k"])?, ":10");
    assert_eq!(c.call(&["SET", "k", "4", "EX", "0"])?, "-ERR invalid expire time in 'set' command");
    // Gone at its deadline, for every command, before any sweep.
    assert_eq!(c.call(&["PSETEX", "e", "1", "x"])?, "+OK");
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(c.call(&["GET", "e"])?, "$nil");
    assert_eq!(c.call(&["EXISTS", "e"])?, ":0");
    assert_eq!(c.call(&["TTL", "e"])?, ":-2");
    assert_eq!(c.call(&["DBSIZE"])?, ":1");
    assert_eq!(c.call(&["INCR", "k"])?, ":5");
    assert_eq!(c.call(&["INCRBY", "k", "10"])?, ":15");
    assert_eq!(c.call(&["DECRBY", "k", "20"])?, ":-5");
    assert_eq!(c.call(&["GET", "k"])?, "$-5");
    assert_eq!(c.call(&["APPEND", "k", "x"])?, ":3");
    assert!(c.call(&["INCR", "k"])?.starts_with("-ERR value is not an integer"));
    assert_eq!(c.call(&["MSET", "a", "1", "b", "2"])?, "+OK");
    assert_eq!(c.call(&["MGET", "a", "nope", "b"])?, "[$1, $nil, $2]");
    assert_eq!(c.call(&["MSETNX", "a", "9", "c", "3"])?, ":0");
    assert_eq!(c.call(&["DEL", "a", "b", "nope"])?, ":2");
    assert_eq!(c.call(&["RENAME", "nope", "x"])?, "-ERR no such key");
    assert_eq!(c.call(&["RENAME", "k", "k2"])?, "+OK");
    assert_eq!(c.call(&["EXISTS", "k", "k2", "k2"])?, ":2");
    // The deadline of SET ... EX 10 went through INCR, APPEND and RENAME, as in Redis.
    assert_eq!(c.call(&["TTL", "k2"])?, ":10");
    assert_eq!(c.call(&["TTL", "k"])?, ":-2");
    assert_eq!(c.call(&["DBSIZE"])?, ":1");
    assert_eq!(c.call(&["FLUSHDB"])?, "+OK");
    assert_eq!(c.call(&["DBSIZE"])?, ":0");
    assert_eq!(c.call(&["GET"])?, "-ERR wrong number of arguments for 'get' command");
    assert!(c.call(&["NOSUCH", "a"])?.starts_with("-ERR unknown command 'NOSUCH', with args beginning with: 'a'"));
    Ok(())
}

#[test]
fn keys_matches_redis_globs() -> TestResult {
    let server = Server::start()?;
    let mut c = server.client()?;
    for key in ["user:1", "user:2", "user:10", "admin", "u[1]"] {
        c.call(&["SET", key, "x"])?;
    }
    assert_eq!(c.call(&["KEYS", "user:?"])?, "[$user:1, $user:2]");
    assert_eq!(c.call(&["KEYS", "u[s]er:1*"])?, "[$user:1, $user:10]");
    assert_eq!(c.call(&["KEYS", "u\\[1]"])?, "[$u[1]]");
    Ok(())
}

#[test]
fn multi_exec_is_one_atomic_batch() -> TestResult {
    let server = Server::start()?;
    let mut c = server.client()?;
    let seq_before = server.db.stats().last_seq;
    assert_eq!(c.call(&["MULTI"])?, "+OK");
    assert_eq!(c.call(&["SET", "a", "1"])?, "+QUEUED");
    assert_eq!(c.call(&["INCR", "a"])?, "+QUEUED");
    assert_eq!(c.call(&["GET", "a"])?, "+QUEUED");
    assert_eq!(c.call(&["EXEC"])?, "[+OK, :2, $2]");
    assert_eq!(server.db.stats().last_seq, seq_before + 1, "one log record for the transaction");
    // A command refused while queueing aborts the whole transaction.
    assert_eq!(c.call(&["MULTI"])?, "+OK");
    assert_eq!(c.call(&["SET", "b", "1"])?, "+QUEUED");
    assert!(c.call(&["GET"])?.starts_with("-ERR wrong number"));
    assert!(c.call(&["EXEC"])?.starts_with("-EXECABORT"));
    assert_eq!(c.call(&["EXISTS", "b"])?, ":0");
    // A unique index refusing one write refuses them all.
    server.db.create_unique_index("email")?;
    c.call(&["JSON.SET", "u1", "$", r#"{"email":"a@x"}"#])?;
    c.call(&["MULTI"])?;
    c.call(&["SET", "c", "1"])?;
    c.call(&["JSON.SET", "u2", "$", r#"{"email":"a@x"}"#])?;
    let aborted = c.call(&["EXEC"])?;
    assert!(aborted.starts_with("-EXECABORT") && aborted.contains("unique"), "{aborted}");
    assert_eq!(c.call(&["EXISTS", "c", "u2"])?, ":0");
    assert_eq!(c.call(&["DISCARD"])?, "-ERR DISCARD without MULTI");
    assert_eq!(c.call(&["EXEC"])?, "-ERR EXEC without MULTI");
    Ok(())
}

#[test]
fn scan_returns_every_lasting_key_once_while_others_change() -> TestResult {
    let server = Server::start()?;
    let mut c = server.client()?;
    let lasting: BTreeSet<String> = (0..300).map(|i| format!("keep:{i:03}")).collect();
    for key in &lasting {
        c.call(&["SET", key, "x"])?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr();
    let churn = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut w = crate::util::Client::connect(addr)?;
            for i in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                w.call(&["SET", &format!("churn:{i}"), "y"])?;
                if i % 3 == 0 {
                    w.call(&["DEL", &format!("churn:{}", i / 2)])?;
                }
            }
            Ok(())
        })
    };
    let mut seen = Vec::new();
    let mut cursor = "0".to_owned();
    for _ in 0..10_000 {
        let reply = c.call(&["SCAN", &cursor, "MATCH", "keep:*", "COUNT", "7"])?;
        // `[$cursor, [$k1, $k2]]`
        let inner = reply.trim_start_matches('[').trim_end_matches(']');
        let (next, keys) = inner.split_once(", [").ok_or("bad SCAN reply")?;
        cursor = next.trim_start_matches('$').to_owned();
        seen.extend(keys.split(", ").filter(|k| !k.is_empty()).map(|k| k.trim_start_matches('$').to_owned()));
        if cursor == "0" {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    assert_eq!(cursor, "0", "the scan did not finish");
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a key was returned twice");
    assert_eq!(unique, lasting);
    assert!(c.call(&["SCAN", "987654"])?.starts_with("-ERR invalid cursor"));
    Ok(())
}

#[test]
fn json_commands_on_simple_paths() -> TestResult {
    let server = Server::start()?;
    let mut c = server.client()?;
    assert_eq!(c.call(&["JSON.SET", "u", "$", r#"{"name":"Al","tags":["a","b"],"address":{"city":"Oslo"}}"#])?, "+OK");
    assert_eq!(c.call(&["JSON.GET", "u", "$.address.city"])?, r#"$["Oslo"]"#);
    assert_eq!(c.call(&["JSON.GET", "u", ".address.city"])?, r#"$"Oslo""#);
    assert_eq!(c.call(&["JSON.GET", "u", "$.tags[-1]"])?, r#"$["b"]"#);
    assert_eq!(c.call(&["JSON.GET", "u", "$.nope"])?, "$[]");
    assert!(c.call(&["JSON.GET", "u", ".nope"])?.starts_with("-ERR Path '$.nope' does not exist"));
    assert_eq!(c.call(&["JSON.SET", "u", "$.address.zip", "\"0150\""])?, "+OK");
    assert_eq!(c.call(&["JSON.SET", "u", "$.name", "\"Bo\"", "NX"])?, "$nil");
    assert_eq!(c.call(&["JSON.SET", "u", "$.tags[0]", "1"])?, "+OK");
    assert_eq!(c.call(&["JSON.TYPE", "u", "$.tags[0]"])?, "[$integer]");
    assert_eq!(c.call(&["JSON.TYPE", "u"])?, "+object");
    assert_eq!(c.call(&["JSON.DEL", "u", "$.tags[1]"])?, ":1");
    assert_eq!(c.call(&["JSON.DEL", "u", "$.tags[5]"])?, ":0");
    assert_eq!(
        server.db.get_value("u"),
        Some(redru::json!({"name":"Al","tags":[1],"address":{"city":"Oslo","zip":"0150"}}))
    );
    assert!(c.call(&["JSON.SET", "new", "$.a", "1"])?.contains("new objects must be created at the root"));
    assert!(c.call(&["JSON.SET", "u", "$", "{bad"])?.contains("expected a JSON value"));
    assert!(c.call(&["JSON.GET", "u", "$..name"])?.contains("unsupported path"));
    c.call(&["JSON.SET", "v", ".", "[1,2]"])?;
    assert_eq!(c.call(&["JSON.MGET", "u", "v", "nope", "$.name"])?, r#"[$["Al"], $[], $nil]"#);
    assert_eq!(c.call(&["JSON.DEL", "v"])?, ":1");
    assert_eq!(c.call(&["JSON.GET", "v"])?, "$nil");
    Ok(())
}

#[test]
fn redru_commands_reach_indexes_and_queries() -> TestResult {
    let server = Server::start()?;
    let mut c = server.client()?;
    c.call(&["JSON.SET", "u1", "$", r#"{"name":"Alice","age":30}"#])?;
    c.call(&["JSON.SET", "u2", "$", r#"{"name":"Bob","age":20}"#])?;
    assert!(c.call(&["REDRU.FIND", "name", "Alice"])?.starts_with("-ERR there is no index on `name`"));
    assert_eq!(c.call(&["REDRU.INDEX", "name"])?, "+OK");
    assert_eq!(c.call(&["REDRU.FIND", "name", "Alice"])?, "[$u1]");
    assert_eq!(c.call(&["REDRU.QUERY", "age >= 25"])?, r#"[[$u1, ${"name":"Alice","age":30}]]"#);
    assert!(c.call(&["REDRU.EXPLAIN", "name = Bob"])?.starts_with("$1 matches; index lookup on `name`"));
    assert!(c.call(&["REDRU.INDEXES"])?.contains("$field, $name"));
    assert!(c.call(&["REDRU.EXPLAIN", "age >= 25"])?.starts_with("$1 matches; full scan"));
    assert_eq!(c.call(&["REDRU.INDEX", "age", "ORDERED"])?, "+OK");
    assert!(c.call(&["REDRU.EXPLAIN", "age >= 25"])?.starts_with("$1 matches; index range on `age`"));
    assert!(c.call(&["REDRU.INDEXES"])?.contains("$kind, $ordered"));
    assert!(
        c.call(&["REDRU.INDEX", "x", "SORTED"])?.starts_with("-ERR syntax error: REDRU.INDEX field [UNIQUE|ORDERED]")
    );
    assert!(c.call(&["REDRU.STATS"])?.contains("\"keys\":2"));
    assert!(c.call(&["REDRU.BACKUP"])?.starts_with("$backup-"));
    assert_eq!(c.call(&["REDRU.DROPINDEX", "name"])?, "+OK");
    assert!(c.call(&["REDRU.QUERY", "age >>"])?.starts_with("-ERR"));
    Ok(())
}

#[test]
fn what_clients_ask_on_connect() -> TestResult {
    let server = Server::start()?;
    let mut c = server.client()?;
    assert_eq!(c.call(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"])?, "+OK");
    assert_eq!(c.call(&["CLIENT", "SETNAME", "worker"])?, "+OK");
    assert_eq!(c.call(&["CLIENT", "GETNAME"])?, "$worker");
    assert!(c.call(&["CLIENT", "ID"])?.starts_with(':'));
    assert_eq!(c.call(&["SELECT", "0"])?, "+OK");
    assert!(c.call(&["SELECT", "1"])?.starts_with("-ERR"));
    assert_eq!(c.call(&["CONFIG", "GET", "save"])?, "[$save, $]");
    assert_eq!(c.call(&["CONFIG", "GET", "appendonly"])?, "[$appendonly, $yes]");
    let count = c.call(&["COMMAND", "COUNT"])?;
    assert!(count.trim_start_matches(':').parse::<usize>()? > 50, "{count}");
    let docs = c.call(&["COMMAND", "DOCS", "set"])?;
    assert!(docs.starts_with("[$set, [$summary,") && docs.contains("$arguments"), "{docs}");
    let info = c.call(&["INFO", "keyspace"])?;
    assert!(info.starts_with("$# Keyspace"), "{info}");
    // Keys with a deadline are counted as Redis counts them.
    assert_eq!(c.call(&["SET", "ttl-a", "1", "EX", "100"])?, "+OK");
    assert_eq!(c.call(&["SET", "ttl-b", "1"])?, "+OK");
    let info = c.call(&["INFO", "keyspace"])?;
    assert!(info.contains(",expires=1,"), "{info}");
    assert_eq!(c.call(&["ECHO", "hi"])?, "$hi");
    assert_eq!(c.call(&["PING", "x"])?, "$x");
    assert_eq!(c.call(&["SAVE"])?, "+OK");
    assert!(c.call(&["LASTSAVE"])?.starts_with(':'));
    assert_eq!(c.call(&["QUIT"])?, "+OK");
    assert!(c.closed());
    Ok(())
}

#[test]
fn watch_aborts_exec_when_a_watched_key_changes() -> TestResult {
    let server = Server::start()?;
    let mut a = server.client()?;
    let mut b = server.client()?;
    a.call(&["SET", "balance", "10"])?;
    // Untouched: EXEC runs.
    assert_eq!(a.call(&["WATCH", "balance"])?, "+OK");
    assert_eq!(a.call(&["MULTI"])?, "+OK");
    assert_eq!(a.call(&["INCRBY", "balance", "5"])?, "+QUEUED");
    assert_eq!(a.call(&["EXEC"])?, "[:15]");
    // Changed by another client between WATCH and EXEC: nothing runs.
    assert_eq!(a.call(&["WATCH", "balance", "other"])?, "+OK");
    assert_eq!(b.call(&["SET", "balance", "100"])?, "+OK");
    a.call(&["MULTI"])?;
    a.call(&["INCRBY", "balance", "5"])?;
    assert_eq!(a.call(&["EXEC"])?, "*nil");
    assert_eq!(a.call(&["GET", "balance"])?, "$100");
    // EXEC forgot the watch: the next transaction runs.
    a.call(&["MULTI"])?;
    a.call(&["INCR", "balance"])?;
    assert_eq!(a.call(&["EXEC"])?, "[:101]");
    // FLUSHALL touches every watched key; UNWATCH forgets them.
    a.call(&["WATCH", "x"])?;
    b.call(&["FLUSHALL"])?;
    a.call(&["MULTI"])?;
    a.call(&["SET", "x", "1"])?;
    assert_eq!(a.call(&["EXEC"])?, "*nil");
    a.call(&["WATCH", "y"])?;
    b.call(&["SET", "y", "1"])?;
    assert_eq!(a.call(&["UNWATCH"])?, "+OK");
    a.call(&["MULTI"])?;
    a.call(&["SET", "y", "2"])?;
    assert_eq!(a.call(&["EXEC"])?, "[+OK]");
    a.call(&["MULTI"])?;
    assert!(a.call(&["WATCH", "z"])?.starts_with("-ERR WATCH inside MULTI"));
    assert_eq!(a.call(&["DISCARD"])?, "+OK");
    Ok(())
}

#[test]
fn redru_changes_returns_durable_changes_after_a_position_and_never_splits_a_batch() -> TestResult {
    let server = Server::start()?;
    let mut c = server.client()?;
    assert_eq!(c.call(&["REDRU.CHANGES", "user:"])?, "[:0, []]", "nothing written: the position is now");
    assert_eq!(c.call(&["SET", "user:1", "a"])?, "+OK");
    assert_eq!(c.call(&["SET", "order:1", "b"])?, "+OK");
    assert_eq!(c.call(&["MSET", "user:2", "c", "user:3", "d"])?, "+OK");
    assert_eq!(c.call(&["DEL", "user:1"])?, ":1");
    assert_eq!(
        c.call(&["REDRU.CHANGES", "user:", "0"])?,
        r#"[:4, [[:1, $set, $user:1, $"a"], [:3, $set, $user:2, $"c"], [:3, $set, $user:3, $"d"], [:4, $del, $user:1, $nil]]]"#
    );
    // COUNT 1 stops after the whole batch, at a position outside it.
    assert_eq!(
        c.call(&["REDRU.CHANGES", "user:", "1", "COUNT", "1"])?,
        r#"[:3, [[:3, $set, $user:2, $"c"], [:3, $set, $user:3, $"d"]]]"#
    );
    assert_eq!(c.call(&["REDRU.CHANGES", "user:", "4"])?, "[:4, []]");
    assert!(c.call(&["REDRU.CHANGES", "user:", "99"])?.contains("log ends at record 4"));
    assert!(c.call(&["REDRU.CHANGES", "user:", "-1"])?.starts_with("-ERR"));
    Ok(())
}
