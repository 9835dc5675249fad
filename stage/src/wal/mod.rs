//! The write-ahead log in redb: one file per host process, holding the
//! records of each stage it runs, kept apart by stage id.
//!
//! Tables: `stages` (the stages whose records live in this file), `out`
//! (lots a stage made, by stage and sequence number), `in` (lots it
//! received, by stage, producer and sequence), `meta` (by stage: next
//! sequence number, newest flow version, the recipe adopted last). A batch
//! of [`WalOp`]s of several stages — everything one round of their cores
//! produced — is one transaction committed with immediate durability: the
//! group commit ([`group`] gathers the batches of a host's stages). A
//! stage's records live in exactly one file: opening a file with a
//! different set of stages than it holds is an error, not a silent loss.
//! `set_quick_repair(true)` keeps the restart after a crash fast.

pub mod group;
#[cfg(test)]
mod tests;

use crate::records::{InRecord, Meta, OutRecord, Records, WalOp};
use factoryos_wire::NodeId;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use group::{GroupWal, StageWal};

const STAGES: TableDefinition<u64, ()> = TableDefinition::new("stages");
const OUT: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("out");
const IN: TableDefinition<(u64, u64, u64), &[u8]> = TableDefinition::new("in");
const META: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("meta");
const META_KEY: &str = "meta";
const RECIPE_KEY: &str = "recipe";

/// Why the WAL failed. Any of these stops the stages it serves: a stage
/// must never act on a transition it could not make durable.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL {path}: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("WAL {path}: a record does not decode ({0}); the file is damaged", path = .1.display())]
    Corrupt(postcard::Error, PathBuf),
    #[error("WAL {path}: a record does not encode: {0}", path = .1.display())]
    Encode(postcard::Error, PathBuf),
    #[error("WAL {path} holds the records of stages {stages:?}, which this host process does not run; run them in the process they ran in (their lots are there)", path = .path.display())]
    Foreign { path: PathBuf, stages: Vec<NodeId> },
    #[error("WAL {path} does not hold stage {stage}", path = .path.display())]
    NotHeld { path: PathBuf, stage: NodeId },
    #[error("stage {stage} would have two WALs, {a} and {b}; a stage's lots live in one, so run it with the stages it ran with", a = .a.display(), b = .b.display())]
    TwoHomes {
        stage: NodeId,
        a: PathBuf,
        b: PathBuf,
    },
    #[error("the host's group commit failed: {0}")]
    Group(Arc<WalError>),
    #[error("the host's WAL is closed")]
    Stopped,
}

/// An open WAL and the stages it holds.
#[derive(Debug)]
pub struct Wal {
    db: Database,
    path: PathBuf,
    stages: BTreeSet<NodeId>,
}

impl Wal {
    /// Opens (or creates) the WAL at `path` for exactly `stages` and reads
    /// back each one's records (empty for a stage new to the file).
    pub fn open(
        path: &Path,
        stages: &[NodeId],
    ) -> Result<(Wal, BTreeMap<NodeId, Records>), WalError> {
        let wanted: BTreeSet<NodeId> = stages.iter().copied().collect();
        let wal = Wal::open_holding(path, Some(&wanted))?;
        let records = wal.read_every()?;
        Ok((wal, records))
    }

    /// Every stage's records in the file at `path`, whichever stages it holds.
    pub fn read_all(path: &Path) -> Result<BTreeMap<NodeId, Records>, WalError> {
        Wal::open_holding(path, None)?.read_every()
    }

    /// Opens the file; with `wanted`, checks that it holds no other stage
    /// and adds the ones it lacks.
    fn open_holding(path: &Path, wanted: Option<&BTreeSet<NodeId>>) -> Result<Wal, WalError> {
        let storage = |e: redb::Error| WalError::Storage {
            path: path.to_owned(),
            source: e,
        };
        let db = Database::create(path).map_err(|e| storage(e.into()))?;
        let mut wal = Wal {
            db,
            path: path.to_owned(),
            stages: BTreeSet::new(),
        };
        let txn = wal.write()?;
        let mut held = BTreeSet::new();
        {
            let mut table = txn.open_table(STAGES).map_err(|e| wal.storage(e))?;
            for item in table.iter().map_err(|e| wal.storage(e))? {
                let (k, _) = item.map_err(|e| wal.storage(e))?;
                held.insert(NodeId(k.value()));
            }
            if let Some(wanted) = wanted {
                let foreign: Vec<NodeId> = held.difference(wanted).copied().collect();
                if !foreign.is_empty() {
                    return Err(WalError::Foreign {
                        path: path.to_owned(),
                        stages: foreign,
                    });
                }
                for id in wanted.difference(&held) {
                    table.insert(id.0, ()).map_err(|e| wal.storage(e))?;
                }
                held.clone_from(wanted);
            }
            txn.open_table(OUT).map_err(|e| wal.storage(e))?;
            txn.open_table(IN).map_err(|e| wal.storage(e))?;
            txn.open_table(META).map_err(|e| wal.storage(e))?;
        }
        txn.commit().map_err(|e| wal.storage(e))?;
        wal.stages = held;
        Ok(wal)
    }

    fn storage(&self, e: impl Into<redb::Error>) -> WalError {
        WalError::Storage {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    fn write(&self) -> Result<WriteTransaction, WalError> {
        let mut txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        txn.set_quick_repair(true);
        Ok(txn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stages whose records live here.
    pub fn stages(&self) -> &BTreeSet<NodeId> {
        &self.stages
    }

    /// Commits one stage's `ops` as one durable transaction.
    pub fn commit(&self, stage: NodeId, ops: &[WalOp]) -> Result<(), WalError> {
        self.commit_group(&[(stage, ops)])
    }

    /// Commits the batches of several stages as one durable transaction:
    /// all of them or none.
    pub fn commit_group(&self, batches: &[(NodeId, &[WalOp])]) -> Result<(), WalError> {
        if batches.iter().all(|(_, ops)| ops.is_empty()) {
            return Ok(());
        }
        if let Some((stage, _)) = batches.iter().find(|(s, _)| !self.stages.contains(s)) {
            return Err(WalError::NotHeld {
                path: self.path.clone(),
                stage: *stage,
            });
        }
        let enc = |e| WalError::Encode(e, self.path.clone());
        let txn = self.write()?;
        {
            let mut out = txn.open_table(OUT).map_err(|e| self.storage(e))?;
            let mut inb = txn.open_table(IN).map_err(|e| self.storage(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.storage(e))?;
            for (stage, ops) in batches {
                let s = stage.0;
                for op in *ops {
                    let result = match op {
                        WalOp::Out(r) => {
                            let bytes = postcard::to_allocvec(r).map_err(enc)?;
                            out.insert((s, r.lot.id.seq), bytes.as_slice()).map(drop)
                        }
                        WalOp::In(r) => {
                            let bytes = postcard::to_allocvec(r).map_err(enc)?;
                            let key = (s, r.lot.id.producer.0, r.lot.id.seq);
                            inb.insert(key, bytes.as_slice()).map(drop)
                        }
                        WalOp::Meta(m) => {
                            let bytes = postcard::to_allocvec(m).map_err(enc)?;
                            meta.insert((s, META_KEY), bytes.as_slice()).map(drop)
                        }
                        WalOp::Recipe(r) => {
                            let bytes = postcard::to_allocvec(r).map_err(enc)?;
                            meta.insert((s, RECIPE_KEY), bytes.as_slice()).map(drop)
                        }
                    };
                    result.map_err(|e| self.storage(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// Stage `stage`'s records, as recovery and the audit read them.
    pub fn records(&self, stage: NodeId) -> Result<Records, WalError> {
        if !self.stages.contains(&stage) {
            return Err(WalError::NotHeld {
                path: self.path.clone(),
                stage,
            });
        }
        let dec = |e| WalError::Corrupt(e, self.path.clone());
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let s = stage.0;
        let mut records = Records::default();
        let out = txn.open_table(OUT).map_err(|e| self.storage(e))?;
        for item in out
            .range((s, 0)..=(s, u64::MAX))
            .map_err(|e| self.storage(e))?
        {
            let (_, v) = item.map_err(|e| self.storage(e))?;
            records
                .out
                .push(postcard::from_bytes::<OutRecord>(v.value()).map_err(dec)?);
        }
        let inb = txn.open_table(IN).map_err(|e| self.storage(e))?;
        let all = (s, 0, 0)..=(s, u64::MAX, u64::MAX);
        for item in inb.range(all).map_err(|e| self.storage(e))? {
            let (_, v) = item.map_err(|e| self.storage(e))?;
            records
                .inbound
                .push(postcard::from_bytes::<InRecord>(v.value()).map_err(dec)?);
        }
        let meta = txn.open_table(META).map_err(|e| self.storage(e))?;
        if let Some(v) = meta.get((s, META_KEY)).map_err(|e| self.storage(e))? {
            records.meta = postcard::from_bytes::<Meta>(v.value()).map_err(dec)?;
        }
        if let Some(v) = meta.get((s, RECIPE_KEY)).map_err(|e| self.storage(e))? {
            records.recipe = Some(postcard::from_bytes(v.value()).map_err(dec)?);
        }
        Ok(records)
    }

    fn read_every(&self) -> Result<BTreeMap<NodeId, Records>, WalError> {
        self.stages
            .iter()
            .map(|id| Ok((*id, self.records(*id)?)))
            .collect()
    }
}

/// Durable transitions per second with `batch` transitions per commit, over
/// `duration` (a fresh WAL in `dir`).
pub fn measure_commits(
    dir: &Path,
    batch: usize,
    duration: Duration,
) -> Result<(u64, Duration), WalError> {
    use factoryos_wire::model::Lot;
    use factoryos_wire::LotId;
    let path = dir.join(format!("bench-{batch}.redb"));
    let _ = std::fs::remove_file(&path);
    let stage = NodeId(1);
    let (wal, _) = Wal::open(&path, &[stage])?;
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < duration {
        let ops: Vec<WalOp> = (0..batch.max(1))
            .map(|_| {
                seq += 1;
                WalOp::Out(OutRecord {
                    lot: Lot {
                        id: LotId::new(stage, seq),
                        item: "wood".into(),
                        units: 3,
                        genealogy: vec![],
                        made_ms: 0,
                    },
                    state: crate::records::OutState::InQueue,
                })
            })
            .collect();
        wal.commit(stage, &ops)?;
    }
    let elapsed = start.elapsed();
    drop(wal);
    let _ = std::fs::remove_file(&path);
    Ok((seq, elapsed))
}
