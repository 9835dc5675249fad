//! A coordinator: one participant of the configuration store, serving
//! clients (and, in Raft mode, Raft RPCs) on its QUIC endpoint, and doing the
//! leader's duties while it leads.
//!
//! | module | task of a running coordinator |
//! |---|---|
//! | this one | lifecycle: options, storage, endpoint, Raft start-up, the tasks, shutdown |
//! | [`serve`] | inbound: Raft RPCs to the local Raft; client requests (reads from the applied configuration, writes through the store) |
//! | [`leader`] | while this node leads: install the bootstrap spec, confirm suspects with its own probe, solve and commit flows |
//! | [`peers`] | keeps the transport's peer book in step with the registered stages |
//!
//! The store is a [`ConfigStore`]: the Raft group ([`RaftStore`]) or the
//! original's shared directory and file lock ([`FileLockStore`]).

mod leader;
mod peers;
mod serve;
mod slices;

use crate::cluster::{ClusterFile, SetupError};
use crate::config::{CoordMode, RaftTimeouts, FILE_LOCK_POLL};
use crate::config_store::{ConfigStore, RaftStore, StoreError};
use crate::events::EventLog;
use crate::filelock::FileLockStore;
use crate::raft::elect::{self, LeaderContact};
use crate::raft::heartbeat;
use crate::raft::network::Network;
use crate::raft::{store, Raft};
use crate::solver::SolverConfig;
use crate::state::{ClusterConfig, Command, CommandResponse};
use crate::timings::Timings;
use factoryos_wire::model::{ClusterStatus, Spec};
use factoryos_wire::{Inbound, NodeId, NodeIdentity, PeerBook, Transport, TransportConfig};
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Everything a coordinator needs to start.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    pub identity: NodeIdentity,
    pub listen: SocketAddr,
    /// All coordinators, this one included.
    pub members: BTreeMap<NodeId, SocketAddr>,
    /// Holds `raft.redb`.
    pub data_dir: PathBuf,
    pub timeouts: RaftTimeouts,
    /// Installed by the first leader if the store has no spec yet.
    pub spec: Option<Spec>,
    /// Stage ids allowed to connect before they are registered.
    pub stage_ids: Vec<NodeId>,
    pub transport: TransportConfig,
    pub solver: SolverConfig,
    /// How long the leader waits for a suspect to answer its probe.
    pub probe_timeout: Duration,
    /// How long a link reported broken between live stages is avoided before
    /// the leader tries it again (doubling each time it is avoided again).
    pub link_retry: Duration,
    pub mode: CoordMode,
    /// The directory every coordinator shares in file-lock mode.
    pub shared: PathBuf,
    /// Join a running group (added with `AddCoordinator`) instead of
    /// initialising a new one on first start.
    pub join: bool,
    /// Faults its endpoint injects into what it sends (tests and the harness).
    pub faults: Option<factoryos_wire::FaultController>,
}

impl CoordinatorOptions {
    /// Everything coordinator `id` of `cluster` needs to start, with the
    /// file's settings (mode, shared directory, timeouts, spec).
    pub fn from_cluster(cluster: &ClusterFile, id: NodeId) -> Result<Self, SetupError> {
        let listen = *cluster
            .coordinators
            .get(&id)
            .ok_or(SetupError::NotAMember(id))?;
        let identity = NodeIdentity::load(&cluster.certs, id)?;
        let chain = cluster.chain()?;
        Ok(CoordinatorOptions {
            identity,
            listen,
            members: cluster.coordinators.clone(),
            data_dir: cluster.node_dir(id),
            timeouts: cluster.raft,
            stage_ids: chain
                .as_ref()
                .map(|c| c.stages.iter().map(|s| s.id).collect())
                .unwrap_or_default(),
            spec: chain.map(|c| c.spec),
            transport: TransportConfig::default(),
            solver: SolverConfig::default(),
            // Loopback and LAN answer in well under a millisecond; half a
            // second leaves room for a loaded machine.
            probe_timeout: Duration::from_millis(500),
            link_retry: LINK_RETRY,
            mode: cluster.mode,
            shared: cluster.shared.clone(),
            join: false,
            faults: None,
        })
    }
}

/// How long an avoided link waits for its first retry: long against the
/// second or two a retry of a still-broken link costs its consumer.
pub const LINK_RETRY: Duration = Duration::from_secs(30);

/// How often a node looks at its fault file.
const FAULT_FILE_POLL: Duration = Duration::from_millis(200);

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
    #[error("file-lock store: {0}")]
    FileLock(StoreError),
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

/// What the coordinator's tasks share.
#[derive(Clone)]
struct Shared<S> {
    store: S,
    transport: Transport,
    solver: SolverConfig,
    probe_timeout: Duration,
    link_retry: Duration,
    slices: slices::SliceCache,
    bootstrap_spec: Option<Spec>,
    /// The node's event log (the flows it proposed as leader).
    log: EventLog,
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
        // Faults set from outside (the harness's `delay` nemesis) through
        // `faults.json` in the data directory; none without that file.
        let faults = opts
            .faults
            .clone()
            .unwrap_or_else(|| factoryos_wire::FaultController::new(id.0));
        let follow_faults = tokio::spawn(factoryos_wire::fault_file::follow(
            opts.data_dir.join(factoryos_wire::fault_file::FILE_NAME),
            faults.clone(),
            FAULT_FILE_POLL,
        ));
        let book = PeerBook::new();
        book.allow(NodeId::OPERATOR);
        for (member, addr) in &opts.members {
            book.insert(*member, *addr);
        }
        for stage in &opts.stage_ids {
            book.allow(*stage);
        }
        let (transport, inbox) = Transport::bind_socket(
            &opts.identity,
            socket,
            book,
            opts.transport.clone(),
            Some(faults),
        )?;

        let log = EventLog::in_dir(&opts.data_dir, id);
        let (backend, config, mut tasks) = match opts.mode {
            CoordMode::Raft => {
                let (store, raft_tasks) = start_raft(&opts, &transport, &log).await?;
                let config = store.config();
                let mut tasks = spawn_tasks(&opts, &transport, store.clone(), inbox, &log);
                tasks.extend(raft_tasks);
                (Backend::Raft(store), config, tasks)
            }
            CoordMode::FileLock => {
                let members = opts.members.clone();
                let store =
                    FileLockStore::open(&opts.shared, id, members, FILE_LOCK_POLL, log.clone())
                        .map_err(CoordError::FileLock)?;
                let config = store.config();
                let tasks = spawn_tasks(&opts, &transport, store.clone(), inbox, &log);
                (Backend::FileLock(store), config, tasks)
            }
        };

        tasks.push(follow_faults);
        tracing::info!(node = %id, addr = %opts.listen, mode = %opts.mode, "coordinator started");
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

/// Opens the redb storage, starts Raft and initialises the group on first
/// start; the store, and the tasks of prompt elections ([`elect`]) and of
/// heartbeats ([`heartbeat`]).
async fn start_raft(
    opts: &CoordinatorOptions,
    transport: &Transport,
    log: &EventLog,
) -> Result<(RaftStore, Vec<JoinHandle<()>>), CoordError> {
    let id = opts.identity.id();
    let timings = Timings::default();
    let (log_store, mut state_machine) =
        store::open(&opts.data_dir.join("raft.redb"), timings.clone())?;
    state_machine.record_flows_in(log.clone());
    let config = state_machine.subscribe();
    let t = opts.timeouts;
    let raft_config = openraft::Config {
        cluster_name: "factoryos".into(),
        // openraft's interval is how long a reply may take; the heartbeats
        // themselves are sent on `heartbeat_ms` by [`heartbeat`].
        heartbeat_interval: t.reply_timeout_ms(),
        enable_heartbeat: false,
        election_timeout_min: t.election_min_ms,
        election_timeout_max: t.election_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 200,
        ..Default::default()
    }
    .validate()?;
    let network = Network::new(transport.clone(), t.heartbeat(), timings.clone());
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
    let contact = LeaderContact::default();
    let elections = elect::spawn(raft.clone(), id.0, contact.clone(), t);
    let heartbeats = heartbeat::spawn(raft.clone(), t);
    let store = RaftStore::new(
        id,
        raft,
        transport.clone(),
        config,
        log.clone(),
        timings,
        contact,
    );
    Ok((store, vec![elections, heartbeats]))
}

fn spawn_tasks<S: ConfigStore>(
    opts: &CoordinatorOptions,
    transport: &Transport,
    store: S,
    inbox: mpsc::Receiver<Inbound>,
    log: &EventLog,
) -> Vec<JoinHandle<()>> {
    let shared = Shared {
        store,
        transport: transport.clone(),
        solver: opts.solver.clone(),
        probe_timeout: opts.probe_timeout,
        link_retry: opts.link_retry,
        slices: slices::SliceCache::default(),
        bootstrap_spec: opts.spec.clone(),
        log: log.clone(),
    };
    vec![
        tokio::spawn(serve::serve_inbound(shared.clone(), inbox)),
        tokio::spawn(leader::leader_duties(shared.clone())),
        tokio::spawn(peers::sync_peers(shared)),
    ]
}
