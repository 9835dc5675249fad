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

/// What one crash kills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CrashScope {
    /// A stage host process, with all its stages (a machine's crash).
    #[default]
    Host,
    /// One stage, alone inside its host process, which lives on (a host of
    /// one stage is killed whole: that is the same thing).
    Stage,
}

impl CrashScope {
    pub const ALL: [CrashScope; 2] = [CrashScope::Host, CrashScope::Stage];

    pub fn name(self) -> &'static str {
        match self {
            CrashScope::Host => "host",
            CrashScope::Stage => "stage",
        }
    }
}

impl std::str::FromStr for CrashScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CrashScope::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown crash scope {s:?}: use host or stage"))
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
    scope: CrashScope,
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
            scope: CrashScope::Host,
        }
    }

    /// Crashes of `scope` from now on (hosts by default).
    pub fn crashing(mut self, scope: CrashScope) -> Self {
        self.scope = scope;
        self
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
        let mut candidates = match self.scope {
            CrashScope::Host => live.crash_candidates(self.allow_outages),
            CrashScope::Stage => live.stage_crash_candidates(self.allow_outages),
        };
        candidates.extend(leader);
        if candidates.is_empty() {
            return None;
        }
        let victim = candidates[self.rng.random_range(0..candidates.len())];
        if Some(victim) == leader {
            return Some(Op::KillLeader { id: victim });
        }
        let host = live.host_of(victim)?;
        let group = live.group(host);
        Some(match self.scope {
            CrashScope::Stage if group.len() > 1 => Op::CrashStage {
                host,
                stage: victim,
            },
            _ => Op::Crash {
                host,
                stages: group.to_vec(),
            },
        })
    }

    fn draw_recovery(&mut self, live: &Live) -> Option<Op> {
        // Stages down inside a host that is down too come back with it.
        let alone = live.dead_alone.iter().filter(|s| {
            live.host_of(**s)
                .is_some_and(|h| !live.dead_hosts.contains(&h))
        });
        let pool: Vec<NodeId> = live
            .dead_hosts
            .iter()
            .chain(live.dead_coords.iter())
            .chain(alone)
            .copied()
            .collect();
        if pool.is_empty() {
            return None;
        }
        let back = pool[self.rng.random_range(0..pool.len())];
        Some(if live.dead_coords.contains(&back) {
            Op::RecoverCoordinator { id: back }
        } else if live.dead_alone.contains(&back) {
            Op::RecoverStage {
                host: live.host_of(back)?,
                stage: back,
            }
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

    /// Crashing stages inside three hosts: every crash is one stage of a
    /// live host, every recovery one of those, and no type loses its last
    /// running stage.
    #[test]
    fn stage_crashes_take_one_stage_of_a_live_host_and_spare_the_last_of_a_type() {
        let chain = chain();
        let mut live = Live::hosted(&chain, Some(3));
        let rates = Rates {
            failure: 30.0,
            recover: 20.0,
            ..Rates::default()
        };
        let mut s = RateSchedule::new(3, rates, false).crashing(CrashScope::Stage);
        let (mut crashes, mut recoveries) = (0, 0);
        for tick in 0..1200 {
            let now = Duration::from_millis(tick * 100);
            for due in s.due(now) {
                let Some(op) = s.draw(due, now, &live, &chain.spec, None) else {
                    continue;
                };
                match op {
                    Op::CrashStage { host, stage } => {
                        assert_eq!(live.host_of(stage), Some(host));
                        assert!(!live.is_down(stage) && !live.dead_hosts.contains(&host));
                        live.dead_alone.insert(stage);
                        crashes += 1;
                    }
                    Op::RecoverStage { host, stage } => {
                        assert_eq!(live.host_of(stage), Some(host));
                        assert!(live.dead_alone.remove(&stage), "{stage} was not down");
                        recoveries += 1;
                    }
                    other => panic!("not a stage's crash or recovery: {other:?}"),
                }
                for item in ["wood", "window-frame", "window"] {
                    let up = live
                        .ids
                        .iter()
                        .any(|s| live.item_of(*s).as_str() == item && !live.is_down(*s));
                    assert!(up, "{item} lost its last stage");
                }
            }
        }
        assert!(crashes > 10 && recoveries > 10, "{crashes} / {recoveries}");
        assert_eq!(live.dead_stages(), live.dead_alone.len());
        // A host of one stage is killed whole: the same thing, as a process.
        let mut single = Live::new(&chain);
        let mut s = RateSchedule::new(3, rates, false).crashing(CrashScope::Stage);
        let op = (0..600)
            .map(|t| Duration::from_millis(t * 100))
            .find_map(|now| {
                let due = s.due(now).into_iter().find(|d| *d == Due::Crash)?;
                s.draw(due, now, &single, &chain.spec, None)
            })
            .expect("a crash in a minute at 30 a minute");
        assert!(
            matches!(&op, Op::Crash { stages, .. } if stages.len() == 1),
            "{op:?}"
        );
        if let Op::Crash { host, .. } = op {
            single.dead_hosts.insert(host);
            single.host_back(host);
            assert_eq!(single.dead_stages(), 0);
        }
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
