//! Black-box test of a whole chain of real processes: 3 coordinators and the
//! window chain's 6 stages (3 types x 2 stages). A frame stage is killed with
//! SIGKILL mid-trade and restarted; the WALs of all stages must then show no
//! lot lost, none duplicated, none consumed twice, production going on while
//! it was down, and the restarted stage producing again. Operators update a
//! recipe and add a stage through the CLI while the chain runs.

use factoryos_coord::cluster::LocalInit;
use factoryos_jepsen::local::LocalCluster;
use factoryos_stage::metrics::StageReport;
use factoryos_wire::NodeId;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(90);
const CYCLE_MS: u64 = 50;

fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(cluster: &LocalCluster, id: u64, figure: fn(&StageReport) -> u64) -> Option<u64> {
    cluster.stage_metrics(NodeId(id)).as_ref().map(figure)
}

fn windows(cluster: &LocalCluster) -> u64 {
    [15, 16]
        .iter()
        .map(|id| metric(cluster, *id, |m| m.counters.final_products).unwrap_or(0))
        .sum()
}

/// 3 coordinators of the window chain in `dir`, started; no stage yet.
fn window_cluster(dir: &std::path::Path) -> LocalCluster {
    let spec = format!("{}/examples/window.toml", env!("CARGO_MANIFEST_DIR"));
    let mut cluster = LocalCluster::create(
        &dir.join("cluster"),
        env!("CARGO_BIN_EXE_factoryos").as_ref(),
        &LocalInit::new(3, Some(spec.as_ref())),
    )
    .unwrap();
    cluster.set_metrics_interval(CYCLE_MS);
    cluster.start_all().unwrap();
    cluster
}

type Host = [NodeId; 3];

/// The window chain in two host processes, 11, 13, 15 and 12, 14, 16 (one
/// stage of each type in each), started and both making windows.
fn two_hosts(dir: &std::path::Path) -> (LocalCluster, Host, Host) {
    let mut cluster = window_cluster(dir);
    let host_a = [NodeId(11), NodeId(13), NodeId(15)];
    let host_b = [NodeId(12), NodeId(14), NodeId(16)];
    cluster.start_stage_group(&host_a, CYCLE_MS).unwrap();
    cluster.start_stage_group(&host_b, CYCLE_MS).unwrap();
    eventually("both window stages making windows", || {
        (metric(&cluster, 15, |m| m.counters.final_products)? >= 5
            && metric(&cluster, 16, |m| m.counters.final_products)? >= 5)
            .then_some(())
    });
    (cluster, host_a, host_b)
}

/// 3 coordinators and the window chain's stages 11-16 in `dir`, started.
fn window_chain(dir: &std::path::Path) -> (LocalCluster, Vec<u64>) {
    let mut cluster = window_cluster(dir);
    let stages: Vec<u64> = (11..=16).collect();
    for id in &stages {
        cluster.start_stage(NodeId(*id), CYCLE_MS).unwrap();
    }
    (cluster, stages)
}

#[test]
fn a_stage_killed_mid_trade_loses_nothing_and_production_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, stages) = window_chain(dir.path());
    eventually("windows being made", || {
        (windows(&cluster) >= 10).then_some(())
    });

    // Kill a frame stage in the middle of trading.
    eventually("frame stage 13 trading", || {
        (metric(&cluster, 13, |m| m.counters.batches_sent)? > 0
            && metric(&cluster, 13, |m| m.counters.batches_received)? > 0)
            .then_some(())
    });
    cluster.kill(NodeId(13)).unwrap();
    std::fs::remove_file(cluster.metrics_path(NodeId(13))).unwrap();
    let at_kill = windows(&cluster);
    let frames_at_kill =
        metric(&cluster, 14, |m| m.counters.successful_manufacture_cycles).unwrap();

    // Production goes on through the other frame stage.
    eventually("windows made while 13 is down", || {
        (windows(&cluster) >= at_kill + 10).then_some(())
    });
    assert!(
        metric(&cluster, 14, |m| m.counters.successful_manufacture_cycles).unwrap()
            > frames_at_kill
    );

    // 13 restarts from its WAL and makes frames again.
    cluster.start_stage(NodeId(13), CYCLE_MS).unwrap();
    let recovered = eventually("13 making frames again", || {
        let m = cluster.stage_metrics(NodeId(13))?;
        (m.counters.successful_manufacture_cycles >= 3).then_some(m)
    });
    let c = &recovered.counters;
    let replayed = c.wal_recovered_in_queue + c.wal_recovered_in_transit + c.wal_recovered_inbound;
    assert!(replayed > 0, "13 replayed its WAL: {recovered:?}");

    // Stop every stage cleanly, then audit all WALs.
    for id in &stages {
        cluster.terminate(NodeId(*id)).unwrap();
    }
    let ids: Vec<NodeId> = stages.iter().map(|i| NodeId(*i)).collect();
    let report = factoryos_stage::audit::audit_wals(cluster.file(), &ids).unwrap();
    eprintln!("{report}");
    assert!(report.is_clean(), "{report}\n{report:?}");
    assert!(report.units_shipped >= at_kill + 40);
}

fn factoryos(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_factoryos"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn operators_change_a_running_chain_recipes_and_stages() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, mut stages) = window_chain(dir.path());
    eventually("windows being made", || {
        (windows(&cluster) >= 5).then_some(())
    });
    let config = cluster.dir().join("cluster.toml");
    let config = config.to_str().unwrap();

    // Bad changes are refused with a reason, and change nothing.
    let bad = factoryos(&[
        "recipe", "set", "--config", config, "--item", "window", "--input", "glass=1", "--yield",
        "1",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("glass"), "{err}");
    let bad = factoryos(&["stages", "add", "--config", config, "--id", "17"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("[[stages]]"), "{err}");

    // A window needs 4 frames from now on: both window stages adopt it.
    let ok = factoryos(&[
        "recipe",
        "set",
        "--config",
        config,
        "--item",
        "window",
        "--input",
        "window-frame=4",
        "--yield",
        "1",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // A compare-and-set on the old version is refused with the current one.
    let stale = factoryos(&[
        "recipe",
        "set",
        "--config",
        config,
        "--item",
        "window",
        "--input",
        "window-frame=9",
        "--yield",
        "1",
        "--if-version",
        "1",
    ]);
    let err = String::from_utf8_lossy(&stale.stderr);
    assert!(
        !stale.status.success() && err.contains("at version 2, not 1"),
        "{err}"
    );
    let show = factoryos(&["recipe", "show", "--config", config, "--item", "window"]);
    let out = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.status.success() && out.contains("window v2: window-frame=4"),
        "{out}"
    );
    for id in [15, 16] {
        eventually("the window stages running recipe 2", || {
            (metric(&cluster, id, |m| m.gauges.recipe_version)? == 2).then_some(())
        });
    }

    // A third window stage is declared, added and started; it makes windows.
    let spec_file = cluster.file().spec.clone().unwrap();
    let mut text = std::fs::read_to_string(&spec_file).unwrap();
    text.push_str("\n[[stages]]\nid = 17\ntype = \"window\"\n");
    std::fs::write(&spec_file, text).unwrap();
    let ok = factoryos(&["stages", "add", "--config", config, "--id", "17"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    cluster.start_stage(NodeId(17), CYCLE_MS).unwrap();
    stages.push(17);
    eventually("the added stage making windows", || {
        (metric(&cluster, 17, |m| m.counters.final_products)? >= 3).then_some(())
    });
    assert_eq!(metric(&cluster, 17, |m| m.gauges.recipe_version), Some(2));

    for id in &stages {
        cluster.terminate(NodeId(*id)).unwrap();
    }
    let ids: Vec<NodeId> = stages.iter().map(|i| NodeId(*i)).collect();
    let report = factoryos_stage::audit::audit_wals(cluster.file(), &ids).unwrap();
    assert!(report.is_clean(), "{report}\n{report:?}");
    // Windows made by the new recipe consumed 4 frames each.
    let records = factoryos_stage::audit::read_wals(cluster.file(), &ids).unwrap();
    let units = |l: &factoryos_wire::model::Lot| l.genealogy.iter().map(|(_, u)| u).sum::<u32>();
    let by_17: Vec<u32> = records
        .iter()
        .filter(|(id, _)| *id == NodeId(17))
        .flat_map(|(_, r)| r.out.iter().map(|o| units(&o.lot)))
        .collect();
    assert!(
        !by_17.is_empty() && by_17.iter().all(|u| *u == 4),
        "{by_17:?}"
    );
}

/// The window chain's stages on two host processes, each with one stage of
/// every type (11, 13, 15 and 12, 14, 16) on one endpoint and one host
/// certificate. SIGKILL of one host takes its three stages at once; the
/// other host's go on making windows; the killed host restarts from its
/// three WALs and makes windows again; no lot is lost or duplicated.
#[test]
fn a_killed_host_process_takes_its_stages_together_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, host_a, host_b) = two_hosts(dir.path());
    let certs = &cluster.file().certs;
    assert!(certs.join("host-11.pem").exists() && certs.join("host-12.pem").exists());

    cluster.kill(NodeId(11)).unwrap();
    for id in host_a {
        std::fs::remove_file(cluster.metrics_path(id)).unwrap();
    }
    let at_kill = metric(&cluster, 16, |m| m.counters.final_products).unwrap();
    eventually("host b making windows alone", || {
        (metric(&cluster, 16, |m| m.counters.final_products)? >= at_kill + 10).then_some(())
    });

    cluster.start_stage_group(&host_a, CYCLE_MS).unwrap();
    eventually("the restarted host making windows again", || {
        (metric(&cluster, 15, |m| m.counters.final_products)? >= 3).then_some(())
    });

    cluster.terminate_all(&[NodeId(11), NodeId(12)]).unwrap();
    let ids: Vec<NodeId> = host_a.iter().chain(&host_b).copied().collect();
    let report = factoryos_stage::audit::audit_wals(cluster.file(), &ids).unwrap();
    eprintln!("{report}");
    assert!(report.is_clean(), "{report}\n{report:?}");
}

/// The window chain in two host processes of three stages each; frame
/// stage 13 is killed alone inside its live host (through the host's down
/// file). The leader holds it dead although its host's other stages keep
/// their links to the other host awake; window stage 15, in the same
/// process, goes on with frames from 14; 13 starts again inside the same
/// process from the host's WAL and makes frames again; no lot is lost or
/// duplicated.
#[test]
fn a_stage_killed_alone_in_a_live_host_is_held_dead_and_restarts_there() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, host_a, host_b) = two_hosts(dir.path());
    let pid = cluster.pid(NodeId(11));

    cluster
        .set_stage_down(NodeId(11), NodeId(13), true)
        .unwrap();
    let config = cluster.dir().join("cluster.toml");
    let config = config.to_str().unwrap();
    eventually("the leader holding 13 dead", || {
        let out = factoryos(&["status", "--config", config]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["n13", "Dead"])
            .then_some(())
    });
    // Found because its host told the leader, not by a consumer's timeout.
    let log = cluster.dir().join("logs").join("n11.log");
    eventually("the host's report of 13's death", || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("reported the stage's death to the leader")
            .then_some(())
    });
    std::fs::remove_file(cluster.metrics_path(NodeId(13))).unwrap();
    let at_kill = metric(&cluster, 15, |m| m.counters.final_products).unwrap();
    eventually("15, beside the dead 13, making windows", || {
        (metric(&cluster, 15, |m| m.counters.final_products)? >= at_kill + 10).then_some(())
    });
    assert!(cluster.stage_metrics(NodeId(13)).is_none(), "13 is down");
    assert_eq!(cluster.pid(NodeId(11)), pid, "the host lives on");
    assert!(cluster.is_running(NodeId(11)));

    cluster
        .set_stage_down(NodeId(11), NodeId(13), false)
        .unwrap();
    let recovered = eventually("13 making frames again in its host", || {
        let m = cluster.stage_metrics(NodeId(13))?;
        (m.counters.successful_manufacture_cycles >= 3).then_some(m)
    });
    let c = &recovered.counters;
    let replayed = c.wal_recovered_in_queue + c.wal_recovered_in_transit + c.wal_recovered_inbound;
    assert!(replayed > 0, "13 replayed its records: {recovered:?}");
    assert_eq!(cluster.pid(NodeId(11)), pid, "in the same process");

    cluster.terminate_all(&[NodeId(11), NodeId(12)]).unwrap();
    let ids: Vec<NodeId> = host_a.iter().chain(&host_b).copied().collect();
    let report = factoryos_stage::audit::audit_wals(cluster.file(), &ids).unwrap();
    eprintln!("{report}");
    assert!(report.is_clean(), "{report}\n{report:?}");
}
