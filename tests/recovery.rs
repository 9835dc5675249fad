//! Black-box smoke test of `factoryos bench recovery`: two trials per mode
//! of `kill-stage` on real processes, the files it writes, and every phase
//! of every trial measured.

use std::process::Command;

#[test]
fn bench_recovery_measures_every_phase_of_a_killed_supplier_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_factoryos"))
        .args([
            "bench",
            "recovery",
            "--trials",
            "2",
            "--fault",
            "kill-stage",
        ])
        .args(["--warmup", "2s", "--json", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");

    let trials = v["trials"].as_array().expect("the trials");
    let modes: Vec<&str> = trials.iter().map(|t| t["mode"].as_str().unwrap()).collect();
    // Interleaved: raft, file-lock, raft, file-lock.
    assert_eq!(modes, ["raft", "file-lock", "raft", "file-lock"], "{v}");
    for t in trials {
        for phase in [
            "detection",
            "verdict",
            "new-flow",
            "consumer-cycle",
            "survivors",
            "resumed",
        ] {
            let ms = t["phases"][phase].as_f64();
            assert!(ms.is_some_and(|ms| ms > 0.0), "{phase} not measured in {t}");
        }
        assert!(
            t["phases"]["new-leader"].is_null(),
            "no leader was hit: {t}"
        );
        let resumed = t["phases"]["resumed"].as_f64().unwrap();
        let flow = t["phases"]["new-flow"].as_f64().unwrap();
        assert!(
            resumed >= flow,
            "production resumed before the new route: {t}"
        );
        assert_eq!(t["violations"].as_array().unwrap().len(), 0, "{t}");
    }
    let stats = &v["faults"]["kill-stage"];
    for mode in ["raft", "file-lock"] {
        assert_eq!(stats["modes"][mode]["resumed"]["reached"], 2, "{stats}");
    }
    assert!(stats["ratio_raft_to_file_lock_p50"]["resumed"]
        .as_f64()
        .is_some());

    let csv = std::fs::read_to_string(out_dir.join("recovery.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("fault,mode,trial,victim,leader,detection_ms"));
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[1..].iter().all(|l| l.starts_with("kill-stage,")));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("recovery.json")).unwrap()).unwrap();
    assert_eq!(json["trials"].as_array().unwrap().len(), 4);
    let png = std::fs::read(out_dir.join("recovery-cdf.png")).expect("the CDF plot");
    assert!(png.starts_with(b"\x89PNG"), "{stderr}");

    // The tables and the plot again, from the files alone.
    std::fs::remove_file(out_dir.join("recovery-cdf.png")).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_factoryos"))
        .args(["bench", "recovery", "--summarize"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let table = String::from_utf8_lossy(&again.stdout);
    assert!(
        table.contains("== kill-stage") && table.contains("resumed"),
        "{table}"
    );
    assert!(out_dir.join("recovery-cdf.png").exists());

    // A second run into the same directory is refused, not overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_factoryos"))
        .args([
            "bench",
            "recovery",
            "--trials",
            "1",
            "--fault",
            "kill-stage",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a recovery run"));
}

#[test]
fn bench_recovery_names_the_faults_it_knows_when_given_another() {
    let out = Command::new(env!("CARGO_BIN_EXE_factoryos"))
        .args(["bench", "recovery", "--fault", "kill-stage,unplug"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown fault \"unplug\""), "{stderr}");
    assert!(stderr.contains("partition-leader"), "{stderr}");
}
