//! Partitions as grudges: which hosts stop hearing which, drawn for each
//! partition nemesis on the cluster as it is.

use super::{Nemesis, Topology};
use factoryos_wire::NodeId;
use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use std::collections::BTreeSet;

/// Pairs `(from, to)` whose packets are dropped.
pub(crate) type Grudge = BTreeSet<(NodeId, NodeId)>;

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
    pub(crate) fn grudge(self, topo: &Topology, rng: &mut SmallRng) -> Option<(Grudge, String)> {
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
}
