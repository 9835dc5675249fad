//! After the run's clock stops: stop the processes, audit every WAL, follow
//! each crash through the lots' genealogy, run the ideal twin over the same
//! wall time and chain changes, and write the summary, files and plots.

use super::coordinators::{self, CoordFigures};
use super::observe::{successful_ratio, Observer};
use super::record::unix_ms;
use super::record::Record;
use super::reroute::Genealogy;
use super::results::{self, Reports, Reroute, Summary};
use super::rig::Rig;
use super::shares::{self, FlowLog, SupplierShare};
use super::{ideal, plots, RunConfig, RunError, RunReport};
use crate::op::OpKind;
use factoryos_coord::spec::ChainSpec;
use factoryos_stage::audit::{audit, read_wals, AuditReport};
use factoryos_stage::records::Records;
use factoryos_stage::setup::Tuning;
use factoryos_wire::{MessageKind, NodeId};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// The no-crash baseline of a reroute is taken this long before the crash.
const BASELINE_BEFORE_MS: u64 = 5_000;

/// What the stopped run measured, before it is written.
struct Measured {
    elapsed: Duration,
    reports: Reports,
    audit: AuditReport,
    final_products: u64,
    reroutes: Vec<Reroute>,
    twin: ideal::TwinRun,
    coords: CoordFigures,
    /// CPU seconds of the coordinators' processes, all of them, until the stop.
    coordinator_cpu_s: Option<f64>,
    shares: Vec<SupplierShare>,
}

pub async fn finish(
    config: &RunConfig,
    chain: &ChainSpec,
    mut rig: Rig,
    record: Record,
    observer: Observer,
) -> Result<RunReport, RunError> {
    let measured = measure(config, chain, &mut rig, &record, &observer.flows).await?;
    let summary = summarise(config, chain, &rig, &record, &measured);
    results::write_files(&config.out, &measured.reports, &summary)?;
    let log: String = record
        .log
        .iter()
        .map(|(at, what)| format!("{at:>9.3}s  {what}\n"))
        .collect();
    std::fs::write(config.out.join("ops.log"), log)?;
    let plot_notes = draw(&config.out, &rig, &record, observer, &measured, &summary);
    Ok(RunReport {
        table: format!(
            "{}\nper supplier, of every lot of its type delivered (the flow's: what the flows in force asked of it)\n{}",
            results::render_table(&results::table(&measured.reports)),
            shares::render(&measured.shares)
        ),
        summary,
        out: config.out.clone(),
        plot_notes,
    })
}

/// Stops the cluster (products made from here on do not count: the twin's
/// time ends now too) and measures what the run made.
async fn measure(
    config: &RunConfig,
    chain: &ChainSpec,
    rig: &mut Rig,
    record: &Record,
    flows: &FlowLog,
) -> Result<Measured, RunError> {
    let elapsed = rig.clock.elapsed();
    let wall = rig.stages_started.elapsed();
    let stop_unix_ms = unix_ms();
    let coordinator_cpu_s = rig
        .cluster
        .coordinators()
        .into_iter()
        .map(|id| rig.cluster.pid(id).and_then(coordinators::cpu_seconds))
        .sum::<Option<f64>>();
    rig.stop().await?;
    let reports = rig.reports();
    let records = read_wals(rig.cluster.file(), &rig.live.ids)?;
    let refs: Vec<(NodeId, &Records)> = records.iter().map(|(id, r)| (*id, r)).collect();
    let audit = audit(&refs);
    let genealogy = Genealogy::new(records.iter().map(|(_, r)| r));
    let shares = shares::supplier_shares(
        flows,
        records
            .iter()
            .flat_map(|(id, r)| r.inbound.iter().map(move |i| (*id, i))),
    );
    let reroutes = reroutes(&genealogy, record, rig.clock_unix_ms);
    let coords = coordinators::read(rig)?;
    let cycles = (wall.as_secs_f64() / config.cycle.as_secs_f64()) as u64;
    let twin = ideal::simulate(
        &chain.spec,
        &chain.stage_states(&BTreeSet::new()),
        cycles,
        &Tuning::new(config.cycle),
        &record.events,
    );
    Ok(Measured {
        elapsed,
        reports,
        audit,
        final_products: genealogy.finals_made_by(stop_unix_ms),
        reroutes,
        twin,
        coords,
        coordinator_cpu_s,
        shares,
    })
}

/// Each crash: detection, and the first final product through the survivors
/// beside the chain's own latency (the same search from before the crash).
pub(crate) fn reroutes(genealogy: &Genealogy, record: &Record, clock_unix_ms: u64) -> Vec<Reroute> {
    record
        .crashes
        .iter()
        .map(|c| Reroute {
            at_s: c.at_s,
            node: c.node.0,
            detect_ms: c.detect_ms,
            first_product_ms: genealogy.first_product_through(c.at_ms, &c.items, &c.victims),
            baseline_ms: c
                .at_ms
                .checked_sub(BASELINE_BEFORE_MS)
                .filter(|t| *t >= clock_unix_ms)
                .and_then(|t| genealogy.first_product_through(t, &c.items, &BTreeSet::new())),
        })
        .collect()
}

fn summarise(
    config: &RunConfig,
    chain: &ChainSpec,
    rig: &Rig,
    record: &Record,
    m: &Measured,
) -> Summary {
    let lots = results::sum(&m.reports, |r| r.counters.batches_received).max(1) as f64;
    let trade = results::sum(&m.reports, |r| r.messages.trade_sent()) as f64;
    let heartbeats = results::sum(&m.reports, |r| r.messages.sent(MessageKind::Heartbeat));
    let ideal = m.twin.final_products;
    Summary {
        preset: config.chain.name(),
        seed: config.seed,
        types: chain.spec.types.len(),
        stages: rig.live.ids.len(),
        coordinators: config.coordinators,
        coord_mode: config.mode,
        duration_s: m.elapsed.as_secs_f64(),
        cycle_ms: rig.cycle_ms(),
        final_products: m.final_products,
        final_products_while_stopping: m.audit.lots_shipped.saturating_sub(m.final_products),
        ideal_final_products: ideal,
        efficiency: m.final_products as f64 / ideal.max(1) as f64,
        successful_cycle_ratio: successful_ratio(&m.reports, &rig.live, &record.spec, true),
        ideal_successful_cycle_ratio: m.twin.successful_ratio(),
        successful_cycle_ratio_all: successful_ratio(&m.reports, &rig.live, &record.spec, false),
        messages_per_lot: trade / lots,
        heartbeats_per_lot: heartbeats as f64 / lots,
        lots_lost: m.audit.lost.len(),
        lots_duplicated: m.audit.duplicated.len(),
        lots_miscounted: m.audit.miscounted.len(),
        lots_in_transit: m.audit.in_transit.len(),
        leader_elections: m.coords.leader_elections,
        hosts: rig.live.groups().len(),
        startup_s: Some(rig.clock.duration_since(rig.stages_started).as_secs_f64()),
        coordinator_cpu_s: m.coordinator_cpu_s,
        flows: Some(m.coords.flows.clone()),
        faults_injected: record.faults.len(),
        faults: record.faults.clone(),
        recoveries: record.recoveries.iter().map(|(r, _)| r.clone()).collect(),
        reroutes: m.reroutes.clone(),
        recipe_updates: record.count(OpKind::UpdateRecipe),
        stages_added: record.count(OpKind::AddStage),
        chain_changes: record.changes.clone(),
        supplier_shares: m.shares.clone(),
    }
}

/// Draws `final_products.png` and `cycle_outcomes.png`; why one was not drawn.
fn draw(
    out: &Path,
    rig: &Rig,
    record: &Record,
    observer: Observer,
    m: &Measured,
    summary: &Summary,
) -> Vec<String> {
    let elapsed = m.elapsed.as_secs_f64();
    let mut series = observer.series;
    series.push((elapsed, summary.final_products));
    let shaded: Vec<plots::Window> = record
        .windows
        .iter()
        .map(|w| plots::Window {
            start_s: w.start_s,
            end_s: w.end_s.unwrap_or(elapsed),
        })
        .collect();
    let title = format!(
        "{} chain, {} stages: final products (efficiency {:.2})",
        summary.preset, summary.stages, summary.efficiency
    );
    let changes: Vec<f64> = summary.chain_changes.iter().map(|c| c.at_s).collect();
    let ideal_per_s = summary.ideal_final_products as f64 / elapsed.max(1e-9);
    let outcomes: Vec<plots::Outcomes> = m
        .reports
        .iter()
        .map(|(id, r)| plots::Outcomes {
            stage: id.0,
            item: rig.live.item_of(*id).to_string(),
            successful: r.counters.successful_manufacture_cycles,
            skipped: r.counters.skipped_manufacture_cycles,
            blocked: r.counters.blocked_manufacture_cycles,
            share: summary
                .supplier_shares
                .iter()
                .find(|s| s.supplier == *id)
                .map(|s| (s.delivered, s.flow)),
        })
        .collect();
    let mut notes = Vec::new();
    let products = out.join("final_products.png");
    if let Err(e) =
        plots::final_products(&products, &series, &shaded, &changes, ideal_per_s, &title)
    {
        notes.push(e.to_string());
    }
    let cycles = out.join("cycle_outcomes.png");
    if let Err(e) = plots::cycle_outcomes(&cycles, &outcomes, "cycle outcomes per stage") {
        notes.push(e.to_string());
    }
    notes
}
