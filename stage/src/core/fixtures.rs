//! The window chain (wood, frame, window; two stages per type) as test
//! fixtures for the core's and the WAL's tests.

use super::StageConfig;
use factoryos_wire::model::{Flow, FlowEdge, Recipe};
use factoryos_wire::{FlowVersion, ItemType, NodeId};
use std::collections::BTreeMap;

pub(crate) fn recipe(inputs: &[(&str, u32)], yield_units: u32) -> Recipe {
    Recipe {
        inputs: inputs
            .iter()
            .map(|(i, u)| (ItemType::from(*i), *u))
            .collect(),
        yield_units,
        version: 1,
    }
}

pub(crate) fn wood(id: u64) -> StageConfig {
    StageConfig::new(NodeId(id), "wood".into(), recipe(&[], 3), false)
}

pub(crate) fn frame(id: u64) -> StageConfig {
    StageConfig::new(NodeId(id), "frame".into(), recipe(&[("wood", 3)], 5), false)
}

pub(crate) fn window(id: u64) -> StageConfig {
    StageConfig::new(
        NodeId(id),
        "window".into(),
        recipe(&[("frame", 2)], 1),
        true,
    )
}

pub(crate) fn edge(item: &str, s: u64, c: u64, share: u32) -> FlowEdge {
    FlowEdge {
        item: item.into(),
        supplier: NodeId(s),
        consumer: NodeId(c),
        share,
    }
}

/// The window chain with two stages per type, every consumer linked to both suppliers.
pub(crate) fn window_flow(version: u64) -> Flow {
    let mut edges = Vec::new();
    for c in [13, 14] {
        for s in [11, 12] {
            edges.push(edge("wood", s, c, 500));
        }
    }
    for c in [15, 16] {
        for s in [13, 14] {
            edges.push(edge("frame", s, c, 500));
        }
    }
    Flow {
        version: FlowVersion(version),
        edges,
        recipes: BTreeMap::new(),
    }
}
