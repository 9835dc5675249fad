//! One stage's part of a flow: its own edges, who watches it and whom it
//! watches, and its recipe. A stage trades and watches on its slice alone, so
//! what a coordinator sends it grows with its neighbourhood, not the chain.

use crate::ids::{FlowVersion, ItemType, NodeId};
use crate::model::{Flow, FlowEdge, Recipe};
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

/// Who watches each stage of `flow` for failure: the consumer it feeds the
/// largest share of its demand (the busiest link, so the one trade keeps
/// awake; lowest id on a tie), or, for a stage without consumers, its
/// lowest-id supplier. One watcher per stage keeps explicit heartbeats
/// proportional to the stages, not to the flow's edges.
pub fn watchers(flow: &Flow) -> BTreeMap<NodeId, NodeId> {
    let mut by_consumer: BTreeMap<NodeId, (u32, std::cmp::Reverse<NodeId>)> = BTreeMap::new();
    let mut by_supplier: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    for e in &flow.edges {
        let best = (e.share, std::cmp::Reverse(e.consumer));
        by_consumer
            .entry(e.supplier)
            .and_modify(|b| *b = (*b).max(best))
            .or_insert(best);
        by_supplier
            .entry(e.consumer)
            .and_modify(|s| *s = (*s).min(e.supplier))
            .or_insert(e.supplier);
    }
    let mut out: BTreeMap<NodeId, NodeId> = by_supplier;
    out.extend(by_consumer.into_iter().map(|(s, (_, c))| (s, c.0)));
    out
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
    pub fn new(flow: &Flow) -> Self {
        let mut edges: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (i, e) in flow.edges.iter().enumerate() {
            edges.entry(e.supplier).or_default().push(i);
            if e.consumer != e.supplier {
                edges.entry(e.consumer).or_default().push(i);
            }
        }
        let watcher = watchers(flow);
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
        SliceIndex::new(self).slice(self, stage, item, |_| None)
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
        // 15 is 13's only consumer, so it watches 13; 13 watches 12 (which
        // feeds 13 more than 14) and 15 (no consumers: its lowest-id
        // supplier watches it). 11 feeds 14 more, so 14 watches 11.
        assert_eq!(s.watcher, Some(NodeId(15)));
        assert_eq!(s.watched, vec![NodeId(12), NodeId(15)]);
        let s14 = f.slice(NodeId(14), Some(&"frame".into()));
        assert_eq!(s14.watched, vec![NodeId(11)]);
        let s15 = f.slice(NodeId(15), None);
        assert_eq!(s15.watched, vec![NodeId(13), NodeId(14)]);
        assert_eq!(s15.watcher, Some(NodeId(13)));
        // Addresses: the neighbours', as registered.
        let addr = |n: NodeId| Some(SocketAddr::from(([10, 0, 0, n.0 as u8], 7000)));
        let with = SliceIndex::new(&f).slice(&f, NodeId(13), None, addr);
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
