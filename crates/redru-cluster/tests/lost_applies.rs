//! The state machine applies without an fsync of its own: the Raft log
//! (fsynced on a majority before a write is acknowledged) is the durable
//! truth. This guards what that relies on: a node whose database lost its
//! last applied batches (what a power loss can leave: a prefix of the
//! engine's records) gets every committed write back from its log on
//! restart.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, ServerState};
use redru_cluster::router::Router;
use redru_cluster::{Raft, Request, Response, StateMachine, open_node_storage};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(10);

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for item in fs::read_dir(from)? {
        let item = item?;
        let target = to.join(item.file_name());
        if item.file_type()?.is_dir() {
            copy_dir(&item.path(), &target)?;
        } else {
            fs::copy(item.path(), target)?;
        }
    }
    Ok(())
}

async fn start(
    router: &Router,
    dir: &Path,
    config: Arc<Config>,
) -> Result<(Raft, StateMachine), Box<dyn std::error::Error>> {
    // A stopped node's tasks drop their storage handles (and locks) as they end.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (log, sm) = loop {
        match open_node_storage(dir) {
            Ok(storage) => break storage,
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let raft = Raft::new(1, config, router.network(1), log, sm.clone()).await?;
    router.add(1, raft.clone());
    raft.wait(Some(WAIT)).state(ServerState::Leader, "elected").await?;
    Ok((raft, sm))
}

async fn write(raft: &Raft, i: u32) -> Result<u64, Box<dyn std::error::Error>> {
    let reply = raft.client_write(Request::set(format!("k{i}"), i.to_string())).await?;
    assert_eq!(reply.data, Response::Applied { ops: 1 });
    Ok(reply.log_id.index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_a_database_lost_come_back_from_the_log_on_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config =
        Arc::new(Config { election_timeout_min: 200, election_timeout_max: 400, ..Config::default() }.validate()?);
    let router = Router::new();
    let (log, sm) = open_node_storage(dir.path())?;
    let raft = Raft::new(1, config.clone(), router.network(1), log, sm.clone()).await?;
    router.add(1, raft.clone());
    raft.initialize(BTreeSet::from([1])).await?;
    raft.wait(Some(WAIT)).state(ServerState::Leader, "elected").await?;
    for i in 0..5 {
        write(&raft, i).await?;
    }
    // The database as a power loss could leave it: synced up to here, the
    // later applies not yet on disk.
    sm.db().sync()?;
    let early = tempfile::tempdir()?;
    copy_dir(&dir.path().join("db"), early.path())?;
    let mut last = 0;
    for i in 5..10 {
        last = write(&raft, i).await?;
    }
    raft.shutdown().await?;
    router.remove(1);
    drop((raft, sm));

    let deadline = tokio::time::Instant::now() + WAIT;
    while open_node_storage(dir.path()).is_err() {
        if tokio::time::Instant::now() > deadline {
            return Err("the stopped node's storage stays locked".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fs::remove_dir_all(dir.path().join("db"))?;
    copy_dir(early.path(), &dir.path().join("db"))?;
    {
        let (_log, sm) = open_node_storage(dir.path())?;
        assert_eq!(sm.db().get_value("k4"), Some(redru::json!(4)));
        assert_eq!(sm.db().get_value("k9"), None, "the database lost the last applies");
    }

    let (raft, sm) = start(&router, dir.path(), config).await?;
    raft.wait(Some(WAIT)).applied_index_at_least(Some(last), "the lost applies are re-applied").await?;
    for i in 0..10 {
        assert_eq!(sm.db().get_value(&format!("k{i}")), Some(redru::json!(i)), "k{i} after the restart");
    }
    raft.shutdown().await?;
    Ok(())
}
