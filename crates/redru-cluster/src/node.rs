//! A cluster node: the Raft instance on a node directory, its peer port
//! (openraft's RPCs and followers' forwarded requests, authenticated by the
//! cluster secret), and what a server needs from it: durable writes from any
//! node, the read barrier of a linearizable read, the cluster commands and
//! the status. A write is answered only once Raft committed it (on a majority
//! of logs, fsynced) and this node's leader applied it.
//!
//! On the leader, writes go through a batcher: openraft 0.9 flushes each
//! append before it takes the next, so one entry per write would cost one
//! fsync per write. The batcher proposes every write waiting (from every
//! connection, local or forwarded) as one group entry ([`Request::many`]),
//! each still atomic, conditional and answered on its own. On a follower,
//! a forwarder does the same for the writes it sends the leader: every write
//! waiting goes in one request ([`Rpc::WriteMany`]), answered write by write.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use redru::Db;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::auth::Secret;
use crate::error::Error;
use crate::network::{self, Conn, Pool, Request as PeerRequest, Rpc, RpcReply, TcpNetwork, WriteError};
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Raft, Request, Response};

/// How long a write or a read barrier waits for a leader before giving up.
pub const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long a forwarded request may take end to end.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer connection idle this long is closed (Raft's heartbeats keep live ones busy).
const PEER_IDLE: Duration = Duration::from_secs(300);
/// Pause between attempts while no leader is known.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// At most this many writes in one group entry.
pub const MAX_GROUP_WRITES: usize = 1024;
/// At most this many bytes of writes (as JSON) in one group entry: an entry
/// stays far under the peer port's frame limit ([`network::MAX_FRAME`]). A
/// single write over it is proposed alone, as before.
pub const MAX_GROUP_BYTES: usize = 1 << 20;
/// Group entries proposed at once: while one is being appended and
/// committed, the next collects the writes that arrive meanwhile.
const GROUPS_IN_FLIGHT: usize = 2;
/// Forwarded requests a follower has in flight to the leader at once: two
/// to feed the leader's two groups, two more to cover the round trip.
const FORWARDS_IN_FLIGHT: usize = 4;

/// How a node starts.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (unique in the cluster, never reused for another machine's data).
    pub id: NodeId,
    /// The node's directory (Raft log, state machine database, snapshots).
    pub dir: PathBuf,
    /// The address of the peer port to listen on.
    pub listen: SocketAddr,
    /// The address other nodes use to reach the peer port (`None`: `listen`).
    pub advertise: Option<String>,
    /// The shared cluster secret.
    pub secret: Secret,
    /// openraft's timing; `None`: [`default_raft_config`].
    pub raft: Option<openraft::Config>,
    /// The largest snapshot this node accepts from the leader, in bytes
    /// ([`crate::DEFAULT_MAX_SNAPSHOT_BYTES`] unless there is a reason).
    pub max_snapshot_bytes: u64,
}

/// The Raft timing a node uses unless told otherwise: heartbeats every
/// 100 ms, elections after 400 to 800 ms of silence (a failover well under
/// 2 s), snapshot chunks of [`network::SNAPSHOT_CHUNK`], a snapshot every
/// 20,000 entries with 1,000 kept after it for slow followers, and at most
/// 8 entries per append: 8 group entries of [`MAX_GROUP_BYTES`] stay under
/// the peer port's frame limit (openraft's default, 300, could make a
/// lagging follower's append larger than any frame the peer accepts).
pub fn default_raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "redru".into(),
        max_payload_entries: 8,
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        snapshot_max_chunk_size: network::SNAPSHOT_CHUNK,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(20_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..openraft::Config::default()
    }
}

/// A running node. Drop it (or call [`Node::shutdown`]) to stop it.
pub struct Node {
    id: NodeId,
    addr: String,
    raft: Raft,
    sm: StateMachine,
    secret: Arc<Secret>,
    pool: Arc<Pool>,
    batcher: Batcher,
    forwarder: Batcher,
    peers: JoinHandle<()>,
    batching: JoinHandle<()>,
    forwarding: JoinHandle<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).field("addr", &self.addr).finish()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.peers.abort();
        self.batching.abort();
        self.forwarding.abort();
    }
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Io(io::Error::other(e.to_string()))
}

/// One node as [`Node::status`] reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its peer address.
    pub addr: String,
    /// leader, follower, candidate or learner.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The leader's peer address, if known.
    pub leader_addr: Option<String>,
    /// The last index in this node's log.
    pub last_log_index: Option<u64>,
    /// The last index applied to its database.
    pub last_applied: Option<u64>,
    /// The last index its current snapshot covers.
    pub snapshot: Option<u64>,
    /// Voters, by id with their addresses.
    pub voters: BTreeMap<NodeId, String>,
    /// Learners, by id with their addresses.
    pub learners: BTreeMap<NodeId, String>,
    /// On the leader: each node's replicated index and how many entries it lags.
    pub replication: BTreeMap<NodeId, (Option<u64>, u64)>,
}

impl Node {
    /// Opens the node's storage, starts Raft and listens on the peer port.
    ///
    /// # Errors
    /// The storage does not open ([`crate::open_node_storage`]), the Raft
    /// configuration is invalid, or the peer port cannot be bound.
    pub async fn start(config: NodeConfig) -> Result<Arc<Node>, Error> {
        let (log, sm) = crate::open_node_storage(&config.dir)?;
        sm.set_max_snapshot_bytes(config.max_snapshot_bytes);
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            Error::Io(io::Error::new(e.kind(), format!("binding the peer port {}: {e}", config.listen)))
        })?;
        let addr = match config.advertise {
            Some(a) => a,
            None => listener.local_addr()?.to_string(),
        };
        let raft_config = config.raft.unwrap_or_else(default_raft_config);
        let raft_config = Arc::new(raft_config.validate().map_err(other)?);
        let secret = Arc::new(config.secret);
        let network = TcpNetwork { from: config.id, secret: Arc::clone(&secret) };
        let raft = Raft::new(config.id, raft_config, network, log, sm.clone()).await.map_err(other)?;
        let (batcher, queue) = Batcher::new();
        let batching = tokio::spawn(run_batcher(raft.clone(), queue));
        let pool = Arc::new(Pool::default());
        let (forwarder, forwards) = Batcher::new();
        let link = Leader { id: config.id, raft: raft.clone(), pool: Arc::clone(&pool), secret: Arc::clone(&secret) };
        let forwarding = tokio::spawn(run_forwarder(link, forwards));
        let peers = tokio::spawn(serve_peers(listener, raft.clone(), batcher.clone(), Arc::clone(&secret)));
        Ok(Arc::new(Node {
            id: config.id,
            addr,
            raft,
            sm,
            secret,
            pool,
            batcher,
            forwarder,
            peers,
            batching,
            forwarding,
        }))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The peer address other nodes reach this one at.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The Raft instance (metrics, waits).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The state machine's database: read it; write only through [`Node::write`].
    pub fn db(&self) -> Arc<Db> {
        self.sm.db_handle()
    }

    /// The leader this node knows of, with its peer address.
    fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let addr = metrics.membership_config.membership().get_node(&leader)?.addr.clone();
        Some((leader, addr))
    }

    /// Proposes `request` and returns the state machine's answer once it is
    /// committed and applied on the leader: through this node if it leads,
    /// otherwise forwarded to the leader over the peer port. Waits up to
    /// [`LEADER_WAIT`] for a leader.
    ///
    /// # Errors
    /// [`WriteError::NotWritten`] when no leader took it (safe to retry),
    /// [`WriteError::Unknown`] when the answer was lost after Raft had it.
    pub async fn write(&self, request: Request) -> Result<Response, WriteError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        // Shared, not copied, with each attempt (and the group it joins).
        let request = Arc::new(request);
        loop {
            let last = match self.leader() {
                Some((leader, _)) if leader == self.id => match self.batcher.propose(Arc::clone(&request)).await {
                    Err(WriteError::NotWritten(why)) => why,
                    done => return done,
                },
                Some(_) => match self.forwarder.propose(Arc::clone(&request)).await {
                    Err(WriteError::NotWritten(why)) => why,
                    done => return done,
                },
                None => "no leader is known".to_owned(),
            };
            if tokio::time::Instant::now() > deadline {
                return Err(WriteError::NotWritten(last));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Returns once this node's database holds every write committed before
    /// the call (Raft's read index: the leader confirms it still leads with a
    /// majority, then this node waits until it has applied up to the
    /// leader's commit index). A read after it is linearizable.
    ///
    /// # Errors
    /// No leader confirmed within [`LEADER_WAIT`], or this node did not catch up in time.
    pub async fn read_barrier(&self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let attempt = match self.leader() {
                Some((leader, _)) if leader == self.id => self.local_read_index().await,
                Some((_, addr)) => self.forward_read_index(&addr).await,
                None => Err("no leader is known".to_owned()),
            };
            let why = match attempt {
                Ok(index) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    return self
                        .raft
                        .wait(Some(left.max(Duration::from_millis(100))))
                        .applied_index_at_least(Some(index), "read index")
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("this node did not catch up to the read index {index}: {e}"));
                }
                Err(why) => why,
            };
            if tokio::time::Instant::now() > deadline {
                return Err(format!("no linearizable read possible: {why}"));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn local_read_index(&self) -> Result<u64, String> {
        read_index(&self.raft).await
    }

    async fn forward_read_index(&self, addr: &str) -> Result<u64, String> {
        let mut conn = self.pool.get(addr, &self.secret, self.id).await.map_err(|e| e.to_string())?;
        match conn.call(&Rpc::ReadIndex, FORWARD_TIMEOUT).await.map_err(|e| e.to_string())? {
            RpcReply::ReadIndex(result) => {
                self.pool.put(addr, conn);
                result
            }
            _ => Err("the leader answered a different request".into()),
        }
    }

    fn not_leader(&self) -> String {
        match self.leader() {
            Some((id, addr)) => format!("this node is not the leader; run it on node {id} (peer address {addr})"),
            None => "this node is not the leader and no leader is known".into(),
        }
    }

    /// Makes this node a one-node cluster (its first voter), once: the
    /// other nodes are added with [`Node::add_learner`] and [`Node::change_membership`].
    ///
    /// # Errors
    /// The node already belongs to a cluster, or Raft failed.
    pub async fn init(&self) -> Result<(), String> {
        let members = BTreeMap::from([(self.id, BasicNode::new(&self.addr))]);
        self.raft.initialize(members).await.map_err(|e| e.to_string())
    }

    /// Adds node `id` at peer address `addr` as a learner (it receives the
    /// log but does not vote), waiting until it has caught up. Leader only.
    ///
    /// # Errors
    /// Not the leader, or Raft refused.
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<(), String> {
        match self.raft.add_learner(id, BasicNode::new(addr), true).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(self.not_leader()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Makes `voters` the voting members (each must be a member or learner
    /// already); nodes left out stay as learners unless `drop_others`. Leader only.
    ///
    /// # Errors
    /// Not the leader, or Raft refused.
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>, drop_others: bool) -> Result<(), String> {
        match self.raft.change_membership(voters, !drop_others).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(self.not_leader()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Builds a snapshot now and purges the log up to it; the index it covers.
    ///
    /// # Errors
    /// Raft failed or the snapshot was not built in 30 s.
    pub async fn snapshot(&self) -> Result<u64, String> {
        let applied = self.raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        self.raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
        let metrics = self
            .raft
            .wait(Some(Duration::from_secs(30)))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "snapshot built")
            .await
            .map_err(|e| e.to_string())?;
        let index = metrics.snapshot.map_or(0, |s| s.index);
        self.raft.trigger().purge_log(index).await.map_err(|e| e.to_string())?;
        // The trigger only asks; wait until the log is purged, so that a node
        // added next must catch up from the snapshot.
        self.raft
            .wait(Some(Duration::from_secs(30)))
            .metrics(|m| m.purged.is_some_and(|p| p.index >= index), "log purged")
            .await
            .map_err(|e| format!("the snapshot covers {index} but the log was not purged in time: {e}"))?;
        Ok(index)
    }

    /// Roles, term, log positions and, on the leader, each node's lag.
    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut voters = BTreeMap::new();
        let mut learners = BTreeMap::new();
        for (id, node) in membership.nodes() {
            let list = if voter_ids.contains(id) { &mut voters } else { &mut learners };
            list.insert(*id, node.addr.clone());
        }
        let last = m.last_log_index.unwrap_or(0);
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, matched)| {
                        let index = matched.map(|l| l.index);
                        (*id, (index, last.saturating_sub(index.unwrap_or(0))))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
            ServerState::Follower => "follower",
        };
        let leader_addr = m.current_leader.and_then(|l| membership.get_node(&l)).map(|n| n.addr.clone());
        Status {
            id: self.id,
            addr: self.addr.clone(),
            role: role.into(),
            term: m.current_term,
            leader: m.current_leader,
            leader_addr,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            voters,
            learners,
            replication,
        }
    }

    /// Stops Raft and the peer port.
    pub async fn shutdown(&self) {
        self.peers.abort();
        self.batching.abort();
        self.forwarding.abort();
        let _ = self.raft.shutdown().await;
    }
}

/// Proposes `request` on this node, which believes it leads.
async fn propose(raft: &Raft, request: Request) -> Result<Response, WriteError> {
    match raft.client_write(request).await {
        Ok(reply) => Ok(reply.data),
        // openraft answers ForwardToLeader before appending: nothing was written.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(WriteError::NotWritten(format!("node stepped down (leader now {:?})", f.leader_id)))
        }
        Err(e) => Err(WriteError::Unknown(e.to_string())),
    }
}

/// The leader's read index: confirmed leadership with a majority, the log
/// index reads must wait for.
async fn read_index(raft: &Raft) -> Result<u64, String> {
    match tokio::time::timeout(LEADER_WAIT, raft.get_read_log_id()).await {
        Ok(Ok((read, _applied))) => Ok(read.map_or(0, |l| l.index)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the leader could not confirm its leadership in time".into()),
    }
}

/// A write waiting for the batcher, with where its answer goes.
struct Pending {
    request: Arc<Request>,
    bytes: usize,
    reply: oneshot::Sender<Result<Response, WriteError>>,
}

/// The way in to the batcher task ([`run_batcher`]); cheap to clone.
#[derive(Clone)]
struct Batcher {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    fn new() -> (Batcher, mpsc::UnboundedReceiver<Pending>) {
        let (queue, rx) = mpsc::unbounded_channel();
        (Batcher { queue }, rx)
    }

    /// Proposes `request` in the next group; answers as [`propose`] does.
    async fn propose(&self, request: Arc<Request>) -> Result<Response, WriteError> {
        answer(self.enqueue(request)).await
    }

    /// Hands `request` to the batcher; its answer comes on the receiver.
    fn enqueue(&self, request: Arc<Request>) -> Result<oneshot::Receiver<Result<Response, WriteError>>, WriteError> {
        let bytes = request.json_len_bound();
        let (reply, answer) = oneshot::channel();
        // Until the batcher has it, nothing can have been written.
        self.queue
            .send(Pending { request, bytes, reply })
            .map_err(|_| WriteError::NotWritten("the node is shutting down".into()))?;
        Ok(answer)
    }
}

/// The answer to an enqueued write. Once the batcher has it, the write may be
/// in the log: a lost answer is unknown.
async fn answer(
    queued: Result<oneshot::Receiver<Result<Response, WriteError>>, WriteError>,
) -> Result<Response, WriteError> {
    queued?.await.unwrap_or_else(|_| Err(WriteError::Unknown("the node stopped before answering".into())))
}

/// Takes the writes waiting in `queue` after `first` (or the next to arrive),
/// up to [`MAX_GROUP_WRITES`] and [`MAX_GROUP_BYTES`]; one that would pass
/// the byte limit is left in `carried` for the next group. `None`: the queue closed.
async fn collect_group(
    queue: &mut mpsc::UnboundedReceiver<Pending>,
    carried: &mut Option<Pending>,
) -> Option<Vec<Pending>> {
    let first = match carried.take() {
        Some(p) => p,
        None => queue.recv().await?,
    };
    let mut bytes = first.bytes;
    let mut group = vec![first];
    while group.len() < MAX_GROUP_WRITES {
        let Ok(next) = queue.try_recv() else { break };
        if bytes.saturating_add(next.bytes) > MAX_GROUP_BYTES {
            *carried = Some(next);
            break;
        }
        bytes += next.bytes;
        group.push(next);
    }
    Some(group)
}

/// Takes every write waiting, up to [`MAX_GROUP_WRITES`] and
/// [`MAX_GROUP_BYTES`], and proposes them as one entry; at most
/// [`GROUPS_IN_FLIGHT`] entries at once, so writes pile up (and share an
/// entry) while Raft is busy rather than each taking its own.
async fn run_batcher(raft: Raft, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let Some(group) = collect_group(&mut queue, &mut carried).await else { return };
        let raft = raft.clone();
        tokio::spawn(async move {
            propose_group(&raft, group).await;
            drop(slot);
        });
    }
}

/// Proposes `group` (one write alone, as a plain request: the entry is then
/// exactly what it was before batching) and answers each write.
async fn propose_group(raft: &Raft, group: Vec<Pending>) {
    if group.len() == 1 {
        for p in group {
            let _ = p.reply.send(propose(raft, Arc::unwrap_or_clone(p.request)).await);
        }
        return;
    }
    let (requests, replies): (Vec<Arc<Request>>, Vec<_>) = group.into_iter().map(|p| (p.request, p.reply)).unzip();
    let entry = Request { many: requests.clone(), ..Request::default() };
    match propose(raft, entry).await {
        Ok(Response::Many { responses }) if responses.len() == replies.len() => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(response));
            }
        }
        // The engine refused the group's batch as a whole (a unique index):
        // nothing was written, so each write is proposed alone and one
        // cannot fail the others.
        Ok(Response::Rejected { .. }) => {
            for (request, reply) in requests.into_iter().zip(replies) {
                let _ = reply.send(propose(raft, Arc::unwrap_or_clone(request)).await);
            }
        }
        Ok(other) => {
            for reply in replies {
                let _ = reply.send(Err(WriteError::Unknown(format!("the group entry was answered {other:?}"))));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// What a follower's forwarder needs to reach the leader.
struct Leader {
    id: NodeId,
    raft: Raft,
    pool: Arc<Pool>,
    secret: Arc<Secret>,
}

/// On a follower: takes every write waiting to be forwarded (the same limits
/// as a group) and sends them to the leader in one request, at most
/// [`FORWARDS_IN_FLIGHT`] at once, so that a forwarded write costs a share
/// of a round trip rather than one of its own.
async fn run_forwarder(link: Leader, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let link = Arc::new(link);
    let slots = Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let Some(group) = collect_group(&mut queue, &mut carried).await else { return };
        let link = Arc::clone(&link);
        tokio::spawn(async move {
            forward_group(&link, group).await;
            drop(slot);
        });
    }
}

/// Sends `group` to the leader as one [`Rpc::WriteMany`] and answers each
/// write. Nothing is written unless the request was sent: a write whose
/// answer is lost after that is unknown.
async fn forward_group(link: &Leader, group: Vec<Pending>) {
    let (requests, replies): (Vec<Arc<Request>>, Vec<_>) = group.into_iter().map(|p| (p.request, p.reply)).unzip();
    let count = requests.len();
    let results = match forward(link, requests).await {
        Ok(results) if results.len() == count => results,
        Ok(results) => {
            let why = format!("the leader answered {} of {count} forwarded writes", results.len());
            vec![Err(WriteError::Unknown(why)); count]
        }
        Err(e) => vec![Err(e); count],
    };
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

async fn forward(link: &Leader, requests: Vec<Arc<Request>>) -> Result<Vec<Result<Response, WriteError>>, WriteError> {
    let metrics = link.raft.metrics().borrow().clone();
    let leader = metrics.current_leader.filter(|&l| l != link.id);
    let Some((leader, addr)) =
        leader.and_then(|l| Some((l, metrics.membership_config.membership().get_node(&l)?.addr.clone())))
    else {
        // The caller retries: locally if this node leads by then.
        return Err(WriteError::NotWritten("the leader changed before the write was forwarded".into()));
    };
    let mut conn = link
        .pool
        .get(&addr, &link.secret, link.id)
        .await
        .map_err(|e| WriteError::NotWritten(format!("leader {leader} at {addr}: {e}")))?;
    match conn.call(&Rpc::WriteMany(requests), FORWARD_TIMEOUT).await {
        Ok(RpcReply::WriteMany(results)) => {
            link.pool.put(&addr, conn);
            Ok(results)
        }
        Ok(_) => Err(WriteError::Unknown(format!("leader {leader} at {addr} answered a different request"))),
        Err(e) => Err(WriteError::Unknown(format!("the connection to leader {leader} at {addr} failed: {e}"))),
    }
}

/// Accepts peer connections until the node stops.
async fn serve_peers(listener: TcpListener, raft: Raft, batcher: Batcher, secret: Arc<Secret>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_peer(stream, raft.clone(), batcher.clone(), Arc::clone(&secret)));
    }
}

/// One peer connection: the handshake, then requests answered in order.
async fn serve_peer(mut stream: TcpStream, raft: Raft, batcher: Batcher, secret: Arc<Secret>) {
    if tokio::time::timeout(network::HANDSHAKE_TIMEOUT, network::accept_handshake(&mut stream, &secret))
        .await
        .map_or(true, |r| r.is_err())
    {
        return;
    }
    loop {
        let Ok(rpc) = network::read_rpc(&mut stream, PEER_IDLE).await else { return };
        let reply = match rpc {
            PeerRequest::Append(r) => RpcReply::Append(raft.append_entries(r).await),
            PeerRequest::Vote(r) => RpcReply::Vote(raft.vote(r).await),
            PeerRequest::Snapshot(r) => RpcReply::Snapshot(raft.install_snapshot(r).await),
            PeerRequest::Write(r) => RpcReply::Write(forwarded_write(&raft, &batcher, r).await),
            PeerRequest::WriteMany(r) => RpcReply::WriteMany(forwarded_writes(&raft, &batcher, r).await),
            PeerRequest::ReadIndex => RpcReply::ReadIndex(read_index(&raft).await),
        };
        if network::write_frame(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

/// A write forwarded by a follower: proposed only if this node leads (no
/// second hop, so a request never loops between nodes with stale views).
async fn forwarded_write(raft: &Raft, batcher: &Batcher, request: Request) -> Result<Response, WriteError> {
    if raft.metrics().borrow().state != ServerState::Leader {
        return Err(WriteError::NotWritten("the forwarded-to node is not the leader".into()));
    }
    batcher.propose(Arc::new(request)).await
}

/// Writes forwarded together: all handed to the batcher before any answer is
/// awaited, so that they share a group; answered in order, each on its own.
async fn forwarded_writes(
    raft: &Raft,
    batcher: &Batcher,
    requests: Vec<Arc<Request>>,
) -> Vec<Result<Response, WriteError>> {
    if raft.metrics().borrow().state != ServerState::Leader {
        let why = WriteError::NotWritten("the forwarded-to node is not the leader".into());
        return vec![Err(why); requests.len()];
    }
    let queued: Vec<_> = requests.into_iter().map(|r| batcher.enqueue(r)).collect();
    let mut results = Vec::with_capacity(queued.len());
    for q in queued {
        results.push(answer(q).await);
    }
    results
}

/// Connects to `addr` and checks the handshake (for tests and `redru` diagnostics).
///
/// # Errors
/// The connection or the handshake failed (a wrong secret is `PermissionDenied`).
pub async fn probe(addr: &str, secret: &Secret) -> io::Result<()> {
    Conn::connect(addr, secret, 0, network::HANDSHAKE_TIMEOUT).await.map(|_| ())
}
