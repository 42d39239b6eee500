//! Nodes over the real TCP network in one process: three nodes form a
//! cluster through the cluster commands' methods, a follower's write is
//! forwarded to the leader, a follower's read barrier sees it; a fourth node
//! added after the log was purged catches up through a snapshot sent in
//! chunks over TCP; a peer with the wrong secret, or sending garbage, is
//! refused without disturbing the cluster. Every wait is bounded.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use redru_cluster::{Node, NodeConfig, Request, Response, Secret};
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SECRET: &str = "test-secret-0123456789";

async fn start(id: u64, dir: &TempDir) -> Result<Arc<Node>, Box<dyn std::error::Error>> {
    let raft = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        snapshot_max_chunk_size: 4096, // many chunks, even for a small snapshot
        ..redru_cluster::default_raft_config()
    };
    let config = NodeConfig {
        id,
        dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse()?,
        advertise: None,
        secret: Secret::new(SECRET)?,
        raft: Some(raft),
        max_snapshot_bytes: redru_cluster::DEFAULT_MAX_SNAPSHOT_BYTES,
    };
    Ok(Node::start(config).await?)
}

async fn applied(node: &Node, key: &str) -> Option<redru::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = node.db().get_value(key) {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_tcp_forward_writes_and_a_late_node_gets_a_snapshot() -> TestResult {
    tokio::time::timeout(Duration::from_secs(60), scenario()).await?
}

async fn scenario() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?];
    let n1 = start(1, &dirs[0]).await?;
    let n2 = start(2, &dirs[1]).await?;
    let n3 = start(3, &dirs[2]).await?;
    n1.init().await?;
    n1.raft().wait(Some(Duration::from_secs(10))).state(openraft::ServerState::Leader, "leader").await?;
    n1.add_learner(2, n2.addr()).await?;
    n1.add_learner(3, n3.addr()).await?;
    n1.change_membership(BTreeSet::from([1, 2, 3]), false).await?;
    assert_eq!(n1.status().voters.len(), 3);

    // A follower's write goes to the leader and is answered once applied there.
    assert_eq!(n2.write(Request::set("from-2", "2")).await?, Response::Applied { ops: 1 });
    n3.read_barrier().await?;
    assert_eq!(n3.db().get_value("from-2"), Some(redru::json!(2)));
    assert_eq!(n1.db().get_value("from-2"), Some(redru::json!(2)));

    // A condition computed on a stale read is refused the same everywhere.
    let stale = Request {
        ops: vec![redru_cluster::Op::Set { key: "from-2".into(), value: "3".into() }],
        conditions: vec![redru_cluster::Cond { key: "from-2".into(), equals: Some("1".into()) }],
        many: vec![],
    };
    assert!(matches!(n3.write(stale).await?, Response::Conflict { .. }));

    // A wrong secret is refused by the handshake; so is garbage.
    let wrong = redru_cluster::probe(n1.addr(), &Secret::new("another-secret-0000")?).await;
    assert!(matches!(&wrong, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied), "{wrong:?}");
    redru_cluster::probe(n1.addr(), &Secret::new(SECRET)?).await?;
    let addr = n1.addr().to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(&u32::MAX.to_be_bytes())?;
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink); // the node closes the connection
        Ok(())
    })
    .await??;

    // Enough writes, a snapshot and a purge: node 4 can only catch up by snapshot.
    for i in 0..50 {
        n1.write(Request::set(format!("k{i}"), format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(200)))).await?;
    }
    let covered = n1.snapshot().await?;
    assert!(covered > 50);
    let n4 = start(4, &dirs[3]).await?;
    n1.add_learner(4, n4.addr()).await?;
    assert_eq!(applied(&n4, "k49").await, Some(redru::json!({"i": 49, "pad": "x".repeat(200)})));
    n4.raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= covered), "node 4 installed the snapshot")
        .await?;
    assert_eq!(n4.db().get_value("from-2"), Some(redru::json!(2)));

    for node in [n1, n2, n3, n4] {
        node.shutdown().await;
    }
    Ok(())
}
