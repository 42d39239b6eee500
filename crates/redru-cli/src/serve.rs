//! `redru serve`: opens the data directory and hands it to redru-server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use redru_server::{Config, Durability};

/// `redru serve`'s options (Redis's names where Redis has one).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address to listen on. Anything but loopback needs a password.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    bind: std::net::IpAddr,
    /// The TCP port.
    #[arg(long, default_value_t = 6379)]
    port: u16,
    /// The password clients give with AUTH (or HELLO ... AUTH default PASSWORD).
    #[arg(long, value_name = "PASSWORD", conflicts_with = "requirepass_file")]
    requirepass: Option<String>,
    /// Read the password from a file (its first line), so that it is not in `ps`.
    #[arg(long, value_name = "FILE")]
    requirepass_file: Option<PathBuf>,
    /// Most clients connected at once.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    maxclients: usize,
    /// Close a client idle this many seconds (0: never).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    timeout: u64,
    /// Largest request in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    max_request: usize,
    /// Serve TLS only, with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// When a write's reply is sent: `always` once it is fsynced (group
    /// commit), or `everysec` at once, syncing every second.
    #[arg(long, default_value = "always", value_parser = ["always", "everysec"])]
    appendfsync: String,
    /// Run as a node of a replicated cluster (docs/cluster.md): the
    /// directory is the node's; writes go through Raft.
    #[arg(long, requires_all = ["node_id", "cluster_addr"])]
    cluster: bool,
    /// This node's id in the cluster (a number, never reused for another node).
    #[arg(long, value_name = "N", requires = "cluster")]
    node_id: Option<u64>,
    /// The peer port's address (node-to-node traffic): bound, and, unless
    /// --cluster-announce says otherwise, the address other nodes reach it at.
    #[arg(long, value_name = "HOST:PORT", requires = "cluster")]
    cluster_addr: Option<String>,
    /// The address other nodes reach the peer port at, when it differs from
    /// --cluster-addr (a port forward, NAT, a proxy in front of the node);
    /// what `REDRU.CLUSTER INIT` records for this node and STATUS shows.
    #[arg(long, value_name = "HOST:PORT", requires = "cluster")]
    cluster_announce: Option<String>,
    /// The shared cluster secret (prefer --cluster-secret-file or the
    /// environment variable: a command line shows in `ps`). Neither
    /// `requires = "cluster"` nor a conflict with the file: the variable may
    /// be set in a shell that also starts plain servers (the file wins).
    #[arg(long, value_name = "SECRET", env = "REDRU_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// Read the shared cluster secret from a file.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    cluster_secret_file: Option<PathBuf>,
    /// The largest snapshot this node accepts from the leader, in bytes
    /// (default 64 GiB): a larger transfer is refused and nothing installed.
    #[arg(long, value_name = "BYTES", requires = "cluster")]
    cluster_max_snapshot: Option<u64>,
}

/// Runs the server until it is stopped.
pub fn run(args: ServeArgs, dir: &Path) -> Result<ExitCode> {
    let requirepass = match &args.requirepass_file {
        Some(file) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let line = text.lines().next().unwrap_or("").trim_end().to_owned();
            if line.is_empty() {
                bail!("{} holds no password on its first line", file.display());
            }
            Some(line)
        }
        None => args.requirepass,
    };
    let config = Config {
        bind: args.bind,
        port: args.port,
        requirepass,
        max_clients: args.maxclients,
        idle_timeout: (args.timeout > 0).then(|| Duration::from_secs(args.timeout)),
        limits: redru_server::Limits { max_bytes: args.max_request, ..redru_server::Limits::default() },
        durability: if args.appendfsync == "everysec" { Durability::EverySecond } else { Durability::Always },
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(redru_server::Tls { cert, key }),
            _ => None,
        },
        cluster: None,
    };
    config.check().map_err(anyhow::Error::msg)?;
    if args.cluster {
        return run_cluster(
            (&args.cluster_secret, &args.cluster_secret_file),
            args.cluster_max_snapshot,
            args.node_id,
            args.cluster_addr,
            args.cluster_announce,
            config,
            dir,
        );
    }
    // The server syncs once per batch of replies itself, so the database
    // buffers between syncs instead of fsyncing every write on its own.
    let db = redru::Options::new()
        .durability(redru::Durability::Buffered)
        .open(dir)
        .with_context(|| format!("opening {}", dir.display()))?;
    let db = Arc::new(db);
    let (keys, shown) = (db.len(), dir.display().to_string());
    redru_server::serve_ready(Arc::clone(&db), config, |addr| {
        // One line, and the address as bound (with --port 0, the port picked).
        eprintln!(
            "redru {} serving {shown} ({keys} keys) on {addr}; Ctrl-C or SHUTDOWN stops it",
            env!("CARGO_PKG_VERSION")
        );
    })
    .context("serving")?;
    match Arc::try_unwrap(db) {
        Ok(db) => db.close().context("closing the database")?,
        Err(_) => bail!("the database is still in use after the server stopped"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `redru serve --cluster`: the node's directory, its peer port, the secret.
fn run_cluster(
    (secret, secret_file): (&Option<String>, &Option<PathBuf>),
    max_snapshot: Option<u64>,
    id: Option<u64>,
    peer_addr: Option<String>,
    announce: Option<String>,
    config: Config,
    dir: &Path,
) -> Result<ExitCode> {
    let secret = match (secret, secret_file) {
        (_, Some(file)) => std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
        (Some(secret), None) => secret.clone(),
        (None, None) => bail!(
            "--cluster needs the shared secret: --cluster-secret-file FILE, or REDRU_CLUSTER_SECRET in the environment"
        ),
    };
    let secret = redru_cluster::Secret::new(&secret).map_err(anyhow::Error::msg)?;
    let (Some(id), Some(peer_addr)) = (id, peer_addr) else { bail!("--cluster needs --node-id and --cluster-addr") };
    let listen = std::net::ToSocketAddrs::to_socket_addrs(&peer_addr)
        .with_context(|| format!("--cluster-addr {peer_addr}"))?
        .next()
        .with_context(|| format!("--cluster-addr {peer_addr} names no address"))?;
    let node = redru_cluster::NodeConfig {
        id,
        dir: dir.to_owned(),
        listen,
        advertise: Some(announce.unwrap_or_else(|| peer_addr.clone())),
        secret,
        raft: None,
        max_snapshot_bytes: max_snapshot.unwrap_or(redru_cluster::DEFAULT_MAX_SNAPSHOT_BYTES),
    };
    let shown = dir.display().to_string();
    redru_server::serve_cluster(node, config, |addr, node| {
        eprintln!(
            "redru {} serving {shown} as cluster node {} (peer port {peer_addr}) on {addr}; Ctrl-C or SHUTDOWN stops it",
            env!("CARGO_PKG_VERSION"),
            node.id()
        );
    })
    .context("serving")?;
    Ok(ExitCode::SUCCESS)
}
