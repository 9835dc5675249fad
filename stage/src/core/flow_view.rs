//! The flow as one stage sees it: the version it knows (the fencing token),
//! its suppliers of each input with their shares, its consumers, and who
//! watches whom for failure.

use factoryos_wire::{FlowSlice, FlowVersion, ItemType, NodeId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

#[derive(Debug, Default)]
pub struct FlowView {
    version: FlowVersion,
    /// Whether the edges are known (after a restart only the version is).
    loaded: bool,
    /// Input item -> its suppliers with shares (per-mille).
    suppliers: BTreeMap<ItemType, Vec<(NodeId, u32)>>,
    /// Consumer -> the share of its demand it asks of us (per-mille).
    consumers: BTreeMap<NodeId, u32>,
    /// The neighbour that watches us (see `factoryos_wire::slice::watchers`).
    watcher: Option<NodeId>,
    /// The neighbours we watch.
    watched: BTreeSet<NodeId>,
    /// Where each neighbour registered (stages of one host share one).
    addresses: BTreeMap<NodeId, SocketAddr>,
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

    /// Whether `slice` should be installed: newer than ours, or the edges of
    /// the version we only know by number.
    pub(super) fn is_news(&self, slice: &FlowSlice) -> bool {
        slice.version > self.version || (slice.version == self.version && !self.loaded)
    }

    /// Takes our slice of a flow (its edges are ours: `slice.stage` is us).
    pub(super) fn install(&mut self, slice: &FlowSlice) {
        let me = slice.stage;
        let mut suppliers: BTreeMap<ItemType, Vec<(NodeId, u32)>> = BTreeMap::new();
        let mut consumers = BTreeMap::new();
        for e in &slice.edges {
            if e.consumer == me {
                suppliers
                    .entry(e.item.clone())
                    .or_default()
                    .push((e.supplier, e.share));
            }
            if e.supplier == me {
                consumers.insert(e.consumer, e.share);
            }
        }
        self.suppliers = suppliers;
        self.consumers = consumers;
        self.watcher = slice.watcher;
        self.watched = slice.watched.iter().copied().collect();
        self.addresses = slice.addresses.clone();
        self.version = slice.version;
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

    /// Where `peer`, a neighbour, registered (if the slice said).
    pub(super) fn addr_of(&self, peer: NodeId) -> Option<SocketAddr> {
        self.addresses.get(&peer).copied()
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
