//! `factoryos run` end to end: a short small-preset run with crashes,
//! recoveries, recipe updates and an added stage, and a run interrupted
//! with Ctrl-C.

use factoryos_coord::cluster::ClusterFile;
use factoryos_stage::metrics::StageReport;
use factoryos_stage::setup::StageFiles;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

fn factoryos() -> Command {
    Command::new(env!("CARGO_BIN_EXE_factoryos"))
}

const METRIC_ROWS: &[&str] = &[
    "successful_manufacture_cycles",
    "skipped_manufacture_cycles",
    "total_manufacture_cycles",
    "RequestBatch_sent",
    "RequestBatch_received",
    "BatchSent_sent",
    "BatchSent_received",
    "BatchUnavailable_sent",
    "WaitingForBatch_received",
    "DeliveryConfirmed_sent",
    "batches_requested",
    "batches_received",
    "batches_delivered",
    "heartbeats_sent",
    "nodes_reported_suspect",
    "wal_recovered_in_queue",
    "wal_recovered_in_transit",
    "wal_recovered_inbound",
    "final_products",
];

/// `metrics.csv` (stage,metric,value) read back into each stage's typed report.
fn reports_of(csv: &str) -> BTreeMap<u64, StageReport> {
    let mut named: BTreeMap<u64, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 3, "bad line {line:?}");
        let value: u64 = f[2].parse().unwrap();
        named
            .entry(f[0].parse().unwrap())
            .or_default()
            .insert(f[1].to_string(), value.into());
    }
    named
        .into_iter()
        .map(|(id, m)| (id, serde_json::from_value(m.into()).unwrap()))
        .collect()
}

#[test]
fn a_short_small_run_with_failures_loses_nothing_and_reports_everything() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = factoryos()
        .args([
            "run",
            "--preset",
            "small",
            "--duration",
            "20",
            "--seed",
            "7",
        ])
        .args(["--failure-rate", "30", "--recover-rate", "30"])
        .args(["--update-dep-rate", "12", "--add-stage-rate", "6"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "run failed (seed 7):\n{stdout}\n{stderr}"
    );
    assert!(stdout.starts_with("metric_name"), "{stdout}");
    for row in METRIC_ROWS {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(row)),
            "no `{row}` row in:\n{stdout}"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("summary.json")).unwrap()).unwrap();
    for key in [
        "efficiency",
        "final_products",
        "ideal_final_products",
        "successful_cycle_ratio",
        "messages_per_lot",
        "lots_lost",
        "lots_duplicated",
        "faults_injected",
        "recoveries",
        "leader_elections",
    ] {
        assert!(
            summary.get(key).is_some(),
            "summary.json lacks {key}: {summary}"
        );
    }
    assert!(
        summary["leader_elections"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert_eq!(summary["lots_lost"], 0, "{summary}");
    assert_eq!(summary["lots_duplicated"], 0, "{summary}");
    assert_eq!(summary["lots_miscounted"], 0, "{summary}");
    assert!(summary["efficiency"].as_f64().unwrap() > 0.0, "{summary}");
    assert!(
        summary["faults_injected"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    // Every crash is followed through to the first product made by survivors.
    let reroutes = summary["reroutes"].as_array().unwrap();
    assert!(!reroutes.is_empty(), "{summary}");
    assert!(
        reroutes.iter().any(|r| r["first_product_ms"].is_u64()),
        "no crash was routed around: {summary}"
    );
    // Recipe updates were committed and reached the stages of their type;
    // the added stage joined and made lots.
    assert!(
        summary["recipe_updates"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert!(summary["stages_added"].as_u64().unwrap() >= 1, "{summary}");
    let csv = std::fs::read_to_string(out_dir.join("metrics.csv")).unwrap();
    let reports = reports_of(&csv);
    assert!(
        reports.values().any(|r| r.counters.recipe_updates >= 1),
        "no stage adopted a recipe update:\n{csv}"
    );
    assert_eq!(
        summary["stages"].as_u64().unwrap(),
        8 + summary["stages_added"].as_u64().unwrap()
    );
    let added = reports
        .range(19..)
        .map(|(_, r)| r.counters.successful_manufacture_cycles)
        .max();
    assert!(
        added.is_some_and(|v| v > 0),
        "the added stage made nothing:\n{csv}"
    );
    for png in ["final_products.png", "cycle_outcomes.png"] {
        let bytes = std::fs::read(out_dir.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
            "{png} is not a real plot"
        );
    }
    assert!(csv.starts_with("stage,metric,value\n") && csv.lines().count() > 100);
}

#[test]
fn ctrl_c_mid_run_stops_early_and_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let mut child = factoryos()
        .args(["run", "--duration", "120"])
        .arg("--out")
        .arg(&out_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the stages are up (a metrics file appears), then interrupt.
    let start = Instant::now();
    let up = || -> Option<()> {
        let cluster = ClusterFile::load(&out_dir.join("cluster/cluster.toml")).ok()?;
        let first = cluster.chain().ok()??.stages.first()?.id;
        StageFiles::of(&cluster, first)
            .metrics
            .exists()
            .then_some(())
    };
    while up().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(100),
        "the run did not stop early"
    );
    assert!(
        status.success(),
        "an interrupted run still reports: {status}"
    );
    assert!(out_dir.join("summary.json").exists());
    // No process of this run is left.
    let marker = out_dir.to_string_lossy().to_string();
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let left: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(&marker) && !l.contains("ps -eo"))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
