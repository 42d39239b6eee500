//! A TCP proxy in front of a cluster node's peer port, for the partition
//! tests: each node is started with `--cluster-announce` naming its proxy,
//! so every node-to-node connection goes through one. A [`Links`] table,
//! shared by all the proxies, says which links are cut; a cut link drops
//! bytes like a partitioned network (nothing is refused, the nodes see
//! timeouts), and its connections are closed once it heals.
//!
//! The proxy tells which node a connection comes from by the handshake's
//! second frame (docs/cluster.md, "The peer port and the secret"): the
//! connecting node's answer `{"node":N,...}`, sent in clear. A link is one
//! direction of connection, (node that connects, node connected to); a
//! partition cuts both directions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::BoxError;

/// How often a blocked relay looks at the stop flag and the cut links.
const TICK: Duration = Duration::from_millis(20);
/// The longest a handshake frame may take to arrive through the proxy.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// A proxy stops by itself after this long, whatever the test does.
const LIFETIME: Duration = Duration::from_secs(3600);
/// Largest handshake frame accepted (the real ones are about 200 bytes).
const MAX_HANDSHAKE_FRAME: usize = 64 * 1024;

/// The cut links, by (node that connects, node connected to), node ids;
/// and what the proxies saw, so a test can tell that traffic went through
/// them.
#[derive(Default)]
pub struct Links {
    cut: Mutex<BTreeSet<(u64, u64)>>,
    /// Connections identified, per link.
    seen: Mutex<BTreeMap<(u64, u64), usize>>,
    /// Connections whose handshake answer named no node (the peer protocol
    /// changed under the proxy's feet).
    unreadable: Mutex<Vec<String>>,
}

impl Links {
    /// Cuts `node` off from each of `others`, both directions.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        let mut cut = self.cut.lock().unwrap_or_else(|p| p.into_inner());
        for &other in others.iter().filter(|&&o| o != node) {
            cut.insert((node, other));
            cut.insert((other, node));
        }
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.cut.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The links at least one connection went through.
    pub fn seen(&self) -> BTreeSet<(u64, u64)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect()
    }

    /// Why each unreadable handshake answer was unreadable.
    pub fn unreadable(&self) -> Vec<String> {
        self.unreadable.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn is_cut(&self, from: u64, to: u64) -> bool {
        self.cut.lock().unwrap_or_else(|p| p.into_inner()).contains(&(from, to))
    }
}

/// One node's proxy: listens on a loopback port of its own, relays to the
/// node's peer port. Dropping it stops and joins all its threads.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy for node `to`, whose peer port is `upstream`.
    pub fn start(to: u64, upstream: SocketAddr, links: Arc<Links>) -> Result<Proxy, BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || accept(&listener, to, upstream, &links, &flag));
        Ok(Proxy { addr, stop, thread: Some(thread) })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts until stopped (or [`LIFETIME`]), one relay thread per
/// connection; joins them all before returning.
fn accept(listener: &TcpListener, to: u64, upstream: SocketAddr, links: &Arc<Links>, stop: &Arc<AtomicBool>) {
    let end = Instant::now() + LIFETIME;
    let mut relays: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        match listener.accept() {
            Ok((client, _)) => {
                let (links, stop) = (Arc::clone(links), Arc::clone(stop));
                relays.push(std::thread::spawn(move || {
                    let _ = relay(client, to, upstream, &links, &stop);
                }));
            }
            Err(_) => std::thread::sleep(TICK / 4),
        }
        let (done, running): (Vec<_>, Vec<_>) = relays.into_iter().partition(JoinHandle::is_finished);
        relays = running;
        for thread in done {
            let _ = thread.join();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for thread in relays {
        let _ = thread.join();
    }
}

/// One connection: the handshake's two first frames read whole (the second
/// names the connecting node), then bytes both ways until either side
/// closes, the proxy stops, or the link, once cut, heals.
fn relay(client: TcpStream, to: u64, upstream: SocketAddr, links: &Links, stop: &AtomicBool) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&upstream, HANDSHAKE)?;
    for stream in [&client, &server] {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(TICK))?;
        stream.set_write_timeout(Some(HANDSHAKE))?;
    }
    let result = handshake_then_pump(&client, &server, to, links, stop);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    result
}

fn handshake_then_pump(
    client: &TcpStream,
    server: &TcpStream,
    to: u64,
    links: &Links,
    stop: &AtomicBool,
) -> io::Result<()> {
    let challenge = read_frame(server, stop)?;
    (&*client).write_all(&challenge)?;
    let answer = read_frame(client, stop)?;
    let from = match node_of(&answer) {
        Ok(from) => from,
        Err(e) => {
            links.unreadable.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
            return Err(e);
        }
    };
    *links.seen.lock().unwrap_or_else(|p| p.into_inner()).entry((from, to)).or_default() += 1;
    // A connection opened over a cut link is dead from the start.
    let dead = AtomicBool::new(links.is_cut(from, to));
    if !dead.load(Ordering::Relaxed) {
        (&*server).write_all(&answer)?;
    }
    std::thread::scope(|s| {
        s.spawn(|| pump(client, server, (from, to), links, stop, &dead));
        pump(server, client, (from, to), links, stop, &dead);
    });
    Ok(())
}

/// Copies `src` to `dst`. Once the link is cut the connection is dead:
/// what arrives is dropped (as a partitioned network would), and when the
/// link heals the connection is closed (its stream lost bytes), so the
/// nodes reconnect.
fn pump(src: &TcpStream, dst: &TcpStream, link: (u64, u64), links: &Links, stop: &AtomicBool, dead: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    let end = Instant::now() + LIFETIME;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let cut = links.is_cut(link.0, link.1);
        if cut {
            dead.store(true, Ordering::Relaxed);
        } else if dead.load(Ordering::Relaxed) {
            break;
        }
        match (&*src).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let dropped = dead.load(Ordering::Relaxed) || links.is_cut(link.0, link.1);
                if dropped {
                    dead.store(true, Ordering::Relaxed);
                } else if (&*dst).write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    // The other direction's pump sees the shutdown at its next read.
    let _ = src.shutdown(Shutdown::Both);
    let _ = dst.shutdown(Shutdown::Both);
}

/// One whole frame (4-byte big-endian length, then the body), length included.
fn read_frame(stream: &TcpStream, stop: &AtomicBool) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + HANDSHAKE;
    let mut frame = read_exactly(stream, 4, deadline, stop)?;
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    if len > MAX_HANDSHAKE_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a handshake frame of {len} bytes")));
    }
    frame.extend(read_exactly(stream, len, deadline, stop)?);
    Ok(frame)
}

/// `n` bytes, reading through the short read timeouts until `deadline`.
fn read_exactly(stream: &TcpStream, n: usize, deadline: Instant, stop: &AtomicBool) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the handshake did not arrive"));
        }
        match (&*stream).read(&mut out[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => filled += k,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The node id in the handshake's answer frame.
fn node_of(frame: &[u8]) -> io::Result<u64> {
    let answer: serde_json::Value =
        serde_json::from_slice(&frame[4..]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    answer["node"].as_u64().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the answer names no node"))
}
