//! The client of the coordination cluster, used by stages and tools.
//!
//! It talks to any coordinator: when a call fails in a way another attempt
//! can mend (no answer, or an error whose [`ErrorKind`] is retryable: not the
//! leader, unavailable) it moves on to the next one (the leader it was told
//! of first), up to a bounded number of attempts with a short pause between
//! rounds. Refusals on the merits are returned at once.

use crate::cluster::{ClusterFile, SetupError};
use factoryos_wire::message::{ClientRequest, ClientResponse, ErrorKind, Message};
use factoryos_wire::model::{ClusterStatus, Flow, PhaseTiming, Recipe, StageDescriptor};
use factoryos_wire::{
    FlowVersion, ItemType, NodeId, NodeIdentity, PeerBook, ServiceError, SliceUpdate, Transport,
    TransportConfig,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no coordinator answered after {attempts} attempts; last error: {last}")]
    Unavailable { attempts: usize, last: String },
    #[error("the coordinators refused: {}", .0.reason)]
    Refused(ServiceError),
    #[error("unexpected answer from a coordinator: {0:?}")]
    Unexpected(Box<ClientResponse>),
}

/// A handle on the coordination cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CoordClient {
    transport: Transport,
    /// The coordinators to ask; follows membership changes ([`CoordClient::learn`]).
    coordinators: Arc<RwLock<Vec<NodeId>>>,
    next: Arc<AtomicUsize>,
    /// When each coordinator last left a call unanswered (cleared when it
    /// answers again).
    failed: Arc<Mutex<HashMap<NodeId, Instant>>>,
    attempts: usize,
    timeout: Duration,
}

/// How long one coordinator gets to answer before the next is tried. A
/// crashed coordinator's connection looks alive until QUIC's idle timeout;
/// this bound keeps a client from waiting on it.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a `WatchSlice` long poll waits at a coordinator before it is
/// answered with the current flow; the client waits this plus its call
/// timeout. Short, so that a poll parked on a member being removed (whose
/// connection looks alive until QUIC's idle timeout) costs seconds, not ten.
pub const WATCH_WAIT: Duration = Duration::from_secs(2);

/// How long a coordinator that left a call unanswered is not followed as
/// the leader named by a forwarded write (a client that can reach a
/// follower but not the leader keeps writing through the follower).
const FAILED_MEMORY: Duration = Duration::from_secs(10);

impl CoordClient {
    /// `transport`'s peer book must hold the coordinators' addresses.
    pub fn new(transport: Transport, coordinators: Vec<NodeId>) -> Self {
        let attempts = (coordinators.len() * 4).max(4);
        CoordClient {
            transport,
            coordinators: Arc::new(RwLock::new(coordinators)),
            next: Arc::default(),
            failed: Arc::default(),
            attempts,
            timeout: CALL_TIMEOUT,
        }
    }

    /// Sets how long one coordinator gets to answer (long polls get [`WATCH_WAIT`] more).
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
        for attempt in 0..self.attempts {
            let coordinators = self.coordinators();
            let n = coordinators.len();
            if n == 0 {
                break;
            }
            let target = coordinators[self.next.load(Ordering::Relaxed) % n];
            let timeout = match req {
                ClientRequest::WatchSlice { .. } => self.timeout + WATCH_WAIT,
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
            if answer.is_ok() {
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&target);
            }
            match answer {
                Ok(env) => match env.body {
                    Message::ClientResponse(ClientResponse::Error(e)) if e.kind.is_retryable() => {
                        let leader = match e.kind {
                            ErrorKind::NotLeader { leader } => leader,
                            _ => None,
                        };
                        last = format!("{target}: {e}");
                        self.prefer(leader, target);
                    }
                    Message::ClientResponse(resp) => return Ok(resp),
                    other => last = format!("{target} answered {}", other.kind().name()),
                },
                Err(e) => {
                    last = e.to_string();
                    self.failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(target, Instant::now());
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
        let coordinators = self.coordinators();
        let n = coordinators.len().max(1);
        let pos = leader
            .and_then(|l| coordinators.iter().position(|c| *c == l))
            .unwrap_or_else(|| {
                let i = coordinators.iter().position(|c| *c == failed).unwrap_or(0);
                (i + 1) % n
            });
        self.next.store(pos, Ordering::Relaxed);
    }

    /// The coordinators this client asks, as of now.
    pub fn coordinators(&self) -> Vec<NodeId> {
        self.coordinators
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Follows the group's membership as `status` reports it: the members
    /// are the coordinators to ask from now on, at their addresses.
    pub fn learn(&self, status: &ClusterStatus) {
        if status.member_addrs.is_empty() {
            return;
        }
        let book = self.transport.peers();
        for (id, addr) in &status.member_addrs {
            if book.addr(*id) != Some(*addr) {
                book.insert(*id, *addr);
            }
        }
        let members: Vec<NodeId> = status.member_addrs.iter().map(|(id, _)| *id).collect();
        let mut list = self.coordinators.write().unwrap_or_else(|e| e.into_inner());
        if *list != members {
            tracing::debug!(?members, "coordinators changed");
            *list = members;
        }
    }

    /// Asks the group for its membership and follows it ([`CoordClient::learn`]).
    pub async fn refresh_members(&self) -> Result<(), ClientError> {
        let status = self.status().await?;
        self.learn(&status);
        Ok(())
    }

    /// Calls and picks the expected answer out of the response; a refusal
    /// is [`ClientError::Refused`], anything else [`ClientError::Unexpected`].
    async fn ask<T>(
        &self,
        req: ClientRequest,
        pick: fn(ClientResponse) -> Result<T, ClientResponse>,
    ) -> Result<T, ClientError> {
        match self.call(req).await? {
            ClientResponse::Error(e) => Err(ClientError::Refused(e)),
            resp => pick(resp).map_err(|other| ClientError::Unexpected(Box::new(other))),
        }
    }

    /// A write: the log index that committed it. The next call goes to the
    /// leader named in the answer (a follower forwards writes, one hop
    /// more), unless that leader did not answer this client lately.
    async fn commit(&self, req: ClientRequest) -> Result<u64, ClientError> {
        let (index, leader) = self
            .ask(req, |r| match r {
                ClientResponse::Committed { index, leader } => Ok((index, leader)),
                other => Err(other),
            })
            .await?;
        if let Some(leader) = leader.filter(|l| !self.failed_lately(*l)) {
            if let Some(pos) = self.coordinators().iter().position(|c| *c == leader) {
                self.next.store(pos, Ordering::Relaxed);
            }
        }
        Ok(index)
    }

    /// Whether `id` left one of this client's calls unanswered within
    /// [`FAILED_MEMORY`] (then a leader hint naming it is not followed).
    fn failed_lately(&self, id: NodeId) -> bool {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed
            .get(&id)
            .is_some_and(|at| at.elapsed() < FAILED_MEMORY)
    }

    async fn flow(&self, req: ClientRequest) -> Result<Flow, ClientError> {
        self.ask(req, |r| match r {
            ClientResponse::Flow(flow) => Ok(flow),
            other => Err(other),
        })
        .await
    }

    async fn slice(&self, req: ClientRequest) -> Result<SliceUpdate, ClientError> {
        self.ask(req, |r| match r {
            ClientResponse::Slice(update) => Ok(update),
            other => Err(other),
        })
        .await
    }

    async fn cluster_status(&self, req: ClientRequest) -> Result<ClusterStatus, ClientError> {
        self.ask(req, |r| match r {
            ClientResponse::Status(s) => Ok(s),
            other => Err(other),
        })
        .await
    }

    /// Registers (or re-registers) a stage; returns the log index.
    pub async fn register(&self, stage: StageDescriptor) -> Result<u64, ClientError> {
        self.commit(ClientRequest::Register { stage }).await
    }

    /// Registers (or re-registers) all the stages of a host process in one
    /// Raft entry; returns the log index.
    pub async fn register_host(&self, stages: Vec<StageDescriptor>) -> Result<u64, ClientError> {
        self.commit(ClientRequest::RegisterHost { stages }).await
    }

    /// Reports that `suspect` missed its heartbeat deadline.
    pub async fn report_suspect(&self, suspect: NodeId) -> Result<u64, ClientError> {
        self.commit(ClientRequest::ReportSuspect { suspect }).await
    }

    /// Waits (long poll, [`WATCH_WAIT`] at most) for a flow newer than
    /// `known`, and answers with `stage`'s slice of it, or only its version
    /// if the slice still has `digest` (the caller's copy); may answer the
    /// current version when the wait runs out.
    pub async fn watch_slice(
        &self,
        stage: NodeId,
        known: FlowVersion,
        digest: Option<u64>,
    ) -> Result<SliceUpdate, ClientError> {
        let req = ClientRequest::WatchSlice {
            stage,
            known,
            digest,
        };
        self.slice(req).await
    }

    /// `stage`'s slice of the current flow (or only its version, as for
    /// [`CoordClient::watch_slice`]).
    pub async fn read_slice(
        &self,
        stage: NodeId,
        digest: Option<u64>,
    ) -> Result<SliceUpdate, ClientError> {
        self.slice(ClientRequest::ReadSlice { stage, digest }).await
    }

    /// The current flow; `linearizable` makes it at least as new as any flow
    /// committed before the call.
    pub async fn read_flow(&self, linearizable: bool) -> Result<Flow, ClientError> {
        self.flow(ClientRequest::ReadFlow { linearizable }).await
    }

    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        self.cluster_status(ClientRequest::Status).await
    }

    /// The addresses of every registered stage.
    pub async fn directory(&self) -> Result<Vec<(NodeId, SocketAddr)>, ClientError> {
        self.ask(ClientRequest::Directory, |r| match r {
            ClientResponse::Directory(d) => Ok(d),
            other => Err(other),
        })
        .await
    }

    /// Where the answering coordinator's recent commits spent their time
    /// (ask a client of the leader alone for the leader's).
    pub async fn commit_timings(&self) -> Result<Vec<PhaseTiming>, ClientError> {
        self.ask(ClientRequest::CommitTimings, |r| match r {
            ClientResponse::CommitTimings(t) => Ok(t),
            other => Err(other),
        })
        .await
    }

    /// Operator only: a new recipe for `item` (its version is bumped); with
    /// `if_version`, only if its version is still that one. The log index
    /// that committed it.
    pub async fn update_recipe(
        &self,
        item: ItemType,
        recipe: Recipe,
        if_version: Option<u32>,
    ) -> Result<u64, ClientError> {
        let req = ClientRequest::UpdateRecipe {
            item,
            recipe,
            if_version,
        };
        self.commit(req).await
    }

    /// `item`'s recipe and its version; `linearizable` makes it at least as
    /// new as any update committed before the call.
    pub async fn read_recipe(
        &self,
        item: ItemType,
        linearizable: bool,
    ) -> Result<Recipe, ClientError> {
        self.ask(
            ClientRequest::ReadRecipe { item, linearizable },
            |r| match r {
                ClientResponse::Recipe(recipe) => Ok(recipe),
                other => Err(other),
            },
        )
        .await
    }

    /// Operator only: declares a new stage (it may connect and register from
    /// now on); the log index that committed it.
    pub async fn add_stage(&self, stage: StageDescriptor) -> Result<u64, ClientError> {
        self.commit(ClientRequest::AddStage { stage }).await
    }

    /// Operator only: retires stage `id` for good (its id is never reused).
    pub async fn remove_stage(&self, stage: NodeId) -> Result<u64, ClientError> {
        self.commit(ClientRequest::RemoveStage { stage }).await
    }

    /// Operator only: adds coordinator `id` (already started with `--join`).
    pub async fn add_coordinator(
        &self,
        id: NodeId,
        addr: SocketAddr,
    ) -> Result<ClusterStatus, ClientError> {
        self.cluster_status(ClientRequest::AddCoordinator { id, addr })
            .await
    }

    /// Operator only: removes coordinator `id` for good.
    pub async fn remove_coordinator(&self, id: NodeId) -> Result<ClusterStatus, ClientError> {
        self.cluster_status(ClientRequest::RemoveCoordinator { id })
            .await
    }

    /// A client of `cluster`'s coordinators speaking as `id`
    /// ([`NodeId::OPERATOR`] for tools), on an endpoint of its own; close the
    /// returned transport when done.
    pub fn connect(cluster: &ClusterFile, id: NodeId) -> Result<(Self, Transport), SetupError> {
        let bind = match cluster.coordinators.values().next() {
            Some(a) if a.is_ipv6() => SocketAddr::from(([0u16; 8], 0)),
            Some(a) if !a.ip().is_loopback() => SocketAddr::from(([0, 0, 0, 0], 0)),
            _ => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let socket = std::net::UdpSocket::bind(bind)
            .map_err(|source| factoryos_wire::TransportError::Bind { addr: bind, source })?;
        Self::connect_on(cluster, id, socket)
    }

    /// Like [`CoordClient::connect`], on a socket the caller made (the
    /// harness makes its clients' sockets inside a network namespace).
    pub fn connect_on(
        cluster: &ClusterFile,
        id: NodeId,
        socket: std::net::UdpSocket,
    ) -> Result<(Self, Transport), SetupError> {
        let identity = NodeIdentity::load(&cluster.certs, id)?;
        let book = PeerBook::new();
        for (m, addr) in &cluster.coordinators {
            book.insert(*m, *addr);
        }
        let (transport, _inbox) =
            Transport::bind_socket(&identity, socket, book, TransportConfig::default(), None)?;
        let client = CoordClient::new(
            transport.clone(),
            cluster.coordinators.keys().copied().collect(),
        );
        Ok((client, transport))
    }
}
