//! openraft's own storage conformance suite (`openraft::testing::Suite`) run
//! against the segment log and the redru state machine, each build in a fresh
//! temporary directory.

use openraft::testing::{StoreBuilder, Suite};
use redru_cluster::{LogStore, StateMachine, StorageError, TypeConfig, open_node_storage};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(openraft::ErrorSubject::Store, openraft::ErrorVerb::Write, e))?;
        let (log, sm) = open_node_storage(dir.path()).map_err(|e| {
            StorageError::from_io_error(openraft::ErrorSubject::Store, openraft::ErrorVerb::Read, e.into())
        })?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() -> Result<(), Box<dyn std::error::Error>> {
    Suite::test_all(Builder)?;
    Ok(())
}
