//! Nemeses: named faults, each drawn as a [`Fault`] (the operations that
//! inject it and those that heal it) on the cluster as it is now, from a
//! seeded rng, and a [`NemesisSchedule`] that injects one every few seconds
//! and heals it before the next. Several names compose: each fault is one
//! of them, drawn at random.
//!
//! Partitions are drop rules between hosts' addresses in the lab's bridge
//! (see `hosts::netns`): they cut coordinators and stage hosts alike; the
//! harness's own control host is never cut.

use crate::hosts::netns::Rules;
use crate::op::{draw, Op};
use factoryos_wire::fault_file::FaultFile;
use factoryos_wire::model::Spec;
use factoryos_wire::{ItemType, NodeId};
use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

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
    /// SIGSTOP of a coordinator or stage host (longer than an election
    /// timeout), SIGCONT at the heal.
    Pause,
    /// A coordinator is removed from the group; a new one is added at the heal.
    Membership,
    /// A type's recipe changes (the original's `update_dep`).
    RecipeUpdate,
}

impl Nemesis {
    pub const ALL: [Nemesis; 13] = [
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
                | Nemesis::Pause
                | Nemesis::Membership
                | Nemesis::RecipeUpdate
                | Nemesis::Delay
        )
    }

    /// Parses `a,b,c` (or `all`).
    pub fn parse_list(s: &str) -> Result<Vec<Nemesis>, String> {
        if s.trim() == "all" {
            return Ok(Nemesis::ALL.to_vec());
        }
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let n = name.parse::<Nemesis>()?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
        if out.is_empty() {
            return Err("no nemesis named (try `partition-halves,kill` or `all`)".into());
        }
        Ok(out)
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
        Nemesis::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Nemesis::ALL.iter().map(|n| n.name()).collect();
                format!("unknown nemesis {s:?}: use {} or all", names.join(", "))
            })
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
    fn everyone(&self) -> Vec<NodeId> {
        self.coordinators
            .iter()
            .copied()
            .chain(self.stage_hosts.iter().map(|g| g[0]))
            .collect()
    }

    fn stages_of(&self, host: NodeId) -> Vec<NodeId> {
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

/// Pairs `(from, to)` whose packets are dropped.
type Grudge = BTreeSet<(NodeId, NodeId)>;

/// Cuts every pair across the two sides, both ways.
fn cut(a: &[NodeId], b: &[NodeId]) -> Grudge {
    let mut g = Grudge::new();
    for x in a {
        for y in b {
            g.insert((*x, *y));
            g.insert((*y, *x));
        }
    }
    g
}

fn names(nodes: &[NodeId]) -> String {
    let list: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    list.join(" ")
}

/// The stage hosts split at random between two sides.
fn split_stages(topo: &Topology, rng: &mut SmallRng) -> (Vec<NodeId>, Vec<NodeId>) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for g in &topo.stage_hosts {
        if rng.random_bool(0.5) {
            a.push(g[0]);
        } else {
            b.push(g[0]);
        }
    }
    (a, b)
}

/// Sides with the leader and `with` other coordinators on side one.
fn leader_sides(
    topo: &Topology,
    with: usize,
    rng: &mut SmallRng,
) -> Option<(Vec<NodeId>, Vec<NodeId>)> {
    let leader = topo.leader?;
    let mut others: Vec<NodeId> = topo
        .coordinators
        .iter()
        .copied()
        .filter(|c| *c != leader)
        .collect();
    others.shuffle(rng);
    let mut a = vec![leader];
    a.extend(others.drain(..with.min(others.len())));
    let (sa, sb) = split_stages(topo, rng);
    a.extend(sa);
    others.extend(sb);
    Some((a, others))
}

/// Every node sees the nodes within `k` places of it on a shuffled ring,
/// `k` chosen so that it sees a majority (itself included).
fn ring(nodes: &[NodeId], rng: &mut SmallRng) -> Grudge {
    let mut ring = nodes.to_vec();
    ring.shuffle(rng);
    let n = ring.len();
    let majority = n / 2 + 1;
    let k = (majority - 1).div_ceil(2);
    let mut g = Grudge::new();
    for i in 0..n {
        for j in 0..n {
            let d = i.abs_diff(j);
            if i != j && d.min(n - d) > k {
                g.insert((ring[i], ring[j]));
            }
        }
    }
    g
}

impl Nemesis {
    /// The grudge of a partition nemesis, and its description.
    fn grudge(self, topo: &Topology, rng: &mut SmallRng) -> Option<(Grudge, String)> {
        let coords = &topo.coordinators;
        let minority = (coords.len().saturating_sub(1)) / 2;
        let majority = coords.len() / 2 + 1;
        match self {
            Nemesis::PartitionHalves | Nemesis::PartitionOneWay => {
                let mut all = topo.everyone();
                all.shuffle(rng);
                let (a, b) = all.split_at(all.len() / 2);
                if self == Nemesis::PartitionHalves {
                    Some((cut(a, b), format!("[{}] | [{}]", names(a), names(b))))
                } else {
                    let g = a.iter().flat_map(|x| b.iter().map(|y| (*x, *y))).collect();
                    Some((g, format!("[{}] -/-> [{}]", names(a), names(b))))
                }
            }
            Nemesis::PartitionLeaderMinority | Nemesis::PartitionLeaderMajority => {
                let with = if self == Nemesis::PartitionLeaderMinority {
                    minority.saturating_sub(1)
                } else {
                    majority - 1
                };
                let (a, b) = leader_sides(topo, with, rng)?;
                Some((cut(&a, &b), format!("[{}] | [{}]", names(&a), names(&b))))
            }
            Nemesis::IsolateLeader => {
                let leader = topo.leader?;
                let rest: Vec<NodeId> = topo
                    .everyone()
                    .into_iter()
                    .filter(|n| *n != leader)
                    .collect();
                Some((cut(&[leader], &rest), format!("[{leader}] alone")))
            }
            Nemesis::MajoritiesRing => {
                Some((ring(&topo.everyone(), rng), "majorities ring".into()))
            }
            Nemesis::IsolateStageFromCoordinators => {
                let host = topo.stage_hosts.choose(rng)?[0];
                Some((
                    cut(&[host], coords),
                    format!("{host} cut from the coordinators"),
                ))
            }
            _ => None,
        }
    }

    /// Draws one fault of this nemesis on `topo`; `None` if none fits now
    /// (no leader known, nothing to update).
    pub fn draw(self, topo: &Topology, rng: &mut SmallRng) -> Option<Fault> {
        let fault = |detail: String, inject: Vec<Op>, heal: Vec<Op>| Fault {
            nemesis: self,
            detail,
            inject,
            heal,
        };
        let heal_network = Op::Network {
            rules: Rules::default(),
            detail: "heal".into(),
        };
        if let Some((grudge, detail)) = self.grudge(topo, rng) {
            let drops = grudge
                .iter()
                .filter_map(|(a, b)| Some((*topo.ips.get(a)?, *topo.ips.get(b)?)))
                .collect();
            let rules = Rules {
                drops,
                loss_percent: 0,
            };
            let inject = Op::Network {
                rules,
                detail: format!("{self} {detail}"),
            };
            return Some(fault(detail, vec![inject], vec![heal_network]));
        }
        match self {
            Nemesis::Loss => {
                let rules = Rules {
                    drops: BTreeSet::new(),
                    loss_percent: 20,
                };
                let inject = Op::Network {
                    rules,
                    detail: "20% loss".into(),
                };
                Some(fault(
                    "20% of packets".into(),
                    vec![inject],
                    vec![heal_network],
                ))
            }
            Nemesis::Delay => {
                let everyone = topo.everyone();
                let rule = FaultFile {
                    delay_ms: 20,
                    jitter_ms: 60,
                    duplicate_percent: 10,
                    reorder_percent: 10,
                    reorder_window_ms: 100,
                    drop_percent: 0,
                };
                Some(fault(
                    "20-80 ms delay, 10% duplicated, 10% reordered".into(),
                    vec![Op::Faults {
                        nodes: everyone.clone(),
                        rule: Some(rule),
                    }],
                    vec![Op::Faults {
                        nodes: everyone,
                        rule: None,
                    }],
                ))
            }
            Nemesis::Kill | Nemesis::Pause => {
                let victim = *topo.everyone().choose(rng)?;
                let coordinator = topo.coordinators.contains(&victim);
                let (inject, heal) = match (self, coordinator) {
                    (Nemesis::Pause, _) => (Op::Pause { id: victim }, Op::Resume { id: victim }),
                    (_, true) => (
                        Op::KillCoordinator { id: victim },
                        Op::RecoverCoordinator { id: victim },
                    ),
                    (_, false) => {
                        let stages = topo.stages_of(victim);
                        (
                            Op::Crash {
                                host: victim,
                                stages: stages.clone(),
                            },
                            Op::RecoverStages {
                                host: victim,
                                stages,
                            },
                        )
                    }
                };
                Some(fault(victim.to_string(), vec![inject], vec![heal]))
            }
            Nemesis::Membership => {
                // Remove one only where the rest still form a group of two.
                if topo.coordinators.len() < 3 {
                    return None;
                }
                let gone = *topo.coordinators.choose(rng)?;
                let new = topo.next_coordinator;
                Some(fault(
                    format!("{gone} out, {new} in"),
                    vec![Op::RemoveCoordinator { id: gone }],
                    vec![Op::AddCoordinator { id: new }],
                ))
            }
            Nemesis::RecipeUpdate => {
                let spec = topo.spec.as_ref()?;
                let (item, recipe, change) = draw::draw_recipe_update(spec, &topo.made, rng)?;
                let detail = format!("{item}: {change}");
                let op = Op::UpdateRecipe {
                    item,
                    recipe,
                    change,
                };
                Some(fault(detail, vec![op], Vec::new()))
            }
            _ => None,
        }
    }
}

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

    /// Whether [`NemesisSchedule::poll`] would act at `now` (so the caller
    /// knows when to look at the cluster).
    pub fn is_due(&self, now: Duration) -> bool {
        now >= self.next_at
    }

    /// The fault being held, to heal at the end.
    pub fn take_held(&mut self) -> Option<Fault> {
        self.holding.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(Nemesis::parse_list("all").unwrap().len(), 13);
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
