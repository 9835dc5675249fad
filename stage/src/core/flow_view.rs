//! The flow as one stage sees it: the version it knows (the fencing token),
//! its suppliers of each input with their shares, and its consumers.

use factoryos_wire::model::Flow;
use factoryos_wire::{FlowVersion, ItemType, NodeId};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct FlowView {
    version: FlowVersion,
    /// Whether the edges are known (after a restart only the version is).
    loaded: bool,
    /// Input item -> its suppliers with shares (per-mille).
    suppliers: BTreeMap<ItemType, Vec<(NodeId, u32)>>,
    /// Consumer -> the share of its demand it asks of us (per-mille).
    consumers: BTreeMap<NodeId, u32>,
}

impl FlowView {
    /// After a restart: the newest version the WAL knows, no edges yet.
    pub(super) fn restarted(version: FlowVersion) -> Self {
        FlowView {
            version,
            ..FlowView::default()
        }
    }

    pub fn version(&self) -> FlowVersion {
        self.version
    }

    /// Whether `flow` should be installed: newer than ours, or the edges of
    /// the version we only know by number.
    pub(super) fn is_news(&self, flow: &Flow) -> bool {
        flow.version > self.version || (flow.version == self.version && !self.loaded)
    }

    /// Takes `me`'s edges of `flow`.
    pub(super) fn install(&mut self, me: NodeId, flow: &Flow) {
        let mut suppliers: BTreeMap<ItemType, Vec<(NodeId, u32)>> = BTreeMap::new();
        for e in flow.edges.iter().filter(|e| e.consumer == me) {
            suppliers
                .entry(e.item.clone())
                .or_default()
                .push((e.supplier, e.share));
        }
        self.suppliers = suppliers;
        self.consumers = flow
            .consumers_of(me)
            .map(|e| (e.consumer, e.share))
            .collect();
        self.version = flow.version;
        self.loaded = true;
    }

    /// The suppliers of input `item`, with their shares.
    pub(super) fn suppliers_of(&self, item: &ItemType) -> Option<&[(NodeId, u32)]> {
        self.suppliers.get(item).map(Vec::as_slice)
    }

    pub(super) fn serves(&self, consumer: NodeId) -> bool {
        self.consumers.contains_key(&consumer)
    }

    /// The share of its demand `consumer` asks of us (0 if we do not serve it).
    pub(super) fn share_of(&self, consumer: NodeId) -> u32 {
        self.consumers.get(&consumer).copied().unwrap_or(0)
    }

    pub(super) fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Every supplier and consumer.
    pub(super) fn neighbours(&self) -> BTreeSet<NodeId> {
        self.suppliers
            .values()
            .flatten()
            .map(|(s, _)| *s)
            .chain(self.consumers.keys().copied())
            .collect()
    }
}
