//! Snapshots stream off and onto disk: the receiver writes each chunk into a
//! temporary file in `snapshots/` as openraft's chunked transfer delivers it
//! (never more than a chunk behind in memory), a truncated or altered
//! transfer is refused with nothing changed and no file left, each sending
//! handle reads its own snapshot from the start even after a newer one
//! replaced it, and a start removes what a crash mid-transfer left.

use std::path::{Path, PathBuf};

use openraft::network::snapshot_transport::Streaming;
use openraft::raft::InstallSnapshotRequest;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, Vote};
use redru_cluster::{Entry, LogId, Request, SnapshotMeta, StateMachine, TypeConfig, open_node_storage};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const CHUNK: usize = 4096;

fn id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn set(index: u64) -> Entry {
    Entry {
        log_id: id(index),
        payload: EntryPayload::Normal(Request::set(format!("key:{index:06}"), "\"some value\"")),
    }
}

fn open(dir: &Path) -> Result<StateMachine, redru_cluster::Error> {
    Ok(open_node_storage(dir)?.1)
}

/// The files in `dir/snapshots` whose names start with `prefix`.
fn files_in(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.join("snapshots"))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// The snapshot files (not their `.sha256`) in `dir/snapshots`.
fn snapshot_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    Ok(files_in(dir, "snapshot-")?.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")).collect())
}

/// A leader state machine holding `keys` keys and a snapshot of them: its
/// metadata and the snapshot file's bytes.
async fn leader_snapshot(dir: &Path, keys: u64) -> Result<(SnapshotMeta, Vec<u8>), Box<dyn std::error::Error>> {
    let mut leader = open(dir)?;
    leader.apply((1..=keys).map(set)).await?;
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await?;
    let [file] = &snapshot_files(dir)?[..] else { return Err("not exactly one snapshot file".into()) };
    Ok((snapshot.meta, std::fs::read(file)?))
}

/// Feeds `bytes` to `follower` in chunks through openraft's own receiving
/// side (`Streaming`, what `Raft::install_snapshot` uses), checking after
/// each chunk that what came before it is in the temporary file on disk.
async fn receive(
    follower: &mut StateMachine,
    dir: &Path,
    meta: &SnapshotMeta,
    bytes: &[u8],
) -> Result<Box<redru_cluster::SnapshotFile>, Box<dyn std::error::Error>> {
    let data = follower.begin_receiving_snapshot().await?;
    let [temp] = &files_in(dir, "receiving-")?[..] else { return Err("not exactly one temporary file".into()) };
    let mut streaming = Streaming::<TypeConfig>::new(meta.snapshot_id.clone(), data);
    let mut offset = 0;
    for chunk in bytes.chunks(CHUNK) {
        let done = offset + chunk.len() == bytes.len();
        let req = InstallSnapshotRequest {
            vote: Vote::new_committed(1, 1),
            meta: meta.clone(),
            offset: offset as u64,
            data: chunk.to_vec(),
            done,
        };
        streaming.receive(req).await?;
        // tokio writes a chunk on its blocking pool and waits for that write
        // before taking the next one: every chunk before this one is on disk.
        let on_disk = std::fs::metadata(temp)?.len() as usize;
        assert!(
            on_disk >= offset,
            "{on_disk} bytes on disk after {} received: more than a chunk held in memory",
            offset
        );
        offset += chunk.len();
    }
    let mut data = streaming.into_snapshot_data();
    tokio::io::AsyncWriteExt::shutdown(&mut *data).await?;
    assert_eq!(std::fs::metadata(temp)?.len() as usize, bytes.len(), "the whole transfer is in the temporary file");
    Ok(data)
}

#[tokio::test]
async fn a_received_snapshot_is_written_to_disk_chunk_by_chunk_then_installed() -> TestResult {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (meta, bytes) = leader_snapshot(a.path(), 2000).await?;
    assert!(bytes.len() > 10 * CHUNK, "a snapshot of many chunks: {} bytes", bytes.len());
    let mut follower = open(b.path())?;
    let data = receive(&mut follower, b.path(), &meta, &bytes).await?;
    follower.install_snapshot(&meta, data).await?;
    assert_eq!(follower.applied_state().await?.0, Some(id(2000)));
    assert_eq!(follower.db().len(), 2001, "2000 keys and the applied record");
    assert!(files_in(b.path(), "receiving-")?.is_empty(), "the temporary file was renamed into place");
    let installed = b.path().join("snapshots").join(format!("snapshot-{}.json", meta.snapshot_id));
    assert_eq!(std::fs::read(installed)?, bytes, "the snapshot file is the leader's, byte for byte");
    let current = follower.get_current_snapshot().await?.ok_or("no current snapshot")?;
    assert_eq!(current.meta, meta);
    Ok(())
}

#[tokio::test]
async fn a_truncated_or_altered_transfer_is_refused_and_changes_nothing() -> TestResult {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (meta, bytes) = leader_snapshot(a.path(), 500).await?;
    let mut follower = open(b.path())?;
    follower.apply((1..=3).map(set)).await?;
    let truncated = &bytes[..bytes.len() - 100];
    let mut altered = bytes.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 1;
    let mut bad_id = meta.clone();
    bad_id.snapshot_id = "../escape".into();
    for (what, meta, bytes) in
        [("truncated", &meta, truncated), ("altered", &meta, &altered[..]), ("a bad id", &bad_id, &bytes[..])]
    {
        let data = receive(&mut follower, b.path(), meta, bytes).await?;
        let refused = follower.install_snapshot(meta, data).await;
        assert!(refused.is_err(), "a {what} snapshot was installed");
        assert_eq!(follower.applied_state().await?.0, Some(id(3)), "{what}: the applied position moved");
        assert_eq!(follower.db().len(), 4, "{what}: the data changed");
        assert!(files_in(b.path(), "receiving-")?.is_empty(), "{what}: the refused transfer's file was left");
        assert!(files_in(b.path(), "snapshot-")?.is_empty(), "{what}: a refused transfer became a snapshot file");
        assert!(follower.get_current_snapshot().await?.is_none(), "{what}: a current snapshot appeared");
    }
    Ok(())
}

#[tokio::test]
async fn each_sending_handle_reads_its_snapshot_from_the_start_even_once_replaced() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_, bytes) = leader_snapshot(dir.path(), 1000).await?;
    let mut leader = open(dir.path())?;
    let mut first = leader.get_current_snapshot().await?.ok_or("no current snapshot")?;
    let mut head = vec![0; 100];
    first.snapshot.read_exact(&mut head).await?;
    let mut second = leader.get_current_snapshot().await?.ok_or("no current snapshot")?;
    let mut whole = Vec::new();
    second.snapshot.read_to_end(&mut whole).await?;
    assert_eq!(whole, bytes, "a new handle starts at offset 0, whatever another one read");
    // A newer snapshot replaces the file (and deletes it) while `first` is
    // still sending: on Unix its open handle keeps the data it started with.
    leader.apply((1001..=1010).map(set)).await?;
    leader.get_snapshot_builder().await.build_snapshot().await?;
    assert_eq!(snapshot_files(dir.path())?.len(), 1, "the replaced snapshot's file was deleted");
    first.snapshot.seek(std::io::SeekFrom::Start(0)).await?;
    let mut old = Vec::new();
    first.snapshot.read_to_end(&mut old).await?;
    assert_eq!(old, bytes, "the replaced snapshot is still read whole through its handle");
    Ok(())
}

#[tokio::test]
async fn a_start_removes_what_a_crash_mid_transfer_left() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (meta, _) = leader_snapshot(dir.path(), 10).await?;
    let snapshots = dir.path().join("snapshots");
    std::fs::write(snapshots.join("receiving-1-0.tmp"), b"half a transfer")?;
    std::fs::write(snapshots.join("snapshot-1-99-1.json"), b"renamed, never made current")?;
    let mut sm = open(dir.path())?;
    assert!(files_in(dir.path(), "receiving-")?.is_empty(), "the temporary file survived a start");
    assert!(!snapshots.join("snapshot-1-99-1.json").exists(), "an orphan snapshot file survived a start");
    let current = sm.get_current_snapshot().await?.ok_or("the current snapshot was lost")?;
    assert_eq!(current.meta, meta);
    Ok(())
}

#[tokio::test]
async fn a_chunk_that_would_leave_a_gap_is_refused_on_arrival() -> TestResult {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (meta, bytes) = leader_snapshot(a.path(), 100).await?;
    let mut follower = open(b.path())?;
    let data = follower.begin_receiving_snapshot().await?;
    let mut streaming = Streaming::<TypeConfig>::new(meta.snapshot_id.clone(), data);
    let chunk = |offset: usize, len: usize| InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(1, 1),
        meta: meta.clone(),
        offset: offset as u64,
        data: bytes[offset..offset + len].to_vec(),
        done: false,
    };
    streaming.receive(chunk(0, 1000)).await?;
    // Re-sent from the start, as openraft does after a mismatch: accepted.
    streaming.receive(chunk(0, 1000)).await?;
    streaming.receive(chunk(1000, 1000)).await?;
    let mut far = chunk(2000, 10);
    far.offset = 1 << 40;
    let refused = streaming.receive(far).await;
    assert!(refused.is_err(), "a chunk at 1 TiB was accepted after 2000 bytes");
    assert!(streaming.receive(chunk(3000, 10)).await.is_err(), "a chunk past a gap was accepted");
    drop(streaming);
    assert!(files_in(b.path(), "receiving-")?.is_empty(), "the abandoned transfer's file was left");
    Ok(())
}

/// A node refuses a snapshot larger than its limit at the chunk that would
/// pass it (nothing installed, the temporary file removed), and takes the
/// same snapshot whole under a limit of exactly its size.
#[tokio::test]
async fn a_snapshot_over_the_size_limit_is_refused_at_the_chunk_that_passes_it() -> TestResult {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (meta, bytes) = leader_snapshot(a.path(), 100).await?;
    let mut follower = open(b.path())?;
    follower.set_max_snapshot_bytes(bytes.len() as u64 - 1);
    let data = follower.begin_receiving_snapshot().await?;
    let mut streaming = Streaming::<TypeConfig>::new(meta.snapshot_id.clone(), data);
    let chunk = |offset: usize, len: usize| InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(1, 1),
        meta: meta.clone(),
        offset: offset as u64,
        data: bytes[offset..offset + len].to_vec(),
        done: offset + len == bytes.len(),
    };
    let last = bytes.len() - 100;
    streaming.receive(chunk(0, last)).await?;
    let refused = streaming.receive(chunk(last, 100)).await;
    let message = format!("{:?}", refused.err().ok_or("the chunk past the limit was accepted")?);
    assert!(message.contains("limit of"), "{message}");
    drop(streaming);
    assert!(files_in(b.path(), "receiving-")?.is_empty(), "the refused transfer's file was left");
    assert!(follower.db().get("key:000001").is_none(), "something was installed");

    follower.set_max_snapshot_bytes(bytes.len() as u64);
    let data = receive(&mut follower, b.path(), &meta, &bytes).await?;
    follower.install_snapshot(&meta, data).await?;
    assert!(follower.db().get("key:000100").is_some(), "the snapshot at the limit was not installed");
    Ok(())
}
