//! The stage's write-ahead log in redb: one file per stage.
//!
//! Tables: `out` (lots this stage made, by sequence number), `in` (lots it
//! received, by producer and sequence), `meta` (next sequence number, newest
//! flow version, the recipe adopted last). A batch of [`WalOp`]s — everything one round of the core
//! produced — is one transaction committed with immediate durability: the
//! group commit. `set_quick_repair(true)` keeps the restart after a crash
//! fast.

use crate::records::{InRecord, Meta, OutRecord, Records, WalOp};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const OUT: TableDefinition<u64, &[u8]> = TableDefinition::new("out");
const IN: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("in");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_KEY: &str = "meta";
const RECIPE_KEY: &str = "recipe";

/// Why the WAL failed. Any of these stops the stage: it must never act on
/// a transition it could not make durable.
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
}

/// An open WAL.
#[derive(Debug)]
pub struct Wal {
    db: Database,
    path: PathBuf,
}

impl Wal {
    /// Opens (or creates) the WAL at `path` and reads back every record.
    pub fn open(path: &Path) -> Result<(Wal, Records), WalError> {
        let storage = |e: redb::Error| WalError::Storage {
            path: path.to_owned(),
            source: e,
        };
        let db = Database::create(path).map_err(|e| storage(e.into()))?;
        let wal = Wal {
            db,
            path: path.to_owned(),
        };
        {
            let mut txn = wal.db.begin_write().map_err(|e| storage(e.into()))?;
            txn.set_quick_repair(true);
            txn.open_table(OUT).map_err(|e| storage(e.into()))?;
            txn.open_table(IN).map_err(|e| storage(e.into()))?;
            txn.open_table(META).map_err(|e| storage(e.into()))?;
            txn.commit().map_err(|e| storage(e.into()))?;
        }
        let records = wal.records()?;
        Ok((wal, records))
    }

    fn storage(&self, e: impl Into<redb::Error>) -> WalError {
        WalError::Storage {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// Commits `ops` as one durable transaction.
    pub fn commit(&self, ops: &[WalOp]) -> Result<(), WalError> {
        if ops.is_empty() {
            return Ok(());
        }
        let enc = |e| WalError::Encode(e, self.path.clone());
        let mut txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        txn.set_quick_repair(true);
        {
            let mut out = txn.open_table(OUT).map_err(|e| self.storage(e))?;
            let mut inb = txn.open_table(IN).map_err(|e| self.storage(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.storage(e))?;
            for op in ops {
                match op {
                    WalOp::Out(r) => {
                        let bytes = postcard::to_allocvec(r).map_err(enc)?;
                        out.insert(r.lot.id.seq, bytes.as_slice())
                            .map_err(|e| self.storage(e))?;
                    }
                    WalOp::In(r) => {
                        let bytes = postcard::to_allocvec(r).map_err(enc)?;
                        inb.insert((r.lot.id.producer.0, r.lot.id.seq), bytes.as_slice())
                            .map_err(|e| self.storage(e))?;
                    }
                    WalOp::Meta(m) => {
                        let bytes = postcard::to_allocvec(m).map_err(enc)?;
                        meta.insert(META_KEY, bytes.as_slice())
                            .map_err(|e| self.storage(e))?;
                    }
                    WalOp::Recipe(r) => {
                        let bytes = postcard::to_allocvec(r).map_err(enc)?;
                        meta.insert(RECIPE_KEY, bytes.as_slice())
                            .map_err(|e| self.storage(e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// Every record, as recovery and the audit read them.
    pub fn records(&self) -> Result<Records, WalError> {
        let dec = |e| WalError::Corrupt(e, self.path.clone());
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let mut records = Records::default();
        let out = txn.open_table(OUT).map_err(|e| self.storage(e))?;
        for item in out.iter().map_err(|e| self.storage(e))? {
            let (_, v) = item.map_err(|e| self.storage(e))?;
            records
                .out
                .push(postcard::from_bytes::<OutRecord>(v.value()).map_err(dec)?);
        }
        let inb = txn.open_table(IN).map_err(|e| self.storage(e))?;
        for item in inb.iter().map_err(|e| self.storage(e))? {
            let (_, v) = item.map_err(|e| self.storage(e))?;
            records
                .inbound
                .push(postcard::from_bytes::<InRecord>(v.value()).map_err(dec)?);
        }
        let meta = txn.open_table(META).map_err(|e| self.storage(e))?;
        if let Some(v) = meta.get(META_KEY).map_err(|e| self.storage(e))? {
            records.meta = postcard::from_bytes::<Meta>(v.value()).map_err(dec)?;
        }
        if let Some(v) = meta.get(RECIPE_KEY).map_err(|e| self.storage(e))? {
            records.recipe = Some(postcard::from_bytes(v.value()).map_err(dec)?);
        }
        Ok(records)
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
    use factoryos_wire::{LotId, NodeId};
    let path = dir.join(format!("bench-{batch}.redb"));
    let _ = std::fs::remove_file(&path);
    let (wal, _) = Wal::open(&path)?;
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < duration {
        let ops: Vec<WalOp> = (0..batch.max(1))
            .map(|_| {
                seq += 1;
                WalOp::Out(OutRecord {
                    lot: Lot {
                        id: LotId::new(NodeId(1), seq),
                        item: "wood".into(),
                        units: 3,
                        genealogy: vec![],
                        made_ms: 0,
                    },
                    state: crate::records::OutState::InQueue,
                })
            })
            .collect();
        wal.commit(&ops)?;
    }
    let elapsed = start.elapsed();
    drop(wal);
    let _ = std::fs::remove_file(&path);
    Ok((seq, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{StageConfig, StageCore};
    use factoryos_wire::model::Recipe;
    use factoryos_wire::{FlowVersion, NodeId};

    #[test]
    fn what_is_committed_is_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.redb");
        let recipe = Recipe {
            inputs: Default::default(),
            yield_units: 3,
            version: 1,
        };
        let cfg = StageConfig::new(NodeId(11), "wood".into(), recipe, false);
        let mut expected = Records::default();
        {
            let (wal, records) = Wal::open(&path).unwrap();
            assert_eq!(records, Records::default());
            let mut core = StageCore::new(cfg.clone(), records);
            for i in 0..4 {
                core.tick(Duration::from_millis(100 * i));
                let out = core.take_output();
                wal.commit(&out.wal).unwrap();
                expected.apply(&out.wal);
            }
        }
        let (_, records) = Wal::open(&path).unwrap();
        assert_eq!(records.out.len(), 4);
        assert_eq!(records.out, expected.out);
        assert_eq!(records.meta.next_seq, 4);
        assert_eq!(records.meta.flow_version, FlowVersion(0));
        // Updating a record replaces it.
        let (wal, _) = Wal::open(&path).unwrap();
        let mut r = records.out[0].clone();
        r.state = crate::records::OutState::InTransit { to: NodeId(13) };
        wal.commit(&[WalOp::Out(r.clone())]).unwrap();
        assert_eq!(wal.records().unwrap().out[0], r);
    }

    #[test]
    fn a_damaged_file_is_a_typed_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.redb");
        std::fs::write(&path, b"this is not a redb file at all").unwrap();
        let err = Wal::open(&path).unwrap_err();
        assert!(err.to_string().contains("wal.redb"), "{err}");
    }
}
