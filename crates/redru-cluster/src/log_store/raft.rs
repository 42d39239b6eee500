//! openraft's `RaftLogReader` and `RaftLogStorage` on [`LogStore`]: an append
//! is written and fsynced before `append` returns (its callback runs after
//! the fsync), truncate and purge wait for the queue and run on tokio's
//! blocking pool.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend};

use super::{LogStore, storage_err};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        Ok(LogState { last_purged_log_id: inner.state.last_purged, last_log_id: inner.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.change_state(move |state| state.vote = Some(vote))
            .await
            .map_err(|e| storage_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().state.vote)
    }

    /// Kept in memory, and written with the state file's next rewrite (a
    /// vote, a purge): openraft 0.9 awaits this call in its core on every
    /// commit, and the two fsyncs of a rewrite there held up every append
    /// behind it. The committed id is only a hint: a restart re-applies the
    /// log from `max(read_committed, the database's last applied)`, and an
    /// older value on disk only means that the entries after it are applied
    /// once the leader's commit index reaches the node again (a linearizable
    /// read waits for that).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.state.committed = inner.state.committed.max(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().state.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The callback is queued under the same lock as the lines, so the
        // round that writes them (this one's, or one that came first) calls it.
        let refused = {
            let mut inner = self.lock();
            match inner.guarded(|i| i.append(entries.into_iter().collect())) {
                Ok(()) => {
                    inner.waiting.push(callback);
                    None
                }
                Err(e) => Some((e, callback)),
            }
        };
        if let Some((e, callback)) = refused {
            callback.log_io_completed(Err(io::Error::other(e.to_string())));
            return Err(storage_err(ErrorSubject::Logs, ErrorVerb::Write, e));
        }
        // Let the tasks the core just woke (a replication stream with the
        // previous entry, the state machine) run before this worker thread
        // blocks in the fsync: tokio does not let the other worker steal the
        // task in its LIFO slot. Without this yield the inline write cost 15
        // to 30% of the throughput (docs/cluster.md, "Figures").
        tokio::task::yield_now().await;
        self.write_queued();
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| inner.guarded(|i| i.truncate(log_id.index)))
            .await
            .map_err(|e| storage_err(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |inner| inner.guarded(|i| i.purge(log_id)))
            .await
            .map_err(|e| storage_err(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }
}
