//! What a harness run writes: `results.json` (each checker's verdict and
//! the overall one), `timeline.png` (final products and register-operation
//! latency, every nemesis window shaded) and a one-page `report.html`
//! linking the anomalies; and, over all runs, a summary `results.json`.

use super::{JepsenConfig, RunOutcome};
use crate::checker::{self, Verdict};
use crate::experiment::plots::{draw_err, font, PlotError};
use crate::history::Entry;
use plotters::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

/// A nemesis window, in seconds since the run's first entry.
#[derive(Debug, Clone)]
pub struct Window {
    pub nemesis: String,
    pub detail: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// Register operations as plotted: start, latency, and how they ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Ok,
    Fail,
    Info,
}

struct Timeline {
    windows: Vec<Window>,
    products: Vec<(f64, u64)>,
    ops: Vec<(f64, f64, End)>,
    end_s: f64,
}

fn timeline(entries: &[Entry]) -> Timeline {
    let t0 = entries.iter().map(Entry::t_ns).min().unwrap_or(0);
    let s = |t: u64| t.saturating_sub(t0) as f64 / 1e9;
    let mut windows: Vec<Window> = Vec::new();
    let mut products = Vec::new();
    let mut ops = Vec::new();
    let mut invoked: HashMap<u64, u64> = HashMap::new();
    let mut end_s: f64 = 0.0;
    for e in entries {
        end_s = end_s.max(s(e.t_ns()));
        match e {
            Entry::NemesisStart {
                t_ns,
                nemesis,
                detail,
            } => windows.push(Window {
                nemesis: nemesis.clone(),
                detail: detail.clone(),
                start_s: s(*t_ns),
                end_s: f64::NAN,
            }),
            Entry::NemesisStop { t_ns, nemesis } => {
                if let Some(w) = windows
                    .iter_mut()
                    .rev()
                    .find(|w| &w.nemesis == nemesis && w.end_s.is_nan())
                {
                    w.end_s = s(*t_ns);
                }
            }
            Entry::Production {
                t_ns,
                final_products,
            } => products.push((s(*t_ns), *final_products)),
            Entry::Invoke { t_ns, id, .. } => {
                invoked.insert(*id, *t_ns);
            }
            Entry::Ok { t_ns, id, .. }
            | Entry::Fail { t_ns, id, .. }
            | Entry::Info { t_ns, id, .. } => {
                if let Some(start) = invoked.remove(id) {
                    let end = match e {
                        Entry::Ok { .. } => End::Ok,
                        Entry::Fail { .. } => End::Fail,
                        _ => End::Info,
                    };
                    ops.push((s(start), (t_ns - start) as f64 / 1e6, end));
                }
            }
            Entry::Node(_) => {}
        }
    }
    for w in &mut windows {
        if w.end_s.is_nan() {
            w.end_s = end_s;
        }
    }
    Timeline {
        windows,
        products,
        ops,
        end_s: end_s.max(1.0),
    }
}

/// Final products (top) and register-operation latency (bottom, log
/// scale), nemesis windows shaded in both.
fn draw_timeline(path: &Path, t: &Timeline, title: &str) -> Result<(), PlotError> {
    font()?;
    let err = draw_err(path);
    let root = BitMapBackend::new(path, (1100, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (top, bottom) = root.split_vertically(380);
    let shade = RGBColor(255, 200, 200).mix(0.5).filled();
    let y_max = t.products.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64 * 1.05;
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t.end_s, 0.0..y_max)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .y_desc("final products")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(
            t.windows
                .iter()
                .map(|w| Rectangle::new([(w.start_s, 0.0), (w.end_s, y_max)], shade)),
        )
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(LineSeries::new(
            t.products.iter().map(|(s, n)| (*s, *n as f64)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| err(e.to_string()))?;
    let lat_max = t.ops.iter().map(|o| o.1).fold(10.0, f64::max) * 1.5;
    let mut lat = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t.end_s, (0.1..lat_max).log_scale())
        .map_err(|e| err(e.to_string()))?;
    lat.configure_mesh()
        .x_desc("seconds")
        .y_desc("register op latency (ms)")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    lat.draw_series(
        t.windows
            .iter()
            .map(|w| Rectangle::new([(w.start_s, 0.1), (w.end_s, lat_max)], shade)),
    )
    .map_err(|e| err(e.to_string()))?;
    for (end, color, label) in [
        (End::Ok, RGBColor(0, 120, 0), "ok"),
        (End::Fail, RGBColor(200, 0, 0), "fail"),
        (End::Info, RGBColor(230, 140, 0), "info (indeterminate)"),
    ] {
        lat.draw_series(
            t.ops
                .iter()
                .filter(|o| o.2 == end)
                .map(|o| Circle::new((o.0, o.1.max(0.1)), 2, color.filled())),
        )
        .map_err(|e| err(e.to_string()))?
        .label(label)
        .legend(move |(x, y)| Circle::new((x + 7, y), 3, color.filled()));
    }
    lat.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The one-page report of a run.
fn html(
    config: &JepsenConfig,
    seed: u64,
    verdicts: &[Verdict],
    t: &Timeline,
    plot: bool,
) -> String {
    let mut h = String::new();
    let overall = checker::overall(verdicts);
    let names: Vec<&str> = config.nemeses.iter().map(|n| n.name()).collect();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=utf-8><title>factoryOS jepsen: {}</title>\
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:4px 10px;text-align:left}}\
.valid{{color:#080}}.invalid{{color:#c00}}.unknown{{color:#c80}}</style></head><body>\
<h1>factoryOS jepsen run: <span class={0}>{0}</span></h1>\
<p>{1} chain, {2} coordination, nemeses {3}, seed {4}, {5:.0} s. Files: <a href=history.jsonl>history.jsonl</a>, \
<a href=results.json>results.json</a>, <a href=cluster/logs/>logs</a>.</p><table><tr><th>checker</th><th>verdict</th><th>what was checked</th></tr>",
        overall.name(),
        config.preset.name(),
        config.mode,
        names.join(", "),
        seed,
        t.end_s
    );
    for v in verdicts {
        let _ = write!(
            h,
            "<tr><td><a href=#{0}>{0}</a></td><td class={1}>{1}</td><td>{2}</td></tr>",
            v.checker,
            v.valid.name(),
            escape(&v.summary)
        );
    }
    h.push_str("</table>");
    if plot {
        h.push_str("<p><img src=timeline.png width=1100 alt=\"final products and register latency, nemesis windows shaded\"></p>");
    }
    for v in verdicts.iter().filter(|v| !v.evidence.is_empty()) {
        let _ = write!(h, "<h2 id={}>{}: anomalies</h2><ul>", v.checker, v.checker);
        for e in &v.evidence {
            let _ = write!(h, "<li><code>{}</code></li>", escape(e));
        }
        h.push_str("</ul>");
    }
    let _ = write!(h, "<h2>nemesis windows ({})</h2><ul>", t.windows.len());
    for w in &t.windows {
        let _ = write!(
            h,
            "<li>{:.1}–{:.1} s: {} {}</li>",
            w.start_s,
            w.end_s,
            w.nemesis,
            escape(&w.detail)
        );
    }
    h.push_str("</ul></body></html>\n");
    h
}

/// Writes a run's `results.json`, `timeline.png` and `report.html` into `dir`.
pub fn write_run(
    dir: &Path,
    config: &JepsenConfig,
    seed: u64,
    verdicts: &[Verdict],
    entries: &[Entry],
) -> std::io::Result<()> {
    let t = timeline(entries);
    let names: Vec<&str> = config.nemeses.iter().map(|n| n.name()).collect();
    let results = json!({
        "valid": checker::overall(verdicts),
        "seed": seed,
        "preset": config.preset.name(),
        "coord_mode": config.mode,
        "nemeses": names,
        "time_s": config.time.as_secs_f64(),
        "faults": t.windows.len(),
        "checkers": verdicts,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    let title = format!(
        "{} chain, {}: {}",
        config.preset.name(),
        config.mode,
        checker::overall(verdicts).name()
    );
    let plot = match draw_timeline(&dir.join("timeline.png"), &t, &title) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "no timeline plot");
            false
        }
    };
    std::fs::write(
        dir.join("report.html"),
        html(config, seed, verdicts, &t, plot),
    )
}

/// Writes the summary `results.json` over every run into `out`.
pub fn write_summary(
    out: &Path,
    config: &JepsenConfig,
    outcomes: &[RunOutcome],
) -> std::io::Result<()> {
    let (valid, invalid, unknown) = super::tally(outcomes);
    let runs: Vec<_> = outcomes
        .iter()
        .map(|o| {
            json!({
                "run": o.index + 1,
                "seed": o.seed,
                "valid": o.valid,
                "dir": o.dir,
                "faults": o.faults,
                "ops": {"ok": o.ops.0, "fail": o.ops.1, "info": o.ops.2},
                "checkers": o.verdicts.iter().map(|v| json!({"checker": v.checker, "valid": v.valid})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let names: Vec<&str> = config.nemeses.iter().map(|n| n.name()).collect();
    let summary = json!({
        "valid": super::overall(outcomes),
        "verdicts": {"valid": valid, "invalid": invalid, "unknown": unknown},
        "preset": config.preset.name(),
        "coord_mode": config.mode,
        "nemeses": names,
        "time_s": config.time.as_secs_f64(),
        "runs": runs,
    });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&summary)?,
    )
}
