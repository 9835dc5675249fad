//! Raft storage in redb: one file per coordinator holding the log, the vote,
//! the committed index, the state machine and the current snapshot.
//!
//! Every write is one redb transaction. What Raft's safety rests on (log
//! entries, the vote, snapshots, purges) is fsynced before the call
//! returns ([`Flush::Now`]); what can be derived again from the log (the
//! committed index, the applied state machine) is written without an fsync
//! ([`Flush::WithNext`]) and reaches the disk with the next fsynced write: a
//! crash loses at most the last applied batches, which openraft applies
//! again from the log. Snapshots hold the same serialized state.

use super::TypeConfig;
use crate::events::What;
use crate::state::{ClusterConfig, CommandResponse};
use crate::timings::Timings;
use factoryos_wire::model::CommitPhase;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
const STATE_MACHINE: &str = "state_machine";
const SNAPSHOT: &str = "snapshot";

type StorageResult<T> = Result<T, StorageError<u64>>;

/// When a write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// fsynced before the commit returns: Raft's safety rests on it.
    Now,
    /// Durable with the next [`Flush::Now`] write; lost by a crash before it,
    /// which is safe only for what the log can rebuild.
    WithNext,
}

/// A write transaction flushed as `flush` says.
fn begin(db: &Database, flush: Flush) -> Result<redb::WriteTransaction, AnyError> {
    let mut txn = db.begin_write().map_err(any)?;
    if flush == Flush::WithNext {
        txn.set_durability(redb::Durability::None).map_err(any)?;
    }
    Ok(txn)
}

fn any<E: Into<redb::Error>>(e: E) -> AnyError {
    AnyError::new(&e.into())
}

fn codec(e: postcard::Error) -> AnyError {
    AnyError::new(&e)
}

/// Opens (or creates) the storage file and returns the log store and the
/// state machine that share it; both record their phases in `timings`.
pub fn open(path: &Path, timings: Timings) -> Result<(LogStore, StateMachine), redb::Error> {
    let db = Arc::new(Database::create(path)?);
    {
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
    }
    let state: SmState = read_meta(&db, STATE_MACHINE)
        .map_err(|e| redb::Error::Corrupted(e.to_string()))?
        .unwrap_or_default();
    let (tx, _) = watch::channel(Arc::new(state.config.clone()));
    Ok((
        LogStore {
            db: db.clone(),
            timings: timings.clone(),
        },
        StateMachine {
            db,
            state,
            config: Arc::new(tx),
            events: None,
            timings,
        },
    ))
}

fn read_meta<T: for<'de> Deserialize<'de>>(
    db: &Database,
    key: &str,
) -> Result<Option<T>, AnyError> {
    let txn = db.begin_read().map_err(any)?;
    let table = txn.open_table(META).map_err(any)?;
    match table.get(key).map_err(any)? {
        Some(v) => postcard::from_bytes(v.value()).map(Some).map_err(codec),
        None => Ok(None),
    }
}

fn write_meta<T: Serialize>(
    db: &Database,
    key: &str,
    value: &T,
    flush: Flush,
) -> Result<(), AnyError> {
    let bytes = postcard::to_allocvec(value).map_err(codec)?;
    let txn = begin(db, flush)?;
    {
        let mut table = txn.open_table(META).map_err(any)?;
        table.insert(key, bytes.as_slice()).map_err(any)?;
    }
    txn.commit().map_err(any)
}

/// The Raft log and vote.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
    timings: Timings,
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let read = || -> Result<Vec<Entry<TypeConfig>>, AnyError> {
            let txn = self.db.begin_read().map_err(any)?;
            let table = txn.open_table(LOGS).map_err(any)?;
            let mut out = Vec::new();
            for item in table.range::<u64>(range).map_err(any)? {
                let (_, v) = item.map_err(any)?;
                out.push(postcard::from_bytes(v.value()).map_err(codec)?);
            }
            Ok(out)
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let read = || -> Result<LogState<TypeConfig>, AnyError> {
            let last_purged: Option<LogId<u64>> = read_meta(&self.db, LAST_PURGED)?;
            let txn = self.db.begin_read().map_err(any)?;
            let table = txn.open_table(LOGS).map_err(any)?;
            let last = match table.last().map_err(any)? {
                Some((_, v)) => {
                    let e: Entry<TypeConfig> = postcard::from_bytes(v.value()).map_err(codec)?;
                    Some(e.log_id)
                }
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        write_meta(&self.db, VOTE, vote, Flush::Now)
            .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        read_meta(&self.db, VOTE).map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        write_meta(&self.db, COMMITTED, &committed, Flush::WithNext)
            .map_err(|e| StorageIOError::write(e).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        read_meta::<Option<LogId<u64>>>(&self.db, COMMITTED)
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let write = || -> Result<(), AnyError> {
            let txn = begin(&self.db, Flush::Now)?;
            {
                let mut table = txn.open_table(LOGS).map_err(any)?;
                for entry in entries {
                    let bytes = postcard::to_allocvec(&entry).map_err(codec)?;
                    table
                        .insert(entry.log_id.index, bytes.as_slice())
                        .map_err(any)?;
                }
            }
            txn.commit().map_err(any)
        };
        let start = std::time::Instant::now();
        let result = write();
        self.timings.since(CommitPhase::LogFlush, start);
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        self.remove(log_id.index..)
            .map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        write_meta(&self.db, LAST_PURGED, &log_id, Flush::Now)
            .and_then(|()| self.remove(..=log_id.index))
            .map_err(|e| StorageIOError::write_logs(e).into())
    }
}

impl LogStore {
    fn remove(&self, range: impl RangeBounds<u64>) -> Result<(), AnyError> {
        let txn = begin(&self.db, Flush::Now)?;
        {
            let mut table = txn.open_table(LOGS).map_err(any)?;
            table
                .retain_in::<u64, _>(range, |_, _| false)
                .map_err(any)?;
        }
        txn.commit().map_err(any)
    }
}

/// What the state machine persists: the configuration and Raft's bookkeeping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmState {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    config: ClusterConfig,
}

/// The configuration store's state machine. Every applied batch publishes the
/// new configuration on a watch channel (see [`StateMachine::subscribe`]).
#[derive(Debug)]
pub struct StateMachine {
    db: Arc<Database>,
    state: SmState,
    config: Arc<watch::Sender<Arc<ClusterConfig>>>,
    /// Where every applied flow is recorded (none until set).
    events: Option<crate::events::EventLog>,
    timings: Timings,
}

impl StateMachine {
    /// A receiver that always holds the newest applied configuration.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterConfig>> {
        self.config.subscribe()
    }

    /// Records in `log` every flow this state machine applies, and every
    /// stage it marks dead or registers.
    pub fn record_flows_in(&mut self, log: crate::events::EventLog) {
        self.events = Some(log);
    }

    /// Writes the applied state; `flush` says when it must be on disk.
    fn persist(&self, flush: Flush) -> Result<(), AnyError> {
        write_meta(&self.db, STATE_MACHINE, &self.state, flush)
    }

    fn publish(&self) {
        self.config
            .send_replace(Arc::new(self.state.config.clone()));
    }
}

/// Builds snapshots from a copy of the state taken when it was asked for.
#[derive(Debug)]
pub struct SnapshotBuilder {
    db: Arc<Database>,
    state: SmState,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let data = postcard::to_allocvec(&self.state)
            .map_err(|e| StorageIOError::read_state_machine(codec(e)))?;
        let snapshot_id = match self.state.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        write_meta(&self.db, SNAPSHOT, &stored, Flush::Now)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let start = std::time::Instant::now();
        let mut responses = Vec::new();
        let mut events = Vec::new();
        for entry in entries {
            self.state.last_applied = Some(entry.log_id);
            let index = entry.log_id.index;
            responses.push(match entry.payload {
                EntryPayload::Blank => CommandResponse::Applied { index },
                EntryPayload::Normal(cmd) => {
                    let response = self.state.config.apply(index, &cmd);
                    if let CommandResponse::FlowCommitted { version } = &response {
                        events.push(What::FlowApplied { version: version.0 });
                    }
                    events.extend(cmd.event(index, &response));
                    response
                }
                EntryPayload::Membership(m) => {
                    self.state.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResponse::Applied { index }
                }
            });
        }
        self.persist(Flush::WithNext)
            .map_err(StorageIOError::write_state_machine)?;
        // A crash may lose this batch (it is flushed with the next log
        // write) and apply it again: a flow may be recorded twice, never
        // recorded unapplied.
        if let Some(log) = &self.events {
            for what in events {
                log.record(what);
            }
        }
        self.publish();
        self.timings.since(CommitPhase::Apply, start);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.state.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let state: SmState = postcard::from_bytes(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), codec(e)))?;
        self.state = SmState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            config: state.config,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        write_meta(&self.db, SNAPSHOT, &stored, Flush::Now)
            // Durable at once: the log behind an installed snapshot may
            // be missing, so the log could not rebuild this state.
            .and_then(|()| self.persist(Flush::Now))
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> =
            read_meta(&self.db, SNAPSHOT).map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> StorageResult<(tempfile::TempDir, LogStore, StateMachine)> {
            let dir = tempfile::tempdir().expect("temp dir");
            let (log, sm) = open(&dir.path().join("raft.redb"), Timings::default())
                .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn the_storage_passes_openraft_suite() {
        Suite::test_all(Builder).unwrap();
    }

    #[tokio::test]
    async fn state_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let (mut log, _) = open(&path, Timings::default()).unwrap();
            log.save_vote(&Vote::new(3, 1)).await.unwrap();
        }
        let (mut log, mut sm) = open(&path, Timings::default()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
        assert_eq!(sm.applied_state().await.unwrap().0, None);
    }
}
