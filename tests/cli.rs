//! Black-box tests of the `factoryos` binary.

use std::process::Command;

fn factoryos() -> Command {
    Command::new(env!("CARGO_BIN_EXE_factoryos"))
}

/// The command exited 0 (else its stderr is the failure).
fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn certs_init_then_issue_writes_loadable_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = factoryos()
        .args(["certs", "init", "--dir", d])
        .output()
        .unwrap();
    assert_success(&out);
    let out = factoryos()
        .args(["certs", "issue", "--dir", d, "--node", "1-3", "--node", "9"])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("issued 4 node certificate(s)"));
    for id in [1, 2, 3, 9] {
        let identity =
            factoryos_wire::NodeIdentity::load(dir.path(), factoryos_wire::NodeId(id)).unwrap();
        assert_eq!(identity.id().0, id);
    }
}

#[test]
fn certs_errors_are_one_clear_line_and_a_failing_status() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = factoryos()
        .args(["certs", "issue", "--dir", d, "--node", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: no usable CA in"), "{err}");
    assert!(err.contains("factoryos certs init --dir"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Stack backtrace"),
        "{err}"
    );

    factoryos()
        .args(["certs", "init", "--dir", d])
        .output()
        .unwrap();
    let out = factoryos()
        .args(["certs", "init", "--dir", d])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --force"));

    let out = factoryos()
        .args(["certs", "issue", "--dir", d, "--node", "5-2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("range \"5-2\" is empty"));
}

#[test]
fn a_host_certificate_serves_exactly_its_stages_and_stage_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cluster");
    let out = factoryos()
        .args(["cluster", "init", "--dir"])
        .arg(&d)
        .args(["--spec", &example("window.toml")])
        .output()
        .unwrap();
    assert_success(&out);
    let config = d.join("cluster.toml");
    // Two stages in one process need the host certificate for exactly them.
    let out = factoryos()
        .args(["stage", "--config"])
        .arg(&config)
        .args(["--ids", "11,13"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certs issue --dir DIR --host 11,13"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // --host and --node do not mix.
    let certs = d.join("certs");
    let out = factoryos()
        .args(["certs", "issue", "--dir"])
        .arg(&certs)
        .args(["--host", "11,13", "--node", "12"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = factoryos()
        .args(["certs", "issue", "--dir"])
        .arg(&certs)
        .args(["--host", "11,13"])
        .output()
        .unwrap();
    assert_success(&out);
    let ids = [factoryos_wire::NodeId(11), factoryos_wire::NodeId(13)];
    let host = factoryos_wire::NodeIdentity::load_host(&certs, &ids).unwrap();
    assert_eq!(host.ids(), &ids);
    // The certificate is for that set only: a third stage is refused.
    let three = [ids[0], ids[1], factoryos_wire::NodeId(15)];
    let err = factoryos_wire::NodeIdentity::load_host(&certs, &three).unwrap_err();
    assert!(err.to_string().contains("--host 11,13,15"), "{err}");
}

#[test]
fn bench_wire_reports_throughput_and_latency() {
    let out = factoryos()
        .args([
            "bench",
            "wire",
            "--messages",
            "2000",
            "--rtt-samples",
            "100",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2000 messages"), "{text}");
    assert!(text.contains("msg/s") && text.contains("p99"), "{text}");
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["sim", "--help"],
        vec!["certs", "init", "--help"],
        vec!["certs", "issue", "--help"],
        vec!["bench", "wire", "--help"],
        vec!["bench", "flow", "--help"],
        vec!["spec", "check", "--help"],
        vec!["flow", "--help"],
        vec!["stage", "--help"],
        vec!["audit", "--help"],
        vec!["coord", "--help"],
        vec!["status", "--help"],
        vec!["cluster", "init", "--help"],
        vec!["coordinators", "add", "--help"],
        vec!["bench", "failover", "--help"],
        vec!["bench", "wal", "--help"],
        vec!["bench", "stage", "--help"],
    ] {
        let out = factoryos().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn spec_check_accepts_the_examples_and_explains_a_bad_spec() {
    for name in ["window.toml", "bicycle.toml"] {
        let out = factoryos()
            .args(["spec", "check", &example(name)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok: "));
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "final = \"b\"\n[types.a]\nyield = 1\n[types.b]\ninputs = { c = 1 }\nyield = 1\n",
    )
    .unwrap();
    let out = factoryos()
        .args(["spec", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:5:12: error: type `b` needs input `c`, which no type produces"),
        "{err}"
    );
    assert!(err.contains("hint: define [types.c]"), "{err}");
    // The final type needs a stage; a type the chain does not use may stand idle.
    assert!(err.contains("no stage makes `b`"), "{err}");
    assert!(!err.contains("no stage makes `a`"), "{err}");
}

#[test]
fn flow_prints_a_table_routes_around_the_dead_and_writes_dot() {
    let out = factoryos()
        .args(["flow", &example("window.toml")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("6 stages (0 dead), 6 active, 8 edges"),
        "{text}"
    );

    let out = factoryos()
        .args(["flow", &example("window.toml"), "--dead", "13"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("n14 -> n15"), "{text}");
    assert!(
        !text.contains("n13 ->") && !text.contains("-> n13"),
        "{text}"
    );

    let out = factoryos()
        .args(["flow", &example("window.toml"), "--dot"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("digraph flow {") && text.trim_end().ends_with('}'),
        "{text}"
    );

    let out = factoryos()
        .args(["flow", &example("window.toml"), "--dead", "42"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not declare"));
}

/// `--coord-mode file-lock` on the command line takes the shared directory
/// the cluster file names (it used to take `data/shared` whatever the file said).
#[test]
fn file_lock_mode_from_the_command_line_uses_the_cluster_files_shared_directory() {
    use factoryos_coord::cluster::ClusterToml;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.path().join("c");
    let out = factoryos()
        .args(["cluster", "init", "--coordinators", "1", "--base-port"])
        .arg(port.to_string())
        .arg("--dir")
        .arg(&d)
        .output()
        .unwrap();
    assert_success(&out);
    let path = d.join("cluster.toml");
    let mut file: ClusterToml = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file.shared = Some("elsewhere".into());
    file.save(&path).unwrap();

    let mut child = factoryos()
        .args([
            "coord",
            "--id",
            "1",
            "--coord-mode",
            "file-lock",
            "--config",
        ])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = d.join("elsewhere").join("leader.lock");
    let start = std::time::Instant::now();
    while !lock.exists() && start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lock.exists(),
        "no leader lock in the configured shared directory"
    );
    assert!(
        !d.join("data").join("shared").exists(),
        "the default directory was used"
    );
}

#[test]
fn bench_failover_json_says_where_a_commit_spends_its_time() {
    let out = factoryos()
        .args(["bench", "failover", "--trials", "1", "--commits", "5"])
        .args(["--coord-mode", "raft", "--json"])
        .output()
        .unwrap();
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let raft = &v["modes"]["raft"];
    assert_eq!(raft["failover"]["samples"], 1);
    assert!(raft["commit"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(raft["round_trip"]["samples"].as_u64().unwrap() > 0);
    let phases: Vec<&str> = raft["leader_phases"]["phases"]
        .as_array()
        .expect("the leader's phases")
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    for phase in ["Proposal", "LogFlush", "Replication", "Apply"] {
        assert!(phases.contains(&phase), "{phase} missing from {phases:?}");
    }
}

#[test]
fn a_harness_run_refuses_a_directory_a_stopped_run_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    // What a run stopped with Ctrl-C leaves: run directories, no results.
    std::fs::create_dir_all(dir.path().join("kill/run-1/cluster")).unwrap();
    let out = factoryos()
        .args(["jepsen", "--nemesis", "kill", "--time", "5s", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("already holds files") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// The summary a simulation prints, without its wall-clock line.
fn simulated(args: &[&str]) -> String {
    let out = factoryos().arg("sim").args(args).output().unwrap();
    assert_success(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("wall time"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_simulation_is_the_same_for_the_same_seed_and_refuses_bad_input() {
    let args = [
        "--preset",
        "small",
        "--duration",
        "15",
        "--failure-rate",
        "6",
        "--recover-rate",
        "6",
        "--loss",
        "0.01",
        "--partition-rate",
        "6",
        "--final-recovery",
    ];
    let a = simulated(&args);
    assert!(a.contains("efficiency"), "{a}");
    assert!(a.contains("lots lost 0, duplicated 0, miscounted 0"), "{a}");
    assert_eq!(a, simulated(&args), "same seed, same summary");
    let mut other = args.to_vec();
    other.extend(["--seed", "2"]);
    assert_ne!(a, simulated(&other));
    for bad in [
        vec!["--loss", "2"],
        vec!["--stages", "10", "--types", "1"],
        vec!["--failure-rate", "-1"],
    ] {
        let out = factoryos().arg("sim").args(&bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{bad:?}: {err}");
    }
}

#[test]
fn a_simulated_sweep_writes_its_table_csv_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = factoryos()
        .args([
            "sim",
            "--scale",
            "10,30",
            "--types",
            "5",
            "--duration",
            "4",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_success(&out);
    let table = std::fs::read_to_string(dir.path().join("scale.md")).unwrap();
    assert_eq!(
        table.lines().count(),
        4,
        "a header, a rule and two rows:\n{table}"
    );
    let csv = std::fs::read_to_string(dir.path().join("scale.csv")).unwrap();
    assert!(csv.lines().nth(2).unwrap().starts_with("30,5,"), "{csv}");
    assert!(dir.path().join("scale.png").exists());
    // Durations must match the sizes.
    let out = factoryos()
        .args([
            "sim",
            "--scale",
            "10,30",
            "--types",
            "5",
            "--scale-durations",
            "4",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 sizes"));
}
