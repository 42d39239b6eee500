//! An in-process network: every node's Raft handle in one table, RPCs as
//! direct calls, and links that can be cut and healed one by one. It is the
//! network of the in-process cluster tests (the real one is `network.rs`).
//! A cut link answers `Unreachable`, as a dead peer would; a slow link
//! delays each request by a set time before delivering it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use crate::types::{NodeId, Raft, TypeConfig};

#[derive(Default)]
struct Table {
    nodes: BTreeMap<NodeId, Raft>,
    /// Cut links, one entry per direction.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Delays of slow links, one entry per direction.
    delays: BTreeMap<(NodeId, NodeId), Duration>,
}

/// The in-process network shared by the nodes of one test cluster.
#[derive(Clone, Default)]
pub struct Router {
    table: Arc<Mutex<Table>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.lock();
        f.debug_struct("Router").field("nodes", &table.nodes.keys()).field("cut", &table.cut).finish()
    }
}

impl Router {
    /// An empty network.
    pub fn new() -> Router {
        Router::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The network factory node `id` gives to `Raft::new`.
    pub fn network(&self, id: NodeId) -> RouterNetwork {
        RouterNetwork { router: self.clone(), from: id }
    }

    /// Makes node `id` reachable through `raft`.
    pub fn add(&self, id: NodeId, raft: Raft) {
        self.lock().nodes.insert(id, raft);
    }

    /// Forgets node `id` (its links then answer `Unreachable`), dropping the
    /// router's handle to it.
    pub fn remove(&self, id: NodeId) {
        self.lock().nodes.remove(&id);
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut table = self.lock();
        table.cut.insert((a, b));
        table.cut.insert((b, a));
    }

    /// Heals the link between `a` and `b`, both ways.
    pub fn heal(&self, a: NodeId, b: NodeId) {
        let mut table = self.lock();
        table.cut.remove(&(a, b));
        table.cut.remove(&(b, a));
    }

    /// Cuts every link of node `id`.
    pub fn isolate(&self, id: NodeId) {
        let others: Vec<NodeId> = self.lock().nodes.keys().copied().filter(|&n| n != id).collect();
        for other in others {
            self.cut(id, other);
        }
    }

    /// Heals every link (cuts and delays).
    pub fn heal_all(&self) {
        let mut table = self.lock();
        table.cut.clear();
        table.delays.clear();
    }

    /// Delays every request between `a` and `b`, both ways, by `delay`
    /// (`Duration::ZERO` removes the delay).
    pub fn set_delay(&self, a: NodeId, b: NodeId, delay: Duration) {
        let mut table = self.lock();
        for link in [(a, b), (b, a)] {
            if delay.is_zero() {
                table.delays.remove(&link);
            } else {
                table.delays.insert(link, delay);
            }
        }
    }

    /// The target's Raft handle after the link's delay, if the link from
    /// `from` to `to` is up (checked before and after the delay).
    async fn reach(&self, from: NodeId, to: NodeId) -> Result<Raft, Unreachable> {
        let delay = self.lock().delays.get(&(from, to)).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let table = self.lock();
        if table.cut.contains(&(from, to)) {
            return Err(Unreachable::new(&io::Error::other(format!("link {from} -> {to} is cut"))));
        }
        table.nodes.get(&to).cloned().ok_or_else(|| Unreachable::new(&io::Error::other(format!("no node {to}"))))
    }
}

/// One node's view of the [`Router`]: the factory of its links.
#[derive(Clone, Debug)]
pub struct RouterNetwork {
    router: Router,
    from: NodeId,
}

/// A link from one node to another through the [`Router`].
#[derive(Clone, Debug)]
pub struct RouterLink {
    router: Router,
    from: NodeId,
    to: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for RouterNetwork {
    type Network = RouterLink;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> RouterLink {
        RouterLink { router: self.router.clone(), from: self.from, to: target }
    }
}

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl RaftNetwork<TypeConfig> for RouterLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        let raft = self.router.reach(self.from, self.to).await?;
        raft.append_entries(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        let raft = self.router.reach(self.from, self.to).await?;
        raft.install_snapshot(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, _option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        let raft = self.router.reach(self.from, self.to).await?;
        raft.vote(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }
}
