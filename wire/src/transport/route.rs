//! The route header that opens every stream: which of the sending host's ids
//! speaks on it and which of the receiving host's ids it is for. One
//! endpoint serves many stages, so a stream names both ends; every envelope
//! on it must then carry the header's sender.

use crate::ids::NodeId;

/// Bytes of a route header: the sender's id, then the recipient's, each a
/// little-endian `u64`.
pub const ROUTE_LEN: usize = 16;

/// The two ends of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub from: NodeId,
    pub to: NodeId,
}

impl Route {
    pub fn encode(self) -> [u8; ROUTE_LEN] {
        let mut out = [0u8; ROUTE_LEN];
        out[..8].copy_from_slice(&self.from.0.to_le_bytes());
        out[8..].copy_from_slice(&self.to.0.to_le_bytes());
        out
    }

    pub fn decode(bytes: [u8; ROUTE_LEN]) -> Route {
        let (from, to) = bytes.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        Route {
            from: NodeId(word(from)),
            to: NodeId(word(to)),
        }
    }

    /// Reads the header of a stream; `None` if it ends first.
    pub async fn read(recv: &mut quinn::RecvStream) -> Option<Route> {
        let mut bytes = [0u8; ROUTE_LEN];
        recv.read_exact(&mut bytes).await.ok()?;
        Some(Route::decode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_round_trips() {
        let r = Route {
            from: NodeId(11),
            to: NodeId(u64::MAX - 1),
        };
        assert_eq!(Route::decode(r.encode()), r);
    }
}
