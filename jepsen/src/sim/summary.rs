//! A simulation's results: `run`'s [`Summary`] computed by `run`'s own
//! functions from the simulated WALs and counters, the simulator's own
//! figures (flows and their bytes, registration), and apart from both the
//! wall-clock figures, the only ones a seed does not fix.

use super::world::World;
use crate::experiment::finish::reroutes;
use crate::experiment::ideal;
use crate::experiment::observe::successful_ratio;
use crate::experiment::reroute::Genealogy;
use crate::experiment::results::{self, Reports, Summary};
use factoryos_coord::config::CoordMode;
use factoryos_stage::audit::audit;
use factoryos_stage::records::Records;
use factoryos_stage::setup::Tuning;
use factoryos_wire::message::MessageKind;
use factoryos_wire::NodeId;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

/// What only the simulator measures; a seed fixes every figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimFigures {
    /// Host processes the stages ran in.
    pub hosts: usize,
    /// Types on the longest path from a raw material to the final product:
    /// the pipeline a first product must cross (the twin has none).
    pub depth: usize,
    /// Simulated ms from the start until every stage of the chain had registered.
    pub all_registered_ms: Option<u64>,
    pub flows_committed: u64,
    /// Committed whole (the others as changes).
    pub flows_whole: u64,
    /// Flow proposals refused as stale (the configuration changed meanwhile).
    pub flows_refused: u64,
    /// Edges of the last flow.
    pub flow_edges: usize,
    /// A flow proposal's log entry, encoded: mean and largest.
    pub entry_bytes_mean: f64,
    pub entry_bytes_max: u64,
    /// Slice answers sent to the stages per committed flow: mean and largest.
    pub slice_bytes_mean: f64,
    pub slice_bytes_max: u64,
    /// Hosts cut off by the partition schedule.
    pub partitions: u64,
    /// Events the simulation handled.
    pub events: u64,
}

/// Wall-clock figures: how fast the machine ran the simulation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WallFigures {
    pub wall_s: f64,
    /// Simulated seconds per wall second.
    pub speed: f64,
    pub solves: usize,
    pub solve_ms_mean: f64,
    pub solve_ms_max: f64,
    /// Stage ticks run, and what ticking every running stage at every tick
    /// would have run (the same summary either way: `SimConfig::tick_every_stage`).
    pub stage_ticks: u64,
    pub stage_slots: u64,
}

/// A simulation's results.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub summary: Summary,
    pub sim: SimFigures,
    pub wall: WallFigures,
    /// The simulated setting, for the first line.
    #[serde(skip)]
    setting: String,
}

impl SimReport {
    /// The summary a seed fixes, byte for byte.
    pub fn render(&self) -> String {
        let (sum, sim) = (&self.summary, &self.sim);
        let mut s = format!(
            "{} chain (seed {}): {} types ({} deep), {} stages on {} hosts, {:.0} s simulated of {} ms cycles ({})\n",
            sum.preset, sum.seed, sum.types, sim.depth, sum.stages, sim.hosts, sum.duration_s, sum.cycle_ms, self.setting
        );
        s += &sum.render_figures();
        s.push('\n');
        let ms = |v: Option<u64>| v.map_or("never".to_string(), |v| format!("after {v} ms"));
        let _ = writeln!(
            s,
            "registration          every stage registered {}",
            ms(sim.all_registered_ms)
        );
        let _ = writeln!(
            s,
            "flows                 {} committed ({} whole, {} as changes; {} proposals refused as stale); {} edges at the end",
            sim.flows_committed,
            sim.flows_whole,
            sim.flows_committed - sim.flows_whole,
            sim.flows_refused,
            sim.flow_edges
        );
        let _ = writeln!(
            s,
            "flow bytes            log entry {:.0} mean / {} max; slices sent to the stages {:.0} mean / {} max per flow",
            sim.entry_bytes_mean, sim.entry_bytes_max, sim.slice_bytes_mean, sim.slice_bytes_max
        );
        let _ = write!(
            s,
            "simulation            {} events; {} hosts cut off by partitions",
            sim.events, sim.partitions
        );
        s
    }

    /// How long it took: not fixed by the seed.
    pub fn render_wall(&self) -> String {
        let w = &self.wall;
        format!(
            "wall time             {:.1} s ({:.1}x real time); flow solved {} times, {:.2} ms mean, {:.2} ms max; {} stage ticks ({:.0}% of every running stage at every tick)",
            w.wall_s,
            w.speed,
            w.solves,
            w.solve_ms_mean,
            w.solve_ms_max,
            w.stage_ticks,
            100.0 * w.stage_ticks as f64 / w.stage_slots.max(1) as f64
        )
    }
}

/// Types on the longest path from a raw material to the final type.
fn depth(spec: &factoryos_wire::model::Spec) -> usize {
    let Ok(order) = factoryos_coord::solver::topological_order(spec) else {
        return 0;
    };
    let mut depth: std::collections::HashMap<&factoryos_wire::ItemType, usize> = Default::default();
    for t in order {
        let d = spec.recipe(t).map_or(0, |r| {
            r.inputs
                .keys()
                .map(|i| depth.get(i).copied().unwrap_or(0))
                .max()
                .unwrap_or(0)
        });
        depth.insert(t, d + 1);
    }
    depth.get(&spec.final_type).copied().unwrap_or(0)
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

/// The results of `world` after a run of `duration` that took `wall`.
pub(super) fn summarise(mut world: World, duration: Duration, wall: Duration) -> SimReport {
    let reports: Reports = world
        .stages
        .iter()
        .map(|(id, s)| (*id, s.report()))
        .collect();
    // The WALs are moved out, not copied: at scale they are most of the memory.
    let records: Vec<(NodeId, Records)> = world
        .stages
        .iter_mut()
        .map(|(id, s)| (*id, std::mem::take(&mut s.wal).into_records()))
        .collect();
    let world = &world;
    let cfg = &world.cfg;
    let refs: Vec<(NodeId, &Records)> = records.iter().map(|(id, r)| (*id, r)).collect();
    let audit = audit(&refs);
    let genealogy = Genealogy::new(records.iter().map(|(_, r)| r));
    let final_products = genealogy.finals_made_by(duration.as_millis() as u64);
    let cycles = (duration.as_secs_f64() / cfg.cycle.as_secs_f64()) as u64;
    let twin = ideal::simulate(
        &cfg.chain.spec,
        &cfg.chain.stage_states(&BTreeSet::new()),
        cycles,
        &Tuning::new(cfg.cycle),
        &world.record.events,
    );
    let lots = results::sum(&reports, |r| r.counters.batches_received).max(1) as f64;
    let trade = results::sum(&reports, |r| r.messages.trade_sent()) as f64;
    let heartbeats = results::sum(&reports, |r| r.messages.sent(MessageKind::Heartbeat));
    let spec = &world.record.spec;
    let record = &world.record;
    let summary = Summary {
        preset: cfg.name.clone(),
        seed: cfg.seed,
        types: cfg.chain.spec.types.len(),
        stages: world.stages.len(),
        coordinators: 1,
        coord_mode: CoordMode::Raft,
        duration_s: duration.as_secs_f64(),
        cycle_ms: cfg.cycle.as_millis() as u64,
        final_products,
        final_products_while_stopping: audit.lots_shipped.saturating_sub(final_products),
        ideal_final_products: twin.final_products,
        efficiency: final_products as f64 / twin.final_products.max(1) as f64,
        successful_cycle_ratio: successful_ratio(&reports, &world.live, spec, true),
        ideal_successful_cycle_ratio: twin.successful_ratio(),
        successful_cycle_ratio_all: successful_ratio(&reports, &world.live, spec, false),
        messages_per_lot: trade / lots,
        heartbeats_per_lot: heartbeats as f64 / lots,
        lots_lost: audit.lost.len(),
        lots_duplicated: audit.duplicated.len(),
        lots_miscounted: audit.miscounted.len() + audit.orphans.len(),
        lots_in_transit: audit.in_transit.len(),
        leader_elections: 1,
        hosts: world.live.groups().len(),
        startup_s: None,
        coordinator_cpu_s: None,
        flows: None,
        faults_injected: record.faults.len(),
        faults: record.faults.clone(),
        recoveries: record.recoveries.iter().map(|(r, _)| r.clone()).collect(),
        reroutes: reroutes(&genealogy, record, 0),
        recipe_updates: record.count(crate::op::OpKind::UpdateRecipe),
        stages_added: record.count(crate::op::OpKind::AddStage),
        chain_changes: record.changes.clone(),
        supplier_shares: Vec::new(),
    };
    let flows = &world.coord.flows;
    let sim = SimFigures {
        hosts: world.live.groups().len(),
        depth: depth(&cfg.chain.spec),
        all_registered_ms: world.all_registered_at.map(|t| t.as_millis() as u64),
        flows_committed: flows.committed,
        flows_whole: flows.whole,
        flows_refused: flows.refused,
        flow_edges: world.coord.cfg.flow.edges.len(),
        entry_bytes_mean: mean(&flows.entry_bytes),
        entry_bytes_max: flows.entry_bytes.iter().copied().max().unwrap_or(0),
        slice_bytes_mean: mean(&flows.slice_bytes),
        slice_bytes_max: flows.slice_bytes.iter().copied().max().unwrap_or(0),
        partitions: world.partitions.made,
        events: world.events,
    };
    let solve_ms: Vec<f64> = flows
        .solve_wall
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    let wall_figures = WallFigures {
        wall_s: wall.as_secs_f64(),
        speed: duration.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        solves: solve_ms.len(),
        solve_ms_mean: solve_ms.iter().sum::<f64>() / solve_ms.len().max(1) as f64,
        solve_ms_max: solve_ms.iter().copied().fold(0.0, f64::max),
        stage_ticks: world.stage_ticks,
        stage_slots: world.stage_slots,
    };
    let net = &cfg.net;
    let setting = format!(
        "one leader solving {} ns per edge and committing in {} ms, WAL commits {} ms, network {} us + {} us mean jitter, loss {}",
        cfg.solve_per_edge.as_nanos(),
        cfg.commit_latency.as_millis(),
        cfg.wal_latency.as_millis(),
        net.latency.as_micros(),
        net.jitter.as_micros(),
        net.loss
    );
    SimReport {
        summary,
        sim,
        wall: wall_figures,
        setting,
    }
}
