//! What `bench recovery` prints and writes: per fault × mode × phase the
//! p50 / p90 / p99 / max and the Raft / file-lock ratio of medians, the
//! skipped cycles and safety violations, `recovery.csv` (one row per
//! trial), a JSON document, and the CDF of time to resumed production.

use super::phases::Phase;
use super::{RecoveryBench, RecoveryFault, TrialRecord};
use crate::experiment::plots::{draw_err, font, PlotError};
use crate::failover::percentile;
use factoryos_coord::config::{CoordMode, FILE_LOCK_POLL};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The settings line printed above the results.
pub fn settings(bench: &RecoveryBench) -> String {
    let t = bench.timeouts;
    format!(
        "window chain (3 coordinators, 6 stages), {} ms cycles, {} s warm-up, hold {} ms, deadline {} s; \
         Raft heartbeat {} ms, election timeout {}-{} ms; file-lock poll {} ms; {} trials per fault and mode, interleaved",
        bench.cycle.as_millis(),
        bench.warmup.as_secs_f64(),
        bench.hold.as_millis(),
        bench.deadline.as_secs(),
        t.heartbeat_ms,
        t.election_min_ms,
        t.election_max_ms,
        FILE_LOCK_POLL.as_millis(),
        bench.trials
    )
}

fn of<'a>(
    records: &'a [TrialRecord],
    fault: RecoveryFault,
    mode: CoordMode,
) -> impl Iterator<Item = &'a TrialRecord> + 'a {
    records
        .iter()
        .filter(move |r| r.fault == fault && r.mode == mode)
}

/// The times of `phase` in the trials of `fault` in `mode` that reached it,
/// and how many trials there were.
fn samples(
    records: &[TrialRecord],
    fault: RecoveryFault,
    mode: CoordMode,
    phase: Phase,
) -> (Vec<Duration>, usize) {
    let trials: Vec<&TrialRecord> = of(records, fault, mode).collect();
    let times = trials
        .iter()
        .filter_map(|r| r.phases.get(&phase).copied())
        .collect();
    (times, trials.len())
}

/// p50 / p90 / p99 / max of some samples, in ms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Stats {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// Trials that reached the phase, of all trials.
    pub reached: usize,
    pub trials: usize,
}

impl Stats {
    fn of(times: &[Duration], trials: usize) -> Option<Stats> {
        if times.is_empty() {
            return None;
        }
        let ms = |q: f64| percentile(times, q).as_secs_f64() * 1000.0;
        Some(Stats {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            max: ms(1.0),
            reached: times.len(),
            trials,
        })
    }

    /// The row's cells: p50, p90, p99, max, trials that reached it.
    fn cells(stats: Option<Stats>, trials: usize) -> String {
        match stats {
            None => format!(
                "{:>8}{:>8}{:>8}{:>8}{:>9}",
                "-",
                "-",
                "-",
                "-",
                format!("0/{trials}")
            ),
            Some(s) => format!(
                "{:>8.0}{:>8.0}{:>8.0}{:>8.0}{:>9}",
                s.p50,
                s.p90,
                s.p99,
                s.max,
                format!("{}/{}", s.reached, s.trials)
            ),
        }
    }
}

/// The statistics of one phase of one fault in one mode.
pub fn stats(
    records: &[TrialRecord],
    fault: RecoveryFault,
    mode: CoordMode,
    phase: Phase,
) -> Option<Stats> {
    let (times, trials) = samples(records, fault, mode, phase);
    Stats::of(&times, trials)
}

/// Raft's median over the file lock's, when both reached the phase.
pub fn ratio(records: &[TrialRecord], fault: RecoveryFault, phase: Phase) -> Option<f64> {
    let raft = stats(records, fault, CoordMode::Raft, phase)?;
    let lock = stats(records, fault, CoordMode::FileLock, phase)?;
    Some(raft.p50 / lock.p50.max(1e-3))
}

fn faults_in(records: &[TrialRecord]) -> Vec<RecoveryFault> {
    let mut faults: Vec<RecoveryFault> = records.iter().map(|r| r.fault).collect();
    faults.sort();
    faults.dedup();
    faults
}

fn modes_in(records: &[TrialRecord]) -> Vec<CoordMode> {
    CoordMode::ALL
        .into_iter()
        .filter(|m| records.iter().any(|r| r.mode == *m))
        .collect()
}

/// The text tables, one per fault: a row per phase and mode.
pub fn table(records: &[TrialRecord]) -> String {
    let modes = modes_in(records);
    let mut out = String::new();
    for fault in faults_in(records) {
        let _ = writeln!(out, "== {fault}: ms from the fault");
        let _ = writeln!(
            out,
            "{:<16}{:<11}{:>8}{:>8}{:>8}{:>8}{:>9}  raft/file-lock p50",
            "phase", "mode", "p50", "p90", "p99", "max", "reached"
        );
        for phase in Phase::ALL.into_iter().filter(|p| p.applies(fault)) {
            for (i, m) in modes.iter().enumerate() {
                let trials = of(records, fault, *m).count();
                let name = if i == 0 { phase.name() } else { "" };
                let mut line = format!("{name:<16}{:<11}", m.name());
                line.push_str(&Stats::cells(stats(records, fault, *m, phase), trials));
                if let (0, Some(r)) = (i, ratio(records, fault, phase)) {
                    let _ = write!(line, "  {r:.2}");
                }
                let _ = writeln!(out, "{line}");
            }
        }
        for m in &modes {
            let trials: Vec<&TrialRecord> = of(records, fault, *m).collect();
            let n = trials.len().max(1) as f64;
            let affected: u64 = trials.iter().map(|r| r.skipped_affected).sum();
            let elsewhere: u64 = trials.iter().map(|r| r.skipped_elsewhere).sum();
            let violations: usize = trials.iter().filter(|r| !r.violations.is_empty()).count();
            let _ = writeln!(
                out,
                "  {}: skipped cycles per trial {:.1} by the victim's consumers, {:.1} elsewhere; safety violations in {violations} of {} trials",
                m.name(),
                affected as f64 / n,
                elsewhere as f64 / n,
                trials.len()
            );
            for r in trials.iter().filter(|r| !r.violations.is_empty()) {
                let _ = writeln!(out, "    trial {}: {}", r.trial, r.violations.join("; "));
            }
        }
    }
    out
}

/// One row per trial; empty cells for phases not reached or not applying.
pub fn csv(records: &[TrialRecord]) -> String {
    let mut out = String::from("fault,mode,trial,victim,leader");
    for p in Phase::ALL {
        let _ = write!(out, ",{}_ms", p.name().replace('-', "_"));
    }
    out.push_str(",skipped_affected,skipped_elsewhere,violations\n");
    for r in records {
        let leader = r.leader.map_or(String::new(), |l| l.0.to_string());
        let _ = write!(
            out,
            "{},{},{},{},{leader}",
            r.fault,
            r.mode.name(),
            r.trial,
            r.victim.0
        );
        for p in Phase::ALL {
            let cell = r.phases.get(&p).map_or(String::new(), |d| {
                format!("{:.1}", d.as_secs_f64() * 1000.0)
            });
            let _ = write!(out, ",{cell}");
        }
        let _ = writeln!(
            out,
            ",{},{},{}",
            r.skipped_affected,
            r.skipped_elsewhere,
            r.violations.len()
        );
    }
    out
}

/// The whole result as one JSON document: settings, per fault × mode ×
/// phase statistics, ratios, and every trial.
pub fn json(bench: &RecoveryBench, records: &[TrialRecord]) -> serde_json::Value {
    let mut faults = serde_json::Map::new();
    for fault in faults_in(records) {
        let mut modes = serde_json::Map::new();
        for m in modes_in(records) {
            let phases: serde_json::Map<String, serde_json::Value> = Phase::ALL
                .into_iter()
                .filter(|p| p.applies(fault))
                .map(|p| {
                    (
                        p.name().to_string(),
                        serde_json::json!(stats(records, fault, m, p)),
                    )
                })
                .collect();
            modes.insert(m.name().to_string(), serde_json::Value::Object(phases));
        }
        let ratios: serde_json::Map<String, serde_json::Value> = Phase::ALL
            .into_iter()
            .filter(|p| p.applies(fault))
            .map(|p| {
                (
                    p.name().to_string(),
                    serde_json::json!(ratio(records, fault, p)),
                )
            })
            .collect();
        faults.insert(
            fault.name().to_string(),
            serde_json::json!({ "modes": modes, "ratio_raft_to_file_lock_p50": ratios }),
        );
    }
    let t = bench.timeouts;
    serde_json::json!({
        "settings": {
            "chain": "window",
            "cycle_ms": bench.cycle.as_millis() as u64,
            "warmup_ms": bench.warmup.as_millis() as u64,
            "hold_ms": bench.hold.as_millis() as u64,
            "deadline_ms": bench.deadline.as_millis() as u64,
            "trials": bench.trials,
            "heartbeat_ms": t.heartbeat_ms,
            "election_min_ms": t.election_min_ms,
            "election_max_ms": t.election_max_ms,
            "file_lock_poll_ms": FILE_LOCK_POLL.as_millis() as u64,
        },
        "faults": faults,
        "trials": records,
    })
}

/// The trials of a `recovery.json` written by [`json`], read back (to draw
/// its table and plot again without running anything).
pub fn records_from_json(v: &serde_json::Value) -> Result<Vec<TrialRecord>, String> {
    let trials = v["trials"]
        .as_array()
        .ok_or("no \"trials\" array: not a recovery.json")?;
    trials
        .iter()
        .enumerate()
        .map(|(i, t)| record_from_json(t).map_err(|e| format!("trial {i}: {e}")))
        .collect()
}

fn record_from_json(t: &serde_json::Value) -> Result<TrialRecord, String> {
    let str_of = |k: &str| t[k].as_str().ok_or(format!("no {k}"));
    let fault = super::names_fault(str_of("fault")?)?;
    let mode = str_of("mode")?
        .parse::<CoordMode>()
        .map_err(|e| e.to_string())?;
    let mut phases = super::phases::Phases::new();
    if let Some(map) = t["phases"].as_object() {
        for (name, ms) in map {
            let phase = Phase::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or(format!("unknown phase {name:?}"))?;
            let ms = ms.as_f64().ok_or(format!("{name} is not a number"))?;
            phases.insert(phase, Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let u = |k: &str| t[k].as_u64().ok_or(format!("no {k}"));
    Ok(TrialRecord {
        fault,
        mode,
        trial: u("trial")? as usize,
        victim: factoryos_wire::NodeId(u("victim")?),
        leader: t["leader"].as_u64().map(factoryos_wire::NodeId),
        phases,
        skipped_affected: u("skipped_affected")?,
        skipped_elsewhere: u("skipped_elsewhere")?,
        violations: t["violations"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The CDF of time to resumed production: one panel per fault, one line
/// per mode.
pub fn cdf_png(path: &Path, records: &[TrialRecord]) -> Result<(), PlotError> {
    font()?;
    let err = draw_err(path);
    let faults = faults_in(records);
    let rows = faults.len().max(1);
    let root = BitMapBackend::new(path, (900, 260 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let colors = [RGBColor(30, 90, 200), RGBColor(220, 120, 20)];
    for (panel, fault) in root.split_evenly((rows, 1)).iter().zip(&faults) {
        let lines: Vec<(CoordMode, Vec<f64>, usize)> = modes_in(records)
            .into_iter()
            .map(|m| {
                let (times, n) = samples(records, *fault, m, Phase::Resumed);
                let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
                ms.sort_by(f64::total_cmp);
                (m, ms, n)
            })
            .collect();
        let x_max = lines
            .iter()
            .flat_map(|(_, v, _)| v.last().copied())
            .fold(1.0, f64::max)
            * 1.05;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{fault}: time to resumed production"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_max, 0.0..1.0)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            // No fine grid: it adds nothing to a CDF and triples the file.
            .light_line_style(TRANSPARENT)
            .x_desc("ms from the fault")
            .y_desc("share of trials")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (i, (mode, ms, n)) in lines.iter().enumerate() {
            let color = colors[i % colors.len()];
            let total = (*n).max(1) as f64;
            let steps = ms
                .iter()
                .enumerate()
                .flat_map(|(k, x)| [(*x, k as f64 / total), (*x, (k + 1) as f64 / total)]);
            chart
                .draw_series(LineSeries::new(steps, color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(format!("{} ({} of {n} trials)", mode.name(), ms.len()))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 15, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use factoryos_wire::NodeId;

    fn record(mode: CoordMode, trial: usize, resumed_ms: Option<u64>) -> TrialRecord {
        let mut phases = super::super::phases::Phases::new();
        phases.insert(Phase::Detection, Duration::from_millis(800));
        if let Some(ms) = resumed_ms {
            phases.insert(Phase::Resumed, Duration::from_millis(ms));
        }
        TrialRecord {
            fault: RecoveryFault::KillStage,
            mode,
            trial,
            victim: NodeId(13),
            leader: Some(NodeId(1)),
            phases,
            skipped_affected: 2,
            skipped_elsewhere: 0,
            violations: Vec::new(),
        }
    }

    #[test]
    fn percentiles_ratios_and_unreached_phases_are_reported_as_such() {
        let records = vec![
            record(CoordMode::Raft, 0, Some(2000)),
            record(CoordMode::FileLock, 0, Some(1000)),
            record(CoordMode::Raft, 1, Some(3000)),
            record(CoordMode::FileLock, 1, None),
        ];
        let raft = stats(
            &records,
            RecoveryFault::KillStage,
            CoordMode::Raft,
            Phase::Resumed,
        )
        .unwrap();
        assert_eq!(
            (raft.p50, raft.max, raft.reached, raft.trials),
            (2000.0, 3000.0, 2, 2)
        );
        let lock = stats(
            &records,
            RecoveryFault::KillStage,
            CoordMode::FileLock,
            Phase::Resumed,
        )
        .unwrap();
        assert_eq!((lock.reached, lock.trials), (1, 2));
        assert_eq!(
            ratio(&records, RecoveryFault::KillStage, Phase::Resumed),
            Some(2.0)
        );
        assert_eq!(
            stats(
                &records,
                RecoveryFault::KillStage,
                CoordMode::Raft,
                Phase::Verdict
            ),
            None
        );
        let text = table(&records);
        assert!(text.contains("1/2"), "{text}");
        assert!(
            text.contains("0/2"),
            "an unreached phase shows 0 of the trials: {text}"
        );
        assert!(
            !text.contains("new-leader"),
            "kill-stage has no new leader: {text}"
        );
    }

    #[test]
    fn a_written_json_reads_back_as_the_same_trials() {
        let records = vec![
            record(CoordMode::Raft, 0, Some(2000)),
            record(CoordMode::FileLock, 0, None),
        ];
        let bench = RecoveryBench::default();
        let back = records_from_json(&json(&bench, &records)).unwrap();
        assert_eq!(csv(&back), csv(&records));
        assert!(records_from_json(&serde_json::json!({"x": 1})).is_err());
    }

    #[test]
    fn the_csv_has_a_row_per_trial_and_empty_cells_for_unreached_phases() {
        let csv = csv(&[record(CoordMode::FileLock, 3, None)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        let head: Vec<&str> = lines[0].split(',').collect();
        let row: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(head.len(), row.len(), "{csv}");
        let cell = |name: &str| row[head.iter().position(|h| *h == name).unwrap()];
        assert_eq!(cell("mode"), "file-lock");
        assert_eq!(cell("detection_ms"), "800.0");
        assert_eq!(cell("resumed_ms"), "");
        assert_eq!(cell("violations"), "0");
    }
}
