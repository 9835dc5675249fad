//! `factoryos sim`: the real stage cores, the real flow solver and the real
//! state machine in one process, under a simulated network and clock,
//! deterministic from a seed (as FoundationDB and TigerBeetle test
//! themselves). What is simulated, and what is not:
//!
//! | part | in the simulator |
//! |---|---|
//! | stages | [`factoryos_stage::core::StageCore`] itself; WAL in memory with the shell's rule (commit, then send; inputs wait during a commit) |
//! | registration | a host's stages start together and register in one `RegisterStages` request, all or none, retried together after the host's backoff (`registration.rs`), as a host process does |
//! | coordinator | [`factoryos_coord::state::ClusterConfig`] and [`factoryos_coord::lead`]'s decisions; Raft reduced to a commit latency, one leader that never fails |
//! | slices | [`factoryos_wire::SliceIndex`] and the digest rule, as the coordinators answer watches |
//! | network | latency (least + exponential jitter), loss between stages, hosts cut off from everything (partitions) |
//! | operations | the [`crate::op::Op`] values `run` draws from the same schedule: crashes and recoveries of host processes, recipe updates, added stages |
//!
//! The summary is `run`'s, from the same functions (ideal twin, lot audit,
//! reroutes through the genealogy), in simulated time; the same seed gives
//! the same summary byte for byte. Wall-clock figures come after it.

mod coord;
mod leader;
mod net;
mod ops;
mod queue;
mod registration;
pub mod scale;
mod stage;
mod summary;
mod wakes;
mod wal;
mod world;

#[cfg(test)]
mod tests;

pub use net::NetConfig;
pub use summary::{SimFigures, SimReport, WallFigures};

use crate::experiment::schedule::{CrashScope, Rates};
use factoryos_coord::spec::ChainSpec;
use std::time::{Duration, Instant};
use world::World;

/// Everything a simulation needs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub chain: ChainSpec,
    /// Host processes for the stages (see `Live::hosted`).
    pub hosts: Option<usize>,
    /// What the chain is called in the summary (a preset, `spec`, `generated`).
    pub name: String,
    pub seed: u64,
    /// Simulated time the chain runs (then it drains for the audit).
    pub duration: Duration,
    pub cycle: Duration,
    /// Crashes, recoveries, recipe updates and added stages per minute.
    pub rates: Rates,
    pub allow_outages: bool,
    /// What a crash kills: a host process or one stage inside it.
    pub crash_scope: CrashScope,
    pub net: NetConfig,
    /// Hosts cut off from everything, per minute, each for `partition_hold`.
    pub partition_rate: f64,
    pub partition_hold: Duration,
    /// A command's time from proposal to applied (Raft's commit).
    pub commit_latency: Duration,
    /// One WAL commit (a redb transaction with its fsync).
    pub wal_latency: Duration,
    /// The leader's time to solve a flow, per edge of the flow: the
    /// simulated clock's model of the solver's cost (its wall time is
    /// reported apart, and a seed must fix every simulated figure).
    pub solve_per_edge: Duration,
    /// Stages start at random moments over this long.
    pub start_spread: Duration,
    /// The leader's first wait before it retries an avoided link.
    pub link_retry: Duration,
    /// At the end, restart every crashed host before the audit, so that no
    /// lot may stay in transit (as the partition harness's final heal).
    pub final_recovery: bool,
    /// Tick every running stage at every tick, not only those due (slower,
    /// and the same run: the check of `StageCore::next_tick`).
    pub tick_every_stage: bool,
}

impl SimConfig {
    /// A simulation of `chain` with the defaults: 100 ms cycles, a
    /// loopback-like network, 3 ms commits (the Raft group's measured
    /// p50), 2 ms WAL commits, 300 ns of solving per flow edge (measured
    /// here: 2.4 ms for 7,600 edges, 22 ms for 76,000), stages starting
    /// over the first second.
    pub fn new(chain: ChainSpec, seed: u64, duration: Duration) -> Self {
        SimConfig {
            chain,
            hosts: None,
            name: "generated".into(),
            seed,
            duration,
            cycle: Duration::from_millis(100),
            rates: Rates::default(),
            allow_outages: false,
            crash_scope: CrashScope::Host,
            net: NetConfig::default(),
            partition_rate: 0.0,
            partition_hold: Duration::from_secs(5),
            commit_latency: Duration::from_millis(3),
            wal_latency: Duration::from_millis(2),
            solve_per_edge: Duration::from_nanos(300),
            start_spread: Duration::from_secs(1),
            link_retry: factoryos_coord::node::LINK_RETRY,
            final_recovery: false,
            tick_every_stage: false,
        }
    }
}

/// Where a simulation is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct SimProgress {
    pub simulated: Duration,
    pub of: Duration,
    pub final_products: u64,
    pub events: u64,
}

/// The longest the chain may take to settle its trades after the run's time.
const SETTLE: Duration = Duration::from_secs(5);

/// Runs the simulation; `progress` hears of it every simulated second.
pub fn run(config: SimConfig, mut progress: impl FnMut(SimProgress)) -> SimReport {
    let wall = Instant::now();
    let duration = config.duration;
    let mut world = World::new(config);
    let mut t = Duration::ZERO;
    while t < duration {
        t = (t + Duration::from_secs(1)).min(duration);
        world.run_until(t);
        progress(SimProgress {
            simulated: t,
            of: duration,
            final_products: world.final_products_so_far(),
            events: world.events,
        });
    }
    world.begin_drain();
    let end = duration + SETTLE;
    while world.now < end && !world.settled() {
        let next = world.now + Duration::from_millis(100);
        world.run_until(next);
    }
    summary::summarise(world, duration, wall.elapsed())
}
