//! The partition harness end to end, as CI runs it: a short real run of
//! `factoryos jepsen` on network-namespace hosts under several nemeses (a
//! partition among them), every checker valid, its files written, nothing
//! left behind. Without root the command refuses in one line and exits
//! non-zero, and so this test checks that instead.

use std::process::Command;

fn factoryos() -> Command {
    Command::new(env!("CARGO_BIN_EXE_factoryos"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_short_harness_run_on_namespace_hosts_is_valid_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("jepsen");
    let out = factoryos()
        .args(["jepsen", "--nemesis"])
        .arg("partition-halves,isolate-leader,partition-one-way,kill,pause,loss")
        .args(["--time", "75s", "--seed", "3"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !is_root() {
        assert!(!out.status.success());
        let line = stderr.trim();
        assert!(
            line.contains("need root") && !line.contains('\n'),
            "{stderr}"
        );
        return;
    }
    assert!(
        out.status.success(),
        "harness run (seed 3) not valid:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.trim_end().ends_with("6 valid, 0 invalid, 0 unknown"),
        "{stdout}"
    );
    let run = out_dir.join("run-1");
    for file in [
        "history.jsonl",
        "results.json",
        "report.html",
        "timeline.png",
    ] {
        assert!(run.join(file).exists(), "no {file}");
    }
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["valid"], "valid", "{results}");
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    let starts: Vec<&str> = history
        .lines()
        .filter(|l| l.contains("\"type\":\"nemesis-start\""))
        .collect();
    assert!(starts.len() >= 8, "{} faults in 75 s", starts.len());
    assert!(
        starts.iter().any(|l| l.contains("partition")),
        "no partition among: {starts:?}"
    );
    for kind in [
        "\"type\":\"invoke\"",
        "\"type\":\"ok\"",
        "\"event\":\"role\"",
        "\"event\":\"flow-adopted\"",
    ] {
        assert!(history.contains(kind), "the history has no {kind}");
    }
    // Nothing of the lab (hosts.json says what it was) is left on the machine.
    let lab: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("hosts.json")).unwrap()).unwrap();
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let ns = String::from_utf8_lossy(&ns.stdout);
    let hosts = lab["hosts"].as_array().unwrap();
    assert!(hosts.len() >= 10, "{lab}");
    for h in hosts {
        let name = h["ns"].as_str().unwrap();
        assert!(!ns.contains(name), "namespace {name} left behind");
    }
    let routes = Command::new("ip").args(["route"]).output().unwrap();
    let cidr = lab["cidr"].as_str().unwrap();
    assert!(
        !String::from_utf8_lossy(&routes.stdout).contains(cidr),
        "route for {cidr} left"
    );
}
