//! The TCP network between nodes: length-prefixed JSON frames (a 4-byte
//! big-endian length, then the message; at most [`MAX_FRAME`] bytes), a
//! mutual HMAC handshake on every connection ([`crate::auth`]), then
//! request/reply pairs. It carries openraft's RPCs (append, vote, snapshot
//! chunks) and a follower's forwarded writes and read-index requests. A
//! snapshot chunk's bytes follow its JSON header as a raw frame of their own
//! (same length prefix), not as JSON. Every read and write is bounded in
//! size and time; bad input closes the connection, never panics.

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
use crate::types::{NodeId, Request as ClientRequest, Response, SnapshotMeta, TypeConfig, Vote};

/// The largest frame read or written: a snapshot chunk's bytes
/// ([`SNAPSHOT_CHUNK`], in a raw frame) and a batch of appended entries fit
/// well inside it.
pub const MAX_FRAME: usize = 16 << 20;
/// The snapshot chunk size given to openraft (`Config::snapshot_max_chunk_size`).
pub const SNAPSHOT_CHUNK: u64 = 1 << 20;
/// How long the raw frame after a snapshot chunk's header may take to arrive.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
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

/// Writes one raw frame: the length, then `bytes` as they are.
async fn write_raw_frame<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    if bytes.len() > MAX_FRAME {
        return Err(io::Error::other(format!("{} bytes are over the frame limit", bytes.len())));
    }
    w.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    w.write_all(bytes).await?;
    w.flush().await
}

/// Reads one frame's bytes (at most [`MAX_FRAME`]).
async fn read_raw_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {len} bytes is over the limit")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads one frame and decodes its JSON as `T`.
pub(crate) async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> io::Result<T> {
    let body = read_raw_frame(r).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes `rpc`, and a snapshot chunk's bytes after it in a raw frame.
async fn write_rpc<W: AsyncWrite + Unpin>(w: &mut W, rpc: &Rpc, data: Option<&[u8]>) -> io::Result<()> {
    write_frame(w, rpc).await?;
    match data {
        Some(data) => write_raw_frame(w, data).await,
        None => Ok(()),
    }
}

/// Reads a request as [`write_rpc`] wrote it, within `limit` (the raw frame
/// of a snapshot chunk within [`CHUNK_TIMEOUT`] after its header).
pub(crate) async fn read_rpc<R: AsyncRead + Unpin>(r: &mut R, limit: Duration) -> io::Result<Request> {
    match read_frame_within::<_, Rpc>(r, limit).await? {
        Rpc::SnapshotChunk(head) => {
            let data = tokio::time::timeout(CHUNK_TIMEOUT, read_raw_frame(r))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "a snapshot chunk's bytes did not arrive"))??;
            let ChunkHead { vote, meta, offset, done } = head;
            Ok(Request::Snapshot(InstallSnapshotRequest { vote, meta, offset, data, done }))
        }
        Rpc::Snapshot(r) => Ok(Request::Snapshot(r)),
        Rpc::Append(r) => Ok(Request::Append(r)),
        Rpc::Vote(r) => Ok(Request::Vote(r)),
        Rpc::Write(r) => Ok(Request::Write(r)),
        Rpc::WriteMany(r) => Ok(Request::WriteMany(r)),
        Rpc::ReadIndex => Ok(Request::ReadIndex),
    }
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

/// A snapshot chunk's header: an `InstallSnapshotRequest` without its
/// bytes, which follow in a raw frame ([`write_rpc`]). As JSON, the bytes
/// were an array of numbers: up to four bytes on the wire for each, and a
/// number to parse for each on the receiver.
#[derive(Serialize, Deserialize)]
pub(crate) struct ChunkHead {
    vote: Vote,
    meta: SnapshotMeta,
    offset: u64,
    done: bool,
}

/// A request on a node-to-node connection, as a frame holds it.
#[derive(Serialize, Deserialize)]
pub(crate) enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    /// A snapshot chunk with its bytes as JSON, as nodes before issue 15's
    /// sixth round send it: still read, never sent.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A snapshot chunk; its bytes follow in a raw frame.
    SnapshotChunk(ChunkHead),
    /// A follower's client write, for the leader to propose.
    Write(ClientRequest),
    /// A follower's client writes gathered while earlier ones were in flight,
    /// for the leader to propose; each answered on its own, in order.
    WriteMany(Vec<Arc<ClientRequest>>),
    /// A follower asks the leader for the index a linearizable read must wait for.
    ReadIndex,
}

/// A request as the node serving a peer connection handles it: an [`Rpc`]
/// with a snapshot chunk's bytes put back in place.
pub(crate) enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    Write(ClientRequest),
    WriteMany(Vec<Arc<ClientRequest>>),
    ReadIndex,
}

/// The answer to an [`Rpc`], the same variant (`Snapshot` for a `SnapshotChunk`).
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
        self.call_with(rpc, None, limit).await
    }

    /// [`Conn::call`], with a snapshot chunk's bytes after the request.
    async fn call_with(&mut self, rpc: &Rpc, data: Option<&[u8]>, limit: Duration) -> io::Result<RpcReply> {
        tokio::time::timeout(limit, write_rpc(&mut self.stream, rpc, data))
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
    async fn call<E: std::error::Error>(
        &mut self,
        rpc: &Rpc,
        data: Option<&[u8]>,
        option: &RPCOption,
    ) -> Result<RpcReply, RpcError<E>> {
        // The hard limit openraft sets for this RPC, but at least a second
        // (a loaded machine can take that long to answer a heartbeat).
        let limit = option.hard_ttl().max(Duration::from_secs(1));
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => Conn::connect(&self.addr, &self.secret, self.from, limit)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?,
        };
        let reply = conn.call_with(rpc, data, limit).await.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
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
        match self.call(&Rpc::Append(rpc), None, &option).await? {
            RpcReply::Append(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        let InstallSnapshotRequest { vote, meta, offset, data, done } = rpc;
        let head = Rpc::SnapshotChunk(ChunkHead { vote, meta, offset, done });
        match self.call(&head, Some(&data), &option).await? {
            RpcReply::Snapshot(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        match self.call(&Rpc::Vote(rpc), None, &option).await? {
            RpcReply::Vote(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn chunk(data: Vec<u8>) -> InstallSnapshotRequest<TypeConfig> {
        let last = openraft::LogId::new(CommittedLeaderId::new(2, 1), 7);
        let meta = SnapshotMeta { last_log_id: Some(last), snapshot_id: "2-7-1".into(), ..SnapshotMeta::default() };
        InstallSnapshotRequest { vote: Vote::new_committed(2, 1), meta, offset: 4096, data, done: false }
    }

    /// A chunk's bytes travel raw after a small header (as JSON numbers
    /// they took up to four bytes each), and are read back exactly.
    #[tokio::test]
    async fn a_snapshot_chunk_travels_as_raw_bytes() -> TestResult {
        let data: Vec<u8> = (0..1 << 16).map(|i: u32| (i % 251) as u8).collect();
        let InstallSnapshotRequest { vote, meta, offset, data: bytes, done } = chunk(data.clone());
        let mut wire = Vec::new();
        write_rpc(&mut wire, &Rpc::SnapshotChunk(ChunkHead { vote, meta, offset, done }), Some(&bytes)).await?;
        assert!(wire.len() < data.len() + 512, "{} bytes on the wire for a {}-byte chunk", wire.len(), data.len());
        let Request::Snapshot(got) = read_rpc(&mut wire.as_slice(), Duration::from_secs(1)).await? else {
            return Err("not read as a snapshot chunk".into());
        };
        assert_eq!((got.data, got.offset, got.done, got.meta.snapshot_id), (data, 4096, false, "2-7-1".to_owned()));
        // A header whose bytes never come is an error, not a chunk.
        let cut = wire[..wire.len() - 10].to_vec();
        assert!(read_rpc(&mut cut.as_slice(), Duration::from_secs(1)).await.is_err());
        Ok(())
    }

    /// A chunk as an older node sends it (bytes as JSON) is still read.
    #[tokio::test]
    async fn a_snapshot_chunk_with_json_bytes_is_still_read() -> TestResult {
        let mut wire = Vec::new();
        write_frame(&mut wire, &Rpc::Snapshot(chunk(vec![1, 2, 3]))).await?;
        let Request::Snapshot(got) = read_rpc(&mut wire.as_slice(), Duration::from_secs(1)).await? else {
            return Err("not read as a snapshot chunk".into());
        };
        assert_eq!(got.data, vec![1, 2, 3]);
        Ok(())
    }
}
