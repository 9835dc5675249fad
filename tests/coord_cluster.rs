//! Black-box test of a coordination cluster of real `factoryos coord`
//! processes: it elects a leader, commits flows, survives a SIGKILL of the
//! leader without losing a committed flow, and takes the old leader back.

mod common;

use factoryos_coord::cluster::LocalInit;
use factoryos_jepsen::local::LocalCluster;
use factoryos_wire::model::StageDescriptor;
use factoryos_wire::{FlowVersion, NodeId};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

async fn eventually<T>(what: &str, f: impl AsyncFnMut() -> Option<T>) -> T {
    common::eventually(what, DEADLINE, Duration::from_millis(20), f).await
}

fn stage(id: u64, item: &str) -> StageDescriptor {
    StageDescriptor {
        id: NodeId(id),
        item: item.into(),
        addr: "127.0.0.1:9".parse().unwrap(),
        recipe_version: 1,
        capacity: 1,
    }
}

/// Three coordinator processes in `dir/cluster` with the window chain, started.
fn started_window_cluster(dir: &std::path::Path) -> LocalCluster {
    let spec = format!("{}/examples/window.toml", env!("CARGO_MANIFEST_DIR"));
    let mut cluster = LocalCluster::create(
        &dir.join("cluster"),
        env!("CARGO_BIN_EXE_factoryos").as_ref(),
        &LocalInit::new(3, Some(spec.as_ref())),
    )
    .unwrap();
    cluster.start_all().unwrap();
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_coordinator_processes_survive_a_sigkill_of_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = started_window_cluster(dir.path());
    let (client, _transport) = cluster.client().unwrap();

    let leader = eventually("a leader", async || client.status().await.ok()?.leader).await;
    for (id, item) in [(11, "wood"), (13, "window-frame"), (15, "window")] {
        eventually("a registration", async || {
            client.register(stage(id, item)).await.ok()
        })
        .await;
    }
    let first = eventually("a flow through three stages", async || {
        let f = client.read_flow(true).await.ok()?;
        (f.edges.len() == 2).then_some(f)
    })
    .await;
    assert!(first.version > FlowVersion(0));

    cluster.kill(leader).unwrap();
    let survivors: Vec<NodeId> = cluster
        .coordinators()
        .into_iter()
        .filter(|c| *c != leader)
        .collect();
    eventually("a new leader", async || {
        let l = client.status().await.ok()?.leader?;
        (l != leader).then_some(())
    })
    .await;
    eventually("a registration after the failover", async || {
        client.register(stage(12, "wood")).await.ok()
    })
    .await;
    let next = eventually("the next flow", async || {
        let f = client.read_flow(true).await.ok()?;
        (f.version > first.version && f.edges.len() == 3).then_some(f)
    })
    .await;
    // Nothing committed before the kill was lost: the old edges are still there.
    for e in &first.edges {
        assert!(next.serves(e.supplier, e.consumer), "edge {e:?} lost");
    }
    let status = client.status().await.unwrap();
    assert!(survivors.contains(&status.leader.unwrap()));
    assert_eq!(status.stages.len(), 4);

    // The killed leader restarts from its redb files and serves the same flow.
    cluster.start(leader).unwrap();
    let (_, transport) = cluster.client().unwrap();
    let only_old =
        factoryos_coord::client::CoordClient::new(transport, vec![leader]).with_attempts(1);
    eventually("the restarted coordinator to catch up", async || {
        let f = only_old.read_flow(false).await.ok()?;
        (f.version >= next.version).then_some(())
    })
    .await;
}

/// The store fsyncs the log and the vote but not every applied batch (the
/// log rebuilds it). Every acknowledged write must still be there after
/// the whole group is SIGKILLed at once right after the acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_sigkill_of_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = started_window_cluster(dir.path());
    let (client, _transport) = cluster.client().unwrap();
    eventually("a leader", async || client.status().await.ok()?.leader).await;
    let start = eventually("the window recipe", async || {
        client.read_recipe("window".into(), true).await.ok()
    })
    .await;

    // Each acknowledged update bumps the recipe's version by one; stage
    // registrations carry their write's number in the address's port.
    const WRITES: u16 = 30;
    let mut recipe = start.clone();
    for i in 1..=WRITES {
        recipe.yield_units = 1 + u32::from(i % 2);
        client
            .update_recipe("window".into(), recipe.clone(), None)
            .await
            .expect("an acknowledged recipe update");
        let (id, item) = WINDOW_STAGES[usize::from(i % 6)];
        let mut s = stage(id, item);
        s.addr.set_port(20_000 + i);
        client
            .register(s)
            .await
            .expect("an acknowledged registration");
    }
    for id in cluster.coordinators() {
        cluster.kill(id).unwrap();
    }
    cluster.start_all().unwrap();

    let after = eventually("the recipe after the restart", async || {
        client.read_recipe("window".into(), true).await.ok()
    })
    .await;
    assert_eq!(
        after.version,
        start.version + u32::from(WRITES),
        "an acknowledged recipe update was lost"
    );
    // A lost registration never shows up, so the deadline fails the test.
    eventually("every stage's last acknowledged registration", async || {
        let directory: std::collections::BTreeMap<_, _> =
            client.directory().await.ok()?.into_iter().collect();
        (WRITES - 5..=WRITES)
            .all(|i| {
                let (id, _) = WINDOW_STAGES[usize::from(i % 6)];
                directory.get(&NodeId(id)).map(|a| a.port()) == Some(20_000 + i)
            })
            .then_some(())
    })
    .await;
}

/// `examples/window.toml`'s stages.
const WINDOW_STAGES: [(u64, &str); 6] = [
    (11, "wood"),
    (12, "wood"),
    (13, "window-frame"),
    (14, "window-frame"),
    (15, "window"),
    (16, "window"),
];
