//! Operations in the simulated world: the same [`Op`] values `factoryos
//! run` draws from the same [`RateSchedule`] (crashes, recoveries, recipe
//! updates, added stages), applied to simulated hosts, plus the
//! simulator's own partitions (a host cut off from everything for a while).

use super::world::{By, Event, World};
use crate::experiment::record::Moment;
use crate::op::Op;
use factoryos_coord::state::Command;
use factoryos_wire::model::StageDescriptor;
use factoryos_wire::NodeId;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// The partition schedule: a Poisson process of `per_min` isolations a
/// minute, each of one running host for `hold`.
#[derive(Debug)]
pub(super) struct Partitions {
    rng: SmallRng,
    per_min: f64,
    hold: Duration,
    next: Option<Duration>,
    /// Isolations made.
    pub(super) made: u64,
}

impl Partitions {
    pub(super) fn new(seed: u64, per_min: f64, hold: Duration) -> Self {
        let mut p = Partitions {
            rng: SmallRng::seed_from_u64(seed ^ 0x9a27),
            per_min,
            hold,
            next: None,
            made: 0,
        };
        p.next = p.draw_next(Duration::ZERO);
        p
    }

    fn draw_next(&mut self, now: Duration) -> Option<Duration> {
        let rate = self.per_min / 60.0;
        (rate > 0.0).then(|| {
            now + Duration::from_secs_f64(-self.rng.random::<f64>().max(1e-12).ln() / rate)
        })
    }
}

impl World {
    /// When now is, for the run's record.
    pub(super) fn moment(&self) -> Moment {
        Moment {
            elapsed: self.now,
            at_s: self.now.as_secs_f64(),
            cycle: (self.now.as_secs_f64() / self.cfg.cycle.as_secs_f64()) as u64,
            at_ms: self.now.as_millis() as u64,
        }
    }

    /// The schedule's operations due now, and the partitions due or healed.
    /// The schedule's clock starts once every stage has registered, as
    /// `run`'s does.
    pub(super) fn apply_due_ops(&mut self) {
        let now = self.now;
        for host in self.net.heal_due(now) {
            tracing::debug!(%host, "partition healed");
        }
        let Some(origin) = self.all_registered_at else {
            return;
        };
        let t = now - origin;
        for due in self.schedule.due(t) {
            let op = self
                .schedule
                .draw(due, t, &self.live, &self.record.spec, None);
            if let Some(op) = op {
                self.apply_op(op);
            }
        }
        if self.partitions.next.is_some_and(|next| next <= t) {
            self.partitions.next = self.partitions.draw_next(t);
            let hosts = self.live.running_hosts();
            if !hosts.is_empty() {
                let host = hosts[self.partitions.rng.random_range(0..hosts.len())];
                self.net.isolate(host, now + self.partitions.hold);
                self.partitions.made += 1;
            }
        }
    }

    /// Applies `op` to the simulated cluster and notes it in the record.
    pub(super) fn apply_op(&mut self, op: Op) {
        match &op {
            Op::Crash { stages, .. } => {
                for s in stages {
                    self.crash_stage(*s, true);
                }
            }
            Op::CrashStage { stage, .. } => self.crash_stage(*stage, false),
            Op::RecoverStages { stages, .. } => {
                for s in stages {
                    self.restart_stage(*s);
                }
            }
            Op::RecoverStage { stage, .. } => self.restart_stage(*stage),
            Op::UpdateRecipe { item, recipe, .. } => {
                let cmd = Command::UpdateRecipe {
                    item: item.clone(),
                    recipe: recipe.clone(),
                    if_version: None,
                };
                self.operator(cmd, None);
            }
            Op::AddStage { decl } => {
                if !self.add_stage(decl) {
                    return;
                }
                let stage = StageDescriptor {
                    id: decl.id,
                    item: decl.item.clone(),
                    addr: super::world::sim_address(decl.id),
                    recipe_version: 0,
                    capacity: decl.capacity,
                };
                self.operator(Command::AddStage { stage }, Some(decl.id));
            }
            other => {
                tracing::warn!(op = %other.describe(), "not simulated; skipped");
                return;
            }
        }
        let moment = self.moment();
        self.record.applied(&op, &moment, &mut self.live);
    }

    /// An operator's command, through the client.
    fn operator(&mut self, cmd: Command, start: Option<NodeId>) {
        let at = self.now + self.net.latency(&mut self.rng) + self.cfg.commit_latency;
        let by = By::Operator { start };
        self.queue.push(at, Event::Apply { cmd, by });
    }

    /// Each restarted host's first successful cycle (its first stage's, as
    /// `run` times it).
    pub(super) fn note_first_lots(&mut self) {
        let at_ms = self.now.as_millis() as u64;
        for (r, since) in self
            .record
            .recoveries
            .iter_mut()
            .filter(|(r, _)| r.first_lot_ms.is_none())
        {
            let made = self
                .stages
                .get(&NodeId(r.node))
                .map_or(0, |s| s.made_this_life());
            if made > 0 {
                r.first_lot_ms = Some(at_ms.saturating_sub(*since));
            }
        }
    }
}
