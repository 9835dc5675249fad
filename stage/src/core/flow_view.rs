//! The flow as one stage sees it: the version it knows (the fencing token),
//! its suppliers of each input with their shares, its consumers, and who
//! watches whom for failure.

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
    /// The neighbour that watches us (see [`watchers`]).
    watcher: Option<NodeId>,
    /// The neighbours we watch.
    watched: BTreeSet<NodeId>,
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
        let watchers = watchers(flow);
        self.watcher = watchers.get(&me).copied();
        self.watched = watchers
            .iter()
            .filter(|(_, w)| **w == me)
            .map(|(x, _)| *x)
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

    /// The neighbour our heartbeats go to.
    pub(super) fn watcher(&self) -> Option<NodeId> {
        self.watcher
    }

    /// The neighbours whose silence we report.
    pub(super) fn watched(&self) -> &BTreeSet<NodeId> {
        &self.watched
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
