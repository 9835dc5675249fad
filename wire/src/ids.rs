//! Identifiers. All are small `Copy` newtypes except [`ItemType`], which is a
//! human-readable name (`wood`, `window-frame`) because it appears in specs,
//! logs and histories that people read.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A node of the cluster: a coordinator or a stage. Ids are never reused.
/// A node's id is carried in its certificate (see [`crate::tls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The operator: tools such as `factoryos status` speak with certificate 0.
    /// No coordinator or stage may use this id.
    pub const OPERATOR: NodeId = NodeId(0);
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl FromStr for NodeId {
    type Err = std::num::ParseIntError;

    /// Accepts `7` and `n7`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix('n').unwrap_or(s);
        digits.parse().map(NodeId)
    }
}

/// The name of an item type (a node of the supply-chain DAG). Shared, so a
/// clone (every request, lot and flow slice names one) allocates nothing,
/// and two clones of one name compare equal without reading it.
#[derive(Debug, Clone, Eq, Deserialize)]
#[serde(from = "String")]
pub struct ItemType(Arc<str>);

impl ItemType {
    pub fn new(name: impl Into<String>) -> Self {
        ItemType::from(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for ItemType {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Ord for ItemType {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for ItemType {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for ItemType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl From<String> for ItemType {
    fn from(s: String) -> Self {
        ItemType(Arc::from(s))
    }
}

/// As a plain string, as before it was shared.
impl Serialize for ItemType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ItemType {
    fn from(s: &str) -> Self {
        ItemType(Arc::from(s))
    }
}

/// A lot (batch) id, unique without coordination: the producing stage and a
/// sequence number the producer persists, so a restarted stage never reuses one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LotId {
    pub producer: NodeId,
    pub seq: u64,
}

impl LotId {
    pub fn new(producer: NodeId, seq: u64) -> Self {
        LotId { producer, seq }
    }
}

impl fmt::Display for LotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.producer, self.seq)
    }
}

/// The version of a flow: the Raft log index of the entry that committed it.
/// It is a fencing token: traffic stamped with an older version than the
/// newest a stage knows is refused.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct FlowVersion(pub u64);

impl fmt::Display for FlowVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A consumer's id for one `RequestBatch`, unique per consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// A Chandy-Lamport snapshot's id, chosen by its initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SnapshotId(pub u64);

/// Parses a list of node ids: `1,2,5`, ranges `1-5`, or both (`1-3,7`).
/// Duplicates are refused, the result is sorted.
pub fn parse_id_list(s: &str) -> Result<Vec<NodeId>, String> {
    let mut ids = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("empty element in id list {s:?}"));
        }
        let parse = |t: &str| {
            t.trim()
                .parse::<NodeId>()
                .map_err(|_| format!("{t:?} is not a node id (expected a number like 7 or n7)"))
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (parse(lo)?, parse(hi)?);
                if lo > hi {
                    return Err(format!("range {part:?} is empty (start after end)"));
                }
                if hi.0 - lo.0 >= 1_000_000 {
                    return Err(format!("range {part:?} is larger than a million ids"));
                }
                ids.extend((lo.0..=hi.0).map(NodeId));
            }
            None => ids.push(parse(part)?),
        }
    }
    ids.sort();
    let before = ids.len();
    ids.dedup();
    if ids.len() != before {
        return Err(format!("id list {s:?} names a node twice"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_parse_ranges_and_refuse_nonsense() {
        let ids = parse_id_list("1-3, 7,n9").unwrap();
        assert_eq!(
            ids,
            vec![NodeId(1), NodeId(2), NodeId(3), NodeId(7), NodeId(9)]
        );
        assert!(parse_id_list("3-1").unwrap_err().contains("empty"));
        assert!(parse_id_list("1,,2").unwrap_err().contains("empty element"));
        assert!(parse_id_list("1-3,2").unwrap_err().contains("twice"));
        assert!(parse_id_list("x").unwrap_err().contains("not a node id"));
    }

    #[test]
    fn node_id_parses_with_and_without_prefix() {
        assert_eq!("7".parse::<NodeId>().unwrap(), NodeId(7));
        assert_eq!("n12".parse::<NodeId>().unwrap(), NodeId(12));
        assert!("x1".parse::<NodeId>().is_err());
        assert_eq!(NodeId(3).to_string(), "n3");
    }

    #[test]
    fn lot_ids_order_by_producer_then_seq() {
        let a = LotId::new(NodeId(1), 9);
        let b = LotId::new(NodeId(2), 0);
        assert!(a < b);
        assert_eq!(a.to_string(), "n1#9");
    }
}
