//! Compact flow changes: what the leader commits instead of a whole flow
//! when few edges moved (the edges that left, and those that joined or
//! changed share), and how the state machine applies one.

use factoryos_wire::model::FlowEdge;
use factoryos_wire::{FlowVersion, ItemType, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An edge's identity: (item, supplier, consumer).
pub type EdgeKey = (ItemType, NodeId, NodeId);

fn key(e: &FlowEdge) -> EdgeKey {
    (e.item.clone(), e.supplier, e.consumer)
}

/// The difference between two flows' edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowChange {
    /// The flow the change applies to (refused on any other).
    pub on: FlowVersion,
    /// Edges that leave.
    pub removed: Vec<EdgeKey>,
    /// Edges that join, or stay with another share.
    pub upserted: Vec<FlowEdge>,
}

impl FlowChange {
    /// What turns `old` (the edges of flow `on`) into `new`.
    pub fn between(on: FlowVersion, old: &[FlowEdge], new: &[FlowEdge]) -> FlowChange {
        let before: BTreeMap<EdgeKey, u32> = old.iter().map(|e| (key(e), e.share)).collect();
        let after: BTreeMap<EdgeKey, &FlowEdge> = new.iter().map(|e| (key(e), e)).collect();
        FlowChange {
            on,
            removed: before
                .keys()
                .filter(|k| !after.contains_key(*k))
                .cloned()
                .collect(),
            upserted: after
                .iter()
                .filter(|(k, e)| before.get(*k) != Some(&e.share))
                .map(|(_, e)| (*e).clone())
                .collect(),
        }
    }

    /// `old` with the change applied, in edge order (item, supplier,
    /// consumer), which is the order the solver gives.
    pub fn apply(&self, old: &[FlowEdge]) -> Vec<FlowEdge> {
        let mut edges: BTreeMap<EdgeKey, FlowEdge> =
            old.iter().map(|e| (key(e), e.clone())).collect();
        for k in &self.removed {
            edges.remove(k);
        }
        for e in &self.upserted {
            edges.insert(key(e), e.clone());
        }
        edges.into_values().collect()
    }

    /// How many edges the change names.
    pub fn len(&self) -> usize {
        self.removed.len() + self.upserted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn edges(raw: Vec<(u8, u8, u8, u32)>) -> Vec<FlowEdge> {
        let mut by_key = BTreeMap::new();
        for (t, s, c, share) in raw {
            let e = FlowEdge {
                item: ["t0", "t1", "t2"][t as usize % 3].into(),
                supplier: NodeId(s as u64 % 6),
                consumer: NodeId(c as u64 % 6 + 10),
                share,
            };
            by_key.insert(key(&e), e);
        }
        by_key.into_values().collect()
    }

    proptest! {
        #[test]
        fn applying_the_change_between_two_flows_gives_the_second(
            a in proptest::collection::vec(any::<(u8, u8, u8, u32)>(), 0..40),
            b in proptest::collection::vec(any::<(u8, u8, u8, u32)>(), 0..40),
        ) {
            let (old, new) = (edges(a), edges(b));
            let change = FlowChange::between(FlowVersion(7), &old, &new);
            prop_assert_eq!(change.apply(&old), new.clone());
            prop_assert!(change.len() <= old.len() + new.len());
            prop_assert!(FlowChange::between(FlowVersion(7), &new, &new).is_empty());
        }
    }

    #[test]
    fn a_moved_share_is_one_upsert_and_nothing_else() {
        let old = edges(vec![(0, 1, 1, 500), (0, 2, 1, 500), (1, 3, 2, 1000)]);
        let mut new = old.clone();
        new[0].share = 400;
        new[1].share = 600;
        let change = FlowChange::between(FlowVersion(3), &old, &new);
        assert!(change.removed.is_empty());
        assert_eq!(change.upserted, new[..2].to_vec());
    }
}
