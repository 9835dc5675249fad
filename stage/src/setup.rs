//! Building a stage's options from `cluster.toml` and its spec, and where
//! a stage keeps its files.

use crate::core::StageConfig;
use crate::host::HostOptions;
use crate::shell::StageOptions;
use factoryos_coord::cluster::{ClusterFile, SetupError};
use factoryos_coord::spec::StageDecl;
use factoryos_wire::model::Spec;
use factoryos_wire::{ItemType, NodeId, NodeIdentity, TransportConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The file name of a host's WAL, in its first stage's node directory.
pub const WAL_FILE: &str = "wal.redb";

/// The files of one stage, in its node directory (`<data>/nN/`). Its lot
/// records are in its host's WAL ([`StageFiles::host_wal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageFiles {
    /// The metrics a running stage rewrites (a [`crate::metrics::StageReport`]).
    pub metrics: PathBuf,
    /// Its event log (flows adopted; see `factoryos_coord::events`).
    pub events: PathBuf,
    /// Faults set from outside while it runs (see `factoryos_wire::fault_file`).
    pub faults: PathBuf,
    /// Which stages of its host must be down, when it is its host's first
    /// stage (see [`crate::host::down`]).
    pub down: PathBuf,
}

impl StageFiles {
    pub fn of(cluster: &ClusterFile, id: NodeId) -> Self {
        let dir = cluster.node_dir(id);
        StageFiles {
            metrics: dir.join("metrics.json"),
            events: dir.join(factoryos_coord::events::FILE_NAME),
            faults: dir.join(factoryos_wire::fault_file::FILE_NAME),
            down: dir.join(crate::host::down::FILE_NAME),
        }
    }

    /// The WAL of the host process running stages `ids`: `wal.redb` in the
    /// node directory of its lowest id (`None` for no ids).
    pub fn host_wal(cluster: &ClusterFile, ids: &[NodeId]) -> Option<PathBuf> {
        let first = ids.iter().min()?;
        Some(cluster.node_dir(*first).join(WAL_FILE))
    }
}

/// Why a stage could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StageSetupError {
    #[error(transparent)]
    Cluster(#[from] SetupError),
    #[error("the cluster file names no spec; stages need one (`spec = \"...\"` in cluster.toml)")]
    NoSpec,
    #[error("the spec declares no stage {0}")]
    UnknownStage(NodeId),
    #[error("stage {0} makes `{1}`, which the spec does not define")]
    UnknownType(NodeId, ItemType),
    #[error("certificates: {0}")]
    Certs(#[from] factoryos_wire::CertError),
    #[error("no stage ids given")]
    NoStages,
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error("stages {first} and {other} of one host process declare different addresses ({a} and {b}); a host listens on one")]
    HostAddresses {
        first: NodeId,
        other: NodeId,
        a: SocketAddr,
        b: SocketAddr,
    },
}

/// Tunables of a stage's trading and failure detection.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub cycle: Duration,
    /// Keep each input near this many cycles' worth of units.
    pub target_cycles: u32,
    /// Most requests in flight to one supplier.
    pub max_in_flight: usize,
    /// Most lots waiting outbound before cycles block.
    pub outbound_cap: usize,
    /// Silence after which a neighbour is reported suspect (default: 10 cycles, at least 1 s).
    pub suspect_after: Option<Duration>,
}

impl Tuning {
    /// The stage defaults ([`StageConfig`]'s) with cycles of `cycle`.
    pub fn new(cycle: Duration) -> Self {
        Tuning {
            cycle,
            target_cycles: StageConfig::DEFAULT_TARGET_CYCLES,
            max_in_flight: StageConfig::DEFAULT_MAX_IN_FLIGHT,
            outbound_cap: StageConfig::DEFAULT_OUTBOUND_CAP,
            suspect_after: None,
        }
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning::new(StageConfig::DEFAULT_CYCLE)
    }
}

/// How often a stage's shell ticks its core, for cycles of `cycle`: a
/// tenth of a cycle, between 2 and 20 ms.
pub fn tick_for(cycle: Duration) -> Duration {
    (cycle / 10).clamp(Duration::from_millis(2), Duration::from_millis(20))
}

/// The core settings of stage `decl` of `spec` with the given tuning
/// (`None` if the spec does not define its type): what a stage process and
/// the simulator both run.
pub fn stage_config(spec: &Spec, decl: &StageDecl, tuning: Tuning) -> Option<StageConfig> {
    let recipe = spec.recipe(&decl.item)?.clone();
    let is_final = decl.item == spec.final_type;
    let mut core = StageConfig::new(decl.id, decl.item.clone(), recipe, is_final);
    core.set_cycle(tuning.cycle);
    if let Some(after) = tuning.suspect_after {
        core.set_suspect_after(after);
    }
    core.target_cycles = tuning.target_cycles.max(1);
    core.max_in_flight = tuning.max_in_flight.max(1);
    core.outbound_cap = tuning.outbound_cap;
    core.capacity = decl.capacity.max(1);
    Some(core)
}

/// Options for stage `id` of `cluster` with the given tuning.
pub fn options(
    cluster: &ClusterFile,
    id: NodeId,
    tuning: Tuning,
) -> Result<StageOptions, StageSetupError> {
    let cycle = tuning.cycle;
    let chain = cluster.chain()?.ok_or(StageSetupError::NoSpec)?;
    let decl = declared(&chain.stages, id)?;
    let core = stage_config(&chain.spec, decl, tuning)
        .ok_or_else(|| StageSetupError::UnknownType(id, decl.item.clone()))?;
    let files = StageFiles::of(cluster, id);
    Ok(StageOptions {
        core,
        metrics_path: Some(files.metrics),
        events_path: Some(files.events),
        metrics_every: Duration::from_secs(1),
        coordinators: cluster.coordinators.clone(),
        tick: tick_for(cycle),
        capacity: decl.capacity,
    })
}

fn declared(stages: &[StageDecl], id: NodeId) -> Result<&StageDecl, StageSetupError> {
    stages
        .iter()
        .find(|s| s.id == id)
        .ok_or(StageSetupError::UnknownStage(id))
}

/// Options of the host process running stages `ids` of `cluster`: their
/// certificate (`node-N` for one stage, `host-N` for several), the address
/// they declare (all the same one, or none), the first stage's fault file
/// and down file, and the host's WAL ([`StageFiles::host_wal`]; refused if another of the
/// stages has a WAL of its own from a run with another grouping).
pub fn host_options(cluster: &ClusterFile, ids: &[NodeId]) -> Result<HostOptions, StageSetupError> {
    let first = *ids.iter().min().ok_or(StageSetupError::NoStages)?;
    let wal_path = StageFiles::host_wal(cluster, ids).ok_or(StageSetupError::NoStages)?;
    for id in ids.iter().filter(|id| **id != first) {
        let own = cluster.node_dir(*id).join(WAL_FILE);
        if own.exists() {
            return Err(crate::wal::WalError::TwoHomes {
                stage: *id,
                a: own,
                b: wal_path,
            }
            .into());
        }
    }
    let chain = cluster.chain()?.ok_or(StageSetupError::NoSpec)?;
    let mut listen: Option<(NodeId, SocketAddr)> = None;
    for id in ids {
        let Some(addr) = declared(&chain.stages, *id)?.addr else {
            continue;
        };
        match listen {
            Some((other, a)) if a != addr => {
                return Err(StageSetupError::HostAddresses {
                    first: other,
                    other: *id,
                    a,
                    b: addr,
                })
            }
            _ => listen = Some((*id, addr)),
        }
    }
    // Without a declared address, listen where the coordinators are reachable
    // (loopback for a local cluster) on any free port.
    let default_ip = match cluster.coordinators.values().next() {
        Some(a) if a.ip().is_loopback() => a.ip(),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Ok(HostOptions {
        identity: NodeIdentity::load_host(&cluster.certs, ids)?,
        listen: listen.map_or(SocketAddr::new(default_ip, 0), |(_, a)| a),
        coordinators: cluster.coordinators.clone(),
        transport: TransportConfig::default(),
        faults: Some(factoryos_wire::FaultController::new(first.0)),
        faults_path: Some(StageFiles::of(cluster, first).faults),
        down_path: Some(StageFiles::of(cluster, first).down),
        wal_path,
    })
}
