//! Three real `redru serve --cluster` processes on loopback ports, under
//! client load: SIGKILL of the leader (a new leader takes writes; the
//! failover time is printed), SIGSTOP/SIGCONT of a follower, a node wiped and
//! re-added (it catches up through a snapshot), and partitions: the leader,
//! then a follower, cut off from the others. Every acknowledged write is
//! then present on every node, and the clients' histories are checked for
//! linearizability per key. Negative controls start the nodes with
//! `REDRU_TEST_UNSAFE_LOCAL_READS=1` and show the checker catches the stale
//! reads that follow. `REDRU_CLUSTER_CYCLES` (default 1) scales the fault
//! cycles; every loop is bounded in count and time.
//!
//! How a partition is made between processes on one machine: each node
//! announces (`--cluster-announce`) a TCP proxy the test runs in front of
//! its peer port, so every node-to-node connection passes one, and the
//! proxies drop the bytes of cut links (`proxy.rs` says how it knows which
//! node a connection comes from). No root, namespaces or `tc` needed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redru_testkit::linearizability::{self, Event, Op, Verdict};

use crate::proxy::{Links, Proxy};
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
    /// With [`Cluster::start_behind_proxies`]: each node's proxy (what the
    /// others dial), and the links they cut.
    proxies: Vec<Proxy>,
    links: Arc<Links>,
}

impl Cluster {
    /// Three nodes, initialized on node 1, node 2 and 3 added as learners,
    /// then all three made voters.
    fn start(env: &[(&'static str, &'static str)]) -> Result<Cluster> {
        Cluster::start_with(env, false)
    }

    /// The same, each node announcing a proxy in front of its peer port
    /// (`--cluster-announce`), so that [`Cluster::links`] can partition them.
    fn start_behind_proxies(env: &[(&'static str, &'static str)]) -> Result<Cluster> {
        Cluster::start_with(env, true)
    }

    fn start_with(env: &[(&'static str, &'static str)], proxied: bool) -> Result<Cluster> {
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
            proxies: Vec::new(),
            links: Arc::new(Links::default()),
        };
        if proxied {
            for i in 0..3 {
                let upstream = SocketAddr::from(([127, 0, 0, 1], cluster.peers[i]));
                cluster.proxies.push(Proxy::start(i as u64 + 1, upstream, Arc::clone(&cluster.links))?);
            }
        }
        for i in 0..3 {
            cluster.spawn_first(i, proxied)?;
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

    /// The peer address the other nodes dial for node `i`: its proxy's, if it has one.
    fn peer(&self, i: usize) -> String {
        match self.proxies.get(i) {
            Some(proxy) => proxy.addr.to_string(),
            None => self.listen(i),
        }
    }

    /// Node `i`'s own peer port.
    fn listen(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.peers[i])
    }

    /// Starts node `i` for the first time. A peer port found free may be
    /// taken by another test before the node binds it ("Address already in
    /// use" failed CI once): before any node knows the address, a few tries
    /// on new ports (and a new proxy in front of it).
    fn spawn_first(&mut self, i: usize, proxied: bool) -> Result<()> {
        for _ in 0..4 {
            match self.spawn(i) {
                Err(e) if e.to_string().contains("Address already in use") => {
                    self.peers[i] = free_port()?;
                    if proxied {
                        let upstream = SocketAddr::from(([127, 0, 0, 1], self.peers[i]));
                        self.proxies[i] = Proxy::start(i as u64 + 1, upstream, Arc::clone(&self.links))?;
                    }
                }
                outcome => return outcome,
            }
        }
        self.spawn(i)
    }

    /// Starts node `i` (id `i + 1`) on its directory and peer port.
    fn spawn(&mut self, i: usize) -> Result<()> {
        let (id, listen, peer) = ((i + 1).to_string(), self.listen(i), self.peer(i));
        let secret = self.secret.1.to_string_lossy().into_owned();
        let mut args = vec!["--cluster", "--node-id", &id, "--cluster-addr", &listen, "--cluster-secret-file", &secret];
        if !self.proxies.is_empty() {
            args.extend(["--cluster-announce", &peer]);
        }
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
        self.leader_among(&[0, 1, 2])
    }

    /// The index of the node among `nodes` that leads, once one does
    /// (bounded by [`WAIT`]). A partitioned old leader still believes it
    /// leads: ask only the nodes on the side that matters.
    fn leader_among(&self, nodes: &[usize]) -> Result<usize> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            for &i in nodes {
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

/// How long a client waits on the minority side before it counts the
/// operation as unanswered (shorter than [`OP_TIMEOUT`] so a round stays short).
const MINORITY_WAIT: Duration = Duration::from_secs(2);

/// Microseconds since `start`, the histories' clock.
fn micros(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// Sets `key` through the nodes of `side` until one acknowledges it
/// (bounded by [`WAIT`]). Each attempt writes its own value, recorded in
/// `history` (a failed attempt as a write of unknown outcome), so a late
/// apply of a failed attempt cannot pass for the acknowledged one.
fn write_acked(
    cluster: &Cluster,
    side: &[usize],
    key: &str,
    value: &str,
    start: Instant,
    history: &mut Vec<Event<String>>,
) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    for attempt in 0..1000 {
        if Instant::now() > deadline {
            break;
        }
        let value = format!("{value}.{attempt}");
        let call = micros(start);
        let reply = Resp::connect_within(cluster.node(side[attempt % side.len()])?.addr, OP_TIMEOUT)
            .and_then(|mut c| c.call(&["SET", key, &value]));
        let acked = matches!(reply, Ok(Frame::Simple(_)));
        history.push(Event { call, ret: acked.then(|| micros(start)), op: Op::Write(value) });
        if acked {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("no node of {side:?} acknowledged a write of {key} within the wait").into())
}

/// One linearizable GET of `key` on node `i` within `limit`, recorded in
/// `history` if answered; whether it was.
fn read_once(
    cluster: &Cluster,
    i: usize,
    key: &str,
    limit: Duration,
    start: Instant,
    history: &mut Vec<Event<String>>,
) -> Result<bool> {
    let call = micros(start);
    let value = match Resp::connect_within(cluster.node(i)?.addr, limit).and_then(|mut c| c.call(&["GET", key])) {
        Ok(Frame::Bulk(v)) => Some(String::from_utf8_lossy(&v).into_owned()),
        Ok(Frame::Nil) => None,
        _ => return Ok(false),
    };
    history.push(Event { call, ret: Some(micros(start)), op: Op::Read(value) });
    Ok(true)
}

/// What one leader partition showed: how long the majority took to elect,
/// what the isolated leader answered a write, whether it answered a read,
/// how long it took to step down once healed.
#[derive(Debug)]
struct LeaderCut {
    elected: Duration,
    minority_write: String,
    minority_read_answered: bool,
    stepped_down: Duration,
}

/// The leader cut off from both followers: it must acknowledge no write,
/// the other two elect a leader that takes writes, and once healed the old
/// leader steps down and reads the majority's value. Every operation on the
/// key `part` goes into `history` for the linearizability check.
fn leader_partition_round(
    cluster: &Cluster,
    cycle: usize,
    start: Instant,
    history: &mut Vec<Event<String>>,
) -> Result<LeaderCut> {
    write_acked(cluster, &[0, 1, 2], "part", &format!("before-{cycle}"), start, history)?;
    let old = cluster.leader()?;
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    cluster.links.isolate(old as u64 + 1, &[1, 2, 3]);
    let cut = Instant::now();
    let new = cluster.leader_among(&majority)?;
    let elected = cut.elapsed();
    assert_ne!(new, old);
    // The old leader still believes it leads (nothing told it otherwise),
    // but cannot reach a majority: it must not acknowledge.
    let value = format!("minority-{cycle}");
    let call = micros(start);
    let reply =
        Resp::connect_within(cluster.node(old)?.addr, MINORITY_WAIT).and_then(|mut c| c.call(&["SET", "part", &value]));
    let minority_write = match reply {
        Ok(Frame::Simple(_)) => {
            return Err(format!("the isolated leader (node {}) acknowledged a write", old + 1).into());
        }
        Ok(other) => format!("{other:?}"),
        Err(e) => e.to_string(),
    };
    // Not acknowledged, but it may be in the old leader's log: unknown.
    history.push(Event { call, ret: None, op: Op::Write(value) });
    write_acked(cluster, &majority, "part", &format!("majority-{cycle}"), start, history)?;
    // With the read index the isolated node cannot confirm it leads: no answer,
    // or (the negative control) a stale one the checker must catch.
    let minority_read_answered = read_once(cluster, old, "part", MINORITY_WAIT, start, history)?;
    cluster.links.heal();
    let healed = Instant::now();
    let deadline = healed + WAIT;
    while cluster.status(old)?["role"] == "leader" {
        if Instant::now() > deadline {
            return Err(format!("node {} still leads {WAIT:?} after the partition healed", old + 1).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stepped_down = healed.elapsed();
    let deadline = Instant::now() + WAIT;
    while !read_once(cluster, old, "part", OP_TIMEOUT, start, history)? {
        if Instant::now() > deadline {
            return Err(format!("node {} answered no read after the partition healed", old + 1).into());
        }
    }
    Ok(LeaderCut { elected, minority_write, minority_read_answered, stepped_down })
}

/// A follower cut off from both others for longer than an election timeout
/// while the majority commits 20 writes; once healed it holds them all. The
/// keys written.
fn follower_partition_round(cluster: &Cluster, cycle: usize) -> Result<Vec<String>> {
    let leader = cluster.leader()?;
    let follower = (leader + 1) % 3;
    let majority: Vec<usize> = (0..3).filter(|&i| i != follower).collect();
    cluster.links.isolate(follower as u64 + 1, &[1, 2, 3]);
    let keys: Vec<String> = (0..20).map(|k| format!("cut:{cycle}:{k}")).collect();
    let mut unused = Vec::new();
    for key in &keys {
        write_acked(cluster, &majority, key, "1", Instant::now(), &mut unused)?;
    }
    std::thread::sleep(Duration::from_millis(1000));
    let missed = cluster.local_values(follower, &keys)?.iter().filter(|v| v.is_none()).count();
    assert_eq!(missed, keys.len(), "the isolated follower received writes through the cut");
    cluster.links.heal();
    cluster.caught_up()?;
    let values = cluster.local_values(follower, &keys)?;
    assert!(values.iter().all(Option::is_some), "node {} did not catch up after the partition healed", follower + 1);
    Ok(keys)
}

#[test]
fn a_partitioned_leader_stops_acknowledging_and_a_partitioned_follower_catches_up() -> Result {
    let mut cluster = Cluster::start_behind_proxies(&[])?;
    let start = Instant::now();
    let mut part = Vec::new();
    let mut cuts = Vec::new();
    let mut acked = Vec::new();
    let mut record = under_load(&mut cluster, 3, |cluster| {
        for cycle in 0..cycles() {
            std::thread::sleep(Duration::from_millis(500));
            cuts.push(leader_partition_round(cluster, cycle, start, &mut part)?);
            acked.extend(follower_partition_round(cluster, cycle)?);
        }
        Ok(())
    })?;
    for cut in &cuts {
        eprintln!(
            "leader partition: a new leader {:?} after the cut; the old one answered a write with {:?} \
             and stepped down {:?} after the heal",
            cut.elected, cut.minority_write, cut.stepped_down
        );
    }
    // Every node reached every other through the proxies (none dialled a
    // peer port directly), and the proxies could read every handshake.
    let all: std::collections::BTreeSet<(u64, u64)> =
        (1..=3).flat_map(|a| (1..=3).filter(move |&b| b != a).map(move |b| (a, b))).collect();
    assert_eq!(cluster.links.seen(), all, "links that carried no connection through the proxies");
    assert_eq!(cluster.links.unreadable(), Vec::<String>::new(), "did the peer handshake change? (tests/proxy.rs)");
    record.histories.insert("part".into(), part);
    record.acked.extend(acked);
    check(&cluster, &record)?;
    assert!(
        !cuts.iter().any(|c| c.minority_read_answered),
        "the isolated leader answered a linearizable read: {cuts:?}"
    );
    Ok(())
}

#[test]
fn the_checker_catches_a_partitioned_leader_reading_without_the_read_index() -> Result {
    let cluster = Cluster::start_behind_proxies(&[("REDRU_TEST_UNSAFE_LOCAL_READS", "1")])?;
    let (start, mut history) = (Instant::now(), Vec::new());
    let cut = leader_partition_round(&cluster, 0, start, &mut history)?;
    assert!(cut.minority_read_answered, "the isolated leader did not serve the unsafe read");
    let verdict = linearizability::check(None, &history);
    assert!(matches!(verdict, Verdict::Violation(_)), "the stale read was not caught: {history:?}");
    Ok(())
}

#[test]
fn a_node_announces_its_cluster_announce_address() -> Result {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET)?;
    let data = dir.path().join("node");
    std::fs::create_dir(&data)?;
    let listen = format!("127.0.0.1:{}", free_port()?);
    let announce = "127.0.0.1:1";
    let secret = secret.to_string_lossy().into_owned();
    let args = [
        "--cluster",
        "--node-id",
        "1",
        "--cluster-addr",
        &listen,
        "--cluster-announce",
        announce,
        "--cluster-secret-file",
        &secret,
    ];
    let node = Serve::start(&data, &args)?;
    let mut conn = Resp::connect_within(node.addr, WAIT)?;
    expect_ok(conn.call(&["REDRU.CLUSTER", "INIT"])?)?;
    // INIT answers before the node has applied its membership.
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let Frame::Bulk(status) = conn.call(&["REDRU.CLUSTER", "STATUS"])? else {
            return Err("STATUS answered no bulk string".into());
        };
        let status: serde_json::Value = serde_json::from_slice(&status)?;
        if status["role"] == "leader" || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["addr"], announce, "{status}");
    assert_eq!(status["voters"]["1"], announce, "{status}");
    node.stop()
}
