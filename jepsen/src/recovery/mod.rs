//! How fast the whole chain recovers from one fault, Raft coordination
//! against the file lock, on real processes: `factoryos bench recovery`.
//!
//! Every trial is a fresh cluster of the window chain (3 coordinators, 6
//! stages, the same chain and settings for both modes); trials run
//! interleaved (raft, file-lock, raft, ...) so the machine's noise hits both
//! alike. After a warm-up one fault is injected as [`Op`](crate::op::Op)s, the operations
//! `run` and the partition harness apply; its phases ([`phases::Phase`]) are
//! then read from the nodes' event logs, which share the machine's monotonic
//! clock. A leader fault alone does not stop production in either mode (the
//! stages trade on the flow they hold), so every leader fault is paired with
//! the SIGKILL of a supplier, as when one machine ran both (in the original
//! design the leader was a stage): the reroute then waits for a new leader.
//!
//! | module | what lives there |
//! |---|---|
//! | [`phases`] | the phases of one recovery, from the event logs |
//! | `trial` | one trial: the cluster, the warm-up, the fault, the observation, the heal, the audit |
//! | [`report`] | percentiles per fault × mode × phase, ratios, `recovery.csv`, the CDF plot, JSON |

pub mod phases;
pub mod report;
mod trial;

use crate::local::LocalError;
use factoryos_coord::config::{CoordMode, RaftTimeouts};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

pub use trial::TrialRecord;

/// A fault `bench recovery` injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryFault {
    /// SIGKILL of a supplier that has an alternative.
    KillStage,
    /// SIGKILL of the coordination leader, and of a supplier.
    KillLeader,
    /// SIGSTOP of the leader for the hold time, then SIGCONT; a supplier is killed.
    PauseLeader,
    /// SIGKILL of a supplier and its immediate restart (WAL replay).
    RestartStage,
    /// The leader cut off from every other host for the hold time
    /// (network-namespace hosts); a supplier is killed.
    PartitionLeader,
}

impl RecoveryFault {
    pub const ALL: [RecoveryFault; 5] = [
        RecoveryFault::KillStage,
        RecoveryFault::KillLeader,
        RecoveryFault::PauseLeader,
        RecoveryFault::RestartStage,
        RecoveryFault::PartitionLeader,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RecoveryFault::KillStage => "kill-stage",
            RecoveryFault::KillLeader => "kill-leader",
            RecoveryFault::PauseLeader => "pause-leader",
            RecoveryFault::RestartStage => "restart-stage",
            RecoveryFault::PartitionLeader => "partition-leader",
        }
    }

    /// Whether the fault hits the coordination leader.
    pub fn hits_leader(self) -> bool {
        matches!(
            self,
            RecoveryFault::KillLeader | RecoveryFault::PauseLeader | RecoveryFault::PartitionLeader
        )
    }

    /// Whether the fault needs network-namespace hosts (root, `ip netns`).
    pub fn needs_netns(self) -> bool {
        self == RecoveryFault::PartitionLeader
    }

    /// A comma-separated list of names, or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<RecoveryFault>, String> {
        crate::names::parse_list(s, &Self::ALL, Self::name, "fault")
    }
}

/// The fault called `name`.
fn names_fault(name: &str) -> Result<RecoveryFault, String> {
    crate::names::parse_one(name, &RecoveryFault::ALL, RecoveryFault::name, "fault")
}

impl std::fmt::Display for RecoveryFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `factoryos bench recovery` measures, and how.
#[derive(Debug, Clone)]
pub struct RecoveryBench {
    /// Trials per fault and mode.
    pub trials: usize,
    pub faults: Vec<RecoveryFault>,
    /// The stores, interleaved in this order.
    pub modes: Vec<CoordMode>,
    /// The stages' manufacture cycle.
    pub cycle: Duration,
    /// Production before the fault.
    pub warmup: Duration,
    /// How long a pause or a partition lasts.
    pub hold: Duration,
    /// How long a trial waits for production to resume.
    pub deadline: Duration,
    pub timeouts: RaftTimeouts,
    /// Keep every trial's directory (logs, event logs, WALs), not only a
    /// failed one's.
    pub keep: bool,
}

impl Default for RecoveryBench {
    fn default() -> Self {
        RecoveryBench {
            trials: 30,
            faults: RecoveryFault::ALL.to_vec(),
            modes: CoordMode::ALL.to_vec(),
            cycle: Duration::from_millis(100),
            warmup: Duration::from_secs(3),
            hold: Duration::from_secs(2),
            deadline: Duration::from_secs(20),
            timeouts: RaftTimeouts::default(),
            keep: false,
        }
    }
}

/// Why the benchmark could not run (a trial that merely misses a phase is
/// a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error(transparent)]
    Op(#[from] crate::op::OpError),
    #[error("{0} did not happen within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the chain: {0}")]
    Spec(#[from] factoryos_coord::spec::SpecErrors),
    #[error("the coordinators: {0}")]
    Client(#[from] factoryos_coord::client::ClientError),
    #[error("audit: {0}")]
    Wal(#[from] factoryos_stage::wal::WalError),
    #[error("network-namespace hosts: {0}")]
    Netns(#[from] crate::hosts::netns::NetnsError),
    #[error("the chain has no supplier with an alternative to kill")]
    NoVictim,
    #[error("{fault} trial {trial} in {mode}: {source} (kept in {dir})")]
    Trial {
        fault: RecoveryFault,
        mode: CoordMode,
        trial: usize,
        dir: String,
        source: Box<RecoveryError>,
    },
}

/// Runs every trial of `bench` in `dir` (one directory per trial) with
/// `binary`'s processes; `progress` hears of every finished trial.
pub async fn run(
    bench: &RecoveryBench,
    dir: &Path,
    binary: &Path,
    mut progress: impl FnMut(&TrialRecord),
) -> Result<Vec<TrialRecord>, RecoveryError> {
    if bench.faults.iter().any(|f| f.needs_netns()) {
        crate::hosts::netns::check_support()?;
    }
    let mut records = Vec::new();
    for fault in &bench.faults {
        for trial in 0..bench.trials {
            for mode in &bench.modes {
                let at = dir.join(format!("{fault}-{}-{trial}", mode.name()));
                let record = trial::run(bench, *fault, *mode, trial, &at, binary)
                    .await
                    .map_err(|source| RecoveryError::Trial {
                        fault: *fault,
                        mode: *mode,
                        trial,
                        dir: at.display().to_string(),
                        source: Box::new(source),
                    })?;
                progress(&record);
                // A passed trial's files are not needed; a failed one's stay.
                if !bench.keep {
                    let _ = std::fs::remove_dir_all(&at);
                }
                records.push(record);
            }
        }
    }
    Ok(records)
}
