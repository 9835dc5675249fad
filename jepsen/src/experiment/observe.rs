//! What the run watches while it runs: each restarted stage's first lot,
//! when the leader holds each crashed host's stages dead, every flow the
//! leader commits, and the figures of the progress display (with the
//! final-products series for the plot).

use super::live::Live;
use super::record::{unix_ms, Record};
use super::results::Reports;
use super::rig::Rig;
use super::shares::FlowLog;
use super::Progress;
use factoryos_wire::model::Liveness;
use factoryos_wire::NodeId;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How often the leader's view is polled while a crash is not yet detected.
const DETECT_POLL: Duration = Duration::from_millis(100);
/// How often the progress display is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct Observer {
    last_progress: Option<Instant>,
    last_detect_poll: Option<Instant>,
    /// `(seconds, final products)` at each refresh.
    pub series: Vec<(f64, u64)>,
    /// Each flow seen at a refresh, for the suppliers' shares.
    pub flows: FlowLog,
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            last_progress: None,
            last_detect_poll: None,
            series: vec![(0.0, 0)],
            flows: FlowLog::default(),
        }
    }
}

fn due(last: &mut Option<Instant>, every: Duration) -> bool {
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < every) {
        return false;
    }
    *last = Some(now);
    true
}

impl Observer {
    pub async fn poll(
        &mut self,
        rig: &mut Rig,
        record: &mut Record,
        progress: impl FnMut(&Progress),
    ) {
        first_lots(rig, record);
        let undetected = record
            .crashes
            .iter()
            .any(|c| c.detect_ms.is_none() && c.victims.iter().all(|v| rig.live.is_down(*v)));
        if undetected && due(&mut self.last_detect_poll, DETECT_POLL) {
            detect_crashes(rig, record).await;
        }
        if due(&mut self.last_progress, PROGRESS_EVERY) {
            self.refresh(rig, record, progress).await;
        }
    }

    async fn refresh(
        &mut self,
        rig: &Rig,
        record: &mut Record,
        mut progress: impl FnMut(&Progress),
    ) {
        let reports = rig.reports();
        let view = &mut record.view;
        view.elapsed = rig.clock.elapsed();
        view.final_products = final_products(&reports, &rig.live, &record.spec.final_type);
        view.successful_ratio = successful_ratio(&reports, &rig.live, &record.spec, true);
        view.dead = rig.live.dead_stages();
        view.live = rig.live.ids.len() - view.dead;
        let status = rig.client.status().await.ok();
        view.leader = status.as_ref().and_then(|s| s.leader);
        if status.is_some_and(|s| s.flow_version.0 > self.flows.version()) {
            if let Ok(flow) = rig.client.read_flow(false).await {
                self.flows.push(unix_ms(), flow);
            }
        }
        self.series
            .push((view.elapsed.as_secs_f64(), view.final_products));
        progress(view);
        view.new_ops.clear();
    }
}

/// Each restarted stage's first successful cycle.
fn first_lots(rig: &Rig, record: &mut Record) {
    for (r, at) in record
        .recoveries
        .iter_mut()
        .filter(|(r, _)| r.first_lot_ms.is_none())
    {
        let made = rig
            .cluster
            .stage_metrics(NodeId(r.node))
            .map_or(0, |m| m.counters.successful_manufacture_cycles);
        if made > 0 {
            r.first_lot_ms = Some(unix_ms().saturating_sub(*at));
        }
    }
}

/// Crashes whose every victim the leader now holds dead.
async fn detect_crashes(rig: &Rig, record: &mut Record) {
    let Ok(status) = rig.client.status().await else {
        return;
    };
    let dead: BTreeSet<NodeId> = status
        .stages
        .iter()
        .filter(|(_, l)| *l == Liveness::Dead)
        .map(|(id, _)| *id)
        .collect();
    for c in record.crashes.iter_mut().filter(|c| c.detect_ms.is_none()) {
        let down = c.victims.iter().all(|v| rig.live.is_down(*v));
        if down && c.victims.is_subset(&dead) {
            c.detect_ms = Some(unix_ms().saturating_sub(c.at_ms));
        }
    }
}

/// Final products the final type's stages report.
pub fn final_products(
    reports: &Reports,
    live: &Live,
    final_type: &factoryos_wire::ItemType,
) -> u64 {
    reports
        .iter()
        .filter(|(id, _)| live.item_of(**id) == final_type)
        .map(|(_, m)| m.counters.final_products)
        .sum()
}

/// Successful over all cycles, of the stages that are not raw materials
/// (`skip_raw`) or of every stage.
pub fn successful_ratio(
    reports: &Reports,
    live: &Live,
    spec: &factoryos_wire::model::Spec,
    skip_raw: bool,
) -> f64 {
    let raw = |id: NodeId| skip_raw && spec.recipe(live.item_of(id)).is_none_or(|r| r.is_raw());
    let (ok, total) =
        reports
            .iter()
            .filter(|(id, _)| !raw(**id))
            .fold((0u64, 0u64), |(ok, total), (_, m)| {
                (
                    ok + m.counters.successful_manufacture_cycles,
                    total + m.counters.total_manufacture_cycles(),
                )
            });
    ok as f64 / total.max(1) as f64
}
