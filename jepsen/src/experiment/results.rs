//! The results of a run: the original's metric table, a summary, and the
//! files written to `--out`.

use super::coordinators::FlowFigures;
use super::shares::{self, SupplierShare};
use crate::op::OpKind;
use factoryos_coord::config::CoordMode;
use factoryos_stage::metrics::StageReport;
use factoryos_wire::NodeId;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

/// Per stage, what it reported (all its lives together).
pub type Reports = BTreeMap<NodeId, StageReport>;

/// The sum of `figure` over the stages.
pub fn sum(reports: &Reports, figure: impl Fn(&StageReport) -> u64) -> u64 {
    reports.values().map(figure).sum()
}

/// One row of the table: a metric over stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub metric: String,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    pub var: f64,
}

/// Statistics of every metric over the stages that reported (a metric a
/// stage did not report counts as 0 for it). `std`/`var` are the sample
/// ones (NaN with fewer than two stages), as in the original's tables.
pub fn table(reports: &Reports) -> Vec<Row> {
    let named: Vec<BTreeMap<String, u64>> = reports.values().map(StageReport::named).collect();
    table_of(&named)
}

/// The table of any metric maps (one per stage).
fn table_of(metrics: &[BTreeMap<String, u64>]) -> Vec<Row> {
    let names: BTreeSet<&String> = metrics.iter().flat_map(|m| m.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let mut v: Vec<f64> = metrics
                .iter()
                .map(|m| m.get(name).copied().unwrap_or(0) as f64)
                .collect();
            v.sort_by(|a, b| a.total_cmp(b));
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n.max(1.0);
            let median = if v.is_empty() {
                f64::NAN
            } else if v.len() % 2 == 1 {
                v[v.len() / 2]
            } else {
                (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
            };
            let var = if v.len() < 2 {
                f64::NAN
            } else {
                v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
            };
            Row {
                metric: name.clone(),
                min: v.first().copied().unwrap_or(f64::NAN),
                max: v.last().copied().unwrap_or(f64::NAN),
                mean,
                median,
                std: var.sqrt(),
                var,
            }
        })
        .collect()
}

/// The table as text, aligned like the original's.
pub fn render_table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.metric.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "metric_name", "min", "max", "mean", "median", "std", "var"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<width$} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>12.2}",
            r.metric, r.min, r.max, r.mean, r.median, r.std, r.var
        );
    }
    out
}

/// One fault the run injected.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Seconds since the run started.
    pub at_s: f64,
    pub op: OpKind,
    pub node: u64,
}

/// One recovery: a restarted stage and how long it took to make a lot again.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub at_s: f64,
    pub node: u64,
    /// Restart -> first successful cycle, if it made one before the run ended.
    pub first_lot_ms: Option<u64>,
}

/// A change of the chain the run made (not a fault): a recipe update or an
/// added stage.
#[derive(Debug, Clone, Serialize)]
pub struct ChainOp {
    pub at_s: f64,
    pub op: OpKind,
    pub detail: String,
}

/// A stage host's crash: how soon the leader held it dead, and how soon a
/// final product was made through the surviving stages of its type.
#[derive(Debug, Clone, Serialize)]
pub struct Reroute {
    pub at_s: f64,
    /// The host process killed (its first stage's id).
    pub node: u64,
    /// Kill -> the leader marks every stage of the host dead (none if it
    /// recovered first).
    pub detect_ms: Option<u64>,
    /// Kill -> the first final product made from a lot of the dead type
    /// that a survivor made after the kill.
    pub first_product_ms: Option<u64>,
    /// The same search from 5 s before the kill, any producer: the chain's
    /// own latency from a new lot of that type to a final product.
    pub baseline_ms: Option<u64>,
}

/// The median of the values present.
fn median(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    let mut v: Vec<u64> = values.flatten().collect();
    v.sort_unstable();
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// The run's summary (`summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub preset: String,
    /// The generator's and the fault schedule's seed (rerun with `--seed`).
    pub seed: u64,
    pub types: usize,
    pub stages: usize,
    pub coordinators: u64,
    pub coord_mode: CoordMode,
    pub duration_s: f64,
    pub cycle_ms: u64,
    /// Final products made while the run's clock ran (the twin's time).
    pub final_products: u64,
    /// Made from what was in the pipeline while the stages were stopping:
    /// in the WALs (and the audit), not in the efficiency.
    pub final_products_while_stopping: u64,
    pub ideal_final_products: u64,
    pub efficiency: f64,
    /// Successful / all cycles of the stages that are not raw materials.
    pub successful_cycle_ratio: f64,
    /// The same in the ideal twin: the most the chain's shape allows (a
    /// type whose suppliers make less than its stages need cannot do better).
    pub ideal_successful_cycle_ratio: f64,
    /// The same over every stage, as the original's tables count it.
    pub successful_cycle_ratio_all: f64,
    pub messages_per_lot: f64,
    pub heartbeats_per_lot: f64,
    pub lots_lost: usize,
    pub lots_duplicated: usize,
    pub lots_miscounted: usize,
    pub lots_in_transit: usize,
    /// Terms (file-lock epochs) in which a coordinator led, the first at
    /// start-up included: 1 when the leader never changed.
    pub leader_elections: usize,
    /// Host processes the stages ran in.
    pub hosts: usize,
    /// From starting the stages to every stage registered and a flow
    /// committed (the run's clock starts then).
    pub startup_s: Option<f64>,
    /// CPU seconds of all the coordinators' processes over their life.
    pub coordinator_cpu_s: Option<f64>,
    /// The flows the leaders committed.
    pub flows: Option<FlowFigures>,
    pub faults_injected: usize,
    pub faults: Vec<Fault>,
    pub recoveries: Vec<Recovery>,
    /// One per stage crash.
    pub reroutes: Vec<Reroute>,
    pub recipe_updates: usize,
    pub stages_added: usize,
    pub chain_changes: Vec<ChainOp>,
    /// Each supplier's delivered share of its type against the flow's.
    pub supplier_shares: Vec<SupplierShare>,
}

impl Summary {
    /// Faults, recoveries and, after crashes, detection and rerouting.
    fn render_faults(&self, s: &mut String) {
        let recovered: Vec<String> = self
            .recoveries
            .iter()
            .map(|r| match r.first_lot_ms {
                Some(ms) => format!("n{} in {ms} ms", r.node),
                None => format!("n{} (no lot yet)", r.node),
            })
            .collect();
        let _ = writeln!(
            s,
            "leader elections      {} (terms with a leader, the first at start-up included)",
            self.leader_elections
        );
        let _ = writeln!(s, "faults injected       {}", self.faults_injected);
        let _ = writeln!(
            s,
            "recoveries            {}{}",
            self.recoveries.len(),
            if recovered.is_empty() {
                String::new()
            } else {
                format!(": {}", recovered.join(", "))
            }
        );
        if !self.reroutes.is_empty() {
            let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
            let _ = writeln!(
                s,
                "after a crash (p50)   detected in {}; first final product through the survivors after {} (the chain's own latency: {})",
                ms(median(self.reroutes.iter().map(|r| r.detect_ms))),
                ms(median(self.reroutes.iter().map(|r| r.first_product_ms))),
                ms(median(self.reroutes.iter().map(|r| r.baseline_ms))),
            );
        }
    }

    /// Recipe updates and added stages, the first few by name.
    fn render_changes(&self, s: &mut String) {
        if self.chain_changes.is_empty() {
            return;
        }
        let list: Vec<String> = self
            .chain_changes
            .iter()
            .take(6)
            .map(|c| format!("{} ({})", c.detail, c.op))
            .collect();
        let more = self.chain_changes.len().saturating_sub(list.len());
        let _ = writeln!(
            s,
            "chain changes         {} recipe updates, {} stages added: {}{}",
            self.recipe_updates,
            self.stages_added,
            list.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} chain (seed {}): {} types, {} stages in {} host processes, {} coordinators ({}), {:.0} s of {} ms cycles",
            self.preset, self.seed, self.types, self.stages, self.hosts, self.coordinators, self.coord_mode, self.duration_s, self.cycle_ms
        );
        s + &self.render_figures() + &self.render_coordinators()
    }

    /// Start-up, the coordinators' CPU and the flows they committed (a
    /// real run's; a simulation prints its own).
    fn render_coordinators(&self) -> String {
        let mut s = String::new();
        if let Some(t) = self.startup_s {
            let _ = write!(
                s,
                "\nstart-up              every stage registered and a flow committed {t:.1} s after the stages started"
            );
        }
        if let Some(cpu) = self.coordinator_cpu_s {
            let _ = write!(
                s,
                "\ncoordinators' CPU     {cpu:.1} s in all ({:.2} of a core over the run)",
                cpu / (self.duration_s + self.startup_s.unwrap_or(0.0)).max(1e-9)
            );
        }
        if let Some(f) = &self.flows {
            let _ = write!(
                s,
                "\nflows committed       {} ({} whole, {} as changes; {} edges at the end): log entry {:.0} B mean / {} B max, solved in {:.1} ms mean / {:.1} ms max",
                f.committed,
                f.whole,
                f.committed - f.whole,
                f.edges,
                f.entry_bytes_mean,
                f.entry_bytes_max,
                f.solve_ms_mean,
                f.solve_ms_max
            );
        }
        s
    }

    /// The summary without its first line (the chain and the cluster): what
    /// a run and a simulation print alike.
    pub fn render_figures(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "final products        {} (ideal twin: {}) -> efficiency {:.3}",
            self.final_products, self.ideal_final_products, self.efficiency
        );
        let _ = writeln!(
            s,
            "successful cycles     {:.1}% of all cycles of non-raw stages (ideal twin: {:.1}%; {:.1}% over every stage)",
            self.successful_cycle_ratio * 100.0,
            self.ideal_successful_cycle_ratio * 100.0,
            self.successful_cycle_ratio_all * 100.0
        );
        let _ = writeln!(
            s,
            "messages per lot      {:.2} trade messages + {:.2} heartbeats",
            self.messages_per_lot, self.heartbeats_per_lot
        );
        if let Some(w) = shares::worst(&self.supplier_shares) {
            let _ = writeln!(
                s,
                "supplier shares       furthest from the flow: n{} ({}) delivered {:.3} of its type, the flow's share {:.3} ({:+.1}%)",
                w.supplier.0, w.item, w.delivered, w.flow, w.deviation() * 100.0
            );
        }
        self.render_faults(&mut s);
        self.render_changes(&mut s);
        let _ = write!(
            s,
            "lots lost {}, duplicated {}, miscounted {} (audit of every WAL; {} still in transit)",
            self.lots_lost, self.lots_duplicated, self.lots_miscounted, self.lots_in_transit
        );
        s
    }
}

/// Writes `metrics.csv` (stage,metric,value), `shares.csv` and
/// `summary.json` into `out`.
pub fn write_files(out: &Path, reports: &Reports, summary: &Summary) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    let mut csv = String::from("stage,metric,value\n");
    for (stage, report) in reports {
        for (name, v) in report.named() {
            let _ = writeln!(csv, "{},{name},{v}", stage.0);
        }
    }
    std::fs::write(out.join("metrics.csv"), csv)?;
    let mut csv = String::from("type,supplier,lots,delivered_share,flow_share\n");
    for r in &summary.supplier_shares {
        let _ = writeln!(
            csv,
            "{},{},{},{:.4},{:.4}",
            r.item, r.supplier.0, r.lots, r.delivered, r.flow
        );
    }
    std::fs::write(out.join("shares.csv"), csv)?;
    let json = serde_json::to_vec_pretty(summary).map_err(std::io::Error::other)?;
    std::fs::write(out.join("summary.json"), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_matches_a_hand_computation() {
        let mut m: Vec<BTreeMap<String, u64>> = [2, 4, 9]
            .into_iter()
            .map(|v| BTreeMap::from([("x".to_string(), v)]))
            .collect();
        m[0].insert("only_one".into(), 5);
        let rows = table_of(&m);
        let x = rows.iter().find(|r| r.metric == "x").unwrap();
        assert_eq!((x.min, x.max, x.median), (2.0, 9.0, 4.0));
        assert!((x.mean - 5.0).abs() < 1e-9);
        assert!(
            (x.var - 13.0).abs() < 1e-9,
            "sample variance of 2,4,9 is 13"
        );
        let only = rows.iter().find(|r| r.metric == "only_one").unwrap();
        assert_eq!((only.min, only.max), (0.0, 5.0), "missing counts as 0");
        let text = render_table(&rows);
        assert!(text.starts_with("metric_name"));
        assert!(text.contains("x  "), "{text}");
    }
}
