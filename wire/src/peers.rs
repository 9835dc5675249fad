//! The peer book: which node ids belong to the cluster and where they listen.
//! It is shared by the transport (to dial) and by the TLS verifier (to refuse
//! a certificate whose id is not a member), and it changes at run time when
//! the configuration store adds or removes nodes.

use crate::ids::NodeId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// A shared, cheaply cloned map `NodeId -> address`.
#[derive(Debug, Clone, Default)]
pub struct PeerBook {
    inner: Arc<RwLock<HashMap<NodeId, SocketAddr>>>,
}

impl FromIterator<(NodeId, SocketAddr)> for PeerBook {
    fn from_iter<I: IntoIterator<Item = (NodeId, SocketAddr)>>(peers: I) -> Self {
        let book = PeerBook::new();
        for (id, addr) in peers {
            book.insert(id, addr);
        }
        book
    }
}

impl PeerBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or moves a peer.
    pub fn insert(&self, id: NodeId, addr: SocketAddr) {
        self.write().insert(id, addr);
    }

    pub fn remove(&self, id: NodeId) -> Option<SocketAddr> {
        self.write().remove(&id)
    }

    pub fn addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.read().get(&id).copied()
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.read().contains_key(&id)
    }

    pub fn ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<_> = self.read().keys().copied().collect();
        ids.sort();
        ids
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeId, SocketAddr>> {
        // A poisoned lock only means a writer panicked mid-insert of a plain map
        // entry; the map itself is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<NodeId, SocketAddr>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}
