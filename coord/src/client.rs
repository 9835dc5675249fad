//! The client of the coordination cluster, used by stages and tools.
//!
//! It talks to any coordinator: on a failure or a `NotLeader` answer it
//! moves on to the next one (the leader it was told of first), up to a
//! bounded number of attempts with a short pause between rounds.

use crate::node::OPERATOR;
use factoryos_wire::message::{ClientRequest, ClientResponse, Message};
use factoryos_wire::model::{ClusterStatus, Flow, StageDescriptor};
use factoryos_wire::{FlowVersion, NodeId, Transport};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no coordinator answered after {attempts} attempts; last error: {last}")]
    Unavailable { attempts: usize, last: String },
    #[error("the coordinators refused: {0}")]
    Refused(String),
    #[error("unexpected answer from a coordinator: {0:?}")]
    Unexpected(Box<ClientResponse>),
}

/// A handle on the coordination cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CoordClient {
    transport: Transport,
    coordinators: Arc<Vec<NodeId>>,
    next: Arc<AtomicUsize>,
    attempts: usize,
    timeout: Duration,
}

/// How long one coordinator gets to answer before the next is tried. A
/// crashed coordinator's connection looks alive until QUIC's idle timeout;
/// this bound keeps a client from waiting on it.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);

impl CoordClient {
    /// `transport`'s peer book must hold the coordinators' addresses.
    pub fn new(transport: Transport, coordinators: Vec<NodeId>) -> Self {
        let attempts = (coordinators.len() * 4).max(4);
        CoordClient {
            transport,
            coordinators: Arc::new(coordinators),
            next: Arc::default(),
            attempts,
            timeout: CALL_TIMEOUT,
        }
    }

    /// Sets how long one coordinator gets to answer (long polls get 10 s more).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many coordinators are tried before giving up.
    pub fn with_attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    async fn call(&self, req: ClientRequest) -> Result<ClientResponse, ClientError> {
        let mut last = String::from("no coordinators configured");
        let n = self.coordinators.len();
        for attempt in 0..self.attempts {
            if n == 0 {
                break;
            }
            let target = self.coordinators[self.next.load(Ordering::Relaxed) % n];
            let timeout = match req {
                ClientRequest::WatchFlow { .. } => self.timeout + Duration::from_secs(10),
                _ => self.timeout,
            };
            let request =
                self.transport
                    .request(target, FlowVersion(0), Message::ClientRequest(req.clone()));
            let answer = match tokio::time::timeout(timeout, request).await {
                Ok(answer) => answer,
                Err(_) => Err(factoryos_wire::TransportError::Timeout {
                    peer: target,
                    timeout,
                }),
            };
            match answer {
                Ok(env) => match env.body {
                    Message::ClientResponse(ClientResponse::NotLeader { leader }) => {
                        last = format!("{target} is not the leader");
                        self.prefer(leader, target);
                    }
                    Message::ClientResponse(ClientResponse::Error { message })
                        if message.contains("unreachable") || message.contains("leader") =>
                    {
                        last = message;
                        self.prefer(None, target);
                    }
                    Message::ClientResponse(resp) => return Ok(resp),
                    other => last = format!("{target} answered {}", other.kind().name()),
                },
                Err(e) => {
                    last = e.to_string();
                    self.prefer(None, target);
                }
            }
            if attempt + 1 >= n && (attempt + 1) % n == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err(ClientError::Unavailable {
            attempts: self.attempts,
            last,
        })
    }

    /// Points the next call at `leader` if known, else at the coordinator after `failed`.
    fn prefer(&self, leader: Option<NodeId>, failed: NodeId) {
        let n = self.coordinators.len();
        let pos = leader
            .and_then(|l| self.coordinators.iter().position(|c| *c == l))
            .unwrap_or_else(|| {
                let i = self
                    .coordinators
                    .iter()
                    .position(|c| *c == failed)
                    .unwrap_or(0);
                (i + 1) % n
            });
        self.next.store(pos, Ordering::Relaxed);
    }

    fn committed(resp: ClientResponse) -> Result<u64, ClientError> {
        match resp {
            ClientResponse::Committed { index } => Ok(index),
            ClientResponse::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Registers (or re-registers) a stage; returns the log index.
    pub async fn register(&self, stage: StageDescriptor) -> Result<u64, ClientError> {
        Self::committed(self.call(ClientRequest::Register { stage }).await?)
    }

    /// Reports that `suspect` missed its heartbeat deadline.
    pub async fn report_suspect(&self, suspect: NodeId) -> Result<u64, ClientError> {
        Self::committed(self.call(ClientRequest::ReportSuspect { suspect }).await?)
    }

    fn flow(resp: ClientResponse) -> Result<Flow, ClientError> {
        match resp {
            ClientResponse::Flow(flow) => Ok(flow),
            ClientResponse::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Waits (long poll, ~10 s at most) for a flow newer than `known`; may
    /// return the current flow unchanged when the wait runs out.
    pub async fn watch_flow(&self, known: FlowVersion) -> Result<Flow, ClientError> {
        Self::flow(self.call(ClientRequest::WatchFlow { known }).await?)
    }

    /// The current flow; `linearizable` makes it at least as new as any flow
    /// committed before the call.
    pub async fn read_flow(&self, linearizable: bool) -> Result<Flow, ClientError> {
        Self::flow(self.call(ClientRequest::ReadFlow { linearizable }).await?)
    }

    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        Self::status_of(self.call(ClientRequest::Status).await?)
    }

    fn status_of(resp: ClientResponse) -> Result<ClusterStatus, ClientError> {
        match resp {
            ClientResponse::Status(s) => Ok(s),
            ClientResponse::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// The addresses of every registered stage.
    pub async fn directory(&self) -> Result<Vec<(NodeId, std::net::SocketAddr)>, ClientError> {
        match self.call(ClientRequest::Directory).await? {
            ClientResponse::Directory(d) => Ok(d),
            ClientResponse::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Operator only: a new recipe for `item` (its version is bumped); the
    /// log index that committed it.
    pub async fn update_recipe(
        &self,
        item: factoryos_wire::ItemType,
        recipe: factoryos_wire::model::Recipe,
    ) -> Result<u64, ClientError> {
        Self::committed(
            self.call(ClientRequest::UpdateRecipe { item, recipe })
                .await?,
        )
    }

    /// Operator only: declares a new stage (it may connect and register from
    /// now on); the log index that committed it.
    pub async fn add_stage(&self, stage: StageDescriptor) -> Result<u64, ClientError> {
        Self::committed(self.call(ClientRequest::AddStage { stage }).await?)
    }

    /// Operator only: retires stage `id` for good (its id is never reused).
    pub async fn remove_stage(&self, stage: NodeId) -> Result<u64, ClientError> {
        Self::committed(self.call(ClientRequest::RemoveStage { stage }).await?)
    }

    /// Operator only: adds coordinator `id` (already started with `--join`).
    pub async fn add_coordinator(
        &self,
        id: NodeId,
        addr: std::net::SocketAddr,
    ) -> Result<ClusterStatus, ClientError> {
        Self::status_of(
            self.call(ClientRequest::AddCoordinator { id, addr })
                .await?,
        )
    }

    /// Operator only: removes coordinator `id` for good.
    pub async fn remove_coordinator(&self, id: NodeId) -> Result<ClusterStatus, ClientError> {
        Self::status_of(self.call(ClientRequest::RemoveCoordinator { id }).await?)
    }

    /// The operator's id, for tools.
    pub fn operator() -> NodeId {
        OPERATOR
    }
}
