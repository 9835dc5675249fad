//! The original system's operations generator as a schedule of [`Op`]s:
//! crashes, recoveries, recipe updates and added stages, each a Poisson
//! process at its rate per minute, what each does drawn from the same
//! seeded rng (a seed replays the same schedule on the same chain).

use super::live::Live;
use crate::op::{draw, Op};
use factoryos_coord::spec::StageDecl;
use factoryos_wire::model::Spec;
use factoryos_wire::NodeId;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// The kinds of operation the original's generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Crash,
    Recover,
    UpdateRecipe,
    AddStage,
}

const KINDS: [Due; 4] = [Due::Crash, Due::Recover, Due::UpdateRecipe, Due::AddStage];

/// Events per minute of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub failure: f64,
    pub recover: f64,
    pub update_dep: f64,
    pub add_stage: f64,
}

impl Rates {
    fn of(&self, due: Due) -> f64 {
        match due {
            Due::Crash => self.failure,
            Due::Recover => self.recover,
            Due::UpdateRecipe => self.update_dep,
            Due::AddStage => self.add_stage,
        }
    }
}

#[derive(Debug)]
pub struct RateSchedule {
    rng: SmallRng,
    rates: Rates,
    /// When each kind is next due (by [`KINDS`] order); `None` at rate 0.
    next: [Option<Duration>; 4],
    /// Whether a crash may take the last live stage of a type.
    allow_outages: bool,
}

/// Draws the time to the next event of a Poisson process of `per_min` a minute.
fn next_in(rng: &mut SmallRng, per_min: f64) -> Option<Duration> {
    let rate = per_min / 60.0;
    (rate > 0.0).then(|| Duration::from_secs_f64(-rng.random::<f64>().max(1e-12).ln() / rate))
}

impl RateSchedule {
    pub fn new(seed: u64, rates: Rates, allow_outages: bool) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
        let next = KINDS.map(|k| next_in(&mut rng, rates.of(k)));
        RateSchedule {
            rng,
            rates,
            next,
            allow_outages,
        }
    }

    /// The kinds due at `now`, in a fixed order; each is drawn again for its
    /// next time when [`RateSchedule::draw`] takes it.
    pub fn due(&self, now: Duration) -> Vec<Due> {
        KINDS
            .iter()
            .zip(&self.next)
            .filter(|(_, t)| t.is_some_and(|t| now >= t))
            .map(|(k, _)| *k)
            .collect()
    }

    /// The operation for `due` at `now`, if one fits the cluster as it is
    /// (nothing to crash or recover, no type to change: `None`). `leader`
    /// is a crash candidate too when given.
    pub fn draw(
        &mut self,
        due: Due,
        now: Duration,
        live: &Live,
        spec: &Spec,
        leader: Option<NodeId>,
    ) -> Option<Op> {
        let slot = KINDS.iter().position(|k| *k == due).expect("a known kind");
        self.next[slot] = next_in(&mut self.rng, self.rates.of(due)).map(|d| now + d);
        match due {
            Due::Crash => self.draw_crash(live, leader),
            Due::Recover => self.draw_recovery(live),
            Due::UpdateRecipe => {
                let (item, recipe, change) =
                    draw::draw_recipe_update(spec, &live.made(), &mut self.rng)?;
                Some(Op::UpdateRecipe {
                    item,
                    recipe,
                    change,
                })
            }
            Due::AddStage => {
                let types: Vec<_> = spec.types.iter().map(|t| &t.name).collect();
                let item = types[self.rng.random_range(0..types.len())].clone();
                let decl = StageDecl {
                    id: live.next_id(),
                    item,
                    addr: None,
                    capacity: 1,
                };
                Some(Op::AddStage { decl })
            }
        }
    }

    fn draw_crash(&mut self, live: &Live, leader: Option<NodeId>) -> Option<Op> {
        let mut candidates = live.crash_candidates(self.allow_outages);
        candidates.extend(leader);
        if candidates.is_empty() {
            return None;
        }
        let victim = candidates[self.rng.random_range(0..candidates.len())];
        Some(if Some(victim) == leader {
            Op::KillLeader { id: victim }
        } else {
            Op::Crash {
                host: victim,
                stages: live.group(victim).to_vec(),
            }
        })
    }

    fn draw_recovery(&mut self, live: &Live) -> Option<Op> {
        let pool: Vec<NodeId> = live
            .dead_hosts
            .iter()
            .chain(live.dead_coords.iter())
            .copied()
            .collect();
        if pool.is_empty() {
            return None;
        }
        let back = pool[self.rng.random_range(0..pool.len())];
        Some(if live.dead_coords.contains(&back) {
            Op::RecoverCoordinator { id: back }
        } else {
            Op::RecoverStages {
                host: back,
                stages: live.group(back).to_vec(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> factoryos_coord::spec::ChainSpec {
        factoryos_coord::spec::parse("w", include_str!("../../../examples/window.toml")).unwrap()
    }

    fn ops(seed: u64) -> Vec<Op> {
        let chain = chain();
        let mut live = Live::new(&chain);
        let rates = Rates {
            failure: 30.0,
            recover: 30.0,
            update_dep: 10.0,
            add_stage: 5.0,
        };
        let mut s = RateSchedule::new(seed, rates, false);
        let mut out = Vec::new();
        for tick in 0..600 {
            let now = Duration::from_millis(tick * 100);
            for due in s.due(now) {
                if let Some(op) = s.draw(due, now, &live, &chain.spec, None) {
                    match &op {
                        Op::Crash { host, .. } => {
                            live.dead_hosts.insert(*host);
                        }
                        Op::RecoverStages { host, .. } => {
                            live.dead_hosts.remove(host);
                        }
                        Op::AddStage { decl } => live.add(decl.id, decl.item.clone()),
                        _ => {}
                    }
                    out.push(op);
                }
            }
        }
        out
    }

    #[test]
    fn a_seed_replays_the_same_schedule_and_crashes_spare_the_last_of_a_type() {
        let a = ops(7);
        assert_eq!(a, ops(7));
        assert_ne!(a, ops(8));
        assert!(a.iter().any(|o| matches!(o, Op::Crash { .. })));
        assert!(a.iter().any(|o| matches!(o, Op::UpdateRecipe { .. })));
        // Replaying the crashes and recoveries: a type never loses its last stage.
        let chain = chain();
        let mut live = Live::new(&chain);
        for op in &a {
            match op {
                Op::Crash { host, .. } => {
                    live.dead_hosts.insert(*host);
                    for item in ["wood", "window-frame", "window"] {
                        let up = live
                            .ids
                            .iter()
                            .filter(|s| live.item_of(**s).as_str() == item)
                            .any(|s| !live.dead_hosts.contains(s));
                        assert!(up, "{item} lost its last stage");
                    }
                }
                Op::RecoverStages { host, .. } => {
                    live.dead_hosts.remove(host);
                }
                Op::AddStage { decl } => live.add(decl.id, decl.item.clone()),
                _ => {}
            }
        }
    }
}
