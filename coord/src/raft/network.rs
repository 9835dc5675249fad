//! Raft RPCs over the wire crate's QUIC transport.
//!
//! A request travels as `Message::RaftRequest { rpc, payload }` where the
//! payload is the postcard encoding of openraft's request; the answer is
//! `Message::RaftResponse { result: Ok(bytes) }` holding the postcard
//! encoding of `Result<Response, RaftError>`. A peer that cannot be reached
//! (down, partitioned, refusing, timing out) is reported to openraft as
//! `RPCError::Unreachable`, which makes it back off, never as
//! `RPCError::Network`, which makes it retry at once in a spin.

use super::elect::LeaderContact;
use super::{Raft, TypeConfig};
use crate::state::{Command, CommandResponse};
use crate::timings::Timings;
use factoryos_wire::message::{Message, RaftRpc};
use factoryos_wire::model::CommitPhase;
use factoryos_wire::{FlowVersion, NodeId, ServiceError, Transport};
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, InstallSnapshotError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

type Rpc<E> = RPCError<u64, BasicNode, E>;

/// Makes a [`Connection`] per peer; all share one transport.
#[derive(Debug, Clone)]
pub struct Network {
    transport: Transport,
    backoff: Duration,
    timings: Timings,
}

impl Network {
    /// `backoff` is how long openraft waits before retrying an unreachable
    /// peer; replication round trips are recorded in `timings`.
    pub fn new(transport: Transport, backoff: Duration, timings: Timings) -> Self {
        Network {
            transport,
            backoff,
            timings,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Connection {
        Connection {
            transport: self.transport.clone(),
            target: NodeId(target),
            backoff: self.backoff,
            timings: self.timings.clone(),
        }
    }
}

/// The RPC client to one peer.
#[derive(Debug)]
pub struct Connection {
    transport: Transport,
    target: NodeId,
    backoff: Duration,
    timings: Timings,
}

/// Why a call failed before the peer's Raft could answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Transport(#[from] factoryos_wire::TransportError),
    #[error("could not encode or decode a Raft message: {0}")]
    Codec(#[from] postcard::Error),
    #[error("the peer failed to handle the RPC: {0}")]
    Remote(ServiceError),
    #[error("the peer answered with something other than a Raft response")]
    Unexpected,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Sends one Raft-level request to `target` and decodes its typed answer.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    transport: &Transport,
    target: NodeId,
    rpc: RaftRpc,
    req: &Req,
    ttl: Duration,
) -> Result<Resp, CallError> {
    let payload = postcard::to_allocvec(req)?;
    let request = transport.request(
        target,
        FlowVersion(0),
        Message::RaftRequest { rpc, payload },
    );
    let env = tokio::time::timeout(ttl, request)
        .await
        .map_err(|_| CallError::Timeout(ttl))??;
    match env.body {
        Message::RaftResponse { result: Ok(bytes) } => Ok(postcard::from_bytes(&bytes)?),
        Message::RaftResponse { result: Err(e) } => Err(CallError::Remote(e)),
        _ => Err(CallError::Unexpected),
    }
}

impl Connection {
    async fn rpc<
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    >(
        &self,
        rpc: RaftRpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, Rpc<RaftError<u64, E>>> {
        let answer: Result<Resp, RaftError<u64, E>> =
            call(&self.transport, self.target, rpc, req, option.hard_ttl())
                .await
                // Even a garbled answer is "unreachable": a retry without backoff
                // would only spin.
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target.0, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, Rpc<RaftError<u64>>> {
        // Heartbeats (no entries) are not on a commit's path.
        let timed = !req.entries.is_empty();
        let start = std::time::Instant::now();
        let answer = self.rpc(RaftRpc::AppendEntries, &req, &option).await;
        if timed && answer.is_ok() {
            self.timings.since(CommitPhase::Replication, start);
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, Rpc<RaftError<u64, InstallSnapshotError>>> {
        self.rpc(RaftRpc::InstallSnapshot, &req, &option).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, Rpc<RaftError<u64>>> {
        self.rpc(RaftRpc::Vote, &req, &option).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}

/// The answer to a forwarded client write.
pub type ForwardedWrite = Result<CommandResponse, RaftError<u64, ClientWriteError<u64, BasicNode>>>;

/// The leader's read index: the log index a follower must have applied to
/// serve a linearizable read.
pub type ReadIndex = Result<u64, RaftError<u64, CheckIsLeaderError<u64, BasicNode>>>;

/// Serves one Raft request received from a peer: decodes it, hands it to
/// the local Raft, encodes the answer (`Err` only for undecodable input).
/// An append-entries this node accepts is noted in `contact`.
pub async fn serve(
    raft: &Raft,
    contact: &LeaderContact,
    rpc: RaftRpc,
    payload: &[u8],
) -> Result<Vec<u8>, ServiceError> {
    fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, ServiceError> {
        postcard::to_allocvec(v).map_err(|e| ServiceError::unavailable(e.to_string()))
    }
    fn decode<T: DeserializeOwned>(p: &[u8]) -> Result<T, ServiceError> {
        postcard::from_bytes(p)
            .map_err(|e| ServiceError::rejected(format!("undecodable Raft request: {e}")))
    }
    match rpc {
        RaftRpc::AppendEntries => {
            let answer = raft.append_entries(decode(payload)?).await;
            if matches!(&answer, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
                contact.heard();
            }
            encode(&answer)
        }
        RaftRpc::Vote => encode(&raft.vote(decode(payload)?).await),
        RaftRpc::InstallSnapshot => {
            let req: InstallSnapshotRequest<TypeConfig> = decode(payload)?;
            let vote = req.vote;
            let answer = raft.install_snapshot(req).await;
            // A leader streaming a snapshot sends no heartbeats meanwhile
            // (a stale one is answered with a higher vote).
            if matches!(&answer, Ok(r) if r.vote <= vote) {
                contact.heard();
            }
            encode(&answer)
        }
        RaftRpc::ClientWrite => {
            let cmd: Command = decode(payload)?;
            let answer: ForwardedWrite = raft.client_write(cmd).await.map(|r| r.data);
            encode(&answer)
        }
        RaftRpc::ReadIndex => {
            let answer: ReadIndex = raft
                .get_read_log_id()
                .await
                .map(|(read, _)| read.map_or(0, |l| l.index));
            encode(&answer)
        }
    }
}
