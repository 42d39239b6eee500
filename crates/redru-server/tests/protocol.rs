//! The wire: pipelines and group commit, inline commands, RESP3, malformed
//! and oversized requests, clients that vanish mid-request, many clients,
//! the client limit, idle clients, authentication and protected mode.

use std::io::Write;
use std::time::Duration;

use redru_server::{Config, Limits, Running};

use crate::util::{Client, Server, TestResult, encode};

#[test]
fn a_pipeline_of_sixteen_sets_shares_its_fsyncs() -> TestResult {
    let server = Server::start()?;
    let mut client = server.client()?;
    assert_eq!(client.call(&["PING"])?, "+PONG");
    let before = server.db.stats().wal_syncs;
    let mut pipeline = Vec::new();
    for i in 0..16 {
        pipeline.extend_from_slice(&encode(&["SET", &format!("k{i}"), &format!("v{i}")]));
    }
    client.send(&pipeline)?;
    for _ in 0..16 {
        assert_eq!(client.read()?, "+OK");
    }
    let syncs = server.db.stats().wal_syncs - before;
    // One batch is one sync; a pipeline split across reads costs one per piece.
    assert!((1..=4).contains(&syncs), "16 pipelined SETs took {syncs} fsyncs");
    assert_eq!(server.db.stats().durable_seq, server.db.stats().last_seq, "replied before durable");
    Ok(())
}

#[test]
fn every_reply_of_a_write_comes_after_its_fsync() -> TestResult {
    let server = Server::start()?;
    let mut client = server.client()?;
    for i in 0..50 {
        assert_eq!(client.call(&["SET", &format!("k{i}"), "v"])?, "+OK");
        let stats = server.db.stats();
        assert_eq!(stats.durable_seq, stats.last_seq, "reply {i} sent before its write was durable");
    }
    Ok(())
}

#[test]
fn inline_commands_work_like_telnet() -> TestResult {
    let server = Server::start()?;
    let mut client = server.client()?;
    client.send(b"PING\r\nset greeting \"hello world\"\nGET greeting\r\n\r\n")?;
    assert_eq!(client.read()?, "+PONG");
    assert_eq!(client.read()?, "+OK");
    assert_eq!(client.read()?, "$hello world");
    Ok(())
}

#[test]
fn hello_3_switches_to_resp3_and_back() -> TestResult {
    let server = Server::start()?;
    let mut client = server.client()?;
    let hello = client.call(&["HELLO", "3"])?;
    assert!(hello.starts_with("%{$server: $redru"), "{hello}");
    assert!(hello.contains("$proto: :3"), "{hello}");
    assert_eq!(client.call(&["GET", "missing"])?, "_");
    let hello = client.call(&["HELLO", "2"])?;
    assert!(hello.starts_with("[$server, $redru"), "{hello}");
    assert_eq!(client.call(&["GET", "missing"])?, "$nil");
    assert!(client.call(&["HELLO", "4"])?.starts_with("-NOPROTO"));
    Ok(())
}

#[test]
fn malformed_requests_get_an_error_and_are_disconnected() -> TestResult {
    let server = Server::start()?;
    for bad in
        [&b"*x\r\n"[..], b"*1\r\n:5\r\n", b"*1\r\n$3\r\nabcdef\r\n", b"set \"unbalanced\r\n", b"*1\r\n*1\r\n*1\r\n"]
    {
        let mut client = server.client()?;
        client.send(b"PING\r\n")?;
        client.send(bad)?;
        assert_eq!(client.read()?, "+PONG", "the request before the bad one still runs");
        let reply = client.read()?;
        assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
        assert!(client.closed(), "still connected after {:?}", String::from_utf8_lossy(bad));
    }
    // The server is fine.
    assert_eq!(server.client()?.call(&["PING"])?, "+PONG");
    Ok(())
}

#[test]
fn oversized_requests_are_refused_before_they_are_buffered() -> TestResult {
    let limits = Limits { max_args: 8, max_bytes: 1024 };
    let server = Server::start_with(Config { limits, ..Config::default() })?;
    let mut client = server.client()?;
    // The header alone is refused: the server does not wait for 10 MB.
    client.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10000000\r\n")?;
    assert!(client.read()?.starts_with("-ERR Protocol error: invalid bulk length"));
    assert!(client.closed());
    let mut client = server.client()?;
    client.send(b"*9\r\n")?;
    assert!(client.read()?.starts_with("-ERR Protocol error: invalid multibulk length"));
    let mut client = server.client()?;
    client.send(&vec![b'x'; 70 * 1024])?;
    assert!(client.read()?.starts_with("-ERR Protocol error: too big inline request"));
    assert_eq!(server.client()?.call(&["PING"])?, "+PONG");
    Ok(())
}

#[test]
fn a_client_that_disconnects_mid_pipeline_harms_nothing() -> TestResult {
    let server = Server::start()?;
    for cut in [1, 10, 25, 40] {
        let mut client = server.client()?;
        let mut bytes = encode(&["SET", "whole", "yes"]);
        bytes.extend_from_slice(&encode(&["SET", "partial", "no"]));
        client.send(&bytes[..bytes.len() - cut])?;
        drop(client);
    }
    // Each dropped connection's task runs the whole SET on its own time, so
    // a new connection may ask before the last of them has: ask until it has
    // (bounded), then check the partial SET never ran.
    let mut client = server.client()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut whole = client.call(&["GET", "whole"])?;
    while whole != "$yes" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        whole = client.call(&["GET", "whole"])?;
    }
    assert_eq!(whole, "$yes");
    assert_eq!(client.call(&["EXISTS", "partial"])?, ":0");
    Ok(())
}

#[test]
fn two_hundred_clients_at_once() -> TestResult {
    let server = Server::start()?;
    let addr = server.addr();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut client = Client::connect(addr).map_err(|e| e.to_string())?;
                let key = format!("client:{i}");
                let step = |c: &mut Client, args: &[&str]| c.call(args).map_err(|e| e.to_string());
                if step(&mut client, &["SET", &key, &i.to_string()])? != "+OK" {
                    return Err(format!("{key}: SET failed"));
                }
                let got = step(&mut client, &["GET", &key])?;
                if got != format!("${i}") {
                    return Err(format!("{key}: got {got}"));
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    }
    assert_eq!(server.db.len(), 200);
    Ok(())
}

#[test]
fn clients_past_the_limit_are_refused() -> TestResult {
    let server = Server::start_with(Config { max_clients: 2, ..Config::default() })?;
    let mut first = server.client()?;
    let mut second = server.client()?;
    assert_eq!(first.call(&["PING"])?, "+PONG");
    assert_eq!(second.call(&["PING"])?, "+PONG");
    let mut third = server.client()?;
    assert_eq!(third.read()?, "-ERR max number of clients reached");
    drop(first);
    // The slot is free again once the first connection is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = server.client()?;
        match again.call(&["PING"]) {
            Ok(reply) if reply == "+PONG" => break,
            _ if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => return Err(format!("no slot after a client left: {other:?}").into()),
        }
    }
    Ok(())
}

#[test]
fn idle_clients_are_disconnected() -> TestResult {
    let server = Server::start_with(Config { idle_timeout: Some(Duration::from_millis(200)), ..Config::default() })?;
    let mut client = server.client()?;
    assert_eq!(client.call(&["PING"])?, "+PONG");
    std::thread::sleep(Duration::from_millis(600));
    assert!(client.closed(), "an idle client stayed connected");
    Ok(())
}

#[test]
fn a_password_is_required_when_set() -> TestResult {
    let server = Server::start_with(Config { requirepass: Some("s3cret".into()), ..Config::default() })?;
    let mut client = server.client()?;
    assert_eq!(client.call(&["GET", "k"])?, "-NOAUTH Authentication required.");
    assert!(client.call(&["AUTH", "wrong"])?.starts_with("-WRONGPASS"));
    assert!(client.call(&["HELLO", "3"])?.starts_with("-NOAUTH"));
    assert!(client.call(&["HELLO", "3", "AUTH", "default", "s3cret"])?.starts_with("%{"));
    assert_eq!(client.call(&["GET", "k"])?, "_");
    let mut other = server.client()?;
    assert_eq!(other.call(&["AUTH", "default", "s3cret"])?, "+OK");
    // Without a password configured, AUTH is an error (as in Redis).
    let open = Server::start()?;
    assert!(open.client()?.call(&["AUTH", "x"])?.starts_with("-ERR AUTH <password> called without"));
    Ok(())
}

#[test]
fn only_loopback_without_a_password() -> TestResult {
    let dir = tempfile::tempdir()?;
    let always = std::sync::Arc::new(redru::Db::open(dir.path())?);
    let refused = Running::start(always, Config { port: 0, ..Config::default() });
    assert!(matches!(&refused, Err(e) if e.to_string().contains("Durability::Buffered")), "{:?}", refused.err());
    let db =
        std::sync::Arc::new(redru::Options::new().durability(redru::Durability::Buffered).open(dir.path().join("b"))?);
    let config = Config { bind: [0, 0, 0, 0].into(), port: 0, ..Config::default() };
    let refused = Running::start(std::sync::Arc::clone(&db), config.clone());
    assert!(matches!(&refused, Err(e) if e.to_string().contains("without a password")), "{:?}", refused.err());
    let with_password = Config { requirepass: Some("pw".into()), bind: [127, 0, 0, 2].into(), ..config };
    let running = Running::start(db, with_password)?;
    running.stop()?;
    Ok(())
}

#[test]
fn shutdown_stops_the_server_after_syncing() -> TestResult {
    let server = Server::start()?;
    let mut client = server.client()?;
    assert_eq!(client.call(&["SET", "k", "v"])?, "+OK");
    client.command(&["SHUTDOWN"])?;
    assert!(client.closed());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(server.addr()).is_ok() {
        assert!(std::time::Instant::now() < deadline, "still accepting after SHUTDOWN");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = server.db.stats();
    assert_eq!(stats.durable_seq, stats.last_seq);
    Ok(())
}

#[test]
fn garbage_bytes_never_take_the_server_down() -> TestResult {
    let server = Server::start()?;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..200 {
        let mut bytes = Vec::new();
        for _ in 0..(seed % 64) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(b"*$\r\n0123456789-abcSETGET \"'\\x"[(seed % 29) as usize]);
        }
        if let Ok(mut stream) = std::net::TcpStream::connect(server.addr()) {
            let _ = stream.write_all(&bytes);
        }
    }
    assert_eq!(server.client()?.call(&["PING"])?, "+PONG");
    Ok(())
}

#[test]
fn the_request_fuzz_corpus_replays() -> TestResult {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/resp_request");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir)? {
        redru_server::fuzz_request(&std::fs::read(entry?.path())?);
        replayed += 1;
    }
    assert!(replayed > 0, "no corpus in {}", dir.display());
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
    /// The fuzz target's property on generated bytes rich in protocol
    /// characters (cargo-fuzz explores further; this runs in every `cargo test`).
    #[test]
    fn request_parsing_never_panics(bytes in proptest::collection::vec(
        proptest::sample::select(b"*$\r\n-0123456789 \"'\\xabSETGET".to_vec()), 0..200)) {
        redru_server::fuzz_request(&bytes);
    }
}
