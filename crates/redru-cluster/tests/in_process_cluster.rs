//! Three nodes in one process over the in-memory router: initialize, write
//! through the leader and see every node apply it; cut the leader off and see
//! the other two elect a new leader that accepts writes; heal and see the old
//! leader catch up; a follower far behind catches up through a snapshot;
//! membership grows from one node to three and back; writes commit over slow
//! links. Every wait is bounded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use redru_cluster::router::Router;
use redru_cluster::{NodeId, Raft, Request, Response, StateMachine, open_node_storage};
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(10);

struct Node {
    id: NodeId,
    raft: Raft,
    sm: StateMachine,
    dir: TempDir,
}

async fn start(router: &Router, id: NodeId, config: Arc<Config>) -> Result<Node, Box<dyn std::error::Error>> {
    start_in(router, id, config, tempfile::tempdir()?).await
}

/// Starts node `id` on the storage in `dir` (new or left by an earlier run).
async fn start_in(
    router: &Router,
    id: NodeId,
    config: Arc<Config>,
    dir: TempDir,
) -> Result<Node, Box<dyn std::error::Error>> {
    let (log, sm) = open_node_storage(dir.path())?;
    let raft = Raft::new(id, config, router.network(id), log, sm.clone()).await?;
    router.add(id, raft.clone());
    Ok(Node { id, raft, sm, dir })
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

/// Writes through whichever node leads, asking again after a refusal that
/// names another leader: a node that was cut off comes back with a higher
/// term (openraft 0.9 has no pre-vote), and the election it forces can move
/// the leadership between one step of a test and the next, as a client of a
/// real cluster sees it. A refused write was not applied, so asking again is safe.
async fn write_through_leader(nodes: &[&Node], key: &str, value: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leader = leader_among(nodes).await?;
        match leader.raft.client_write(Request::set(key, value)).await {
            Ok(reply) => {
                assert_eq!(reply.data, Response::Applied { ops: 1 });
                return Ok(reply.log_id.index);
            }
            Err(e) if e.forward_to_leader().is_some() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_far_behind_catches_up_through_a_snapshot_and_after_a_restart() -> TestResult {
    tokio::time::timeout(Duration::from_secs(60), snapshot_scenario()).await?
}

async fn snapshot_scenario() -> TestResult {
    let config = Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(20),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Config::default()
        }
        .validate()?,
    );
    let router = Router::new();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(&router, id, config.clone()).await?);
    }
    nodes[0].raft.initialize(BTreeSet::from([1, 2, 3])).await?;
    let leader_id = leader_among(&nodes.iter().collect::<Vec<_>>()).await?.id;
    let lagging_id = if leader_id == 3 { 2 } else { 3 };
    router.isolate(lagging_id);
    let leader = nodes.iter().find(|n| n.id == leader_id).ok_or("leader missing")?;
    let mut last = 0;
    for i in 0..60 {
        last = write(leader, &format!("k{i}"), &i.to_string()).await?;
    }
    leader
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= 40), "the leader snapshots and purges its log")
        .await?;

    router.heal_all();
    let lagging = nodes.iter().find(|n| n.id == lagging_id).ok_or("lagging node missing")?;
    wait_applied(lagging, last).await?;
    let snapshot = lagging.raft.metrics().borrow().snapshot;
    assert!(snapshot.is_some_and(|s| s.index >= 40), "caught up through a snapshot: {snapshot:?}");
    for i in 0..60 {
        assert_eq!(lagging.sm.db().get_value(&format!("k{i}")), Some(redru::json!(i)));
    }

    // Restart the node that caught up: it reopens its log and database and rejoins.
    let position = nodes.iter().position(|n| n.id == lagging_id).ok_or("lagging node missing")?;
    let node = nodes.remove(position);
    node.raft.shutdown().await?;
    router.remove(lagging_id);
    let Node { dir, raft, sm, .. } = node;
    drop((raft, sm));
    // The Raft tasks drop their storage handles (and the locks) as they end.
    let deadline = tokio::time::Instant::now() + WAIT;
    while open_node_storage(dir.path()).is_err() {
        if tokio::time::Instant::now() > deadline {
            return Err("the stopped node's database stays locked".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarted = start_in(&router, lagging_id, config.clone(), dir).await?;
    assert!(restarted.sm.db().get_value("k59").is_some(), "the data is there before any replication");
    let all: Vec<&Node> = nodes.iter().chain([&restarted]).collect();
    let more = write_through_leader(&all, "after-restart", "1").await?;
    wait_applied(&restarted, more).await?;
    assert_eq!(restarted.sm.db().get_value("after-restart"), Some(redru::json!(1)));
    nodes.push(restarted);
    for node in &nodes {
        node.raft.shutdown().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_from_one_node_to_three_and_back() -> TestResult {
    tokio::time::timeout(Duration::from_secs(60), membership_scenario()).await?
}

async fn membership_scenario() -> TestResult {
    let config = Arc::new(
        Config { heartbeat_interval: 50, election_timeout_min: 200, election_timeout_max: 400, ..Config::default() }
            .validate()?,
    );
    let router = Router::new();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(&router, id, config.clone()).await?);
    }
    let one = &nodes[0];
    one.raft.initialize(BTreeSet::from([1])).await?;
    leader_among(&[one]).await?;
    write(one, "alone", "1").await?;

    for id in [2, 3] {
        one.raft.add_learner(id, BasicNode::default(), true).await?;
    }
    one.raft.change_membership(BTreeSet::from([1, 2, 3]), false).await?;
    let three = write(one, "three", "3").await?;
    for node in &nodes {
        wait_applied(node, three).await?;
        assert_eq!(node.sm.db().get_value("alone"), Some(redru::json!(1)), "node {}", node.id);
        let (_, membership) = node.sm.clone().applied_state().await?;
        let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        assert_eq!(voters, BTreeSet::from([1, 2, 3]), "node {} records the membership", node.id);
    }

    one.raft.change_membership(BTreeSet::from([1]), false).await?;
    let back = write(one, "back", "1").await?;
    wait_applied(one, back).await?;
    let (_, membership) = one.sm.clone().applied_state().await?;
    assert_eq!(membership.membership().voter_ids().collect::<BTreeSet<_>>(), BTreeSet::from([1]));
    assert_eq!(one.raft.metrics().borrow().state, ServerState::Leader);
    for node in &nodes {
        node.raft.shutdown().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_commit_over_slow_links() -> TestResult {
    tokio::time::timeout(Duration::from_secs(60), slow_scenario()).await?
}

async fn slow_scenario() -> TestResult {
    let config = Arc::new(
        Config { heartbeat_interval: 50, election_timeout_min: 300, election_timeout_max: 600, ..Config::default() }
            .validate()?,
    );
    let router = Router::new();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(&router, id, config.clone()).await?);
    }
    for (a, b) in [(1, 2), (1, 3), (2, 3)] {
        router.set_delay(a, b, Duration::from_millis(20 * a));
    }
    nodes[0].raft.initialize(BTreeSet::from([1, 2, 3])).await?;
    let leader = leader_among(&nodes.iter().collect::<Vec<_>>()).await?;
    let started = tokio::time::Instant::now();
    let mut last = 0;
    for i in 0..5 {
        last = write(leader, &format!("slow{i}"), &i.to_string()).await?;
    }
    assert!(started.elapsed() >= Duration::from_millis(5 * 20), "each commit waits for a delayed round trip");
    for node in &nodes {
        wait_applied(node, last).await?;
        assert_eq!(node.sm.db().get_value("slow4"), Some(redru::json!(4)), "node {}", node.id);
    }
    for node in &nodes {
        node.raft.shutdown().await?;
    }
    Ok(())
}
