//! Many suppliers, few per consumer: `k` suppliers for each consumer, chosen
//! greedily by utilisation and then rebalanced.

use super::{per_mille, StageState};
use factoryos_wire::model::FlowEdge;
use factoryos_wire::{ItemType, NodeId};
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

/// A supplier's place in the utilisation order: load / capacity, then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Util {
    load: u64,
    cap: u64,
    idx: usize,
}

impl Ord for Util {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.load as u128 * other.cap as u128)
            .cmp(&(other.load as u128 * self.cap as u128))
            .then(self.idx.cmp(&other.idx))
    }
}

impl PartialOrd for Util {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Assigns `k` of many suppliers to each consumer of one type, balancing
/// supplier utilisation (load / capacity) while keeping previous edges. A
/// consumer's demand is split over its suppliers in proportion to their
/// capacity, so it raises the utilisation of each of them by the same amount.
pub(super) struct Balancer<'a> {
    item: &'a ItemType,
    suppliers: &'a [&'a StageState],
    consumers: &'a [(&'a StageState, u64)],
    k: usize,
    avoid: &'a BTreeSet<(NodeId, NodeId)>,
    /// Per supplier: load (demand units * 1000) and capacity (lots * yield).
    util: Vec<Util>,
    order: BTreeSet<Util>,
    /// Per consumer: chosen supplier indexes and the load each carries for it.
    chosen: Vec<Vec<(usize, u64)>>,
}

impl<'a> Balancer<'a> {
    pub(super) fn new(
        item: &'a ItemType,
        suppliers: &'a [&'a StageState],
        yield_units: u64,
        consumers: &'a [(&'a StageState, u64)],
        k: usize,
        avoid: &'a BTreeSet<(NodeId, NodeId)>,
    ) -> Self {
        let util: Vec<Util> = suppliers
            .iter()
            .enumerate()
            .map(|(idx, s)| Util {
                load: 0,
                cap: s.capacity.max(1) as u64 * yield_units.max(1),
                idx,
            })
            .collect();
        let order = util.iter().copied().collect();
        Balancer {
            item,
            suppliers,
            consumers,
            k,
            avoid,
            util,
            order,
            chosen: vec![Vec::new(); consumers.len()],
        }
    }

    /// The load consumer `c` puts on each supplier of `set`, in proportion to capacity.
    fn split(&self, c: usize, set: &[usize]) -> Vec<(usize, u64)> {
        let total: u64 = set.iter().map(|&s| self.util[s].cap).sum::<u64>().max(1);
        let demand = self.consumers[c].1 * 1000;
        set.iter()
            .map(|&s| (s, demand * self.util[s].cap / total))
            .collect()
    }

    fn set_load(&mut self, s: usize, load: u64) {
        self.order.remove(&self.util[s]);
        self.util[s].load = load;
        self.order.insert(self.util[s]);
    }

    /// Replaces consumer `c`'s suppliers by `set`, updating loads.
    fn assign(&mut self, c: usize, set: Vec<usize>) {
        for (s, load) in std::mem::take(&mut self.chosen[c]) {
            let l = self.util[s].load.saturating_sub(load);
            self.set_load(s, l);
        }
        let split = self.split(c, &set);
        for &(s, load) in &split {
            let l = self.util[s].load + load;
            self.set_load(s, l);
        }
        self.chosen[c] = split;
    }

    fn set_of(&self, c: usize) -> Vec<usize> {
        self.chosen[c].iter().map(|(s, _)| *s).collect()
    }

    fn avoided(&self, s: usize, c: usize) -> bool {
        self.avoid
            .contains(&(self.suppliers[s].id, self.consumers[c].0.id))
    }

    pub(super) fn run<'p>(
        mut self,
        previous: impl Fn(NodeId) -> &'p [NodeId],
        edges: &mut Vec<FlowEdge>,
    ) {
        let index: HashMap<NodeId, usize> = self
            .suppliers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        // Keep previous edges that are still valid and not reported broken.
        for c in 0..self.consumers.len() {
            let mut kept: Vec<usize> = previous(self.consumers[c].0.id)
                .iter()
                .filter_map(|id| index.get(id).copied())
                .filter(|&s| !self.avoided(s, c))
                .collect();
            kept.sort();
            kept.dedup();
            kept.truncate(self.k);
            self.assign(c, kept);
        }
        // Fill the remaining places, biggest consumers first, least-utilised
        // suppliers first (not counting the consumer's own load).
        let mut fill: Vec<usize> = (0..self.consumers.len()).collect();
        fill.sort_by_key(|&c| {
            (
                std::cmp::Reverse(self.consumers[c].1),
                self.consumers[c].0.id,
            )
        });
        for c in fill {
            let mut set = self.set_of(c);
            if set.len() >= self.k {
                continue;
            }
            self.assign(c, Vec::new());
            let mut candidates: Vec<usize> = self
                .order
                .iter()
                .map(|u| u.idx)
                .filter(|s| !set.contains(s))
                .collect();
            // Links reported broken go last.
            candidates.sort_by_key(|&s| self.avoided(s, c));
            set.extend(candidates.into_iter().take(self.k - set.len()));
            self.assign(c, set);
        }
        self.rebalance();
        for (c, chosen) in self.chosen.iter().enumerate() {
            let mut set: Vec<usize> = chosen.iter().map(|(s, _)| *s).collect();
            set.sort();
            let weights: Vec<u64> = set.iter().map(|&s| self.util[s].cap).collect();
            for (s, share) in set.into_iter().zip(per_mille(&weights)) {
                edges.push(FlowEdge {
                    item: self.item.clone(),
                    supplier: self.suppliers[s].id,
                    consumer: self.consumers[c].0.id,
                    share,
                });
            }
        }
    }

    /// Moves single edges away from the most utilised supplier, to the least
    /// utilised one that can take it and stay below, until the spread of
    /// utilisations is within one consumer's slot or no such move exists.
    fn rebalance(&mut self) {
        let min_cap = self.util.iter().map(|u| u.cap).min().unwrap_or(1);
        let max_slot = (0..self.consumers.len())
            .map(|c| self.consumers[c].1 * 1000 / self.k as u64)
            .max()
            .unwrap_or(0);
        let moves_left = self.consumers.len() * self.k * 4;
        for _ in 0..moves_left {
            let (lo, hi) = match (self.order.first(), self.order.last()) {
                (Some(lo), Some(hi)) => (*lo, *hi),
                _ => return,
            };
            // hi.load/hi.cap - lo.load/lo.cap <= max_slot/min_cap, in integers.
            let spread =
                (hi.load as u128 * lo.cap as u128).saturating_sub(lo.load as u128 * hi.cap as u128);
            if spread * min_cap as u128 <= max_slot as u128 * hi.cap as u128 * lo.cap as u128 {
                return;
            }
            let mut mv = None;
            'search: for to in self.order.iter().take_while(|u| u.idx != hi.idx) {
                for c in 0..self.consumers.len() {
                    let set = self.set_of(c);
                    if !set.contains(&hi.idx) || set.contains(&to.idx) || self.avoided(to.idx, c) {
                        continue;
                    }
                    let new_set: Vec<usize> = set
                        .iter()
                        .map(|&s| if s == hi.idx { to.idx } else { s })
                        .collect();
                    let gain = self
                        .split(c, &new_set)
                        .into_iter()
                        .find(|(s, _)| *s == to.idx)
                        .map(|(_, l)| l)
                        .unwrap_or(0);
                    if (Util {
                        load: to.load + gain,
                        ..*to
                    }) < hi
                    {
                        mv = Some((c, new_set));
                        break 'search;
                    }
                }
            }
            let Some((c, new_set)) = mv else { return };
            self.assign(c, new_set);
        }
    }
}
