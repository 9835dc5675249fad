//! How a simulated chain's figures grow with its size: one row per run of
//! a sweep (`factoryos sim --scale`), as a Markdown table, a CSV and a PNG.

use super::SimReport;
use crate::experiment::plots::{draw_err, font, PlotError};
use plotters::prelude::*;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One simulated size.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    pub stages: usize,
    pub types: usize,
    pub hosts: usize,
    pub simulated_s: f64,
    pub efficiency: f64,
    pub messages_per_lot: f64,
    pub heartbeats_per_lot: f64,
    pub lots_lost_or_duplicated: usize,
    pub flows_committed: u64,
    pub flows_refused: u64,
    pub entry_kb_max: f64,
    pub slice_kb_per_flow: f64,
    /// Wall-clock: the solver's mean time, and the simulation's speed.
    pub solve_ms_mean: f64,
    pub wall_s: f64,
    pub speed: f64,
}

impl ScaleRow {
    pub fn of(r: &SimReport) -> Self {
        let s = &r.summary;
        ScaleRow {
            stages: s.stages,
            types: s.types,
            hosts: r.sim.hosts,
            simulated_s: s.duration_s,
            efficiency: s.efficiency,
            messages_per_lot: s.messages_per_lot,
            heartbeats_per_lot: s.heartbeats_per_lot,
            lots_lost_or_duplicated: s.lots_lost + s.lots_duplicated + s.lots_miscounted,
            flows_committed: r.sim.flows_committed,
            flows_refused: r.sim.flows_refused,
            entry_kb_max: r.sim.entry_bytes_max as f64 / 1000.0,
            slice_kb_per_flow: r.sim.slice_bytes_mean / 1000.0,
            solve_ms_mean: r.wall.solve_ms_mean,
            wall_s: r.wall.wall_s,
            speed: r.wall.speed,
        }
    }
}

/// The columns: a name for the table, one for the CSV.
const COLUMNS: [(&str, &str); 15] = [
    ("stages", "stages"),
    ("types", "types"),
    ("hosts", "hosts"),
    ("simulated s", "simulated_s"),
    ("efficiency", "efficiency"),
    ("trade msgs / lot", "messages_per_lot"),
    ("heartbeats / lot", "heartbeats_per_lot"),
    ("lots lost or duplicated", "lots_lost_or_duplicated"),
    ("flows committed", "flows_committed"),
    ("flows refused as stale", "flows_refused"),
    ("largest flow entry, KB", "entry_kb_max"),
    ("slices sent per flow, KB", "slice_kb_per_flow"),
    ("solve, ms (wall)", "solve_ms_mean"),
    ("wall s", "wall_s"),
    ("x real time", "speed"),
];

impl ScaleRow {
    /// Its values, in [`COLUMNS`] order.
    fn cells(&self) -> [String; 15] {
        [
            self.stages.to_string(),
            self.types.to_string(),
            self.hosts.to_string(),
            format!("{:.0}", self.simulated_s),
            format!("{:.3}", self.efficiency),
            format!("{:.2}", self.messages_per_lot),
            format!("{:.2}", self.heartbeats_per_lot),
            self.lots_lost_or_duplicated.to_string(),
            self.flows_committed.to_string(),
            self.flows_refused.to_string(),
            format!("{:.1}", self.entry_kb_max),
            format!("{:.1}", self.slice_kb_per_flow),
            format!("{:.2}", self.solve_ms_mean),
            format!("{:.1}", self.wall_s),
            format!("{:.2}", self.speed),
        ]
    }
}

/// The sweep as a Markdown table.
pub fn render_table(rows: &[ScaleRow]) -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let mut s = format!(
        "| {} |\n|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for r in rows {
        let _ = writeln!(s, "| {} |", r.cells().join(" | "));
    }
    s
}

/// The sweep as CSV.
pub fn render_csv(rows: &[ScaleRow]) -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.1).collect();
    let mut s = names.join(",") + "\n";
    for r in rows {
        let _ = writeln!(s, "{}", r.cells().join(","));
    }
    s
}

/// A line per series, one panel; `$y` is the y range (linear or log).
macro_rules! panel {
    ($area:expr, $err:expr, $title:expr, $y_desc:expr, $lines:expr, $x:expr, $y:expr) => {{
        let mut chart = ChartBuilder::on($area)
            .caption($title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d($x, $y)
            .map_err(|e| $err(e.to_string()))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(8)
            .x_label_formatter(&|v: &f64| format!("{v:.0}"))
            .x_desc("stages")
            .y_desc($y_desc)
            .draw()
            .map_err(|e| $err(e.to_string()))?;
        for (name, color, points) in $lines {
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| $err(e.to_string()))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(|e| $err(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| $err(e.to_string()))?;
    }};
}

/// Three panels over the stage count (log scale): efficiency; messages
/// per lot; a recomputation's solve time and slice bytes (log scale too).
pub fn plot(path: &Path, rows: &[ScaleRow]) -> Result<(), PlotError> {
    font()?;
    if rows.is_empty() {
        return Ok(());
    }
    let err = draw_err(path);
    let root = BitMapBackend::new(path, (1500, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let panels = root.split_evenly((1, 3));
    let lo = rows.iter().map(|r| r.stages).min().unwrap_or(1).max(1) as f64 / 2.0;
    let hi = rows.iter().map(|r| r.stages).max().unwrap_or(1) as f64 * 2.0;
    let x = || (lo..hi).log_scale();
    let series = |f: &dyn Fn(&ScaleRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter().map(|r| (r.stages as f64, f(r))).collect()
    };
    let top = |v: &[&Vec<(f64, f64)>]| {
        v.iter()
            .flat_map(|s| s.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
    };
    let eff = series(&|r| r.efficiency);
    panel!(
        &panels[0],
        err,
        "efficiency vs the ideal twin",
        "efficiency",
        [("efficiency", BLUE, &eff)],
        x(),
        0.0..1.05
    );
    let (trade, beats) = (
        series(&|r| r.messages_per_lot),
        series(&|r| r.heartbeats_per_lot),
    );
    panel!(
        &panels[1],
        err,
        "messages per traded lot",
        "messages / lot",
        [("trade", BLUE, &trade), ("heartbeats", RED, &beats)],
        x(),
        0.0..(top(&[&trade, &beats]) * 1.15).max(1.0)
    );
    let (solve, slices) = (
        series(&|r| r.solve_ms_mean.max(0.001)),
        series(&|r| r.slice_kb_per_flow.max(0.001)),
    );
    let floor = solve
        .iter()
        .chain(&slices)
        .map(|p| p.1)
        .fold(f64::MAX, f64::min)
        / 2.0;
    panel!(
        &panels[2],
        err,
        "one flow recomputation",
        "solve, ms (wall); slices sent, KB",
        [
            ("solve, ms", BLUE, &solve),
            ("slices sent, KB", RED, &slices)
        ],
        x(),
        (floor..top(&[&solve, &slices]) * 2.0).log_scale()
    );
    root.present().map_err(|e| err(e.to_string()))
}
