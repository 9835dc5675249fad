//! `factoryos run`: a whole local cluster of real processes on a generated
//! (or given) chain, faults injected at the original's rates, and the
//! results: the original's metric table, a summary against the ideal twin,
//! and files.

//!
//! | module | what lives there |
//! |---|---|
//! | this one | the run's configuration, its chain, and the loop: a schedule of operations, observed |
//! | [`rig`] | the cluster under test: processes, the operator client, starting, applying an operation, stopping |
//! | [`live`] | which stages exist, on which host processes, and what is down |
//! | [`schedule`] | the original's rate-based operations generator, as a seeded schedule of `Op`s |
//! | [`record`] | what the run saw happen: faults, chain changes, crashes followed, recoveries, the op log |
//! | [`observe`] | polling while it runs: progress, crash detection, recoveries' first lots |
//! | [`finish`] | after the stop: audit, genealogy, the ideal twin, summary, files and plots |
//! | [`ideal`], [`reroute`], [`results`], [`plots`] | the twin, reroute figures, the table and summary, the PNGs |

pub mod coordinators;
pub mod finish;
pub mod ideal;
pub mod live;
pub mod observe;
pub mod plots;
pub mod record;
pub mod reroute;
pub mod results;
pub mod rig;
pub mod schedule;
pub mod shares;

use crate::local::LocalError;
use factoryos_coord::config::CoordMode;
use factoryos_coord::generate::{generate, ChainShape, Complexity};
use factoryos_coord::spec::ChainSpec;
use factoryos_wire::NodeId;
use results::Summary;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

/// A chain size, as in the original's experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// 5 types x 2 stages.
    Small,
    /// 8 types x 2 stages.
    Med,
    /// 20 types x 2 stages.
    Large,
    /// 200 types x 5 stages (1,000 stages, hosted 50 to a process).
    Xl,
}

impl Preset {
    pub fn shape(self) -> (usize, usize) {
        match self {
            Preset::Small => (5, 2),
            Preset::Med => (8, 2),
            Preset::Large => (20, 2),
            Preset::Xl => (200, 5),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Small => "small",
            Preset::Med => "med",
            Preset::Large => "large",
            Preset::Xl => "xl",
        }
    }
}

impl Preset {
    /// The preset's chain in the original's shape, from `seed`.
    pub fn chain(self, seed: u64) -> ChainSpec {
        let (types, per_type) = self.shape();
        let mut shape = ChainShape::new(types, per_type);
        shape.seed = seed;
        shape.first_id = 11;
        generate(&shape)
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "small" => Ok(Preset::Small),
            "med" | "medium" => Ok(Preset::Med),
            "large" => Ok(Preset::Large),
            "xl" => Ok(Preset::Xl),
            other => Err(format!(
                "unknown preset {other:?}: use small, med, large or xl"
            )),
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub chain: ChainChoice,
    /// Host processes for the stages (see [`live::Live::hosted`]).
    pub hosts: Option<usize>,
    /// The fault schedule's seed (the generated chain's too).
    pub seed: u64,
    pub duration: Duration,
    pub cycle: Duration,
    /// Stage crashes per minute.
    pub failure_rate: f64,
    /// Recoveries per minute.
    pub recover_rate: f64,
    /// Recipe updates per minute.
    pub update_dep_rate: f64,
    /// Stages added per minute.
    pub add_stage_rate: f64,
    /// Whether a crash may take the last live stage of a type.
    pub allow_outages: bool,
    /// What a crash kills: a host process or one stage inside it.
    pub crash_scope: schedule::CrashScope,
    /// Whether the Raft leader may be killed too.
    pub leader_can_fail: bool,
    pub mode: CoordMode,
    pub coordinators: u64,
    /// The coordinators' Raft heartbeat interval (see
    /// `RaftTimeouts::with_heartbeat`); `None`: [`rig::default_heartbeat_ms`].
    pub raft_heartbeat_ms: Option<u64>,
    /// The run directory (cluster, logs, results).
    pub out: PathBuf,
    /// The `factoryos` binary to start processes with.
    pub binary: PathBuf,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("spec: {0}")]
    Spec(#[from] factoryos_coord::spec::SpecErrors),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the cluster did not come up within {0:?}: {1}")]
    Startup(Duration, String),
    #[error("audit: {0}")]
    Wal(#[from] factoryos_stage::wal::WalError),
    #[error("{0}")]
    Op(#[from] crate::op::OpError),
}

/// Live figures for a progress display.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub elapsed: Duration,
    pub final_products: u64,
    pub successful_ratio: f64,
    pub live: usize,
    pub dead: usize,
    pub leader: Option<NodeId>,
    pub last_op: Option<String>,
    /// Operations since the previous report, as `at_s` and what was done.
    pub new_ops: Vec<(f64, String)>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub table: String,
    pub summary: Summary,
    pub out: PathBuf,
    /// Why a plot was not drawn, if one was not.
    pub plot_notes: Vec<String>,
}

/// Which chain a run (or a simulation) makes: a spec file, or a generated
/// chain in the original's shape (a preset, or its shape overridden).
#[derive(Debug, Clone)]
pub struct ChainChoice {
    pub preset: Preset,
    /// A spec file instead of a generated chain.
    pub spec: Option<PathBuf>,
    pub num_types: Option<usize>,
    pub nodes_per_type: Option<usize>,
    pub complexity: Complexity,
    pub seed: u64,
    pub replicate_ends: bool,
}

impl ChainChoice {
    /// The preset's chain from `seed`.
    pub fn preset(preset: Preset, seed: u64) -> Self {
        ChainChoice {
            preset,
            spec: None,
            num_types: None,
            nodes_per_type: None,
            complexity: Complexity::Low,
            seed,
            replicate_ends: false,
        }
    }

    /// The chain.
    pub fn chain(&self) -> Result<ChainSpec, RunError> {
        if let Some(path) = &self.spec {
            return Ok(factoryos_coord::spec::load(path)?);
        }
        let (types, per_type) = self.preset.shape();
        let mut shape = ChainShape::new(
            self.num_types.unwrap_or(types),
            self.nodes_per_type.unwrap_or(per_type),
        );
        shape.complexity = self.complexity;
        shape.seed = self.seed;
        shape.replicate_ends = self.replicate_ends;
        shape.first_id = 11;
        Ok(generate(&shape))
    }

    /// What summaries call it: `spec`, the preset, or `generated` when the
    /// preset's shape was overridden.
    pub fn name(&self) -> String {
        if self.spec.is_some() {
            "spec".into()
        } else if self.num_types.is_some() || self.nodes_per_type.is_some() {
            "generated".into()
        } else {
            self.preset.name().into()
        }
    }
}

/// The chain of a run.
pub fn chain(config: &RunConfig) -> Result<ChainSpec, RunError> {
    config.chain.chain()
}

impl RunConfig {
    /// The schedule's rates.
    pub fn rates(&self) -> schedule::Rates {
        schedule::Rates {
            failure: self.failure_rate,
            recover: self.recover_rate,
            update_dep: self.update_dep_rate,
            add_stage: self.add_stage_rate,
        }
    }
}

/// How often the loop looks at the schedule and the cluster.
const LOOP_EVERY: Duration = Duration::from_millis(20);

/// Runs the experiment. `stop` ends it early (Ctrl-C); results are still made.
pub async fn run(
    config: &RunConfig,
    mut progress: impl FnMut(&Progress),
    stop: watch::Receiver<bool>,
) -> Result<RunReport, RunError> {
    let chain = chain(config)?;
    let mut rig = rig::Rig::start(config, &chain).await?;
    let mut record = record::Record::new(&chain);
    let mut schedule =
        schedule::RateSchedule::new(config.seed, config.rates(), config.allow_outages)
            .crashing(config.crash_scope);
    let mut observer = observe::Observer::default();
    while rig.clock.elapsed() < config.duration && !*stop.borrow() {
        let moment = rig.moment();
        for due in schedule.due(moment.elapsed) {
            let leader = match due {
                schedule::Due::Crash
                    if config.leader_can_fail && rig.live.dead_coords.is_empty() =>
                {
                    rig.leader().await
                }
                _ => None,
            };
            if let Some(op) = schedule.draw(due, moment.elapsed, &rig.live, &record.spec, leader) {
                rig.apply(op, &moment, &mut record).await?;
            }
        }
        observer.poll(&mut rig, &mut record, &mut progress).await;
        tokio::time::sleep(LOOP_EVERY).await;
    }
    finish::finish(config, &chain, rig, record, observer).await
}
