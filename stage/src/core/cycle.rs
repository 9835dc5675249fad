//! The manufacture cycle: blocked when the outbound inventory is full,
//! skipped when an input is short, otherwise the recipe's inputs are
//! consumed (oldest lots first) and a lot is made, up to the stage's
//! capacity of lots a cycle.
//!
//! Cycles run in slots one cycle long. A slot whose first try cannot make
//! a lot is counted blocked or skipped at once, but the stage keeps
//! waiting for what it lacked until the slot ends: the moment an input
//! lot or outbound room arrives, it makes its lot (the slot then counts as
//! successful instead) and its next slot starts one cycle after that. So a
//! stage's cycle falls in just after its suppliers' without ever making
//! more than its capacity in one cycle: a chain fills with the latency of
//! its trades, not with half a cycle of phase at every level.

use super::StageCore;
use crate::records::{OutRecord, OutState, WalOp};
use factoryos_wire::model::Lot;
use factoryos_wire::LotId;
use std::time::Duration;

/// Why a cycle made no (more) lots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Blocked,
    Skipped,
}

/// Where the stage is in its cycle slots.
#[derive(Debug, Default)]
pub(super) struct Slots {
    /// When the current slot starts (the first tick sets it).
    start: Option<Duration>,
    /// The current slot's first try made nothing, and was counted so: it
    /// is tried again whenever inputs or room may have come, until it ends.
    waiting: Option<Stop>,
}

impl Slots {
    /// The current slot made nothing yet and may still.
    pub(super) fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// When a tick may next try a cycle, with no input before it: the next
    /// slot's start, or the end of a slot still waiting for inputs or room
    /// (until then only an input can make its lot).
    pub(super) fn due(&self, cycle: Duration) -> Duration {
        match (self.start, self.waiting) {
            (None, _) => Duration::ZERO,
            (Some(start), Some(_)) => start + cycle,
            (Some(start), None) => start,
        }
    }
}

impl StageCore {
    /// The cycle due at `now`, if any: a new slot's first try, or another
    /// try of a slot still waiting for inputs or room. Whether it made a lot.
    pub(super) fn cycle_if_due(&mut self, now: Duration) -> bool {
        let cycle = self.cfg.cycle;
        let start = *self.slots.start.get_or_insert(now);
        if now < start {
            return false;
        }
        if let Some(stop) = self.slots.waiting {
            if now < start + cycle {
                if self.make_lots(now).is_err() {
                    return false;
                }
                // Made late in its slot: counted successful instead, and
                // the next slot starts a whole cycle after this one.
                match stop {
                    Stop::Blocked => self.metrics.blocked_manufacture_cycles -= 1,
                    Stop::Skipped => self.metrics.skipped_manufacture_cycles -= 1,
                }
                self.metrics.successful_manufacture_cycles += 1;
                self.slots.waiting = None;
                self.slots.start = Some(now + cycle);
                return true;
            }
            // The slot ended with nothing made: the next one starts where
            // it ended (or now, if the stage stalled past that one too).
            self.slots.waiting = None;
            let next = start + cycle;
            self.slots.start = Some(if next + cycle <= now { now } else { next });
        }
        self.first_try(now)
    }

    /// A slot's first try: up to `capacity` lots. It counts as successful
    /// if it made one, else as blocked or skipped by what stopped its first
    /// lot (and then waits for what it lacked).
    fn first_try(&mut self, now: Duration) -> bool {
        let start = self.slots.start.unwrap_or(now);
        let Err(stop) = self.make_lots(now) else {
            self.metrics.successful_manufacture_cycles += 1;
            self.slots.start = Some(next_slot(start, self.cfg.cycle, now));
            return true;
        };
        match stop {
            Stop::Blocked => self.metrics.blocked_manufacture_cycles += 1,
            Stop::Skipped => self.metrics.skipped_manufacture_cycles += 1,
        }
        self.slots.waiting = Some(stop);
        false
    }

    /// Makes up to `capacity` lots: how many, or what stopped the first.
    fn make_lots(&mut self, now: Duration) -> Result<u32, Stop> {
        let mut made = 0;
        for _ in 0..self.cfg.capacity.max(1) {
            match self.make_lot(now) {
                Ok(()) => made += 1,
                Err(stop) if made == 0 => return Err(stop),
                Err(_) => break,
            }
        }
        Ok(made)
    }

    /// What would stop a lot now, if anything: no room outbound, or an
    /// input short.
    fn stop_now(&self) -> Option<Stop> {
        let room = self.cfg.outbound_cap * self.cfg.capacity.max(1) as usize;
        if !self.cfg.is_final && self.supply.outbound_len() >= room {
            return Some(Stop::Blocked);
        }
        let ready = self
            .cfg
            .recipe
            .inputs
            .iter()
            .all(|(item, units)| self.demand.held_units(item) >= *units);
        (!ready).then_some(Stop::Skipped)
    }

    /// When a tick may next try a cycle, with no input before it (see
    /// [`Slots::due`]); at once if a slot waits and what it lacked is there
    /// (a tick that served parked requests made room).
    pub(super) fn cycle_due(&self) -> Duration {
        if self.slots.is_waiting() && self.stop_now().is_none() {
            return Duration::ZERO;
        }
        self.slots.due(self.cfg.cycle)
    }

    fn make_lot(&mut self, now: Duration) -> Result<(), Stop> {
        if let Some(stop) = self.stop_now() {
            return Err(stop);
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
            self.supply.stock(now, lot.clone());
            OutState::InQueue
        };
        self.out.wal.push(WalOp::Out(OutRecord { lot, state }));
        let meta = self.meta();
        self.out.wal.push(meta);
        Ok(())
    }
}

/// The slot after one that started at `start` and made its lot at `now`:
/// one cycle later, or one cycle after `now` if the stage stalled past it
/// (missed cycles are skipped, not made up in a burst).
fn next_slot(start: Duration, cycle: Duration, now: Duration) -> Duration {
    let next = start + cycle;
    if next <= now {
        now + cycle
    } else {
        next
    }
}
