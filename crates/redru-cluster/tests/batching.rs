//! The leader's batcher: many concurrent writes (local, and forwarded by a
//! follower's forwarder several to a request) are committed in fewer log
//! entries than writes, each still answered on its own; in one group entry a request whose condition fails gets `Conflict`
//! while the others apply; a group entry is applied as one batch with the
//! applied record, each request atomic on its own. Every wait is bounded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload};
use redru_cluster::{Cond, Entry, LogId, Node, NodeConfig, Op, Request, Response, Secret, open_node_storage};
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WRITES: usize = 200;

async fn start(id: u64, dir: &TempDir) -> Result<Arc<Node>, Box<dyn std::error::Error>> {
    let raft = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        ..redru_cluster::default_raft_config()
    };
    let config = NodeConfig {
        id,
        dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse()?,
        advertise: None,
        secret: Secret::new("test-secret-0123456789")?,
        raft: Some(raft),
        max_snapshot_bytes: redru_cluster::DEFAULT_MAX_SNAPSHOT_BYTES,
    };
    Ok(Node::start(config).await?)
}

fn claim(key: &str, value: &str) -> Request {
    Request {
        ops: vec![Op::Set { key: key.into(), value: value.into() }],
        conditions: vec![Cond { key: key.into(), equals: None }],
        many: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_entries_and_a_failed_condition_fails_only_its_write() -> TestResult {
    tokio::time::timeout(Duration::from_secs(60), scenario()).await?
}

async fn scenario() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?];
    let n1 = start(1, &dirs[0]).await?;
    let n2 = start(2, &dirs[1]).await?;
    let n3 = start(3, &dirs[2]).await?;
    n1.init().await?;
    n1.raft().wait(Some(Duration::from_secs(10))).state(openraft::ServerState::Leader, "leader").await?;
    n1.add_learner(2, n2.addr()).await?;
    n1.add_learner(3, n3.addr()).await?;
    n1.change_membership(BTreeSet::from([1, 2, 3]), false).await?;
    let before = n1.status().last_log_index.unwrap_or(0);

    // WRITES writes at once, half through a follower (forwarded): every one
    // tries to claim the key "owner" (absent required) and sets its own key.
    let mut tasks = Vec::new();
    for i in 0..WRITES {
        let node = Arc::clone(if i % 2 == 0 { &n1 } else { &n2 });
        tasks.push(tokio::spawn(async move {
            let own = node.write(Request::set(format!("k{i}"), i.to_string())).await;
            let owner = node.write(claim("owner", &i.to_string())).await;
            (own, owner)
        }));
    }
    let (mut claimed, mut conflicts) = (0, 0);
    for task in tasks {
        let (own, owner) = task.await?;
        assert_eq!(own?, Response::Applied { ops: 1 });
        match owner? {
            Response::Applied { ops: 1 } => claimed += 1,
            Response::Conflict { .. } => conflicts += 1,
            other => return Err(format!("unexpected answer {other:?}").into()),
        }
    }
    assert_eq!((claimed, conflicts), (1, WRITES - 1), "exactly one claim wins");

    let after = n1.status().last_log_index.unwrap_or(0);
    let entries = after - before;
    // Shown with --nocapture: how well writes shared entries in this run.
    eprintln!("{} writes in {entries} entries", 2 * WRITES);
    assert!(
        entries < (2 * WRITES) as u64 / 2,
        "{} writes took {entries} entries: concurrent writes should share entries",
        2 * WRITES
    );
    n3.read_barrier().await?;
    for i in 0..WRITES {
        assert_eq!(n3.db().get_value(&format!("k{i}")), Some(redru::json!(i)));
    }
    assert!(n3.db().get_value("owner").is_some());
    n1.shutdown().await;
    n2.shutdown().await;
    n3.shutdown().await;
    Ok(())
}

fn entry(index: u64, request: Request) -> Entry {
    Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(request) }
}

#[tokio::test]
async fn a_group_entry_answers_each_request_and_checks_conditions_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut sm = open_node_storage(dir.path())?.1;
    let group = Request::many(vec![
        claim("a", "1"),
        // Fails: the request before it in the same entry set "a".
        claim("a", "2"),
        Request {
            ops: vec![
                Op::Set { key: "b".into(), value: "1".into() },
                Op::Set { key: "c".into(), value: "{bad".into() },
            ],
            ..Request::default()
        },
        Request {
            ops: vec![Op::Set { key: "d".into(), value: "4".into() }, Op::Delete { key: "a".into() }],
            conditions: vec![Cond { key: "a".into(), equals: Some("1".into()) }],
            many: vec![],
        },
        // Holds: the request before it deleted "a".
        claim("a", "5"),
    ]);
    let replies = sm.apply(vec![entry(1, group)]).await?;
    let [Response::Many { responses }] = replies.as_slice() else { return Err(format!("{replies:?}").into()) };
    assert!(matches!(responses[0], Response::Applied { ops: 1 }));
    assert!(matches!(responses[1], Response::Conflict { .. }));
    assert!(matches!(responses[2], Response::Rejected { .. }), "a bad value rejects its own request only");
    assert!(matches!(responses[3], Response::Applied { ops: 2 }));
    assert!(matches!(responses[4], Response::Applied { ops: 1 }));
    let db = sm.db();
    assert_eq!(db.get_value("a"), Some(redru::json!(5)));
    assert_eq!(db.get_value("b"), None, "the rejected request wrote none of its operations");
    assert_eq!(db.get_value("d"), Some(redru::json!(4)));

    // A single request is written without the group field, as before.
    let line = serde_json::to_string(&Request::set("x", "1"))?;
    assert!(!line.contains("many"), "{line}");
    Ok(())
}
