//! The run's view of its cluster: which stages exist, on which host
//! processes, of which type, and which hosts, stages and coordinators are
//! down.

use factoryos_coord::spec::ChainSpec;
use factoryos_wire::{ItemType, NodeId};
use std::collections::{BTreeMap, BTreeSet};

/// Stages per host process for large chains.
const HOST_GROUP: usize = 50;
/// Chains of more stages than this are large: hosted [`HOST_GROUP`]
/// stages to a process, and run with the rig's settings for large chains
/// (see `rig`).
pub const LARGE_CHAIN: usize = 100;

#[derive(Debug, Clone)]
pub struct Live {
    pub ids: Vec<NodeId>,
    /// Stage host processes; each is known by its first stage's id.
    groups: Vec<Vec<NodeId>>,
    host_of: BTreeMap<NodeId, NodeId>,
    item_of: BTreeMap<NodeId, ItemType>,
    pub dead_hosts: BTreeSet<NodeId>,
    /// Stages killed alone inside a host process that lives on.
    pub dead_alone: BTreeSet<NodeId>,
    pub dead_coords: BTreeSet<NodeId>,
    /// Ids given out that no stage has (an add that failed half way): never reused.
    spent: BTreeSet<NodeId>,
}

impl Live {
    /// Every stage of `chain` up: one process each, or for large chains
    /// hosted about [`HOST_GROUP`] to a process (see [`Live::hosted`]).
    pub fn new(chain: &ChainSpec) -> Self {
        Live::hosted(chain, None)
    }

    /// Every stage of `chain` up in `hosts` host processes (at least one,
    /// at most one per stage), the stages dealt to them in turn; `None`:
    /// one per stage, or [`HOST_GROUP`] to a host above [`LARGE_CHAIN`].
    pub fn hosted(chain: &ChainSpec, hosts: Option<usize>) -> Self {
        let n = chain.stages.len();
        let hosts = hosts.or_else(|| (n > LARGE_CHAIN).then(|| n.div_ceil(HOST_GROUP)));
        Live::dealt(chain, hosts)
    }

    /// `hosts` processes, or one per stage.
    fn dealt(chain: &ChainSpec, hosts: Option<usize>) -> Self {
        let ids: Vec<NodeId> = chain.stages.iter().map(|s| s.id).collect();
        let groups: Vec<Vec<NodeId>> = match hosts {
            // Dealt round robin, so a host holds a mix of types (as a real
            // deployment spreads each type over machines): consecutive ids
            // are mostly of one type, and a host of one type could never
            // crash without an outage.
            Some(hosts) => {
                let hosts = hosts.clamp(1, ids.len().max(1));
                let mut groups = vec![Vec::new(); hosts];
                for (i, id) in ids.iter().enumerate() {
                    groups[i % hosts].push(*id);
                }
                groups.retain(|g| !g.is_empty());
                groups
            }
            None => ids.iter().map(|i| vec![*i]).collect(),
        };
        Live {
            host_of: groups
                .iter()
                .flat_map(|g| g.iter().map(move |s| (*s, g[0])))
                .collect(),
            item_of: chain
                .stages
                .iter()
                .map(|s| (s.id, s.item.clone()))
                .collect(),
            ids,
            groups,
            dead_hosts: BTreeSet::new(),
            dead_alone: BTreeSet::new(),
            dead_coords: BTreeSet::new(),
            spent: BTreeSet::new(),
        }
    }

    /// The host processes, each as its stages (the first names it).
    pub fn groups(&self) -> &[Vec<NodeId>] {
        &self.groups
    }

    /// The host process `stage` runs in (known by its first stage's id).
    pub fn host_of(&self, stage: NodeId) -> Option<NodeId> {
        self.host_of.get(&stage).copied()
    }

    pub fn item_of(&self, stage: NodeId) -> &ItemType {
        &self.item_of[&stage]
    }

    /// The stages of host `host`.
    pub fn group(&self, host: NodeId) -> &[NodeId] {
        self.groups
            .iter()
            .find(|g| g[0] == host)
            .map_or(&[], |g| g.as_slice())
    }

    /// The item types some stage makes.
    pub fn made(&self) -> BTreeSet<ItemType> {
        self.item_of.values().cloned().collect()
    }

    /// A new stage in a process of its own.
    pub fn add(&mut self, id: NodeId, item: ItemType) {
        self.ids.push(id);
        self.groups.push(vec![id]);
        self.host_of.insert(id, id);
        self.item_of.insert(id, item);
    }

    /// The next id never given out (ids are never reused).
    pub fn next_id(&self) -> NodeId {
        let top = self.ids.iter().chain(&self.spent).map(|i| i.0).max();
        NodeId(top.unwrap_or(10) + 1)
    }

    /// `id` was given to a stage that did not join: it is not given again.
    pub fn spend(&mut self, id: NodeId) {
        self.spent.insert(id);
    }

    /// Whether `stage` is down: its host process, or it alone inside it.
    pub fn is_down(&self, stage: NodeId) -> bool {
        self.dead_alone.contains(&stage)
            || self
                .host_of
                .get(&stage)
                .is_some_and(|h| self.dead_hosts.contains(h))
    }

    /// Running stages per type.
    fn up_per_type(&self) -> BTreeMap<&ItemType, usize> {
        let mut up: BTreeMap<&ItemType, usize> = BTreeMap::new();
        for s in &self.ids {
            if !self.is_down(*s) {
                *up.entry(&self.item_of[s]).or_default() += 1;
            }
        }
        up
    }

    /// Stages a crash of one stage may take: running ones, and unless
    /// `allow_outages`, only those that leave a running stage of their
    /// type behind.
    pub fn stage_crash_candidates(&self, allow_outages: bool) -> Vec<NodeId> {
        let up = self.up_per_type();
        self.ids
            .iter()
            .filter(|s| !self.is_down(**s))
            .filter(|s| allow_outages || up.get(&self.item_of[*s]).copied().unwrap_or(0) > 1)
            .copied()
            .collect()
    }

    /// A host process started again runs all its stages.
    pub fn host_back(&mut self, host: NodeId) {
        self.dead_hosts.remove(&host);
        let group: Vec<NodeId> = self.group(host).to_vec();
        for s in group {
            self.dead_alone.remove(&s);
        }
    }

    /// Hosts a crash may take: live ones, and unless `allow_outages`, only
    /// those whose every stage leaves a live stage of its type behind (one
    /// pass over the stages, so it stays cheap at 100,000 of them).
    pub fn crash_candidates(&self, allow_outages: bool) -> Vec<NodeId> {
        let live = self.up_per_type();
        self.groups
            .iter()
            .filter(|g| !self.dead_hosts.contains(&g[0]))
            .filter(|g| {
                let mut lost: BTreeMap<&ItemType, usize> = BTreeMap::new();
                for s in g.iter().filter(|s| !self.is_down(**s)) {
                    *lost.entry(&self.item_of[s]).or_default() += 1;
                }
                allow_outages
                    || lost
                        .iter()
                        .all(|(t, n)| live.get(t).copied().unwrap_or(0) > *n)
            })
            .map(|g| g[0])
            .collect()
    }

    /// Host processes running now.
    pub fn running_hosts(&self) -> Vec<NodeId> {
        self.groups
            .iter()
            .map(|g| g[0])
            .filter(|h| !self.dead_hosts.contains(h))
            .collect()
    }

    pub fn dead_stages(&self) -> usize {
        self.ids.iter().filter(|s| self.is_down(**s)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use factoryos_coord::generate::{generate, ChainShape};

    #[test]
    fn large_chains_are_hosted_in_mixed_groups_that_can_crash() {
        let mut shape = ChainShape::new(20, 50);
        shape.replicate_ends = true;
        let chain = generate(&shape);
        let live = Live::new(&chain);
        assert_eq!(live.groups().len(), 20);
        assert!(live.groups().iter().all(|g| g.len() == 50));
        for g in live.groups() {
            let types: BTreeSet<&ItemType> = g.iter().map(|s| live.item_of(*s)).collect();
            assert!(types.len() > 1, "host {} holds one type", g[0]);
        }
        assert_eq!(live.crash_candidates(false).len(), 20);
        // A small chain: one process per stage.
        let small = generate(&ChainShape::new(5, 2));
        assert_eq!(Live::new(&small).groups().len(), small.stages.len());
    }

    #[test]
    fn a_chosen_number_of_hosts_holds_every_stage_once() {
        let chain = generate(&ChainShape::new(20, 5));
        let live = Live::hosted(&chain, Some(4));
        assert_eq!(live.groups().len(), 4);
        let mut all: Vec<NodeId> = live.groups().iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, live.ids);
        let sizes: Vec<usize> = live.groups().iter().map(Vec::len).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        for s in &live.ids {
            assert!(live.group(live.host_of(*s).unwrap()).contains(s));
        }
        // More hosts than stages: one each; none: one process per stage too.
        let small = generate(&ChainShape::new(5, 2));
        let n = small.stages.len();
        assert_eq!(Live::hosted(&small, Some(1000)).groups().len(), n);
        assert_eq!(Live::hosted(&small, None).groups().len(), n);
        let large = generate(&ChainShape::new(40, 5));
        assert_eq!(Live::hosted(&large, None).groups().len(), 4);
        assert_eq!(Live::hosted(&small, Some(0)).groups().len(), 1);
    }
}
