//! The first run on separate hosts: 3 coordinators and the window chain's
//! stages, each process in its own network namespace on one bridge, the
//! test's client inside the lab too. Stages register addresses their peers
//! can dial, trade, and route around a partition that cuts a frame stage
//! off; the lab leaves nothing behind. Without root the harness says so in
//! one line.

mod common;

use factoryos_coord::cluster::LocalInit;
use factoryos_jepsen::hosts::netns::{NetnsError, NetnsLab, Rules};
use factoryos_jepsen::local::LocalCluster;
use factoryos_wire::NodeId;
use std::sync::Arc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(90);

async fn eventually<T>(what: &str, f: impl AsyncFnMut() -> Option<T>) -> T {
    common::eventually(what, DEADLINE, Duration::from_millis(50), f).await
}

fn windows(cluster: &LocalCluster) -> u64 {
    [15, 16]
        .iter()
        .filter_map(|id| cluster.stage_metrics(NodeId(*id)))
        .map(|m| m.counters.final_products)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_chain_runs_on_namespace_hosts_and_routes_around_a_partition() {
    let lab = match NetnsLab::create() {
        Ok(lab) => Arc::new(lab),
        Err(e @ (NetnsError::NotRoot | NetnsError::Missing(_))) => {
            // Not this machine's to test: the refusal is one clear line.
            let text = e.to_string();
            assert!(!text.contains('\n') && text.contains("need"), "{text}");
            eprintln!("skipped: {text}");
            return;
        }
        Err(e) => panic!("making the lab: {e}"),
    };
    let cidr = lab.cidr();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{}/examples/window.toml", env!("CARGO_MANIFEST_DIR"));
    let mut cluster = LocalCluster::create_in(
        &dir.path().join("cluster"),
        env!("CARGO_BIN_EXE_factoryos").as_ref(),
        &LocalInit::new(3, Some(spec.as_ref())),
        lab.clone(),
    )
    .unwrap();
    cluster.set_metrics_interval(100);
    cluster.start_all().unwrap();
    for id in 11..=16 {
        cluster.start_stage(NodeId(id), 100).unwrap();
    }
    let (client, transport) = cluster.client().unwrap();
    let flow = eventually("all six stages in a flow", async || {
        let f = client.read_flow(true).await.ok()?;
        (f.edges.len() == 8).then_some(f)
    })
    .await;
    // Every stage registered the address of its own host, not 0.0.0.0.
    let directory = client.directory().await.unwrap();
    for (id, addr) in &directory {
        let host = cluster.hosts().host(*id).unwrap().unwrap();
        assert_eq!(addr.ip(), std::net::IpAddr::V4(host.ip), "{id}");
    }
    eventually("windows made across hosts", async || {
        (windows(&cluster) >= 10).then_some(())
    })
    .await;

    // Cut frame stage 13 off from everyone (both ways): it is held dead and
    // the chain goes on through 14.
    let h13 = cluster.hosts().host(NodeId(13)).unwrap().unwrap();
    let mut rules = Rules::default();
    for (_, other) in lab.hosts() {
        if other.ip != h13.ip {
            rules.drops.insert((h13.ip, other.ip));
            rules.drops.insert((other.ip, h13.ip));
        }
    }
    lab.set_rules(&rules).unwrap();
    eventually("13 held dead", async || {
        let s = client.status().await.ok()?;
        s.stages
            .contains(&(NodeId(13), factoryos_wire::model::Liveness::Dead))
            .then_some(())
    })
    .await;
    let before = windows(&cluster);
    eventually("windows through 14 alone", async || {
        (windows(&cluster) >= before + 10).then_some(())
    })
    .await;
    lab.set_rules(&Rules::default()).unwrap();
    eventually("13 back in the flow", async || {
        let f = client.read_flow(true).await.ok()?;
        (f.version > flow.version && f.consumers_of(NodeId(13)).count() > 0).then_some(())
    })
    .await;
    let namespaces: Vec<String> = lab.hosts().into_values().map(|h| h.ns).collect();
    assert!(namespaces.len() >= 10, "{namespaces:?}");
    transport.shutdown().await;
    for id in 11..=16 {
        cluster.terminate(NodeId(id)).unwrap();
    }
    let ids: Vec<NodeId> = (11..=16).map(NodeId).collect();
    let audit = factoryos_stage::audit::audit_wals(cluster.file(), &ids).unwrap();
    assert!(audit.is_clean(), "{audit}");
    drop(cluster);
    drop(lab);
    // Nothing of the lab is left.
    let ns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let ns = String::from_utf8_lossy(&ns.stdout);
    for name in &namespaces {
        assert!(!ns.contains(name.as_str()), "{name} left behind");
    }
    let routes = std::process::Command::new("ip")
        .args(["route"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(!routes.contains(&cidr), "the route for {cidr} left behind");
}
