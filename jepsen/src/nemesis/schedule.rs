//! The schedule: one fault every few seconds, healed before the next,
//! each one of the chosen nemeses drawn at random from a seeded rng.

use super::{Fault, Nemesis, Topology};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// How long faults last and how long the cluster is left alone between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A fault is held for a time drawn in this range...
    pub hold: (Duration, Duration),
    /// ... then healed, and the next comes after a quiet time in this range.
    pub quiet: (Duration, Duration),
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            hold: (Duration::from_secs(2), Duration::from_secs(4)),
            quiet: (Duration::from_secs(2), Duration::from_secs(3)),
        }
    }
}

/// What the schedule asks for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Inject(Fault),
    Heal(Fault),
}

/// One fault every few seconds, healed before the next.
#[derive(Debug)]
pub struct NemesisSchedule {
    rng: SmallRng,
    nemeses: Vec<Nemesis>,
    timing: Timing,
    /// The fault being held and until when, or when the next one is due.
    holding: Option<Fault>,
    next_at: Duration,
}

fn between(rng: &mut SmallRng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        return lo;
    }
    lo + Duration::from_secs_f64(rng.random::<f64>() * (hi - lo).as_secs_f64())
}

impl NemesisSchedule {
    pub fn new(seed: u64, nemeses: Vec<Nemesis>, timing: Timing) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x6e65_6d65);
        let next_at = between(&mut rng, timing.quiet);
        NemesisSchedule {
            rng,
            nemeses,
            timing,
            holding: None,
            next_at,
        }
    }

    /// What to do at `now` (since the schedule started) on `topo`, if anything.
    pub fn poll(&mut self, now: Duration, topo: &Topology) -> Option<Step> {
        if now < self.next_at {
            return None;
        }
        if let Some(fault) = self.holding.take() {
            self.next_at = now + between(&mut self.rng, self.timing.quiet);
            return Some(Step::Heal(fault));
        }
        let nemesis = *self.nemeses.choose(&mut self.rng)?;
        let Some(fault) = nemesis.draw(topo, &mut self.rng) else {
            // Nothing fits now (e.g. no leader): try again shortly.
            self.next_at = now + Duration::from_millis(500);
            return None;
        };
        self.next_at = now + between(&mut self.rng, self.timing.hold);
        if !fault.heal.is_empty() {
            self.holding = Some(fault.clone());
        }
        Some(Step::Inject(fault))
    }

    /// What is due at `now` without drawing anything: `None` (nothing),
    /// `Some(false)` a heal, `Some(true)` a new fault (the caller then looks
    /// at the cluster and [`NemesisSchedule::poll`]s with its topology).
    pub fn due(&self, now: Duration) -> Option<bool> {
        (now >= self.next_at).then_some(self.holding.is_none())
    }

    /// The fault being held, to heal at the end.
    pub fn take_held(&mut self) -> Option<Fault> {
        self.holding.take()
    }
}
