//! The manufacture cycle: blocked when the outbound inventory is full,
//! skipped when an input is short, otherwise the recipe's inputs are
//! consumed (oldest lots first) and a lot is made, up to the stage's
//! capacity of lots a cycle.

use super::StageCore;
use crate::records::{OutRecord, OutState, WalOp};
use factoryos_wire::model::Lot;
use factoryos_wire::LotId;
use std::time::Duration;

/// Why a cycle made no (more) lots.
enum Stop {
    Blocked,
    Skipped,
}

impl StageCore {
    /// One manufacture cycle: up to `capacity` lots. It counts as
    /// successful if it made one, else as blocked or skipped by what
    /// stopped its first lot.
    pub(super) fn cycle(&mut self, now: Duration) {
        let mut made = 0;
        for _ in 0..self.cfg.capacity.max(1) {
            match self.make_lot(now) {
                Ok(()) => made += 1,
                Err(stop) => {
                    if made == 0 {
                        match stop {
                            Stop::Blocked => self.metrics.blocked_manufacture_cycles += 1,
                            Stop::Skipped => self.metrics.skipped_manufacture_cycles += 1,
                        }
                    }
                    break;
                }
            }
        }
        if made > 0 {
            self.metrics.successful_manufacture_cycles += 1;
        }
    }

    fn make_lot(&mut self, now: Duration) -> Result<(), Stop> {
        let room = self.cfg.outbound_cap * self.cfg.capacity.max(1) as usize;
        if !self.cfg.is_final && self.supply.outbound_len() >= room {
            return Err(Stop::Blocked);
        }
        let ready = self
            .cfg
            .recipe
            .inputs
            .iter()
            .all(|(item, units)| self.demand.held_units(item) >= *units);
        if !ready {
            return Err(Stop::Skipped);
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
        Ok(())
    }
}
