//! A stage's WAL in memory: what the redb WAL keeps (records keyed by lot
//! id, read back in key order), without the disk.

use factoryos_stage::records::{InRecord, Meta, OutRecord, Records, WalOp};
use factoryos_wire::model::Recipe;
use factoryos_wire::{LotId, NodeId};
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub(super) struct SimWal {
    out: OutRecords,
    inbound: BTreeMap<LotId, InRecord>,
    meta: Meta,
    recipe: Option<Recipe>,
}

/// The supplier side's records in lot id order. A stage numbers its own
/// lots from 0, so they are a dense vector by sequence number (a write is
/// an index, not a search of a map that grows all run); a lot of another
/// producer, which a stage never writes, would go to `other`.
#[derive(Debug, Default, Clone)]
struct OutRecords {
    producer: Option<NodeId>,
    own: Vec<Option<OutRecord>>,
    other: BTreeMap<LotId, OutRecord>,
}

impl OutRecords {
    fn insert(&mut self, r: OutRecord) {
        let id = r.lot.id;
        let producer = *self.producer.get_or_insert(id.producer);
        let Ok(i) = usize::try_from(id.seq) else {
            self.other.insert(id, r);
            return;
        };
        if producer != id.producer {
            self.other.insert(id, r);
            return;
        }
        if i >= self.own.len() {
            self.own.resize(i + 1, None);
        }
        self.own[i] = Some(r);
    }

    /// Every record, in lot id order (as redb reads them back).
    fn into_vec(self) -> Vec<OutRecord> {
        let mut all: Vec<OutRecord> = self.own.into_iter().flatten().collect();
        if !self.other.is_empty() {
            all.extend(self.other.into_values());
            all.sort_by_key(|r| r.lot.id);
        }
        all
    }
}

impl SimWal {
    /// Applies one committed batch.
    pub(super) fn apply(&mut self, ops: Vec<WalOp>) {
        for op in ops {
            match op {
                WalOp::Out(r) => self.out.insert(r),
                WalOp::In(r) => {
                    self.inbound.insert(r.lot.id, r);
                }
                WalOp::Meta(m) => self.meta = m,
                WalOp::Recipe(r) => self.recipe = Some(r),
            }
        }
    }

    /// Everything it holds, given up (for the audit at the end).
    pub(super) fn into_records(self) -> Records {
        Records {
            out: self.out.into_vec(),
            inbound: self.inbound.into_values().collect(),
            meta: self.meta,
            recipe: self.recipe,
        }
    }

    /// Everything it holds, as a restarted stage reads it.
    pub(super) fn records(&self) -> Records {
        Records {
            out: self.out.clone().into_vec(),
            inbound: self.inbound.values().cloned().collect(),
            meta: self.meta,
            recipe: self.recipe.clone(),
        }
    }
}
