//! Building a stage's options from `cluster.toml` and its spec.

use crate::core::StageConfig;
use crate::shell::StageOptions;
use factoryos_coord::cluster::{ClusterFile, SetupError};
use factoryos_wire::{NodeId, NodeIdentity, TransportConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Why a stage could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StageSetupError {
    #[error(transparent)]
    Cluster(#[from] SetupError),
    #[error("the cluster file names no spec; stages need one (`spec = \"...\"` in cluster.toml)")]
    NoSpec,
    #[error("the spec declares no stage {0}")]
    UnknownStage(NodeId),
    #[error("certificates: {0}")]
    Certs(#[from] factoryos_wire::CertError),
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
    pub fn new(cycle: Duration) -> Self {
        Tuning {
            cycle,
            target_cycles: 3,
            max_in_flight: 2,
            outbound_cap: 8,
            suspect_after: None,
        }
    }
}

/// Options for stage `id` of `cluster` with the given tuning.
pub fn options(
    cluster: &ClusterFile,
    id: NodeId,
    tuning: Tuning,
) -> Result<StageOptions, StageSetupError> {
    let cycle = tuning.cycle;
    let chain = cluster.chain()?.ok_or(StageSetupError::NoSpec)?;
    let decl = chain
        .stages
        .iter()
        .find(|s| s.id == id)
        .ok_or(StageSetupError::UnknownStage(id))?;
    let recipe = chain
        .spec
        .recipe(&decl.item)
        .expect("a validated spec defines every stage's type")
        .clone();
    let is_final = decl.item == chain.spec.final_type;
    let mut core = StageConfig::new(id, decl.item.clone(), recipe, is_final);
    core.cycle = cycle;
    // Time-based settings follow the cycle, with floors for tiny cycles.
    core.request_timeout = (cycle * 10).max(Duration::from_millis(500));
    core.park_timeout = core.request_timeout / 2;
    core.retransmit = (cycle * 5).max(Duration::from_millis(250));
    core.heartbeat_every = (cycle * 2).max(Duration::from_millis(100));
    core.suspect_after = tuning
        .suspect_after
        .unwrap_or((cycle * 10).max(Duration::from_millis(1000)));
    core.target_cycles = tuning.target_cycles.max(1);
    core.max_in_flight = tuning.max_in_flight.max(1);
    core.outbound_cap = tuning.outbound_cap;
    // Without a declared address, listen where the coordinators are reachable
    // (loopback for a local cluster) on any free port.
    let default_ip = match cluster.coordinators.values().next() {
        Some(a) if a.ip().is_loopback() => a.ip(),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let dir = cluster.data.join(format!("n{}", id.0));
    Ok(StageOptions {
        core,
        identity: NodeIdentity::load(&cluster.certs, id)?,
        listen: decl.addr.unwrap_or(SocketAddr::new(default_ip, 0)),
        wal_path: dir.join("wal.redb"),
        metrics_path: Some(dir.join("metrics.json")),
        metrics_every: Duration::from_secs(1),
        coordinators: cluster.coordinators.clone(),
        tick: (cycle / 10).clamp(Duration::from_millis(2), Duration::from_millis(20)),
        capacity: decl.capacity,
        transport: TransportConfig::default(),
        faults: None,
    })
}
