//! How a server runs: where it listens, who may talk to it, the limits it
//! enforces, and what a write's reply waits for.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::request::Limits;

/// When a write's reply is sent, relative to its fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After the write is durable (fsynced); the default. Pipelined commands
    /// and concurrent connections share fsyncs (group commit).
    Always,
    /// At once; the log is synced every second in the background (Redis's
    /// `appendfsync everysec`): a crash can lose the last second of replies.
    EverySecond,
}

/// A server's configuration. `Config::default()` listens on 127.0.0.1:6379
/// with no password, which is all a local client needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The address to listen on. Anything but a loopback address needs a
    /// password ([`Config::requirepass`]), as Redis's protected mode does.
    pub bind: IpAddr,
    /// The TCP port (0 picks a free one; [`crate::Running::addr`] tells which).
    pub port: u16,
    /// The password of the `default` user; `None`: no AUTH needed (loopback only).
    pub requirepass: Option<String>,
    /// Most clients connected at once; a client past it gets an error and is closed.
    pub max_clients: usize,
    /// A client idle this long is disconnected (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Size limits of one request.
    pub limits: Limits,
    /// When write replies are sent.
    pub durability: Durability,
    /// Serve TLS only, with this certificate chain and private key (PEM files).
    pub tls: Option<Tls>,
    /// Serve a cluster node's database (`redru serve --cluster`): writes go
    /// through Raft, reads are linearizable unless a connection sends
    /// READONLY. Set by [`crate::serve_cluster`].
    pub cluster: Option<std::sync::Arc<redru_cluster::Node>>,
}

/// The PEM files of a TLS server: the certificate chain and its private key.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 6379,
            requirepass: None,
            max_clients: 1024,
            idle_timeout: Some(Duration::from_secs(300)),
            limits: Limits::default(),
            durability: Durability::Always,
            tls: None,
            cluster: None,
        }
    }
}

impl Config {
    /// The socket address to listen on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// Refuses a configuration that would expose the data: a non-loopback
    /// address without a password, or an empty password.
    pub fn check(&self) -> Result<(), String> {
        if self.requirepass.as_deref() == Some("") {
            return Err("the password is empty; give a real one or none".into());
        }
        if !self.bind.is_loopback() && self.requirepass.is_none() {
            return Err(format!(
                "refusing to listen on {} without a password: anyone who can reach it could read and \
                 change every key; set one with --requirepass (or --requirepass-file), or bind to 127.0.0.1",
                self.bind
            ));
        }
        Ok(())
    }
}
