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

/// The sweep as a Markdown table.
pub fn render_table(rows: &[ScaleRow]) -> String {
    let mut s = String::from(
        "| stages | types | hosts | simulated s | efficiency | trade msgs / lot | heartbeats / lot | lots lost or duplicated | flows committed / refused | largest flow entry, KB | slices sent per flow, KB | solve, ms (wall) | wall s | x real time |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {:.3} | {:.2} | {:.2} | {} | {} / {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} |",
            r.stages,
            r.types,
            r.hosts,
            r.simulated_s,
            r.efficiency,
            r.messages_per_lot,
            r.heartbeats_per_lot,
            r.lots_lost_or_duplicated,
            r.flows_committed,
            r.flows_refused,
            r.entry_kb_max,
            r.slice_kb_per_flow,
            r.solve_ms_mean,
            r.wall_s,
            r.speed
        );
    }
    s
}

/// The sweep as CSV.
pub fn render_csv(rows: &[ScaleRow]) -> String {
    let mut s = String::from("stages,types,hosts,simulated_s,efficiency,messages_per_lot,heartbeats_per_lot,lots_lost_or_duplicated,flows_committed,flows_refused,entry_kb_max,slice_kb_per_flow,solve_ms_mean,wall_s,speed\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{:.4},{:.3},{:.3},{},{},{},{:.1},{:.1},{:.3},{:.1},{:.3}",
            r.stages,
            r.types,
            r.hosts,
            r.simulated_s,
            r.efficiency,
            r.messages_per_lot,
            r.heartbeats_per_lot,
            r.lots_lost_or_duplicated,
            r.flows_committed,
            r.flows_refused,
            r.entry_kb_max,
            r.slice_kb_per_flow,
            r.solve_ms_mean,
            r.wall_s,
            r.speed
        );
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
