//! One stage's part of a flow: its own edges, who watches it and whom it
//! watches, and its recipe. A stage trades and watches on its slice alone, so
//! what a coordinator sends it grows with its neighbourhood, not the chain.

use crate::ids::{FlowVersion, ItemType, NodeId};
use crate::model::{Flow, FlowEdge, Recipe, StageDescriptor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// What one stage needs of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowSlice {
    /// The flow's version (the fencing token), as in [`Flow::version`].
    pub version: FlowVersion,
    pub stage: NodeId,
    /// The edges where the stage is the supplier or the consumer, in the
    /// flow's order.
    pub edges: Vec<FlowEdge>,
    /// The neighbour that watches the stage for failure (see [`watchers`]).
    pub watcher: Option<NodeId>,
    /// The neighbours the stage watches, by id.
    pub watched: Vec<NodeId>,
    /// The stage's own type's recipe as of this flow (how a recipe update
    /// reaches it).
    pub recipes: BTreeMap<ItemType, Recipe>,
    /// Where each neighbour registered it can be reached (those the
    /// coordinator knows).
    pub addresses: BTreeMap<NodeId, SocketAddr>,
}

impl FlowSlice {
    /// A digest of everything but the version: equal digests mean the slice
    /// did not change between two versions. (Computed the same way by every
    /// copy of one build; a digest from another build only costs a full
    /// slice.)
    pub fn digest(&self) -> u64 {
        // Every field but the version: a field added later is covered too.
        let mut h = std::hash::DefaultHasher::new();
        self.at(FlowVersion(0)).hash(&mut h);
        h.finish()
    }

    /// The same slice at `version` (a newer flow that left it unchanged).
    pub fn at(&self, version: FlowVersion) -> FlowSlice {
        FlowSlice {
            version,
            ..self.clone()
        }
    }
}

/// A coordinator's answer to a stage watching its slice: the slice, or only
/// the new version when the stage's copy (named by its digest) still holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SliceUpdate {
    /// Boxed: a slice is large beside the other answers.
    Changed(Box<FlowSlice>),
    Unchanged {
        version: FlowVersion,
    },
}

impl SliceUpdate {
    pub fn version(&self) -> FlowVersion {
        match self {
            SliceUpdate::Changed(s) => s.version,
            SliceUpdate::Unchanged { version } => *version,
        }
    }

    /// The answer for a stage holding a slice of digest `have`.
    pub fn for_holder(slice: FlowSlice, have: Option<u64>) -> SliceUpdate {
        if have == Some(slice.digest()) {
            SliceUpdate::Unchanged {
                version: slice.version,
            }
        } else {
            SliceUpdate::Changed(Box::new(slice))
        }
    }

    /// The slice this answer gives a stage holding `held` (the copy whose
    /// digest it sent): the new slice, or its copy at the new version;
    /// `None` for an `Unchanged` answer to a stage holding nothing (it
    /// sent no digest, so that answer cannot be for it: ask again).
    pub fn resolve(self, held: Option<&FlowSlice>) -> Option<FlowSlice> {
        match (self, held) {
            (SliceUpdate::Changed(slice), _) => Some(*slice),
            (SliceUpdate::Unchanged { version }, Some(held)) => Some(held.at(version)),
            (SliceUpdate::Unchanged { .. }, None) => None,
        }
    }
}

/// Who watches each stage of `flow` for failure: the neighbour at the other
/// end of its busiest link, whichever way the link points (lowest id on a
/// tie). A link's traffic is its lots per cycle both ways (the supplier's
/// lots one way, the consumer's requests for them the other): the
/// consumer's need of the item per cycle times its share, over the item's
/// lot size. `desc_of` gives a stage's type and capacity where it is known
/// (a need of 1 unit a cycle where not). One watcher per stage keeps
/// explicit heartbeats proportional to the stages, not to the flow's edges,
/// and the busiest link is the one its own trade keeps awake longest.
pub fn watchers<'a>(
    flow: &Flow,
    desc_of: impl Fn(NodeId) -> Option<&'a StageDescriptor>,
) -> BTreeMap<NodeId, NodeId> {
    // Per stage: (traffic, Reverse(neighbour)), the largest kept.
    let mut best: BTreeMap<NodeId, (u64, std::cmp::Reverse<NodeId>)> = BTreeMap::new();
    for e in &flow.edges {
        let traffic = link_traffic(flow, e, &desc_of);
        for (x, other) in [(e.supplier, e.consumer), (e.consumer, e.supplier)] {
            let candidate = (traffic, std::cmp::Reverse(other));
            best.entry(x)
                .and_modify(|b| *b = (*b).max(candidate))
                .or_insert(candidate);
        }
    }
    best.into_iter().map(|(x, (_, w))| (x, w.0)).collect()
}

/// Lots per cycle on `e`, in millionths: the consumer's units of the item
/// per cycle (its recipe's quantity times its capacity) times its share,
/// over the item's yield.
fn link_traffic<'a>(
    flow: &Flow,
    e: &FlowEdge,
    desc_of: &impl Fn(NodeId) -> Option<&'a StageDescriptor>,
) -> u64 {
    let consumer = desc_of(e.consumer);
    let need = consumer
        .and_then(|d| flow.recipes.get(&d.item))
        .and_then(|r| r.inputs.get(&e.item))
        .copied()
        .unwrap_or(1) as u64;
    let capacity = consumer.map_or(1, |d| d.capacity.max(1)) as u64;
    let lot = flow
        .recipes
        .get(&e.item)
        .map_or(1, |r| r.yield_units.max(1)) as u64;
    need * capacity * e.share as u64 * 1000 / lot
}

/// A flow indexed by stage, so that cutting every stage's slice costs one
/// pass over the edges rather than one per stage.
#[derive(Debug, Default)]
pub struct SliceIndex {
    /// Per stage, the positions of its edges in `flow.edges`.
    edges: HashMap<NodeId, Vec<usize>>,
    watcher: BTreeMap<NodeId, NodeId>,
    watched: HashMap<NodeId, Vec<NodeId>>,
}

impl SliceIndex {
    /// `desc_of` gives a stage's registration where known (see [`watchers`]).
    pub fn new<'a>(flow: &Flow, desc_of: impl Fn(NodeId) -> Option<&'a StageDescriptor>) -> Self {
        let mut edges: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (i, e) in flow.edges.iter().enumerate() {
            edges.entry(e.supplier).or_default().push(i);
            if e.consumer != e.supplier {
                edges.entry(e.consumer).or_default().push(i);
            }
        }
        let watcher = watchers(flow, desc_of);
        let mut watched: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        // By watched id (the map's order), so each list is sorted.
        for (x, w) in &watcher {
            watched.entry(*w).or_default().push(*x);
        }
        SliceIndex {
            edges,
            watcher,
            watched,
        }
    }

    /// `stage`'s slice of `flow` (the flow this index was built from); `item`
    /// is the type it makes, whose recipe the slice carries, and `addr_of`
    /// says where a stage registered.
    pub fn slice(
        &self,
        flow: &Flow,
        stage: NodeId,
        item: Option<&ItemType>,
        addr_of: impl Fn(NodeId) -> Option<SocketAddr>,
    ) -> FlowSlice {
        let edges: Vec<FlowEdge> = self
            .edges
            .get(&stage)
            .map(|ix| ix.iter().map(|&i| flow.edges[i].clone()).collect())
            .unwrap_or_default();
        let addresses = edges
            .iter()
            .flat_map(|e| [e.supplier, e.consumer])
            .filter(|n| *n != stage)
            .filter_map(|n| Some((n, addr_of(n)?)))
            .collect();
        FlowSlice {
            version: flow.version,
            stage,
            edges,
            addresses,
            watcher: self.watcher.get(&stage).copied(),
            watched: self.watched.get(&stage).cloned().unwrap_or_default(),
            recipes: item
                .and_then(|t| flow.recipes.get_key_value(t))
                .map(|(t, r)| (t.clone(), r.clone()))
                .into_iter()
                .collect(),
        }
    }
}

impl Flow {
    /// `stage`'s slice, without addresses (indexes the whole flow: for many
    /// slices of one flow, build one [`SliceIndex`]).
    pub fn slice(&self, stage: NodeId, item: Option<&ItemType>) -> FlowSlice {
        SliceIndex::new(self, |_| None).slice(self, stage, item, |_| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(item: &str, s: u64, c: u64, share: u32) -> FlowEdge {
        FlowEdge {
            item: item.into(),
            supplier: NodeId(s),
            consumer: NodeId(c),
            share,
        }
    }

    /// wood 11, 12 -> frame 13, 14 -> window 15.
    fn flow() -> Flow {
        let recipe = |v| Recipe {
            inputs: BTreeMap::new(),
            yield_units: 1,
            version: v,
        };
        Flow {
            version: FlowVersion(9),
            edges: vec![
                edge("frame", 13, 15, 600),
                edge("frame", 14, 15, 400),
                edge("wood", 11, 13, 500),
                edge("wood", 11, 14, 700),
                edge("wood", 12, 13, 500),
                edge("wood", 12, 14, 300),
            ],
            recipes: [("wood".into(), recipe(1)), ("frame".into(), recipe(2))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn a_slice_holds_the_neighbourhood_only() {
        let f = flow();
        let s = f.slice(NodeId(13), Some(&"frame".into()));
        assert_eq!(s.version, FlowVersion(9));
        assert_eq!(
            s.edges,
            vec![
                edge("frame", 13, 15, 600),
                edge("wood", 11, 13, 500),
                edge("wood", 12, 13, 500)
            ]
        );
        assert!(s
            .edges
            .iter()
            .all(|e| e.supplier == NodeId(13) || e.consumer == NodeId(13)));
        assert_eq!(
            s.recipes.keys().map(|t| t.as_str()).collect::<Vec<_>>(),
            vec!["frame"]
        );
        // Without registrations every link's traffic is its share. 13's
        // busiest link is to 15 (600), so 15 watches it; 13 watches 12
        // (which feeds 13 more than 14) and 15 (whose busiest link is
        // 13's). 11 feeds 14 most (700), so 11 and 14 watch each other.
        assert_eq!(s.watcher, Some(NodeId(15)));
        assert_eq!(s.watched, vec![NodeId(12), NodeId(15)]);
        let s14 = f.slice(NodeId(14), Some(&"frame".into()));
        assert_eq!(s14.watched, vec![NodeId(11)]);
        assert_eq!(s14.watcher, Some(NodeId(11)));
        let s15 = f.slice(NodeId(15), None);
        assert_eq!(s15.watched, vec![NodeId(13)]);
        assert_eq!(s15.watcher, Some(NodeId(13)));
        // Addresses: the neighbours', as registered.
        let addr = |n: NodeId| Some(SocketAddr::from(([10, 0, 0, n.0 as u8], 7000)));
        let with = SliceIndex::new(&f, |_| None).slice(&f, NodeId(13), None, addr);
        assert_eq!(
            with.addresses.keys().copied().collect::<Vec<_>>(),
            vec![NodeId(11), NodeId(12), NodeId(15)]
        );
        assert_ne!(with.digest(), f.slice(NodeId(13), None).digest());
        // A stage the flow does not name gets an empty slice.
        let none = f.slice(NodeId(99), None);
        assert!(none.edges.is_empty() && none.watcher.is_none() && none.watched.is_empty());
    }

    #[test]
    fn the_watcher_is_at_the_end_of_the_busiest_link_by_lots_a_cycle() {
        // Frame 13 needs 3 wood a cycle (lots of 1) from two suppliers and
        // makes lots of 5 frames, of which window 15 needs 10 a cycle: its
        // wood links carry 1.5 lots a cycle each, its frame link 2. So the
        // window watches 13. Without registrations (a need of 1 unit a
        // cycle) the wood links carry 0.5 and the frame link 0.2, and a
        // wood stage does.
        let recipe = |inputs: &[(&str, u32)], yield_units| Recipe {
            inputs: inputs.iter().map(|(i, n)| ((*i).into(), *n)).collect(),
            yield_units,
            version: 1,
        };
        let f = Flow {
            version: FlowVersion(3),
            edges: vec![
                edge("frame", 13, 15, 1000),
                edge("wood", 11, 13, 500),
                edge("wood", 12, 13, 500),
            ],
            recipes: [
                ("wood".into(), recipe(&[], 1)),
                ("frame".into(), recipe(&[("wood", 3)], 5)),
                ("window".into(), recipe(&[("frame", 10)], 1)),
            ]
            .into_iter()
            .collect(),
        };
        let desc = |id: u64, item: &str| StageDescriptor {
            id: NodeId(id),
            item: item.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
            recipe_version: 1,
            capacity: 1,
        };
        let descs: BTreeMap<NodeId, StageDescriptor> = [
            desc(11, "wood"),
            desc(12, "wood"),
            desc(13, "frame"),
            desc(15, "window"),
        ]
        .into_iter()
        .map(|d| (d.id, d))
        .collect();
        let by_lots = watchers(&f, |n| descs.get(&n));
        assert_eq!(
            by_lots[&NodeId(13)],
            NodeId(15),
            "2 lots a cycle against 1.5"
        );
        assert_eq!(by_lots[&NodeId(11)], NodeId(13));
        let unregistered = watchers(&f, |_| None);
        assert_eq!(
            unregistered[&NodeId(13)],
            NodeId(11),
            "0.5 against 0.2, lowest id"
        );
    }

    #[test]
    fn a_holder_gets_the_version_alone_while_its_copy_holds() {
        let f = flow();
        let s = f.slice(NodeId(13), None);
        let newer = s.at(FlowVersion(12));
        // Same digest: only the version travels, and the copy moves to it.
        let update = SliceUpdate::for_holder(newer.clone(), Some(s.digest()));
        assert_eq!(
            update,
            SliceUpdate::Unchanged {
                version: FlowVersion(12)
            }
        );
        assert_eq!(update.clone().resolve(Some(&s)), Some(newer.clone()));
        // Without a copy, a version alone gives nothing (ask again).
        assert_eq!(update.resolve(None), None);
        // Another digest: the whole slice.
        let update = SliceUpdate::for_holder(newer.clone(), Some(s.digest() ^ 1));
        assert_eq!(update.resolve(Some(&s)), Some(newer));
    }

    #[test]
    fn the_digest_changes_with_the_slice_not_with_the_version() {
        let f = flow();
        let s = f.slice(NodeId(13), Some(&"frame".into()));
        assert_eq!(s.digest(), s.at(FlowVersion(10)).digest());
        // A change elsewhere in the chain leaves 15's slice alone...
        let mut g = f.clone();
        g.version = FlowVersion(11);
        g.edges[3].share = 650;
        g.edges[5].share = 350;
        let s15 = f.slice(NodeId(15), None);
        assert_eq!(s15.digest(), g.slice(NodeId(15), None).digest());
        // ... and changes 11's.
        assert_ne!(
            f.slice(NodeId(11), None).digest(),
            g.slice(NodeId(11), None).digest()
        );
        // So does a new recipe for the stage's own type.
        g.recipes.get_mut(&ItemType::from("frame")).unwrap().version = 3;
        assert_ne!(
            s.digest(),
            g.slice(NodeId(13), Some(&"frame".into())).digest()
        );
    }
}
