//! The manufacture cycle: blocked when the outbound inventory is full,
//! skipped when an input is short, otherwise the recipe's inputs are
//! consumed (oldest lots first) and one lot is made.

use super::StageCore;
use crate::records::{OutRecord, OutState, WalOp};
use factoryos_wire::model::Lot;
use factoryos_wire::LotId;
use std::time::Duration;

impl StageCore {
    pub(super) fn cycle(&mut self, now: Duration) {
        if !self.cfg.is_final && self.supply.outbound_len() >= self.cfg.outbound_cap {
            self.metrics.blocked_manufacture_cycles += 1;
            return;
        }
        let ready = self
            .cfg
            .recipe
            .inputs
            .iter()
            .all(|(item, units)| self.demand.held_units(item) >= *units);
        if !ready {
            self.metrics.skipped_manufacture_cycles += 1;
            return;
        }
        let mut genealogy = Vec::new();
        for (item, need) in &self.cfg.recipe.inputs {
            self.demand
                .consume(item, *need, &mut genealogy, &mut self.out.wal);
        }
        let lot = Lot {
            id: LotId::new(self.cfg.id, self.seq),
            item: self.cfg.item.clone(),
            units: self.cfg.recipe.yield_units,
            genealogy,
            made_ms: self.wall_origin_ms + now.as_millis() as u64,
        };
        self.seq += 1;
        let state = if self.cfg.is_final {
            self.metrics.final_products += 1;
            OutState::Shipped
        } else {
            self.supply.stock(lot.clone());
            OutState::InQueue
        };
        self.out.wal.push(WalOp::Out(OutRecord { lot, state }));
        let meta = self.meta();
        self.out.wal.push(meta);
        self.metrics.successful_manufacture_cycles += 1;
    }
}
