//! The data that travels between processes: the supply-chain spec, stage
//! descriptors, flows and lots. Validation of a spec lives in `coord`; these
//! are plain data types with the few helpers every crate needs.

use crate::ids::{FlowVersion, ItemType, LotId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// How one item type is made: per manufacture cycle a stage consumes `units`
/// of each input type and produces one lot of `yield_units` of its output.
/// A recipe with no inputs is a raw material.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Recipe {
    /// Input type -> units consumed per cycle.
    pub inputs: BTreeMap<ItemType, u32>,
    /// Units in each lot produced.
    pub yield_units: u32,
    /// Bumped by every `UpdateRecipe`; stages report the version they run.
    pub version: u32,
}

impl Recipe {
    pub fn is_raw(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// One item type of the chain and its recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemTypeSpec {
    pub name: ItemType,
    pub recipe: Recipe,
}

/// The supply chain: a DAG of item types, and the final product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub types: Vec<ItemTypeSpec>,
    pub final_type: ItemType,
}

impl Spec {
    pub fn recipe(&self, item: &ItemType) -> Option<&Recipe> {
        self.types
            .iter()
            .find(|t| &t.name == item)
            .map(|t| &t.recipe)
    }
}

/// A stage as the configuration store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageDescriptor {
    pub id: NodeId,
    /// The item type this stage makes.
    pub item: ItemType,
    /// Where its QUIC endpoint listens.
    pub addr: SocketAddr,
    /// The recipe version the stage runs.
    pub recipe_version: u32,
    /// Relative capacity (lots per cycle it can make); used to balance demand.
    pub capacity: u32,
}

/// One active edge of a flow: `supplier` feeds `consumer` with `item`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FlowEdge {
    pub item: ItemType,
    pub supplier: NodeId,
    pub consumer: NodeId,
    /// The consumer's share of demand for `item` to ask of this supplier, in
    /// per-mille (the shares of one consumer's suppliers for one item sum to 1000).
    pub share: u32,
}

/// Which supplier feeds which consumer, as committed by the leader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The Raft log index that committed this flow.
    pub version: FlowVersion,
    pub edges: Vec<FlowEdge>,
    /// Every type's recipe when the flow was committed. The edges were
    /// computed for these recipes, so a stage adopts its type's recipe with
    /// the flow: a recipe update reaches stages as a new flow.
    pub recipes: BTreeMap<ItemType, Recipe>,
}

impl Flow {
    /// The suppliers of `item` for `consumer`, with their shares.
    pub fn suppliers_of<'a>(
        &'a self,
        consumer: NodeId,
        item: &'a ItemType,
    ) -> impl Iterator<Item = &'a FlowEdge> + 'a {
        self.edges
            .iter()
            .filter(move |e| e.consumer == consumer && &e.item == item)
    }

    /// The consumers `supplier` serves.
    pub fn consumers_of(&self, supplier: NodeId) -> impl Iterator<Item = &FlowEdge> + '_ {
        self.edges.iter().filter(move |e| e.supplier == supplier)
    }

    /// Whether the flow names `consumer` as a consumer of `supplier`.
    pub fn serves(&self, supplier: NodeId, consumer: NodeId) -> bool {
        self.edges
            .iter()
            .any(|e| e.supplier == supplier && e.consumer == consumer)
    }
}

/// A lot: a batch of `units` of `item`, with the input lots it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub id: LotId,
    pub item: ItemType,
    pub units: u32,
    /// Input lots consumed to make this one, and how many units of each.
    pub genealogy: Vec<(LotId, u32)>,
    /// When it was made, in ms since the Unix epoch by the producer's clock
    /// (0 when unknown). Only for analysis: no protocol rule reads it.
    pub made_ms: u64,
}

/// Liveness of a registered stage as the configuration store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Liveness {
    Alive,
    Suspect,
    Dead,
}

/// A summary of the coordination cluster, as `factoryos status` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub members: Vec<NodeId>,
    /// Where each member listens: clients follow membership changes by it.
    pub member_addrs: Vec<(NodeId, SocketAddr)>,
    pub flow_version: FlowVersion,
    pub stages: Vec<(NodeId, Liveness)>,
}

/// A phase of a write's commit, as a coordinator times it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CommitPhase {
    /// The whole write on the leader: proposed -> committed and applied.
    Proposal,
    /// One log append, fsync included.
    LogFlush,
    /// One append-entries round trip to a follower (its fsync included).
    Replication,
    /// Applying one committed batch to the state machine.
    Apply,
}

impl CommitPhase {
    pub const ALL: [CommitPhase; 4] = [
        CommitPhase::Proposal,
        CommitPhase::LogFlush,
        CommitPhase::Replication,
        CommitPhase::Apply,
    ];

    /// What the phase covers, for people.
    pub fn describe(self) -> &'static str {
        match self {
            CommitPhase::Proposal => "leader: proposed -> committed and applied",
            CommitPhase::LogFlush => "log append + fsync",
            CommitPhase::Replication => "append-entries round trip (follower fsync included)",
            CommitPhase::Apply => "apply to the state machine",
        }
    }
}

/// Percentiles of one commit phase over a coordinator's recent samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub phase: CommitPhase,
    pub samples: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(item: &str, s: u64, c: u64) -> FlowEdge {
        FlowEdge {
            item: item.into(),
            supplier: NodeId(s),
            consumer: NodeId(c),
            share: 500,
        }
    }

    #[test]
    fn flow_queries_select_the_right_edges() {
        let flow = Flow {
            version: FlowVersion(4),
            edges: vec![edge("wood", 1, 3), edge("wood", 2, 3), edge("frame", 3, 5)],
            recipes: BTreeMap::new(),
        };
        let wood = ItemType::from("wood");
        let sup: Vec<_> = flow
            .suppliers_of(NodeId(3), &wood)
            .map(|e| e.supplier)
            .collect();
        assert_eq!(sup, vec![NodeId(1), NodeId(2)]);
        assert_eq!(flow.consumers_of(NodeId(3)).count(), 1);
        assert!(flow.serves(NodeId(2), NodeId(3)));
        assert!(!flow.serves(NodeId(3), NodeId(2)));
    }
}
