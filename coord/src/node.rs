//! A coordinator: one participant of the configuration store, serving
//! clients (and, in Raft mode, Raft RPCs) on its QUIC endpoint, and doing the
//! leader's duties while it leads.
//!
//! Tasks of a running coordinator:
//!
//! * **inbound** — Raft RPCs go to the local Raft; client requests are served
//!   here (reads from the applied configuration, writes through the store; a
//!   Raft follower forwards writes to the leader).
//! * **leader duties** — while this node leads: install the bootstrap spec,
//!   confirm suspects with its own probe (dead → `MarkDead`, alive → route
//!   around the broken link with `AvoidLink`), and whenever the configuration
//!   is newer than the flow, solve and propose `CommitFlow { based_on }`.
//! * **peers** — keeps the transport's peer book in step with the registered
//!   stages (so they may connect, and the leader can probe them).
//!
//! The store is a [`ConfigStore`]: the Raft group ([`RaftStore`]) or the
//! original's shared directory and file lock ([`FileLockStore`]).

use crate::config_store::{ConfigStore, MembershipChange, RaftStore, StoreError};
use crate::filelock::FileLockStore;
use crate::raft::network::Network;
use crate::raft::{store, Raft};
use crate::solver::{solve, SolverConfig};
use crate::state::{ClusterConfig, Command, CommandResponse};
use factoryos_wire::message::{ClientRequest, ClientResponse, Message};
use factoryos_wire::model::{ClusterStatus, Liveness, Spec};
use factoryos_wire::{
    FlowVersion, Inbound, NodeId, NodeIdentity, PeerBook, Responder, Transport, TransportConfig,
};
use openraft::BasicNode;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The operator id: tools such as `factoryos status` use certificate 0.
pub const OPERATOR: NodeId = NodeId(0);

/// Which configuration store the coordinators use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordMode {
    /// The Raft group (the default).
    Raft,
    /// The original system's shared directory and `flock` (see [`crate::filelock`]).
    FileLock {
        /// The directory every coordinator shares.
        dir: PathBuf,
        /// How often the lock is tried and the configuration re-read.
        poll: Duration,
    },
}

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
    pub mode: CoordMode,
    /// Join a running group (added with `AddCoordinator`) instead of
    /// initialising a new one on first start.
    pub join: bool,
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
    backend: Backend,
    transport: Transport,
    config: watch::Receiver<Arc<ClusterConfig>>,
    tasks: Vec<JoinHandle<()>>,
}

enum Backend {
    Raft(RaftStore),
    FileLock(FileLockStore),
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Shared<S> {
    store: S,
    transport: Transport,
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

        let (backend, config, tasks) = match &opts.mode {
            CoordMode::Raft => {
                let store = start_raft(&opts, &transport).await?;
                let config = store.config();
                let tasks = spawn_tasks(&opts, &transport, store.clone(), inbox);
                (Backend::Raft(store), config, tasks)
            }
            CoordMode::FileLock { dir, poll } => {
                let members = opts.members.keys().copied().collect();
                let store = FileLockStore::open(dir, id, members, *poll)
                    .map_err(|e| CoordError::Raft(e.to_string()))?;
                let config = store.config();
                let tasks = spawn_tasks(&opts, &transport, store.clone(), inbox);
                (Backend::FileLock(store), config, tasks)
            }
        };
        tracing::info!(node = %id, addr = %opts.listen, mode = ?opts.mode, "coordinator started");
        Ok(Coordinator {
            id,
            backend,
            transport,
            config,
            tasks,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft handle (Raft mode only).
    pub fn raft(&self) -> Option<&Raft> {
        match &self.backend {
            Backend::Raft(store) => Some(store.raft()),
            Backend::FileLock(_) => None,
        }
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
        match &self.backend {
            Backend::Raft(store) => store.status(),
            Backend::FileLock(store) => store.status(),
        }
    }

    /// Proposes a command through this coordinator's store.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResponse, StoreError> {
        match &self.backend {
            Backend::Raft(store) => store.propose(cmd).await,
            Backend::FileLock(store) => store.propose(cmd).await,
        }
    }

    /// Stops Raft, the tasks and the endpoint.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Backend::Raft(store) = &self.backend {
            let _ = store.raft().shutdown().await;
        }
        self.transport.shutdown().await;
    }
}

/// Opens the redb storage, starts Raft and initialises the group on first start.
async fn start_raft(
    opts: &CoordinatorOptions,
    transport: &Transport,
) -> Result<RaftStore, CoordError> {
    let id = opts.identity.id();
    let (log_store, state_machine) = store::open(&opts.data_dir.join("raft.redb"))?;
    let config = state_machine.subscribe();
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
    if !initialized && !opts.join {
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
    Ok(RaftStore::new(id, raft, transport.clone(), config))
}

fn spawn_tasks<S: ConfigStore>(
    opts: &CoordinatorOptions,
    transport: &Transport,
    store: S,
    inbox: mpsc::Receiver<Inbound>,
) -> Vec<JoinHandle<()>> {
    let shared = Shared {
        store,
        transport: transport.clone(),
        solver: opts.solver.clone(),
        probe_timeout: opts.probe_timeout,
        bootstrap_spec: opts.spec.clone(),
    };
    vec![
        tokio::spawn(serve_inbound(shared.clone(), inbox)),
        tokio::spawn(leader_duties(shared.clone())),
        tokio::spawn(sync_peers(shared)),
    ]
}

async fn serve_inbound<S: ConfigStore>(shared: Shared<S>, mut inbox: mpsc::Receiver<Inbound>) {
    while let Some(item) = inbox.recv().await {
        let Inbound::Request { from, env, reply } = item else {
            // Coordinators receive no one-way traffic; ignore it.
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            match env.body {
                Message::RaftRequest { rpc, payload } => {
                    let result = shared.store.serve_raft(rpc, payload).await;
                    reply.respond(FlowVersion(0), Message::RaftResponse { result });
                }
                Message::ClientRequest(req) => {
                    let resp = handle_client(&shared, from, req).await;
                    let version = shared.store.config().borrow().flow.version;
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

fn store_error(e: StoreError) -> ClientResponse {
    match e {
        StoreError::NotLeader { leader } => ClientResponse::NotLeader { leader },
        StoreError::Unavailable(message) => ClientResponse::Error { message },
    }
}

async fn handle_client<S: ConfigStore>(
    shared: &Shared<S>,
    from: NodeId,
    req: ClientRequest,
) -> ClientResponse {
    let operator_only = |what: &str| ClientResponse::Error {
        message: format!("only the operator may {what}"),
    };
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
        ClientRequest::UpdateRecipe { item, recipe } if from == OPERATOR => {
            write(shared, Command::UpdateRecipe { item, recipe }).await
        }
        ClientRequest::AddStage { stage } if from == OPERATOR => {
            shared.transport.peers().insert(stage.id, stage.addr);
            write(shared, Command::AddStage { stage }).await
        }
        ClientRequest::RemoveStage { stage } if from == OPERATOR => {
            write(shared, Command::RemoveStage { stage }).await
        }
        ClientRequest::AddCoordinator { id, addr } if from == OPERATOR => {
            change(shared, MembershipChange::Add { id, addr }).await
        }
        ClientRequest::RemoveCoordinator { id } if from == OPERATOR => {
            change(shared, MembershipChange::Remove { id }).await
        }
        ClientRequest::AddCoordinator { .. } | ClientRequest::RemoveCoordinator { .. } => {
            operator_only("change the coordinators")
        }
        ClientRequest::UpdateRecipe { .. } => operator_only("update recipes"),
        ClientRequest::AddStage { .. } => operator_only("add stages"),
        ClientRequest::RemoveStage { .. } => operator_only("remove stages"),
        ClientRequest::WatchFlow { known } => {
            let mut rx = shared.store.config();
            let _ = tokio::time::timeout(WATCH_WAIT, rx.wait_for(|c| c.flow.version > known)).await;
            let flow = rx.borrow().flow.clone();
            ClientResponse::Flow(flow)
        }
        ClientRequest::ReadFlow { linearizable } => {
            if linearizable {
                if let Err(e) = shared.store.sync().await {
                    return store_error(e);
                }
            }
            ClientResponse::Flow(shared.store.config().borrow().flow.clone())
        }
        ClientRequest::Status => ClientResponse::Status(shared.store.status()),
        ClientRequest::Directory => ClientResponse::Directory(
            shared
                .store
                .config()
                .borrow()
                .stages
                .iter()
                .map(|(id, r)| (*id, r.desc.addr))
                .collect(),
        ),
    }
}

async fn change<S: ConfigStore>(shared: &Shared<S>, change: MembershipChange) -> ClientResponse {
    match shared.store.change_coordinators(change).await {
        Ok(_) => ClientResponse::Status(shared.store.status()),
        Err(e) => store_error(e),
    }
}

/// Proposes `cmd` and turns the outcome into a client answer.
async fn write<S: ConfigStore>(shared: &Shared<S>, cmd: Command) -> ClientResponse {
    match shared.store.propose(cmd).await {
        Ok(CommandResponse::Applied { index }) => ClientResponse::Committed { index },
        Ok(CommandResponse::FlowCommitted { version }) => {
            ClientResponse::Committed { index: version.0 }
        }
        Ok(CommandResponse::Rejected { reason }) => ClientResponse::Error { message: reason },
        Err(e) => store_error(e),
    }
}

/// The leader's loop: react to every new configuration and leadership change.
async fn leader_duties<S: ConfigStore>(shared: Shared<S>) {
    let mut config = shared.store.config();
    let mut leading = shared.store.leading();
    // Per stage: None while a probe runs, or when the last one ended.
    let probing: Arc<Mutex<HashMap<NodeId, Option<Instant>>>> = Arc::default();
    loop {
        if *leading.borrow_and_update() {
            let snapshot = config.borrow_and_update().clone();
            lead_once(&shared, &snapshot, &probing).await;
        }
        // Wait for something to change (bounded, so a failed proposal is retried).
        tokio::select! {
            r = config.changed() => if r.is_err() { return },
            r = leading.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn lead_once<S: ConfigStore>(
    shared: &Shared<S>,
    cfg: &ClusterConfig,
    probing: &Arc<Mutex<HashMap<NodeId, Option<Instant>>>>,
) {
    if cfg.spec.is_none() {
        if let Some(spec) = &shared.bootstrap_spec {
            if let Err(e) = shared
                .store
                .propose(Command::SetSpec { spec: spec.clone() })
                .await
            {
                tracing::warn!(error = %e, "could not install the bootstrap spec");
            }
        }
        return;
    }
    // Confirm suspects with our own probe, and probe the dead now and then
    // (a stage declared dead by mistake, or back without re-registering, is
    // revived): one probe per stage at a time.
    for (id, record) in &cfg.stages {
        let revive = record.liveness == Liveness::Dead;
        if record.liveness == Liveness::Alive {
            continue;
        }
        let fresh = {
            let mut p = probing.lock().unwrap_or_else(|e| e.into_inner());
            // Absent: never probed; None: a probe is running; Some(t): it ended at t.
            let due = p
                .get(id)
                .is_none_or(|last| last.is_some_and(|t: Instant| t.elapsed() >= REVIVE_EVERY));
            if due {
                p.insert(*id, None);
            }
            due
        };
        if fresh {
            let shared = shared.clone();
            let probing = probing.clone();
            let (id, reporters) = (*id, record.suspected_by.clone());
            tokio::spawn(async move {
                if revive {
                    revive_if_alive(&shared, id).await;
                } else {
                    confirm_suspect(&shared, id, reporters).await;
                }
                // Remember when: the dead are probed again after REVIVE_EVERY.
                probing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, Some(Instant::now()));
            });
        }
    }
    if cfg.flow_is_stale() {
        commit_flow(shared, cfg).await;
    }
}

/// How often the leader probes a stage it holds dead.
const REVIVE_EVERY: Duration = Duration::from_secs(2);

/// Whether `stage` answers a heartbeat request, trying twice (a loaded
/// machine may miss one deadline; a dead stage misses both).
async fn probe<S: ConfigStore>(shared: &Shared<S>, stage: NodeId) -> bool {
    for _ in 0..2 {
        let request =
            shared
                .transport
                .request(stage, FlowVersion(0), Message::Heartbeat { seq: 0 });
        if matches!(
            tokio::time::timeout(shared.probe_timeout, request).await,
            Ok(Ok(_))
        ) {
            return true;
        }
    }
    false
}

/// A stage held dead that answers is alive again.
async fn revive_if_alive<S: ConfigStore>(shared: &Shared<S>, stage: NodeId) {
    if probe(shared, stage).await {
        tracing::info!(%stage, "a stage held dead answers the leader: alive again");
        let _ = shared.store.propose(Command::MarkAlive { stage }).await;
    }
}

async fn confirm_suspect<S: ConfigStore>(
    shared: &Shared<S>,
    suspect: NodeId,
    reporters: BTreeSet<NodeId>,
) {
    let alive = probe(shared, suspect).await;
    if !alive {
        tracing::info!(stage = %suspect, "suspect confirmed dead by the leader's probe");
        let _ = shared
            .store
            .propose(Command::MarkDead { stage: suspect })
            .await;
        return;
    }
    tracing::info!(stage = %suspect, ?reporters, "suspect answers the leader: a broken link, not a death");
    let flow = shared.store.config().borrow().flow.clone();
    for reporter in reporters {
        for (supplier, consumer) in [(suspect, reporter), (reporter, suspect)] {
            if flow.serves(supplier, consumer) {
                let _ = shared
                    .store
                    .propose(Command::AvoidLink { supplier, consumer })
                    .await;
            }
        }
    }
    let _ = shared
        .store
        .propose(Command::MarkAlive { stage: suspect })
        .await;
}

async fn commit_flow<S: ConfigStore>(shared: &Shared<S>, cfg: &ClusterConfig) {
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
    match shared.store.propose(cmd).await {
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
        Err(e) => tracing::debug!(error = %e, "flow proposal failed; will retry"),
    }
}

/// Keeps the peer book in step with registered stages.
async fn sync_peers<S: ConfigStore>(shared: Shared<S>) {
    let mut config = shared.store.config();
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
