//! Nemeses: named faults, each drawn as a [`Fault`] (the operations that
//! inject it and those that heal it) on the cluster as it is now, from a
//! seeded rng, and a [`NemesisSchedule`] that injects one every few seconds
//! and heals it before the next. Several names compose: each fault is one
//! of them, drawn at random.
//!
//! Partitions are drop rules between hosts' addresses in the lab's bridge
//! (see `hosts::netns`): they cut coordinators and stage hosts alike; the
//! harness's own control host is never cut.

mod draw;
mod partition;
mod schedule;

pub use schedule::{NemesisSchedule, Step, Timing};

use crate::op::Op;
use factoryos_wire::model::Spec;
use factoryos_wire::{ItemType, NodeId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Every nemesis, by the name `--nemesis` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Nemesis {
    /// All hosts in two random halves that cannot reach each other.
    PartitionHalves,
    /// The leader with a minority of coordinators on one side.
    PartitionLeaderMinority,
    /// The leader with a majority of coordinators on one side.
    PartitionLeaderMajority,
    /// The leader alone.
    IsolateLeader,
    /// Every host sees a majority, no two hosts the same one.
    MajoritiesRing,
    /// Two halves A and B: A hears B, B does not hear A.
    PartitionOneWay,
    /// A stage keeps its peers but loses every coordinator.
    IsolateStageFromCoordinators,
    /// 20% of packets dropped at random.
    Loss,
    /// Every process's endpoint delays what it sends 20–80 ms (reordering
    /// it), duplicates 10% and holds back 10% by up to 100 ms (the wire
    /// crate's fault socket: the kernel here has no netem).
    Delay,
    /// SIGKILL of a coordinator or stage host, restarted at the heal (one at
    /// a time, so a Raft quorum is always up).
    Kill,
    /// SIGKILL of a majority of the coordinators at once, restarted at the
    /// heal: the group has no quorum in between (stages trade on the flow
    /// they have; nothing commits).
    KillQuorum,
    /// SIGSTOP of a coordinator or stage host (longer than an election
    /// timeout), SIGCONT at the heal.
    Pause,
    /// A coordinator is removed from the group; a new one is added at the heal.
    Membership,
    /// A type's recipe changes (the original's `update_dep`).
    RecipeUpdate,
}

impl Nemesis {
    pub const ALL: [Nemesis; 14] = [
        Nemesis::PartitionHalves,
        Nemesis::PartitionLeaderMinority,
        Nemesis::PartitionLeaderMajority,
        Nemesis::IsolateLeader,
        Nemesis::MajoritiesRing,
        Nemesis::PartitionOneWay,
        Nemesis::IsolateStageFromCoordinators,
        Nemesis::Loss,
        Nemesis::Delay,
        Nemesis::Kill,
        Nemesis::KillQuorum,
        Nemesis::Pause,
        Nemesis::Membership,
        Nemesis::RecipeUpdate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::PartitionHalves => "partition-halves",
            Nemesis::PartitionLeaderMinority => "partition-leader-minority",
            Nemesis::PartitionLeaderMajority => "partition-leader-majority",
            Nemesis::IsolateLeader => "isolate-leader",
            Nemesis::MajoritiesRing => "majorities-ring",
            Nemesis::PartitionOneWay => "partition-one-way",
            Nemesis::IsolateStageFromCoordinators => "isolate-stage-from-coordinators",
            Nemesis::Loss => "loss",
            Nemesis::Delay => "delay",
            Nemesis::Kill => "kill",
            Nemesis::KillQuorum => "kill-quorum",
            Nemesis::Pause => "pause",
            Nemesis::Membership => "membership",
            Nemesis::RecipeUpdate => "recipe-update",
        }
    }

    /// Whether it changes the network (and so needs namespace hosts).
    pub fn is_network(self) -> bool {
        !matches!(
            self,
            Nemesis::Kill
                | Nemesis::KillQuorum
                | Nemesis::Pause
                | Nemesis::Membership
                | Nemesis::RecipeUpdate
                | Nemesis::Delay
        )
    }

    /// Parses `a,b,c` (or `all`).
    pub fn parse_list(s: &str) -> Result<Vec<Nemesis>, String> {
        crate::names::parse_list(s, &Nemesis::ALL, Nemesis::name, "nemesis")
    }
}

impl std::fmt::Display for Nemesis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Nemesis {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse_one(s, &Nemesis::ALL, Nemesis::name, "nemesis")
    }
}

/// The cluster as a nemesis draws on it.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The coordinators in the group now.
    pub coordinators: Vec<NodeId>,
    /// The stage host processes: each its stages, the first naming it.
    pub stage_hosts: Vec<Vec<NodeId>>,
    pub leader: Option<NodeId>,
    /// Every process's host address (namespace hosts; empty on loopback).
    pub ips: BTreeMap<NodeId, Ipv4Addr>,
    /// The id a new coordinator gets.
    pub next_coordinator: NodeId,
    /// The chain's spec as it stands, and the types some stage makes.
    pub spec: Option<Spec>,
    pub made: BTreeSet<ItemType>,
}

impl Topology {
    /// Every process (coordinators, then stage hosts).
    pub(crate) fn everyone(&self) -> Vec<NodeId> {
        self.coordinators
            .iter()
            .copied()
            .chain(self.stage_hosts.iter().map(|g| g[0]))
            .collect()
    }

    pub(crate) fn stages_of(&self, host: NodeId) -> Vec<NodeId> {
        self.stage_hosts
            .iter()
            .find(|g| g[0] == host)
            .cloned()
            .unwrap_or_default()
    }
}

/// One drawn fault: what injects it, what heals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub nemesis: Nemesis,
    pub detail: String,
    pub inject: Vec<Op>,
    pub heal: Vec<Op>,
}

#[cfg(test)]
mod tests {
    use super::partition::Grudge;
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;
    use std::time::Duration;

    fn topo() -> Topology {
        let coordinators: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let stage_hosts: Vec<Vec<NodeId>> = (11..=16).map(|i| vec![NodeId(i)]).collect();
        let ips = coordinators
            .iter()
            .chain(stage_hosts.iter().map(|g| &g[0]))
            .enumerate()
            .map(|(k, id)| (*id, Ipv4Addr::new(10, 77, 1, k as u8 + 1)))
            .collect();
        Topology {
            coordinators,
            stage_hosts,
            leader: Some(NodeId(2)),
            ips,
            next_coordinator: NodeId(1_000_001),
            spec: None,
            made: BTreeSet::new(),
        }
    }

    fn grudge(n: Nemesis, seed: u64) -> (Grudge, String) {
        n.grudge(&topo(), &mut SmallRng::seed_from_u64(seed))
            .unwrap()
    }

    #[test]
    fn names_parse_back_and_nonsense_is_refused_with_the_list() {
        for n in Nemesis::ALL {
            assert_eq!(n.name().parse::<Nemesis>(), Ok(n));
        }
        assert_eq!(Nemesis::parse_list("all").unwrap().len(), 14);
        assert_eq!(
            Nemesis::parse_list("kill, pause,kill").unwrap(),
            vec![Nemesis::Kill, Nemesis::Pause]
        );
        let err = Nemesis::parse_list("kill,chaos").unwrap_err();
        assert!(
            err.contains("partition-halves") && err.contains("chaos"),
            "{err}"
        );
    }

    #[test]
    fn the_leader_lands_where_each_partition_says() {
        let t = topo();
        for seed in 0..20 {
            let (g, _) = grudge(Nemesis::PartitionLeaderMinority, seed);
            // The leader reaches no other coordinator.
            for c in &t.coordinators {
                if *c != NodeId(2) {
                    assert!(g.contains(&(NodeId(2), *c)), "seed {seed}");
                }
            }
            let (g, _) = grudge(Nemesis::PartitionLeaderMajority, seed);
            let reached = t
                .coordinators
                .iter()
                .filter(|c| **c != NodeId(2) && !g.contains(&(NodeId(2), **c)))
                .count();
            assert_eq!(
                reached, 1,
                "seed {seed}: leader plus one is a majority of 3"
            );
            let (g, _) = grudge(Nemesis::IsolateLeader, seed);
            assert_eq!(g.len(), 2 * 8, "cut from the 8 others both ways");
        }
    }

    #[test]
    fn kill_keeps_a_quorum_and_kill_quorum_takes_it() {
        let t = topo();
        for seed in 0..20 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let f = Nemesis::Kill.draw(&t, &mut rng).unwrap();
            assert_eq!(f.inject.len(), 1, "one process at a time");
            let f = Nemesis::KillQuorum.draw(&t, &mut rng).unwrap();
            let killed: BTreeSet<NodeId> = f
                .inject
                .iter()
                .map(|op| match op {
                    Op::KillCoordinator { id } => *id,
                    other => panic!("seed {seed}: {other:?}"),
                })
                .collect();
            assert_eq!(killed.len(), 2, "seed {seed}: a majority of 3");
            assert!(killed.iter().all(|k| t.coordinators.contains(k)));
            let healed: BTreeSet<NodeId> = f
                .heal
                .iter()
                .map(|op| match op {
                    Op::RecoverCoordinator { id } => *id,
                    other => panic!("seed {seed}: {other:?}"),
                })
                .collect();
            assert_eq!(healed, killed, "seed {seed}: every victim restarts");
        }
    }

    #[test]
    fn one_way_drops_one_direction_and_halves_both() {
        let (g, _) = grudge(Nemesis::PartitionOneWay, 3);
        assert!(!g.is_empty());
        for (a, b) in &g {
            assert!(!g.contains(&(*b, *a)), "{a} {b} both ways");
        }
        let (g, _) = grudge(Nemesis::PartitionHalves, 3);
        for (a, b) in &g {
            assert!(g.contains(&(*b, *a)));
        }
    }

    #[test]
    fn in_a_majorities_ring_everyone_sees_a_majority_but_not_the_same() {
        let t = topo();
        let all = t.everyone();
        let (g, _) = grudge(Nemesis::MajoritiesRing, 5);
        let mut seen_sets = BTreeSet::new();
        for a in &all {
            let sees: BTreeSet<NodeId> = all
                .iter()
                .copied()
                .filter(|b| !g.contains(&(*b, *a)))
                .collect();
            assert!(sees.len() > all.len() / 2, "{a} sees {}", sees.len());
            seen_sets.insert(sees);
        }
        assert!(seen_sets.len() > 1);
    }

    #[test]
    fn a_schedule_injects_heals_before_the_next_and_replays_from_its_seed() {
        let t = topo();
        let run = |seed| {
            let mut s =
                NemesisSchedule::new(seed, vec![Nemesis::Kill, Nemesis::Loss], Timing::default());
            let mut steps = Vec::new();
            for ms in (0..60_000).step_by(100) {
                if let Some(step) = s.poll(Duration::from_millis(ms), &t) {
                    steps.push(step);
                }
            }
            steps
        };
        let steps = run(9);
        assert!(steps.len() >= 16, "{} steps", steps.len());
        for pair in steps.chunks(2) {
            match pair {
                [Step::Inject(a), Step::Heal(b)] => assert_eq!(a, b),
                [Step::Inject(_)] => {}
                other => panic!("not inject-then-heal: {other:?}"),
            }
        }
        assert_eq!(steps, run(9));
        assert_ne!(steps, run(10));
    }
}
