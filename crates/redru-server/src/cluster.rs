//! A cluster node's side of the server (`redru serve --cluster`): writes go
//! through Raft, reads wait for the read index, and the cluster commands.
//!
//! A write command runs against this node's state in a recording [`Tx`];
//! its writes become one Raft request whose conditions are the values it
//! read, so the same request is checked on every node when applied: a write
//! computed from a stale read (a follower behind, a new leader not yet caught
//! up) is refused there as a conflict and recomputed here. The reply is sent
//! only after Raft committed the request and the leader applied it. A
//! follower forwards the request to the leader over the peer port; clients
//! never see a redirect.

use redru_cluster::{Node, Response, WriteError};

use crate::commands::{self, Spec};
use crate::exec;
use crate::reply::Reply;
use crate::shared::{Client, Shared};
use crate::tx::Tx;

/// How often a write is recomputed after conflicts before giving up.
const ATTEMPTS: usize = 8;

/// Whether a cluster node runs `spec` here rather than as a plain server would.
pub fn handles(spec: &Spec) -> bool {
    spec.write || reads_data(spec) || matches!(spec.name, "exec" | "redru.cluster" | "readonly" | "readwrite" | "watch")
}

/// Commands that read keys or values (they wait for the read index).
fn reads_data(spec: &Spec) -> bool {
    (!spec.write && matches!(spec.group, "string" | "generic" | "json"))
        || matches!(spec.name, "dbsize" | "redru.find" | "redru.query" | "redru.explain")
}

/// Runs `spec` on a cluster node.
pub async fn run(shared: &Shared, client: &mut Client, spec: &'static Spec, args: &[Vec<u8>]) -> Reply {
    let Some(node) = shared.config.cluster.as_deref() else {
        return exec::run_one(shared, client, spec, args);
    };
    match spec.name {
        "redru.cluster" => admin(node, args).await,
        "readonly" => {
            client.stale_reads = true;
            Reply::ok()
        }
        "readwrite" => {
            client.stale_reads = false;
            Reply::ok()
        }
        "watch" => Reply::err("WATCH is not supported with --cluster yet: MULTI/EXEC is atomic on its own"),
        "redru.index" | "redru.dropindex" => {
            Reply::err("indexes are not replicated yet: REDRU.INDEX is not available with --cluster")
        }
        "exec" => exec_queue(shared, client, node).await,
        _ if spec.write => write(shared, client, node, spec, args).await,
        _ => {
            if !client.stale_reads
                && !shared.unsafe_reads
                && let Err(why) = node.read_barrier().await
            {
                return Reply::Error(format!("TRYAGAIN {why}"));
            }
            exec::run_one(shared, client, spec, args)
        }
    }
}

/// One write command through Raft.
///
/// A command that ends up writing nothing (SETNX on an existing key, DEL of
/// an absent one) answered from what this node read; that read is made
/// linearizable by running the command again after the read barrier.
async fn write(shared: &Shared, client: &mut Client, node: &Node, spec: &Spec, args: &[Vec<u8>]) -> Reply {
    let mut fresh = client.stale_reads || shared.unsafe_reads;
    for _ in 0..ATTEMPTS {
        let mut tx = Tx::recording(&shared.db);
        let reply = exec::run(shared, client, spec, args, &mut tx);
        if reply.is_error() && fresh {
            return reply;
        }
        match submit(node, tx, !reply.is_error()).await {
            Submitted::Done => return reply,
            Submitted::Failed(error) => return error,
            Submitted::NothingWritten if fresh => return reply,
            Submitted::NothingWritten | Submitted::Conflict => {
                if let Err(why) = node.read_barrier().await {
                    return Reply::Error(format!("TRYAGAIN {why}"));
                }
                fresh = true;
            }
        }
    }
    gave_up()
}

/// EXEC: the queued commands as one Raft request.
async fn exec_queue(shared: &Shared, client: &mut Client, node: &Node) -> Reply {
    let Some(queue) = client.multi.take() else { return Reply::err("EXEC without MULTI") };
    if std::mem::take(&mut client.multi_failed) {
        return Reply::Error("EXECABORT Transaction discarded because of previous errors.".into());
    }
    // Reads inside EXEC are answered from this node's state: catch up first.
    if !client.stale_reads
        && !shared.unsafe_reads
        && let Err(why) = node.read_barrier().await
    {
        return Reply::Error(format!("EXECABORT TRYAGAIN {why}"));
    }
    for _ in 0..ATTEMPTS {
        let mut tx = Tx::recording(&shared.db);
        let mut replies = Vec::with_capacity(queue.len());
        for args in &queue {
            replies.push(match commands::find(&args[0]) {
                Some(spec) if matches!(spec.name, "exec" | "multi") => Reply::err("MULTI and EXEC cannot be nested"),
                Some(spec) if handles(spec) && !spec.write && !reads_data(spec) => {
                    Reply::err(format!("'{}' cannot run inside MULTI with --cluster", spec.name))
                }
                Some(spec) => exec::run(shared, client, spec, args, &mut tx),
                None => commands::unknown(args),
            });
        }
        match submit(node, tx, true).await {
            Submitted::Done | Submitted::NothingWritten => return Reply::Array(replies),
            Submitted::Failed(Reply::Error(e)) => return Reply::Error(format!("EXECABORT {e}")),
            Submitted::Failed(other) => return other,
            Submitted::Conflict => {
                let _ = node.read_barrier().await;
            }
        }
    }
    gave_up()
}

enum Submitted {
    Done,
    NothingWritten,
    Conflict,
    Failed(Reply),
}

/// Proposes what `tx` wrote, if `ok` (the command did not fail) and it wrote anything.
async fn submit(node: &Node, tx: Tx<'_>, ok: bool) -> Submitted {
    if ok && tx.sets_deadlines() {
        // A request carries values only: a deadline would be dropped on every node.
        return Submitted::Failed(Reply::err(
            "expiry (EX, PX, EXPIRE, ...) is not replicated with --cluster yet: nothing was written",
        ));
    }
    let Some(request) = tx.into_request().filter(|_| ok) else { return Submitted::NothingWritten };
    match node.write(request).await {
        Ok(Response::Applied { .. } | Response::None) => Submitted::Done,
        Ok(Response::Conflict { .. }) => Submitted::Conflict,
        Ok(Response::Rejected { reason }) => Submitted::Failed(Reply::err(reason)),
        // The node answers a group's requests one by one; a group's answer never reaches a caller.
        Ok(Response::Many { .. }) => Submitted::Failed(Reply::err("the cluster answered a group for one write")),
        Err(WriteError::NotWritten(why)) => Submitted::Failed(Reply::Error(format!("TRYAGAIN not written: {why}"))),
        Err(e @ WriteError::Unknown(_)) => Submitted::Failed(Reply::err(e)),
    }
}

fn gave_up() -> Reply {
    Reply::Error(format!("TRYAGAIN the keys this command reads kept changing ({ATTEMPTS} attempts); retry"))
}

/// REDRU.CLUSTER INIT | ADDLEARNER id addr | MEMBERSHIP id [id ...] | STATUS | SNAPSHOT.
async fn admin(node: &Node, args: &[Vec<u8>]) -> Reply {
    let text = |i: usize| String::from_utf8_lossy(&args[i]).into_owned();
    let sub = text(1).to_ascii_uppercase();
    let id =
        |i: usize| text(i).parse::<u64>().map_err(|_| Reply::err(format!("node id {:?} is not a number", text(i))));
    let result = match (sub.as_str(), args.len()) {
        ("INIT", 2) => node.init().await.map(|()| Reply::ok()).map_err(Reply::err),
        ("ADDLEARNER", 4) => match id(2) {
            Ok(learner) => node.add_learner(learner, &text(3)).await.map(|()| Reply::ok()).map_err(Reply::err),
            Err(e) => Err(e),
        },
        ("MEMBERSHIP", n) if n >= 3 => match (2..n).map(id).collect::<Result<_, _>>() {
            Ok(voters) => node.change_membership(voters, true).await.map(|()| Reply::ok()).map_err(Reply::err),
            Err(e) => Err(e),
        },
        ("STATUS", 2) => Ok(Reply::text(serde_json::to_string_pretty(&node.status()).unwrap_or_default())),
        ("SNAPSHOT", 2) => node.snapshot().await.map(|i| Reply::Int(i as i64)).map_err(Reply::err),
        _ => Err(Reply::err(
            "usage: REDRU.CLUSTER INIT | ADDLEARNER id peer-addr | MEMBERSHIP id [id ...] | STATUS | SNAPSHOT",
        )),
    };
    result.unwrap_or_else(|e| e)
}

/// INFO's replication section on a cluster node, Redis's field names where
/// they fit (`role:master` on the leader, `slave` elsewhere), lag in entries.
pub fn info_replication(node: &Node) -> Vec<String> {
    let s = node.status();
    let mut lines = vec![
        format!("role:{}", if s.role == "leader" { "master" } else { "slave" }),
        "redru_cluster:1".into(),
        format!("redru_node_id:{}", s.id),
        format!("redru_raft_role:{}", s.role),
        format!("redru_term:{}", s.term),
        format!("redru_leader_id:{}", s.leader.map_or("none".into(), |l| l.to_string())),
        format!("redru_leader_peer_addr:{}", s.leader_addr.unwrap_or_default()),
        format!("redru_last_log_index:{}", s.last_log_index.unwrap_or(0)),
        format!("redru_last_applied:{}", s.last_applied.unwrap_or(0)),
        format!("redru_snapshot_index:{}", s.snapshot.unwrap_or(0)),
        format!("redru_voters:{}", s.voters.keys().map(u64::to_string).collect::<Vec<_>>().join(",")),
        format!("redru_learners:{}", s.learners.keys().map(u64::to_string).collect::<Vec<_>>().join(",")),
    ];
    let others: Vec<_> = s.replication.iter().filter(|(id, _)| **id != s.id).collect();
    lines.push(format!("connected_slaves:{}", others.len()));
    for (i, (id, (index, lag))) in others.into_iter().enumerate() {
        let addr = s.voters.get(id).or_else(|| s.learners.get(id)).cloned().unwrap_or_default();
        lines.push(format!("slave{i}:id={id},addr={addr},offset={},lag={lag}", index.unwrap_or(0)));
    }
    lines
}
