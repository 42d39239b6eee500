//! The TCP network between nodes: length-prefixed JSON frames (a 4-byte
//! big-endian length, then the message; at most [`MAX_FRAME`] bytes), a
//! mutual HMAC handshake on every connection ([`crate::auth`]), then
//! request/reply pairs. It carries openraft's RPCs (append, vote, snapshot
//! chunks) and a follower's forwarded writes and read-index requests.
//! Every read and write is bounded in size and time; bad input closes the
//! connection, never panics.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::{self, Secret};
use crate::types::{NodeId, Request, Response, TypeConfig};

/// The largest frame read or written: a snapshot chunk ([`SNAPSHOT_CHUNK`]
/// bytes, which JSON writes as up to four characters each) and a batch of
/// appended entries fit well inside it.
pub const MAX_FRAME: usize = 16 << 20;
/// The snapshot chunk size given to openraft (`Config::snapshot_max_chunk_size`).
pub const SNAPSHOT_CHUNK: u64 = 1 << 20;
/// How long a handshake may take, either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The protocol's name, mixed into every MAC so that a MAC from another use
/// of the same secret is not accepted here.
const PROTOCOL: &[u8] = b"redru-cluster/1";

/// Writes one frame holding `msg` as JSON.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::other(format!("a message of {} bytes is over the frame limit", body.len())));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads one frame and decodes its JSON as `T`.
pub(crate) async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {len} bytes is over the limit")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// `read_frame` that gives up after `limit`.
pub(crate) async fn read_frame_within<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    limit: Duration,
) -> io::Result<T> {
    tokio::time::timeout(limit, read_frame(r))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the peer did not answer in time"))?
}

#[derive(Serialize, Deserialize)]
struct Challenge {
    nonce: String,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    node: NodeId,
    nonce: String,
    mac: String,
}

#[derive(Serialize, Deserialize)]
enum Verdict {
    Accepted { mac: String },
    Refused { reason: String },
}

fn refused(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, reason.into())
}

/// The accepting side of the handshake: the connecting node's id, once it
/// proved it holds the secret (and the other side can check that we do).
pub(crate) async fn accept_handshake(stream: &mut TcpStream, secret: &Secret) -> io::Result<NodeId> {
    let ours = auth::nonce();
    write_frame(stream, &Challenge { nonce: auth::hex(&ours) }).await?;
    let answer: Answer = read_frame_within(stream, HANDSHAKE_TIMEOUT).await?;
    let theirs = auth::unhex(&answer.nonce).filter(|n| n.len() == 32);
    let mac = auth::unhex(&answer.mac);
    let ok = match (&theirs, &mac) {
        (Some(theirs), Some(mac)) => auth::same(mac, &secret.mac(&[PROTOCOL, b" client", &ours, theirs])),
        _ => false,
    };
    let Some(theirs) = theirs.filter(|_| ok) else {
        let reason = "the cluster secret does not match".to_owned();
        let _ = write_frame(stream, &Verdict::Refused { reason: reason.clone() }).await;
        return Err(refused(reason));
    };
    let mac = secret.mac(&[PROTOCOL, b" server", &theirs, &ours]);
    write_frame(stream, &Verdict::Accepted { mac: auth::hex(&mac) }).await?;
    Ok(answer.node)
}

/// The connecting side of the handshake.
async fn connect_handshake(stream: &mut TcpStream, secret: &Secret, from: NodeId) -> io::Result<()> {
    let challenge: Challenge = read_frame_within(stream, HANDSHAKE_TIMEOUT).await?;
    let theirs = auth::unhex(&challenge.nonce).filter(|n| n.len() == 32).ok_or_else(|| refused("bad challenge"))?;
    let ours = auth::nonce();
    let mac = secret.mac(&[PROTOCOL, b" client", &theirs, &ours]);
    write_frame(stream, &Answer { node: from, nonce: auth::hex(&ours), mac: auth::hex(&mac) }).await?;
    match read_frame_within(stream, HANDSHAKE_TIMEOUT).await? {
        Verdict::Accepted { mac } => {
            let want = secret.mac(&[PROTOCOL, b" server", &ours, &theirs]);
            if auth::unhex(&mac).is_some_and(|mac| auth::same(&mac, &want)) {
                Ok(())
            } else {
                Err(refused("the peer does not hold the cluster secret"))
            }
        }
        Verdict::Refused { reason } => Err(refused(format!("the peer refused us: {reason}"))),
    }
}

/// Why a forwarded write failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteError {
    /// Nothing was written: no leader was reachable (or it stepped down
    /// before taking the write). Safe to retry.
    NotWritten(String),
    /// The write was handed to Raft and then the answer was lost (the leader
    /// failed, the connection broke): it may or may not be applied.
    Unknown(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::NotWritten(why) => write!(f, "not written: {why}"),
            WriteError::Unknown(why) => write!(f, "outcome unknown (it may or may not be applied): {why}"),
        }
    }
}

impl std::error::Error for WriteError {}

/// A request on a node-to-node connection.
#[derive(Serialize, Deserialize)]
pub(crate) enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower's client write, for the leader to propose.
    Write(Request),
    /// A follower's client writes gathered while earlier ones were in flight,
    /// for the leader to propose; each answered on its own, in order.
    WriteMany(Vec<Arc<Request>>),
    /// A follower asks the leader for the index a linearizable read must wait for.
    ReadIndex,
}

/// The answer to an [`Rpc`], the same variant.
#[derive(Serialize, Deserialize)]
pub(crate) enum RpcReply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Write(Result<Response, WriteError>),
    WriteMany(Vec<Result<Response, WriteError>>),
    ReadIndex(Result<u64, String>),
}

/// An authenticated connection to another node.
pub(crate) struct Conn {
    stream: TcpStream,
}

impl Conn {
    /// Connects to `addr` and runs the handshake, all within `limit`.
    pub(crate) async fn connect(addr: &str, secret: &Secret, from: NodeId, limit: Duration) -> io::Result<Conn> {
        let work = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            connect_handshake(&mut stream, secret, from).await?;
            Ok(Conn { stream })
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr} timed out")))?
    }

    /// Sends `rpc` and waits (at most `limit`) for its reply.
    pub(crate) async fn call(&mut self, rpc: &Rpc, limit: Duration) -> io::Result<RpcReply> {
        tokio::time::timeout(limit, write_frame(&mut self.stream, rpc))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "sending timed out"))??;
        read_frame_within(&mut self.stream, limit).await
    }
}

/// Connections kept open to other nodes for forwarded writes and read-index
/// requests, by address. A connection goes back only after a whole
/// request/reply, so one in the pool is never mid-message.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<String, Vec<Conn>>>,
}

/// Most idle connections kept per address.
const POOL_PER_ADDR: usize = 16;

impl Pool {
    /// A pooled or new connection to `addr`.
    pub(crate) async fn get(&self, addr: &str, secret: &Secret, from: NodeId) -> io::Result<Conn> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).get_mut(addr).and_then(Vec::pop);
        match pooled {
            Some(conn) => Ok(conn),
            None => Conn::connect(addr, secret, from, HANDSHAKE_TIMEOUT).await,
        }
    }

    /// Returns a connection whose last call completed.
    pub(crate) fn put(&self, addr: &str, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr.to_owned()).or_default();
        if list.len() < POOL_PER_ADDR {
            list.push(conn);
        }
    }
}

/// The network factory a node gives to `Raft::new`.
#[derive(Clone, Debug)]
pub struct TcpNetwork {
    pub(crate) from: NodeId,
    pub(crate) secret: Arc<Secret>,
}

/// A link to one peer: one connection, opened on first use and again after
/// any failure (a failed call leaves the stream in an unknown position).
pub struct TcpLink {
    from: NodeId,
    target: NodeId,
    addr: String,
    secret: Arc<Secret>,
    conn: Option<Conn>,
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = TcpLink;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> TcpLink {
        TcpLink { from: self.from, target, addr: node.addr.clone(), secret: Arc::clone(&self.secret), conn: None }
    }
}

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

// openraft's RPCError is large; its size is the trait's choice, not ours.
#[allow(clippy::result_large_err)]
impl TcpLink {
    /// Sends `rpc` on the link's connection (opening it if needed).
    async fn call<E: std::error::Error>(&mut self, rpc: &Rpc, option: &RPCOption) -> Result<RpcReply, RpcError<E>> {
        // The hard limit openraft sets for this RPC, but at least a second
        // (a loaded machine can take that long to answer a heartbeat).
        let limit = option.hard_ttl().max(Duration::from_secs(1));
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => Conn::connect(&self.addr, &self.secret, self.from, limit)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?,
        };
        let reply = conn.call(rpc, limit).await.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.conn = Some(conn);
        Ok(reply)
    }

    fn remote<T, E: std::error::Error>(&self, r: Result<T, RaftError<NodeId, E>>) -> Result<T, RpcError<E>> {
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[allow(clippy::result_large_err)]
fn mismatch<E: std::error::Error>() -> RpcError<E> {
    RPCError::Network(NetworkError::new(&io::Error::other("the peer answered a different request")))
}

impl RaftNetwork<TypeConfig> for TcpLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        match self.call(&Rpc::Append(rpc), &option).await? {
            RpcReply::Append(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        match self.call(&Rpc::Snapshot(rpc), &option).await? {
            RpcReply::Snapshot(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        match self.call(&Rpc::Vote(rpc), &option).await? {
            RpcReply::Vote(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }
}
