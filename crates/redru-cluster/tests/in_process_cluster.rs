//! Three nodes in one process over the in-memory router: initialize, write
//! through the leader and see every node apply it; cut the leader off and see
//! the other two elect a new leader that accepts writes; heal and see the old
//! leader catch up. Every wait is bounded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, ServerState};
use redru_cluster::router::Router;
use redru_cluster::{NodeId, Raft, Request, Response, StateMachine, open_node_storage};
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(10);

struct Node {
    id: NodeId,
    raft: Raft,
    sm: StateMachine,
    _dir: TempDir,
}

async fn start(router: &Router, id: NodeId, config: Arc<Config>) -> Result<Node, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (log, sm) = open_node_storage(dir.path())?;
    let raft = Raft::new(id, config, router.network(id), log, sm.clone()).await?;
    router.add(id, raft.clone());
    Ok(Node { id, raft, sm, _dir: dir })
}

/// The node that reports itself leader, among `nodes`, once one does.
async fn leader_among<'a>(nodes: &[&'a Node]) -> Result<&'a Node, Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for node in nodes {
            if node.raft.metrics().borrow().state == ServerState::Leader {
                return Ok(node);
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err("no leader elected in time".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn write(leader: &Node, key: &str, value: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let reply = leader.raft.client_write(Request::set(key, value)).await?;
    assert_eq!(reply.data, Response::Applied { ops: 1 });
    Ok(reply.log_id.index)
}

async fn wait_applied(node: &Node, index: u64) -> TestResult {
    node.raft.wait(Some(WAIT)).applied_index_at_least(Some(index), format!("node {} applies {index}", node.id)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_elect_a_new_leader_when_the_leader_is_cut_off() -> TestResult {
    tokio::time::timeout(Duration::from_secs(60), scenario()).await?
}

async fn scenario() -> TestResult {
    let config = Arc::new(
        Config { heartbeat_interval: 50, election_timeout_min: 200, election_timeout_max: 400, ..Config::default() }
            .validate()?,
    );
    let router = Router::new();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(&router, id, config.clone()).await?);
    }
    let members: BTreeSet<NodeId> = [1, 2, 3].into();
    nodes[0].raft.initialize(members).await?;

    let all: Vec<&Node> = nodes.iter().collect();
    let leader = leader_among(&all).await?;
    let mut last = 0;
    for i in 0..10 {
        last = write(leader, &format!("k{i}"), &format!("{{\"n\":{i}}}")).await?;
    }
    for node in &nodes {
        wait_applied(node, last).await?;
        for i in 0..10 {
            assert_eq!(node.sm.db().get_value(&format!("k{i}")), Some(redru::json!({"n": i})), "node {}", node.id);
        }
    }

    let old = leader.id;
    let old_term = leader.raft.metrics().borrow().current_term;
    router.isolate(old);
    let rest: Vec<&Node> = nodes.iter().filter(|n| n.id != old).collect();
    let new_leader = leader_among(&rest).await?;
    assert_ne!(new_leader.id, old);
    assert!(new_leader.raft.metrics().borrow().current_term > old_term);
    let after = write(new_leader, "after", "true").await?;
    for node in &rest {
        wait_applied(node, after).await?;
        assert_eq!(node.sm.db().get_value("after"), Some(redru::json!(true)));
    }
    let old_node = nodes.iter().find(|n| n.id == old).ok_or("old leader missing")?;
    assert!(old_node.sm.db().get("after").is_none(), "the cut-off leader cannot have applied it");

    router.heal_all();
    wait_applied(old_node, after).await?;
    assert_eq!(old_node.sm.db().get_value("after"), Some(redru::json!(true)));

    for node in &nodes {
        node.raft.shutdown().await?;
    }
    Ok(())
}
