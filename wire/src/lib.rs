//! # factoryos-wire — the vocabulary every factoryOS process speaks
//!
//! Everything that crosses a process boundary is defined here, and nothing
//! else: the crates above (`coord`, `stage`, `jepsen`) depend on this one and
//! never on each other's wire formats.
//!
//! | module | what lives there |
//! |---|---|
//! | [`ids`] | `NodeId`, `ItemType`, `LotId`, `FlowVersion`, request and snapshot ids |
//! | [`model`] | data that travels: spec (item types, recipes), stage descriptors, flows, lots |
//! | [`message`] | the [`Envelope`] (sender + flow version + body) and every message of the system |
//! | [`frame`] | framing: length prefix, format version byte, postcard body, typed [`DecodeError`]s |
//! | [`peers`] | the [`PeerBook`]: cluster members and their addresses, shared with the TLS verifier |
//! | [`tls`] | the cluster CA, node and host certificates (node ids in the SANs) and mutual-TLS configs |
//! | [`transport`] | the QUIC [`Endpoint`] of a process and each hosted id's [`Transport`]: one connection per process pair, ordered one-way streams per id pair, request/response, reconnects |
//! | [`fault`] | a UDP socket wrapper that drops, delays, duplicates and reorders datagrams |
//! | [`fault_file`] | fault rules set from outside a running process, through a file it follows |
//! | [`metrics`] | per-message-type `<Message>_sent` / `<Message>_received` counters |
//! | [`bench`] | the loopback throughput / latency benchmark behind `factoryos bench wire` |
//!
//! The transport is deliberately dumb: it authenticates peers, keeps one-way
//! messages FIFO per peer pair and fails fast when a peer is unreachable. The
//! protocol rules (retransmission, fencing by flow version) belong to the
//! crates above it.

pub mod bench;
pub mod fault;
pub mod fault_file;
pub mod frame;
pub mod ids;
pub mod message;
pub mod metrics;
pub mod model;
pub mod peers;
pub mod slice;
pub mod tls;
pub mod transport;

pub use fault::{FaultController, FaultRule, FaultySocket};
pub use frame::{DecodeError, FrameCodec, FORMAT_VERSION};
pub use ids::{FlowVersion, ItemType, LotId, NodeId, RequestId, SnapshotId};
pub use message::{Envelope, ErrorKind, Message, MessageKind, ServiceError};
pub use metrics::{MessageCounters, MessageTotals};
pub use peers::PeerBook;
pub use slice::{FlowSlice, SliceIndex, SliceUpdate};
pub use tls::{CertError, ClusterCa, NodeIdentity};
pub use transport::{Endpoint, Inbound, Responder, Transport, TransportConfig, TransportError};
