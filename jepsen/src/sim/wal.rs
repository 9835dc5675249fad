//! A stage's WAL in memory: what the redb WAL keeps (records keyed by lot
//! id, read back in key order), without the disk.

use factoryos_stage::records::{InRecord, Meta, OutRecord, Records, WalOp};
use factoryos_wire::model::Recipe;
use factoryos_wire::LotId;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub(super) struct SimWal {
    out: BTreeMap<LotId, OutRecord>,
    inbound: BTreeMap<LotId, InRecord>,
    meta: Meta,
    recipe: Option<Recipe>,
}

impl SimWal {
    /// Applies one committed batch.
    pub(super) fn apply(&mut self, ops: Vec<WalOp>) {
        for op in ops {
            match op {
                WalOp::Out(r) => {
                    self.out.insert(r.lot.id, r);
                }
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
            out: self.out.into_values().collect(),
            inbound: self.inbound.into_values().collect(),
            meta: self.meta,
            recipe: self.recipe,
        }
    }

    /// Everything it holds, as a restarted stage reads it.
    pub(super) fn records(&self) -> Records {
        Records {
            out: self.out.values().cloned().collect(),
            inbound: self.inbound.values().cloned().collect(),
            meta: self.meta,
            recipe: self.recipe.clone(),
        }
    }
}
