//! Three real `redru serve --cluster` processes on loopback ports, under
//! client load: SIGKILL of the leader (a new leader takes writes; the
//! failover time is printed), SIGSTOP/SIGCONT of a follower, a node wiped and
//! re-added (it catches up through a snapshot). Every acknowledged write is
//! then present on every node, and the clients' histories are checked for
//! linearizability per key. A negative control starts the nodes with
//! `REDRU_TEST_UNSAFE_LOCAL_READS=1` and shows the checker catches the stale
//! reads that follow. `REDRU_CLUSTER_CYCLES` (default 1) scales the fault
//! cycles; every loop is bounded in count and time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redru_testkit::linearizability::{self, Event, Op, Verdict};

use crate::util::{BoxError, Frame, Resp, Serve, free_port};

type Result<T = ()> = std::result::Result<T, BoxError>;

const SECRET: &str = "cluster-test-secret-0123456789";
/// A client gives up on one operation after this long (its outcome is then unknown).
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest any wait for the cluster (a leader, a catch-up) may take.
const WAIT: Duration = Duration::from_secs(20);

/// Fault cycles: `REDRU_CLUSTER_CYCLES`, 1 unless set (at most 1,000).
fn cycles() -> usize {
    std::env::var("REDRU_CLUSTER_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(1).clamp(1, 1000)
}

struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    secret: (tempfile::TempDir, PathBuf),
    peers: Vec<u16>,
    nodes: Vec<Option<Serve>>,
    env: Vec<(&'static str, &'static str)>,
    /// Each node's client address, shared with the client threads.
    addrs: Arc<Mutex<Vec<Option<SocketAddr>>>>,
}

impl Cluster {
    /// Three nodes, initialized on node 1, node 2 and 3 added as learners,
    /// then all three made voters.
    fn start(env: &[(&'static str, &'static str)]) -> Result<Cluster> {
        let secret_dir = tempfile::tempdir()?;
        let secret_file = secret_dir.path().join("secret");
        std::fs::write(&secret_file, format!("{SECRET}\n"))?;
        let mut cluster = Cluster {
            dirs: (0..3).map(|_| tempfile::tempdir()).collect::<std::io::Result<_>>()?,
            secret: (secret_dir, secret_file),
            peers: (0..3).map(|_| free_port()).collect::<Result<_>>()?,
            nodes: vec![None, None, None],
            env: env.to_vec(),
            addrs: Arc::new(Mutex::new(vec![None; 3])),
        };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        expect_ok(cluster.call(0, &["REDRU.CLUSTER", "INIT"])?)?;
        cluster.leader()?;
        for i in 1..3 {
            let (id, peer) = ((i + 1).to_string(), cluster.peer(i));
            expect_ok(cluster.call(0, &["REDRU.CLUSTER", "ADDLEARNER", &id, &peer])?)?;
        }
        expect_ok(cluster.call(0, &["REDRU.CLUSTER", "MEMBERSHIP", "1", "2", "3"])?)?;
        Ok(cluster)
    }

    fn peer(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.peers[i])
    }

    /// Starts node `i` (id `i + 1`) on its directory and peer port.
    fn spawn(&mut self, i: usize) -> Result<()> {
        let (id, peer) = ((i + 1).to_string(), self.peer(i));
        let secret = self.secret.1.to_string_lossy().into_owned();
        let args = ["--cluster", "--node-id", &id, "--cluster-addr", &peer, "--cluster-secret-file", &secret];
        let serve = Serve::start_with_env(self.dirs[i].path(), &args, &self.env)?;
        self.addrs.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(serve.addr);
        self.nodes[i] = Some(serve);
        Ok(())
    }

    fn node(&self, i: usize) -> Result<&Serve> {
        self.nodes[i].as_ref().ok_or_else(|| format!("node {} is down", i + 1).into())
    }

    /// SIGKILL node `i`.
    fn kill(&mut self, i: usize) -> Result<()> {
        self.addrs.lock().unwrap_or_else(|p| p.into_inner())[i] = None;
        self.nodes[i].take().ok_or("node already down")?.kill9()
    }

    fn call(&self, i: usize, args: &[&str]) -> Result<Frame> {
        Resp::connect_within(self.node(i)?.addr, WAIT)?.call(args)
    }

    fn status(&self, i: usize) -> Result<serde_json::Value> {
        match self.call(i, &["REDRU.CLUSTER", "STATUS"])? {
            Frame::Bulk(b) => Ok(serde_json::from_slice(&b)?),
            other => Err(format!("STATUS answered {other:?}").into()),
        }
    }

    /// The index of the node that leads, once one does (bounded by [`WAIT`]).
    fn leader(&self) -> Result<usize> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            for i in 0..3 {
                if self.nodes[i].is_some() && self.status(i).is_ok_and(|s| s["role"] == "leader") {
                    return Ok(i);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("no leader within the wait".into())
    }

    /// Waits until every running node has applied the leader's last entry.
    fn caught_up(&self) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let leader = self.leader()?;
            let last = self.status(leader)?["last_log_index"].as_u64().unwrap_or(0);
            let behind = (0..3)
                .filter(|&i| self.nodes[i].is_some())
                .filter(|&i| self.status(i).map_or(true, |s| s["last_applied"].as_u64().unwrap_or(0) < last))
                .count();
            if behind == 0 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("the nodes did not catch up within the wait".into())
    }

    /// Node `i`'s values of `keys`, read from its own state (READONLY).
    fn local_values(&self, i: usize, keys: &[String]) -> Result<Vec<Option<String>>> {
        let mut conn = Resp::connect_within(self.node(i)?.addr, WAIT)?;
        expect_ok(conn.call(&["READONLY"])?)?;
        let mut values = Vec::new();
        for chunk in keys.chunks(500) {
            let mut args = vec!["MGET"];
            args.extend(chunk.iter().map(String::as_str));
            let Frame::Array(items) = conn.call(&args)? else { return Err("MGET answered no array".into()) };
            values.extend(items.iter().map(|f| f.text().map(str::to_owned)));
        }
        Ok(values)
    }
}

fn expect_ok(frame: Frame) -> Result<()> {
    match frame {
        Frame::Simple(s) if s == "OK" => Ok(()),
        Frame::Error(e) => Err(format!("error reply: {e}").into()),
        _ => Err("unexpected reply".into()),
    }
}

/// What the clients recorded: per register key its history, and every
/// write-once key whose write was acknowledged.
#[derive(Default)]
struct Record {
    histories: BTreeMap<String, Vec<Event<String>>>,
    acked: Vec<String>,
}

/// One client: until `stop`, sets and gets three register keys and writes
/// write-once keys, on whichever node answers, recording every operation.
fn client(c: usize, start: Instant, addrs: Arc<Mutex<Vec<Option<SocketAddr>>>>, stop: Arc<AtomicBool>) -> Record {
    let mut record = Record::default();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
    let mut conn: Option<Resp> = None;
    let mut node = c;
    let micros = |t: Instant| t.duration_since(start).as_micros() as u64;
    for n in 0..100_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if conn.is_none() {
            node = (node + 1) % 3;
            let addr = addrs.lock().unwrap_or_else(|p| p.into_inner())[node];
            conn = addr.and_then(|a| Resp::connect_within(a, OP_TIMEOUT).ok());
            if conn.is_none() {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        }
        let Some(live) = conn.as_mut() else { continue };
        let key = format!("reg{}", rng % 3);
        let (args, op) = match rng % 5 {
            0 | 1 => {
                let value = format!("c{c}-{n}");
                (vec!["SET".to_owned(), key.clone(), value.clone()], Some(Op::Write(value)))
            }
            2 | 3 => (vec!["GET".to_owned(), key.clone()], None),
            _ => (vec!["SET".to_owned(), format!("once:{c}:{n}"), "1".to_owned()], None),
        };
        let call = micros(Instant::now());
        let reply = live.call(&args);
        let ret = micros(Instant::now());
        let event = match (reply, op) {
            (Ok(Frame::Simple(_)), Some(op)) => Some(Event { call, ret: Some(ret), op }),
            (Ok(Frame::Simple(_)), None) => {
                record.acked.push(args[1].clone());
                None
            }
            (Ok(Frame::Bulk(v)), None) => {
                Some(Event { call, ret: Some(ret), op: Op::Read(Some(String::from_utf8_lossy(&v).into_owned())) })
            }
            (Ok(Frame::Nil), None) => Some(Event { call, ret: Some(ret), op: Op::Read(None) }),
            // A write whose reply was lost, or that says so, may still apply.
            (Ok(Frame::Error(e)), Some(op)) if e.contains("outcome unknown") => Some(Event { call, ret: None, op }),
            (Err(_), Some(op)) => {
                conn = None;
                Some(Event { call, ret: None, op })
            }
            (Err(_), None) => {
                conn = None;
                None
            }
            // Definite refusals (TRYAGAIN not written, no linearizable read): nothing happened.
            _ => None,
        };
        if let Some(event) = event {
            record.histories.entry(key).or_default().push(event);
        }
    }
    record
}

/// Runs `clients` client threads while `faults` runs; their records.
fn under_load(cluster: &mut Cluster, clients: usize, faults: impl FnOnce(&mut Cluster) -> Result) -> Result<Record> {
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (addrs, stop) = (Arc::clone(&cluster.addrs), Arc::clone(&stop));
            std::thread::spawn(move || client(c, start, addrs, stop))
        })
        .collect();
    let result = faults(cluster);
    stop.store(true, Ordering::Relaxed);
    let mut all = Record::default();
    for thread in threads {
        let record = thread.join().map_err(|_| "a client thread panicked")?;
        all.acked.extend(record.acked);
        for (key, events) in record.histories {
            all.histories.entry(key).or_default().extend(events);
        }
    }
    result.map(|()| all)
}

/// Every acknowledged write-once key on every running node, and each
/// register's history linearizable.
fn check(cluster: &Cluster, record: &Record) -> Result<()> {
    cluster.caught_up()?;
    let ops: usize = record.histories.values().map(Vec::len).sum();
    eprintln!("checking {} acknowledged write-once keys and {ops} register operations", record.acked.len());
    for i in 0..3 {
        if cluster.nodes[i].is_none() {
            continue;
        }
        let values = cluster.local_values(i, &record.acked)?;
        let missing: Vec<&String> =
            record.acked.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(k, _)| k).collect();
        assert!(
            missing.is_empty(),
            "node {} lost {} acknowledged writes: {:?}",
            i + 1,
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    for (key, history) in &record.histories {
        let verdict = linearizability::check(None, history);
        assert_eq!(verdict, Verdict::Linearizable, "key {key}: {} operations", history.len());
    }
    Ok(())
}

/// Writes through the nodes other than `down` until one is acknowledged.
fn first_ack(cluster: &Cluster, down: usize, key: &str) -> Result<Duration> {
    let start = Instant::now();
    for attempt in 0..1000 {
        if start.elapsed() > WAIT {
            break;
        }
        let i = (down + 1 + attempt % 2) % 3;
        if let Ok(Frame::Simple(_)) =
            Resp::connect_within(cluster.node(i)?.addr, OP_TIMEOUT).and_then(|mut c| c.call(&["SET", key, "1"]))
        {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("no write acknowledged after the leader was killed".into())
}

#[test]
fn three_processes_keep_every_acknowledged_write_through_sigkill_and_sigstop() -> Result {
    let mut cluster = Cluster::start(&[])?;
    let mut failovers = Vec::new();
    let record = under_load(&mut cluster, 3, |cluster| {
        for cycle in 0..cycles() {
            std::thread::sleep(Duration::from_millis(1000));
            let leader = cluster.leader()?;
            cluster.kill(leader)?;
            failovers.push(first_ack(cluster, leader, &format!("failover:{cycle}"))?);
            cluster.spawn(leader)?;
            std::thread::sleep(Duration::from_millis(300));
            let follower = (cluster.leader()? + 1) % 3;
            cluster.node(follower)?.signal("STOP")?;
            std::thread::sleep(Duration::from_millis(1000));
            cluster.node(follower)?.signal("CONT")?;
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    })?;
    eprintln!("failover (SIGKILL to first acknowledged write): {failovers:?}");
    let writes =
        record.acked.len() + record.histories.values().flatten().filter(|e| matches!(e.op, Op::Write(_))).count();
    assert!(writes > 10, "the clients got too few writes through: {writes}");
    check(&cluster, &record)
}

#[test]
fn a_wiped_node_is_re_added_and_catches_up_through_a_snapshot() -> Result {
    let mut cluster = Cluster::start(&[])?;
    let record = under_load(&mut cluster, 2, |cluster| {
        let leader = cluster.leader()?;
        let mut conn = Resp::connect_within(cluster.node(leader)?.addr, WAIT)?;
        let sets: Vec<Vec<String>> = (0..300).map(|i| vec!["SET".into(), format!("w{i}"), format!("v{i}")]).collect();
        for reply in conn.pipeline(&sets)? {
            expect_ok(reply)?;
        }
        // A deadline cannot be replicated yet: refused, and nothing written.
        for args in [&["SET", "ttl:1", "v", "EX", "100"][..], &["EXPIRE", "w0", "100"], &["SETEX", "ttl:2", "5", "v"]] {
            match conn.call(args)? {
                Frame::Error(e) if e.contains("not replicated with --cluster") => {}
                other => return Err(format!("{args:?} answered {other:?}").into()),
            }
        }
        assert!(matches!(conn.call(&["EXISTS", "ttl:1", "ttl:2"])?, Frame::Int(0)));
        assert!(matches!(conn.call(&["TTL", "w0"])?, Frame::Int(-1)));
        let wiped = (leader + 1) % 3;
        let voters: Vec<String> = (0..3).filter(|&i| i != wiped).map(|i| (i + 1).to_string()).collect();
        expect_ok(cluster.call(leader, &["REDRU.CLUSTER", "MEMBERSHIP", &voters[0], &voters[1]])?)?;
        cluster.kill(wiped)?;
        std::fs::remove_dir_all(cluster.dirs[wiped].path())?;
        std::fs::create_dir(cluster.dirs[wiped].path())?;
        let leader = cluster.leader()?;
        let Frame::Int(covered) = cluster.call(leader, &["REDRU.CLUSTER", "SNAPSHOT"])? else {
            return Err("SNAPSHOT answered no index".into());
        };
        cluster.spawn(wiped)?;
        let (id, peer) = ((wiped + 1).to_string(), cluster.peer(wiped));
        expect_ok(cluster.call(leader, &["REDRU.CLUSTER", "ADDLEARNER", &id, &peer])?)?;
        expect_ok(cluster.call(leader, &["REDRU.CLUSTER", "MEMBERSHIP", "1", "2", "3"])?)?;
        // The node's own metrics catch up a moment after the leader counts it caught up.
        let deadline = Instant::now() + WAIT;
        let mut status = cluster.status(wiped)?;
        while status["snapshot"].as_i64().is_none_or(|s| s < covered) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            status = cluster.status(wiped)?;
        }
        assert!(status["snapshot"].as_i64().is_some_and(|s| s >= covered), "no snapshot installed: {status}");
        cluster.caught_up()?;
        let keys: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
        let values = cluster.local_values(wiped, &keys)?;
        assert!(
            values.iter().enumerate().all(|(i, v)| v.as_deref() == Some(&format!("v{i}"))),
            "wiped node misses data"
        );
        Ok(())
    })?;
    check(&cluster, &record)
}

/// One round of the negative control: a follower paused (shorter than an
/// election timeout) while the leader commits a write, then read at once.
fn stale_read_round(cluster: &Cluster, start: Instant, round: usize, history: &mut Vec<Event<String>>) -> Result<()> {
    let micros = |t: Instant| t.duration_since(start).as_micros() as u64;
    let leader = cluster.leader()?;
    let follower = (leader + 1) % 3;
    let mut reader = Resp::connect_within(cluster.node(follower)?.addr, WAIT)?;
    let mut writer = Resp::connect_within(cluster.node(leader)?.addr, WAIT)?;
    cluster.node(follower)?.signal("STOP")?;
    let value = format!("v{round}");
    let call = micros(Instant::now());
    let acked = matches!(writer.call(&["SET", "nc", &value]), Ok(Frame::Simple(_)));
    history.push(Event { call, ret: acked.then(|| micros(Instant::now())), op: Op::Write(value) });
    std::thread::sleep(Duration::from_millis(100));
    cluster.node(follower)?.signal("CONT")?;
    let call = micros(Instant::now());
    let read = match reader.call(&["GET", "nc"])? {
        Frame::Bulk(v) => Some(String::from_utf8_lossy(&v).into_owned()),
        _ => None,
    };
    history.push(Event { call, ret: Some(micros(Instant::now())), op: Op::Read(read) });
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

#[test]
fn the_checker_catches_follower_reads_without_the_read_index_and_passes_real_ones() -> Result {
    for unsafe_reads in [true, false] {
        let env: &[(&str, &str)] = if unsafe_reads { &[("REDRU_TEST_UNSAFE_LOCAL_READS", "1")] } else { &[] };
        let cluster = Cluster::start(env)?;
        if unsafe_reads {
            // The shell's `cluster` command reaches REDRU.CLUSTER over --connect.
            let port = cluster.node(1)?.port().to_string();
            let out = std::process::Command::new(crate::util::BIN)
                .env_remove("REDRU_DIR")
                .args(["-h", "127.0.0.1", "-p", &port, "cluster", "status"])
                .output()?;
            let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            assert_eq!(status["id"], 2, "{}", String::from_utf8_lossy(&out.stderr));
            assert!(status["voters"].as_object().is_some_and(|v| v.len() == 3), "{status}");
        }
        let start = Instant::now();
        let mut history = Vec::new();
        let mut verdict = Verdict::Linearizable;
        for round in 0..8 {
            stale_read_round(&cluster, start, round, &mut history)?;
            verdict = linearizability::check(None, &history);
            if unsafe_reads && verdict != Verdict::Linearizable {
                break;
            }
        }
        if unsafe_reads {
            assert!(matches!(verdict, Verdict::Violation(_)), "the negative control was not caught: {history:?}");
        } else {
            assert_eq!(verdict, Verdict::Linearizable, "{history:?}");
        }
    }
    Ok(())
}
