//! Every message of the system. A message travels inside an [`Envelope`] that
//! names its sender and the newest flow version the sender knows; the
//! transport checks that the sender matches the peer's certificate.
//!
//! Trade message names are the original system's, so metric tables line up:
//!
//! ```text
//! consumer                                   supplier
//!   RequestBatch{req, item}              ->
//!                                        <-  BatchSent{req, lot}   (supplier WAL: in-transit first)
//!                                        <-  BatchUnavailable{req}
//!   (consumer WAL: lot in-queue, durable)
//!   DeliveryConfirmed{lot}               ->  (supplier WAL: delivered)
//!   WaitingForBatch{lot}                 ->  (re-assertion of an unfinished transit)
//! ```

use crate::ids::{FlowVersion, ItemType, LotId, NodeId, RequestId, SnapshotId};
use crate::model::{ClusterStatus, Flow, Lot, Recipe, StageDescriptor};
use crate::slice::SliceUpdate;
use serde::{Deserialize, Serialize};

/// What travels in one frame: who sent it, under which flow, and the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub sender: NodeId,
    pub flow_version: FlowVersion,
    pub body: Message,
}

impl Envelope {
    pub fn new(sender: NodeId, flow_version: FlowVersion, body: Message) -> Self {
        Envelope {
            sender,
            flow_version,
            body,
        }
    }

    pub fn kind(&self) -> MessageKind {
        self.body.kind()
    }
}

/// The `seq` of the heartbeat a stage restarted from its WAL sends each
/// neighbour of its first flow: what a consumer asked of it before the
/// crash is forgotten, and the consumer asks again at once. (Other
/// heartbeats count from 1.)
pub const GREETING: u64 = 0;

/// Every message of factoryOS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    // ---- trade (stage <-> stage, one-way, FIFO per neighbour pair)
    /// A consumer asks a supplier of its flow for one lot of `item`.
    RequestBatch {
        req: RequestId,
        item: ItemType,
    },
    /// A supplier sends a lot (answer to `req`, or `None` when re-sent after recovery).
    BatchSent {
        req: Option<RequestId>,
        lot: Lot,
    },
    /// A supplier has no lot of the requested item now.
    BatchUnavailable {
        req: RequestId,
        item: ItemType,
    },
    /// A consumer re-asserts a transit it has not completed.
    WaitingForBatch {
        lot: LotId,
    },
    /// The consumer holds `lot` durably; the supplier may mark it delivered.
    DeliveryConfirmed {
        lot: LotId,
    },

    // ---- liveness and snapshots
    /// An explicit heartbeat, sent only when a link is otherwise idle; with
    /// `seq` [`GREETING`], a restarted stage's first word to a neighbour.
    Heartbeat {
        seq: u64,
    },
    /// A Chandy-Lamport marker on a FIFO neighbour stream.
    SnapshotMarker {
        snapshot: SnapshotId,
        initiator: NodeId,
    },

    // ---- coordination clients (request/response on bidirectional streams)
    ClientRequest(ClientRequest),
    ClientResponse(ClientResponse),

    // ---- Raft RPCs between coordinators; the payload is openraft's, encoded by coord
    RaftRequest {
        rpc: RaftRpc,
        payload: Vec<u8>,
    },
    RaftResponse {
        result: Result<Vec<u8>, ServiceError>,
    },
}

/// Which Raft RPC a [`Message::RaftRequest`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    /// A follower forwarding a command of the configuration store to the leader.
    ClientWrite,
    /// A follower asking the leader up to which log index it must have
    /// applied to serve a linearizable read (the leader's read index).
    ReadIndex,
}

/// Requests of stages and tools to the coordination cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// A stage announces itself (at start and after every restart).
    Register { stage: StageDescriptor },
    /// A stage reports a neighbour that missed its heartbeat deadline.
    ReportSuspect { suspect: NodeId },
    /// Long poll: answer once the flow is newer than `known`, with `stage`'s
    /// slice of it, or only the new version if the slice's digest is still
    /// `digest` (the caller's copy).
    WatchSlice {
        stage: NodeId,
        known: FlowVersion,
        digest: Option<u64>,
    },
    /// `stage`'s slice of the current flow, at once (or only its version, as
    /// for `WatchSlice`).
    ReadSlice { stage: NodeId, digest: Option<u64> },
    /// Read the current flow (linearizable when asked).
    ReadFlow { linearizable: bool },
    /// Leader, term, members, flow version, stage liveness.
    Status,
    /// The addresses of every registered stage.
    Directory,
    /// Where this coordinator's recent commits spent their time, per phase.
    CommitTimings,
    /// Read `item`'s recipe and its version (linearizable when asked).
    ReadRecipe { item: ItemType, linearizable: bool },
    /// Operator only: a new recipe for `item` (its version is bumped); with
    /// `if_version`, only if the recipe's version is still that one (a
    /// compare-and-set), refused with the current version otherwise.
    UpdateRecipe {
        item: ItemType,
        recipe: Recipe,
        if_version: Option<u32>,
    },
    /// Operator only: declare a new stage.
    AddStage { stage: StageDescriptor },
    /// Operator only: retire a stage for good (its id is never reused).
    RemoveStage { stage: NodeId },
    /// Operator only: add a coordinator (started with `--join`) to the Raft group.
    AddCoordinator {
        id: NodeId,
        addr: std::net::SocketAddr,
    },
    /// Operator only: remove a coordinator from the Raft group; its id is never reused.
    RemoveCoordinator { id: NodeId },
    /// A host process announces all its stages at once (one Raft entry):
    /// every id must be one the sender's certificate speaks for.
    RegisterHost { stages: Vec<StageDescriptor> },
}

/// Answers of the coordination cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// The request was committed at this Raft log index; `leader` is the
    /// leader as the answering coordinator knows it (clients write to it
    /// directly next time).
    Committed {
        index: u64,
        leader: Option<NodeId>,
    },
    Flow(Flow),
    Slice(SliceUpdate),
    Status(ClusterStatus),
    Directory(Vec<(NodeId, std::net::SocketAddr)>),
    /// A recipe, with its version.
    Recipe(Recipe),
    CommitTimings(Vec<crate::model::PhaseTiming>),
    /// The request was not carried out.
    Error(ServiceError),
}

/// Why a coordinator did not carry out a request: a kind that decides what
/// the caller does next (retry elsewhere, or give up), and a reason for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub reason: String,
}

/// What kind of failure a [`ServiceError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// This coordinator does not lead and could not forward; `leader` is the
    /// one it knows of, if any. Retry there.
    NotLeader { leader: Option<NodeId> },
    /// The store could not be reached or could not decide (no quorum, the
    /// leader unreachable, a timeout). Retry, here or elsewhere.
    Unavailable,
    /// The request was refused on its merits (the state is unchanged);
    /// retrying it unchanged gets the same answer.
    Rejected,
    /// The caller may not make this request (e.g. only the operator may).
    Forbidden,
}

impl ErrorKind {
    /// Whether another attempt, maybe at another coordinator, can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::NotLeader { .. } | ErrorKind::Unavailable)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorKind::NotLeader { leader: Some(l) } => {
                write!(f, "not the leader (the leader is {l})")
            }
            ErrorKind::NotLeader { leader: None } => {
                f.write_str("not the leader (no leader known)")
            }
            ErrorKind::Unavailable => f.write_str("unavailable"),
            ErrorKind::Rejected => f.write_str("rejected"),
            ErrorKind::Forbidden => f.write_str("forbidden"),
        }
    }
}

impl ServiceError {
    pub fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        ServiceError {
            kind,
            reason: reason.into(),
        }
    }

    pub fn not_leader(leader: Option<NodeId>) -> Self {
        Self::new(ErrorKind::NotLeader { leader }, "ask the leader")
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, reason)
    }

    pub fn rejected(reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Rejected, reason)
    }

    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, reason)
    }
}

/// The kind of a message, without its fields: the key of metric counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    RequestBatch,
    BatchSent,
    BatchUnavailable,
    WaitingForBatch,
    DeliveryConfirmed,
    Heartbeat,
    SnapshotMarker,
    ClientRequest,
    ClientResponse,
    RaftRequest,
    RaftResponse,
}

impl MessageKind {
    /// Every kind, in a fixed order (the index of a kind is its position).
    pub const ALL: [MessageKind; 11] = [
        MessageKind::RequestBatch,
        MessageKind::BatchSent,
        MessageKind::BatchUnavailable,
        MessageKind::WaitingForBatch,
        MessageKind::DeliveryConfirmed,
        MessageKind::Heartbeat,
        MessageKind::SnapshotMarker,
        MessageKind::ClientRequest,
        MessageKind::ClientResponse,
        MessageKind::RaftRequest,
        MessageKind::RaftResponse,
    ];

    /// The trade messages between stages (heartbeats and markers apart):
    /// what "messages per traded lot" counts.
    pub const TRADE: [MessageKind; 5] = [
        MessageKind::RequestBatch,
        MessageKind::BatchSent,
        MessageKind::BatchUnavailable,
        MessageKind::DeliveryConfirmed,
        MessageKind::WaitingForBatch,
    ];

    /// The kind named `name` (as [`MessageKind::name`] spells it).
    pub fn from_name(name: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            MessageKind::RequestBatch => "RequestBatch",
            MessageKind::BatchSent => "BatchSent",
            MessageKind::BatchUnavailable => "BatchUnavailable",
            MessageKind::WaitingForBatch => "WaitingForBatch",
            MessageKind::DeliveryConfirmed => "DeliveryConfirmed",
            MessageKind::Heartbeat => "Heartbeat",
            MessageKind::SnapshotMarker => "SnapshotMarker",
            MessageKind::ClientRequest => "ClientRequest",
            MessageKind::ClientResponse => "ClientResponse",
            MessageKind::RaftRequest => "RaftRequest",
            MessageKind::RaftResponse => "RaftResponse",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl Message {
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::RequestBatch { .. } => MessageKind::RequestBatch,
            Message::BatchSent { .. } => MessageKind::BatchSent,
            Message::BatchUnavailable { .. } => MessageKind::BatchUnavailable,
            Message::WaitingForBatch { .. } => MessageKind::WaitingForBatch,
            Message::DeliveryConfirmed { .. } => MessageKind::DeliveryConfirmed,
            Message::Heartbeat { .. } => MessageKind::Heartbeat,
            Message::SnapshotMarker { .. } => MessageKind::SnapshotMarker,
            Message::ClientRequest(_) => MessageKind::ClientRequest,
            Message::ClientResponse(_) => MessageKind::ClientResponse,
            Message::RaftRequest { .. } => MessageKind::RaftRequest,
            Message::RaftResponse { .. } => MessageKind::RaftResponse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_not_leader_and_unavailable_are_worth_a_retry() {
        assert!(ErrorKind::NotLeader { leader: None }.is_retryable());
        assert!(ErrorKind::Unavailable.is_retryable());
        assert!(!ErrorKind::Rejected.is_retryable());
        assert!(!ErrorKind::Forbidden.is_retryable());
        let e = ServiceError::rejected("stage n3 is already known");
        assert_eq!(e.to_string(), "rejected: stage n3 is already known");
    }

    #[test]
    fn kind_indexes_match_all_order() {
        for (i, k) in MessageKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{}", k.name());
        }
    }
}
