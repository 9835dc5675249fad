//! The peer book: which node ids belong to the cluster and where they listen.
//! It is shared by the transport (to dial) and by the TLS verifier (to refuse
//! a certificate whose id is not a member), and it changes at run time when
//! the configuration store adds or removes nodes.

use crate::ids::NodeId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// A shared, cheaply cloned map `NodeId -> address`. A member may be known
/// before its address is (a stage that has not registered yet): it may
/// connect to us, but we cannot dial it.
#[derive(Debug, Clone, Default)]
pub struct PeerBook {
    inner: Arc<RwLock<HashMap<NodeId, Option<SocketAddr>>>>,
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
        self.write().insert(id, Some(addr));
    }

    /// Makes `id` a member without changing its address (if it has one).
    pub fn allow(&self, id: NodeId) {
        self.write().entry(id).or_insert(None);
    }

    pub fn remove(&self, id: NodeId) -> Option<SocketAddr> {
        self.write().remove(&id).flatten()
    }

    pub fn addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.read().get(&id).copied().flatten()
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.read().contains_key(&id)
    }

    pub fn ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<_> = self.read().keys().copied().collect();
        ids.sort();
        ids
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeId, Option<SocketAddr>>> {
        // A poisoned lock only means a writer panicked mid-insert of a plain map
        // entry; the map itself is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<NodeId, Option<SocketAddr>>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_without_an_address_are_members_but_not_dialable() {
        let book = PeerBook::new();
        book.allow(NodeId(4));
        assert!(book.contains(NodeId(4)));
        assert_eq!(book.addr(NodeId(4)), None);
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        book.insert(NodeId(4), addr);
        book.allow(NodeId(4));
        assert_eq!(
            book.addr(NodeId(4)),
            Some(addr),
            "allow keeps a known address"
        );
        assert_eq!(book.ids(), vec![NodeId(4)]);
        assert_eq!(book.remove(NodeId(4)), Some(addr));
        assert!(!book.contains(NodeId(4)));
    }
}
