//! The redru state machine: each entry is one atomic batch with the applied
//! record, a restart knows where it stands, bad requests are rejected the
//! same way on every node, and a snapshot moves the data to another node.

use std::collections::BTreeSet;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, Membership};
use redru_cluster::{APPLIED_KEY, Entry, LogId, Op, Request, Response, StateMachine, open_node_storage};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn normal(index: u64, request: Request) -> Entry {
    Entry { log_id: id(1, index), payload: EntryPayload::Normal(request) }
}

fn open(dir: &std::path::Path) -> Result<StateMachine, redru_cluster::Error> {
    Ok(open_node_storage(dir)?.1)
}

#[tokio::test]
async fn a_restart_knows_the_last_applied_entry_and_membership() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut sm = open(dir.path())?;
    let members: BTreeSet<u64> = [1, 2, 3].into();
    let replies = sm
        .apply([
            Entry { log_id: id(1, 1), payload: EntryPayload::Membership(Membership::new(vec![members.clone()], ())) },
            normal(
                2,
                Request {
                    ops: vec![Op::Set { key: "a".into(), value: r#"{"x":1}"#.into() }, Op::Clear],
                    conditions: vec![],
                    many: vec![],
                },
            ),
            normal(3, Request::set("b", "[1,2]")),
        ])
        .await?;
    assert_eq!(replies, [Response::None, Response::Applied { ops: 2 }, Response::Applied { ops: 1 }]);
    assert!(sm.db().get("a").is_none(), "the clear inside the batch removed a");
    drop(sm);
    let mut sm = open(dir.path())?;
    let (applied, membership) = sm.applied_state().await?;
    assert_eq!(applied, Some(id(1, 3)));
    assert_eq!(membership.log_id(), &Some(id(1, 1)));
    assert_eq!(membership.membership().get_joint_config(), &vec![members]);
    assert_eq!(sm.db().get_value("b"), Some(redru::json!([1, 2])));
    assert!(sm.db().contains(APPLIED_KEY), "the clear did not lose the applied record");
    Ok(())
}

#[tokio::test]
async fn bad_requests_are_rejected_whole_and_still_recorded_as_applied() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut sm = open(dir.path())?;
    let bad_json = Request {
        ops: vec![
            Op::Set { key: "a".into(), value: "1".into() },
            Op::Set { key: "b".into(), value: "{not json".into() },
        ],
        conditions: vec![],
        many: vec![],
    };
    let reserved = Request::delete(APPLIED_KEY);
    let replies = sm.apply([normal(1, bad_json), normal(2, reserved)]).await?;
    assert!(replies.iter().all(|r| matches!(r, Response::Rejected { .. })), "{replies:?}");
    assert!(sm.db().get("a").is_none(), "nothing of a rejected batch is applied");
    assert_eq!(sm.applied_state().await?.0, Some(id(1, 2)));
    Ok(())
}

#[tokio::test]
async fn a_snapshot_moves_the_data_and_the_applied_record() -> TestResult {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mut leader = open(a.path())?;
    let mut follower = open(b.path())?;
    follower.apply([normal(1, Request::set("stale", "true"))]).await?;
    leader.apply((1..=50).map(|i| normal(i, Request::set(format!("k{i}"), format!("{i}"))))).await?;
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await?;
    assert_eq!(snapshot.meta.last_log_id, Some(id(1, 50)));
    follower.install_snapshot(&snapshot.meta, snapshot.snapshot).await?;
    assert_eq!(follower.applied_state().await?.0, Some(id(1, 50)));
    assert_eq!(follower.db().len(), 51, "50 keys and the applied record");
    assert!(follower.db().get("stale").is_none());
    drop(follower);
    let mut follower = open(b.path())?;
    assert_eq!(follower.applied_state().await?.0, Some(id(1, 50)));
    let current = follower.get_current_snapshot().await?.ok_or("no current snapshot after a restart")?;
    assert_eq!(current.meta, snapshot.meta);
    Ok(())
}

#[tokio::test]
async fn a_batch_the_engine_refuses_is_rejected_and_the_position_still_advances() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut sm = open(dir.path())?;
    sm.db().create_unique_index("email")?;
    let replies = sm
        .apply([
            normal(1, Request::set("u1", r#"{"email":"a@x"}"#)),
            normal(
                2,
                Request {
                    ops: vec![
                        Op::Set { key: "u3".into(), value: "3".into() },
                        Op::Set { key: "u2".into(), value: r#"{"email":"a@x"}"#.into() },
                    ],
                    conditions: vec![],
                    many: vec![],
                },
            ),
        ])
        .await?;
    assert_eq!(replies[0], Response::Applied { ops: 1 });
    assert!(matches!(&replies[1], Response::Rejected { reason } if reason.contains("email")), "{replies:?}");
    assert!(sm.db().get("u3").is_none(), "nothing of the refused batch is applied");
    assert_eq!(sm.applied_state().await?.0, Some(id(1, 2)));
    Ok(())
}
