//! PNG plots of a run (plotters, bitmap backend): final products over time
//! with the fault windows shaded, and each stage's cycle outcomes with its
//! delivered share of its type beside the flow's.
//!
//! Text is drawn with the DejaVu Sans font of the system
//! (`fonts-dejavu-core`, which `scripts/setup.sh` installs); without it the
//! plots are skipped with a clear message and the run's other results stand.

use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Why a plot was not drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("no DejaVu Sans font found (looked in {}); install fonts-dejavu-core", FONT_PATHS.join(", "))]
    NoFont,
    #[error("drawing {path}: {message}")]
    Draw { path: String, message: String },
}

pub(crate) fn font() -> Result<(), PlotError> {
    static FONT: OnceLock<bool> = OnceLock::new();
    let ok = *FONT.get_or_init(|| {
        let Some(bytes) = FONT_PATHS.iter().find_map(|p| std::fs::read(p).ok()) else {
            return false;
        };
        // The font lives as long as the process: plotters wants 'static bytes.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::NoFont)
    }
}

pub(crate) fn draw_err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |message| PlotError::Draw {
        path: path.display().to_string(),
        message,
    }
}

/// A fault window: from a crash (or leader kill) to its recovery (or the end).
#[derive(Debug, Clone)]
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
}

/// Final products over time, fault windows shaded, chain changes (recipe
/// updates, added stages) as vertical lines, the ideal twin's mean rate as a
/// thin line.
pub fn final_products(
    path: &Path,
    series: &[(f64, u64)],
    windows: &[Window],
    changes: &[f64],
    ideal_per_s: f64,
    title: &str,
) -> Result<(), PlotError> {
    font()?;
    let err = draw_err(path);
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let t_max = series.last().map_or(1.0, |s| s.0).max(1.0);
    let y_max = series
        .iter()
        .map(|s| s.1 as f64)
        .fold(ideal_per_s * t_max, f64::max)
        .max(1.0)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("final products")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(windows.iter().map(|w| {
            Rectangle::new(
                [(w.start_s, 0.0), (w.end_s.min(t_max), y_max)],
                RGBColor(255, 200, 200).mix(0.5).filled(),
            )
        }))
        .map_err(|e| err(e.to_string()))?
        .label("a stage or the leader down")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 15, y + 5)],
                RGBColor(255, 200, 200).filled(),
            )
        });
    if !changes.is_empty() {
        let green = RGBColor(0, 140, 60);
        chart
            .draw_series(
                changes
                    .iter()
                    .filter(|t| **t <= t_max)
                    .map(|t| PathElement::new([(*t, 0.0), (*t, y_max)], green.stroke_width(1))),
            )
            .map_err(|e| err(e.to_string()))?
            .label("recipe update or stage added")
            .legend(move |(x, y)| PathElement::new([(x + 7, y - 6), (x + 7, y + 6)], green));
    }
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (t_max, ideal_per_s * t_max)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| err(e.to_string()))?
        .label("ideal twin")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLACK));
    chart
        .draw_series(LineSeries::new(
            series.iter().map(|(t, n)| (*t, *n as f64)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| err(e.to_string()))?
        .label("final products")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// One stage's cycle outcomes.
#[derive(Debug, Clone)]
pub struct Outcomes {
    pub stage: u64,
    pub item: String,
    pub successful: u64,
    pub skipped: u64,
    pub blocked: u64,
    /// `(delivered, flow)`: its fraction of its type's delivered lots and
    /// the fraction the flow asked of it (none for a type's only supplier).
    pub share: Option<(f64, f64)>,
}

/// Stacked bars: successful, skipped and blocked cycles per stage; below,
/// each supplier's delivered share against its flow share.
pub fn cycle_outcomes(path: &Path, stages: &[Outcomes], title: &str) -> Result<(), PlotError> {
    font()?;
    let err = draw_err(path);
    let width = (120 + stages.len() as u32 * 28).clamp(600, 4000);
    let with_shares = stages.iter().any(|s| s.share.is_some());
    let height = if with_shares { 820 } else { 520 };
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (root, lower) = root.split_vertically(520);
    if with_shares {
        shares_panel(&lower, stages).map_err(&err)?;
    }
    let y_max = stages
        .iter()
        .map(|s| s.successful + s.skipped + s.blocked)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let n = stages.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
        .map_err(|e| err(e.to_string()))?;
    stage_mesh(&mut chart, stages, "cycles").map_err(&err)?;
    let bar = |i: usize, lo: u64, hi: u64, color: RGBColor| {
        Rectangle::new(
            [(i as f64 + 0.1, lo as f64), (i as f64 + 0.9, hi as f64)],
            color.filled(),
        )
    };
    let green = RGBColor(60, 160, 60);
    let grey = RGBColor(170, 170, 170);
    let red = RGBColor(210, 80, 60);
    chart
        .draw_series(
            stages
                .iter()
                .enumerate()
                .map(|(i, s)| bar(i, 0, s.successful, green)),
        )
        .map_err(|e| err(e.to_string()))?
        .label("successful")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], green.filled()));
    chart
        .draw_series(
            stages
                .iter()
                .enumerate()
                .map(|(i, s)| bar(i, s.successful, s.successful + s.skipped, grey)),
        )
        .map_err(|e| err(e.to_string()))?
        .label("skipped (inputs missing)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], grey.filled()));
    chart
        .draw_series(stages.iter().enumerate().map(|(i, s)| {
            bar(
                i,
                s.successful + s.skipped,
                s.successful + s.skipped + s.blocked,
                red,
            )
        }))
        .map_err(|e| err(e.to_string()))?
        .label("blocked (outbound full)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], red.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

type StageChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The grid of a per-stage bar chart: one x slot per stage, labelled `nID`.
fn stage_mesh(chart: &mut StageChart, stages: &[Outcomes], y_desc: &str) -> Result<(), String> {
    let labels: Vec<String> = stages.iter().map(|s| format!("n{}", s.stage)).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(stages.len().clamp(1, 60))
        .x_label_formatter(&|x| labels.get(*x as usize).cloned().unwrap_or_default())
        .y_desc(y_desc)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())
}

/// Each supplier's delivered share of its type (bar) and the flow's (tick).
fn shares_panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    stages: &[Outcomes],
) -> Result<(), String> {
    let n = stages.len().max(1);
    let y_max = stages
        .iter()
        .filter_map(|s| s.share)
        .map(|(d, f)| d.max(f))
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "delivered share of its type (bar) against the flow's (black tick)",
            ("sans-serif", 16),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    stage_mesh(&mut chart, stages, "share")?;
    let blue = RGBColor(70, 110, 190);
    let with = || {
        stages
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.share.map(|sh| (i as f64, sh)))
    };
    chart
        .draw_series(
            with().map(|(x, (d, _))| Rectangle::new([(x + 0.2, 0.0), (x + 0.8, d)], blue.filled())),
        )
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(with().map(|(x, (_, f))| {
            PathElement::new(vec![(x + 0.05, f), (x + 0.95, f)], BLACK.stroke_width(3))
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}
