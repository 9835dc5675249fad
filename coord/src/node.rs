//! A coordinator: one member of the Raft group, serving Raft RPCs and
//! clients on its QUIC endpoint, and doing the leader's duties while it
//! leads.
//!
//! Tasks of a running coordinator:
//!
//! * **inbound** — Raft RPCs go to the local Raft; client requests are served
//!   here (reads from the applied configuration, writes through Raft; a
//!   follower forwards writes to the leader).
//! * **leader duties** — while this node leads: install the bootstrap spec,
//!   confirm suspects with its own probe (dead → `MarkDead`, alive → route
//!   around the broken link with `AvoidLink`), and whenever the configuration
//!   is newer than the flow, solve and propose `CommitFlow { based_on }`.
//! * **peers** — keeps the transport's peer book in step with the registered
//!   stages (so they may connect, and the leader can probe them).

use crate::raft::network::{self, ForwardedWrite, Network};
use crate::raft::{store, Raft};
use crate::solver::{solve, SolverConfig};
use crate::state::{ClusterConfig, Command, CommandResponse};
use factoryos_wire::message::{ClientRequest, ClientResponse, Message, RaftRpc};
use factoryos_wire::model::{ClusterStatus, Liveness, Spec};
use factoryos_wire::{
    FlowVersion, Inbound, NodeId, NodeIdentity, PeerBook, Responder, Transport, TransportConfig,
};
use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The operator id: tools such as `factoryos status` use certificate 0.
pub const OPERATOR: NodeId = NodeId(0);

/// Everything a coordinator needs to start.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    pub identity: NodeIdentity,
    pub listen: SocketAddr,
    /// All coordinators, this one included.
    pub members: BTreeMap<NodeId, SocketAddr>,
    /// Holds `raft.redb`.
    pub data_dir: PathBuf,
    pub timeouts: crate::cluster::RaftTimeouts,
    /// Installed by the first leader if the store has no spec yet.
    pub spec: Option<Spec>,
    /// Stage ids allowed to connect before they are registered.
    pub stage_ids: Vec<NodeId>,
    pub transport: TransportConfig,
    pub solver: SolverConfig,
    /// How long the leader waits for a suspect to answer its probe.
    pub probe_timeout: Duration,
}

/// Why a coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the Raft storage: {0}")]
    Storage(#[from] redb::Error),
    #[error("invalid Raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("Raft failed: {0}")]
    Raft(String),
    #[error(transparent)]
    Transport(#[from] factoryos_wire::TransportError),
}

/// A running coordinator.
pub struct Coordinator {
    id: NodeId,
    raft: Raft,
    transport: Transport,
    config: watch::Receiver<Arc<ClusterConfig>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Shared {
    id: NodeId,
    raft: Raft,
    transport: Transport,
    config: watch::Receiver<Arc<ClusterConfig>>,
    solver: SolverConfig,
    probe_timeout: Duration,
    bootstrap_spec: Option<Spec>,
}

impl Coordinator {
    /// Opens storage, binds the endpoint, starts Raft (initialising the
    /// group on first start) and the coordinator's tasks.
    pub async fn start(opts: CoordinatorOptions) -> Result<Coordinator, CoordError> {
        let socket = std::net::UdpSocket::bind(opts.listen).map_err(|source| {
            factoryos_wire::TransportError::Bind {
                addr: opts.listen,
                source,
            }
        })?;
        Self::start_on(opts, socket).await
    }

    /// Like [`Coordinator::start`], on an already bound UDP socket.
    pub async fn start_on(
        opts: CoordinatorOptions,
        socket: std::net::UdpSocket,
    ) -> Result<Coordinator, CoordError> {
        let id = opts.identity.id();
        std::fs::create_dir_all(&opts.data_dir).map_err(|source| CoordError::DataDir {
            path: opts.data_dir.clone(),
            source,
        })?;
        let (log_store, state_machine) = store::open(&opts.data_dir.join("raft.redb"))?;
        let config_rx = state_machine.subscribe();

        let book = PeerBook::new();
        book.allow(OPERATOR);
        for (member, addr) in &opts.members {
            book.insert(*member, *addr);
        }
        for stage in &opts.stage_ids {
            book.allow(*stage);
        }
        let (transport, inbox) =
            Transport::bind_socket(&opts.identity, socket, book, opts.transport.clone(), None)?;

        let t = opts.timeouts;
        let raft_config = openraft::Config {
            cluster_name: "factoryos".into(),
            heartbeat_interval: t.heartbeat_ms,
            election_timeout_min: t.election_min_ms,
            election_timeout_max: t.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 200,
            ..Default::default()
        }
        .validate()?;
        let network = Network::new(transport.clone(), t.heartbeat());
        let raft = Raft::new(
            id.0,
            Arc::new(raft_config),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| CoordError::Raft(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| CoordError::Raft(e.to_string()))?;
        if !initialized {
            let nodes: BTreeMap<u64, BasicNode> = opts
                .members
                .iter()
                .map(|(id, addr)| (id.0, BasicNode::new(addr.to_string())))
                .collect();
            // Every member initialises with the same membership; openraft
            // accepts that, and refuses it once a log exists.
            if let Err(e) = raft.initialize(nodes).await {
                tracing::debug!(error = %e, "initialize refused (already initialised elsewhere)");
            }
        }

        let shared = Shared {
            id,
            raft: raft.clone(),
            transport: transport.clone(),
            config: config_rx.clone(),
            solver: opts.solver.clone(),
            probe_timeout: opts.probe_timeout,
            bootstrap_spec: opts.spec.clone(),
        };
        let tasks = vec![
            tokio::spawn(serve_inbound(shared.clone(), inbox)),
            tokio::spawn(leader_duties(shared.clone())),
            tokio::spawn(sync_peers(shared)),
        ];
        tracing::info!(node = %id, addr = %opts.listen, "coordinator started");
        Ok(Coordinator {
            id,
            raft,
            transport,
            config: config_rx,
            tasks,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The newest applied configuration (changes as entries apply).
    pub fn config(&self) -> watch::Receiver<Arc<ClusterConfig>> {
        self.config.clone()
    }

    /// Leader, term, members, flow version and stage liveness as this node sees them.
    pub fn status(&self) -> ClusterStatus {
        status(&self.raft, &self.config.borrow())
    }

    /// Stops Raft, the tasks and the endpoint.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.raft.shutdown().await;
        self.transport.shutdown().await;
    }
}

fn status(raft: &Raft, config: &ClusterConfig) -> ClusterStatus {
    let metrics = raft.metrics().borrow().clone();
    let mut s = config.status();
    s.leader = metrics.current_leader.map(NodeId);
    s.term = metrics.current_term;
    s.members = metrics
        .membership_config
        .membership()
        .voter_ids()
        .map(NodeId)
        .collect();
    s
}

async fn serve_inbound(shared: Shared, mut inbox: mpsc::Receiver<Inbound>) {
    while let Some(item) = inbox.recv().await {
        let Inbound::Request { from, env, reply } = item else {
            // Coordinators receive no one-way traffic; ignore it.
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            match env.body {
                Message::RaftRequest { rpc, payload } => {
                    let result = network::serve(&shared.raft, rpc, &payload).await;
                    reply.respond(FlowVersion(0), Message::RaftResponse { result });
                }
                Message::ClientRequest(req) => {
                    let resp = handle_client(&shared, from, req).await;
                    let version = shared.config.borrow().flow.version;
                    reply.respond(version, Message::ClientResponse(resp));
                }
                other => {
                    tracing::debug!(%from, kind = other.kind().name(), "unexpected request");
                    drop::<Responder>(reply);
                }
            }
        });
    }
}

/// How long a `WatchFlow` long poll waits before answering with the current flow.
const WATCH_WAIT: Duration = Duration::from_secs(10);

async fn handle_client(shared: &Shared, from: NodeId, req: ClientRequest) -> ClientResponse {
    match req {
        ClientRequest::Register { stage } => {
            if stage.id != from && from != OPERATOR {
                return ClientResponse::Error {
                    message: format!("node {from} cannot register stage {}", stage.id),
                };
            }
            write(shared, Command::RegisterStage { stage }).await
        }
        ClientRequest::ReportSuspect { suspect } => {
            write(
                shared,
                Command::ReportSuspect {
                    reporter: from,
                    suspect,
                },
            )
            .await
        }
        ClientRequest::WatchFlow { known } => {
            let mut rx = shared.config.clone();
            let _ = tokio::time::timeout(WATCH_WAIT, rx.wait_for(|c| c.flow.version > known)).await;
            let flow = rx.borrow().flow.clone();
            ClientResponse::Flow(flow)
        }
        ClientRequest::ReadFlow { linearizable } => {
            if linearizable {
                if let Err(resp) = linearize(shared).await {
                    return resp;
                }
            }
            ClientResponse::Flow(shared.config.borrow().flow.clone())
        }
        ClientRequest::Status => {
            ClientResponse::Status(status(&shared.raft, &shared.config.borrow()))
        }
    }
}

/// Makes the local state at least as new as anything committed before the
/// call: directly on the leader, or by waiting until this follower has
/// applied what the leader confirmed.
async fn linearize(shared: &Shared) -> Result<(), ClientResponse> {
    match shared.raft.ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
            let Some(leader) = f.leader_id else {
                return Err(ClientResponse::NotLeader { leader: None });
            };
            // Ask the leader for a linearizable read and wait until we have applied its flow.
            match shared
                .transport
                .request(
                    NodeId(leader),
                    FlowVersion(0),
                    Message::ClientRequest(ClientRequest::ReadFlow { linearizable: true }),
                )
                .await
            {
                Ok(env) => match env.body {
                    Message::ClientResponse(ClientResponse::Flow(flow)) => {
                        let mut rx = shared.config.clone();
                        let _ = tokio::time::timeout(
                            WATCH_WAIT,
                            rx.wait_for(|c| c.flow.version >= flow.version),
                        )
                        .await;
                        Ok(())
                    }
                    Message::ClientResponse(other) => Err(other),
                    _ => Err(ClientResponse::NotLeader { leader: None }),
                },
                Err(e) => Err(ClientResponse::Error {
                    message: format!("leader {leader} unreachable: {e}"),
                }),
            }
        }
        Err(e) => Err(ClientResponse::Error {
            message: e.to_string(),
        }),
    }
}

/// Proposes `cmd` through Raft (forwarding to the leader from a follower).
async fn write(shared: &Shared, cmd: Command) -> ClientResponse {
    match propose(shared, cmd).await {
        Ok(CommandResponse::Applied { index }) => ClientResponse::Committed { index },
        Ok(CommandResponse::FlowCommitted { version }) => {
            ClientResponse::Committed { index: version.0 }
        }
        Ok(CommandResponse::Rejected { reason }) => ClientResponse::Error { message: reason },
        Err(resp) => resp,
    }
}

async fn propose(shared: &Shared, cmd: Command) -> Result<CommandResponse, ClientResponse> {
    match shared.raft.client_write(cmd.clone()).await {
        Ok(r) => Ok(r.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            let Some(leader) = f.leader_id else {
                return Err(ClientResponse::NotLeader { leader: None });
            };
            if leader == shared.id.0 {
                return Err(ClientResponse::NotLeader { leader: None });
            }
            let answer: Result<ForwardedWrite, _> = network::call(
                &shared.transport,
                NodeId(leader),
                RaftRpc::ClientWrite,
                &cmd,
                Duration::from_secs(5),
            )
            .await;
            match answer {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(ClientResponse::NotLeader {
                    leader: forward_target(&e),
                }),
                Err(e) => Err(ClientResponse::Error {
                    message: format!("leader {leader} unreachable: {e}"),
                }),
            }
        }
        Err(e) => Err(ClientResponse::Error {
            message: e.to_string(),
        }),
    }
}

fn forward_target(e: &RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Option<NodeId> {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => f.leader_id.map(NodeId),
        _ => None,
    }
}

/// The leader's loop: react to every new configuration and leadership change.
async fn leader_duties(shared: Shared) {
    let mut config = shared.config.clone();
    let mut metrics = shared.raft.metrics();
    let probing: Arc<Mutex<HashSet<NodeId>>> = Arc::default();
    loop {
        let leading = metrics.borrow().current_leader == Some(shared.id.0)
            && metrics.borrow().state.is_leader();
        if leading {
            let snapshot = config.borrow().clone();
            lead_once(&shared, &snapshot, &probing).await;
        }
        // Wait for something to change (bounded, so a failed proposal is retried).
        tokio::select! {
            r = config.changed() => if r.is_err() { return },
            r = metrics.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn lead_once(shared: &Shared, cfg: &ClusterConfig, probing: &Arc<Mutex<HashSet<NodeId>>>) {
    if cfg.spec.is_none() {
        if let Some(spec) = &shared.bootstrap_spec {
            if let Err(e) = propose(shared, Command::SetSpec { spec: spec.clone() }).await {
                tracing::warn!(?e, "could not install the bootstrap spec");
            }
        }
        return;
    }
    // Confirm suspects with our own probe, one probe per suspect at a time.
    for (id, record) in &cfg.stages {
        if record.liveness != Liveness::Suspect {
            continue;
        }
        let fresh = probing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*id);
        if fresh {
            let shared = shared.clone();
            let probing = probing.clone();
            let (id, reporters) = (*id, record.suspected_by.clone());
            tokio::spawn(async move {
                confirm_suspect(&shared, id, reporters).await;
                probing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        }
    }
    if cfg.flow_is_stale() {
        commit_flow(shared, cfg).await;
    }
}

async fn confirm_suspect(shared: &Shared, suspect: NodeId, reporters: BTreeSet<NodeId>) {
    let probe = shared
        .transport
        .request(suspect, FlowVersion(0), Message::Heartbeat { seq: 0 });
    let alive = matches!(
        tokio::time::timeout(shared.probe_timeout, probe).await,
        Ok(Ok(_))
    );
    if !alive {
        tracing::info!(stage = %suspect, "suspect confirmed dead by the leader's probe");
        let _ = propose(shared, Command::MarkDead { stage: suspect }).await;
        return;
    }
    tracing::info!(stage = %suspect, ?reporters, "suspect answers the leader: a broken link, not a death");
    let flow = shared.config.borrow().flow.clone();
    for reporter in reporters {
        for (supplier, consumer) in [(suspect, reporter), (reporter, suspect)] {
            if flow.serves(supplier, consumer) {
                let _ = propose(shared, Command::AvoidLink { supplier, consumer }).await;
            }
        }
    }
    let _ = propose(shared, Command::MarkAlive { stage: suspect }).await;
}

async fn commit_flow(shared: &Shared, cfg: &ClusterConfig) {
    let Some(spec) = &cfg.spec else { return };
    let started = Instant::now();
    let stages = cfg.solver_stages();
    let plan = match solve(spec, &stages, &cfg.flow.edges, &cfg.avoid, &shared.solver) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!(error = %e, "cannot compute a flow");
            return;
        }
    };
    let solved = started.elapsed();
    let cmd = Command::CommitFlow {
        based_on: cfg.config_version,
        edges: plan.edges,
    };
    match propose(shared, cmd).await {
        Ok(CommandResponse::FlowCommitted { version }) => tracing::info!(
            %version,
            based_on = cfg.config_version,
            kept = plan.churn.kept,
            added = plan.churn.added,
            removed = plan.churn.removed,
            solve_us = solved.as_micros() as u64,
            commit_us = started.elapsed().as_micros() as u64,
            "flow committed"
        ),
        Ok(CommandResponse::Rejected { reason }) => {
            tracing::debug!(%reason, "flow proposal refused; recomputing")
        }
        Ok(other) => tracing::warn!(?other, "unexpected answer to CommitFlow"),
        Err(e) => tracing::debug!(?e, "flow proposal failed; will retry"),
    }
}

/// Keeps the peer book in step with registered stages.
async fn sync_peers(shared: Shared) {
    let mut config = shared.config.clone();
    loop {
        {
            let cfg = config.borrow_and_update();
            let book = shared.transport.peers();
            for (id, record) in &cfg.stages {
                if book.addr(*id) != Some(record.desc.addr) {
                    book.insert(*id, record.desc.addr);
                }
            }
        }
        if config.changed().await.is_err() {
            return;
        }
    }
}
