//! What a supplier's crash costs its consumers, on real processes:
//! `factoryos bench stage`.
//!
//! The window chain (2 stages per type) runs; after a warm-up, one frame
//! stage is killed with SIGKILL. Measured: how long until each of its
//! consumers completes its next successful cycle, the longest gap between
//! their successful cycles before and after the kill, how long until the
//! leader marks the victim dead and commits a flow without it, how long the
//! restarted victim takes to make a lot again, messages per traded lot, and
//! the audit of every WAL at the end.

use crate::local::{LocalCluster, LocalError};
use factoryos_stage::audit::AuditReport;
use factoryos_wire::model::Liveness;
use factoryos_wire::NodeId;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Why the experiment failed.
#[derive(Debug, thiserror::Error)]
pub enum StageKillError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("{0} did not happen within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("audit: {0}")]
    Wal(#[from] factoryos_stage::wal::WalError),
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct StageKillReport {
    pub cycle: Duration,
    pub lots_traded: u64,
    pub trade_messages: u64,
    pub heartbeats: u64,
    pub kill_to_next_cycle: Vec<(NodeId, Duration)>,
    pub max_gap_before: Duration,
    pub max_gap_after: Duration,
    pub kill_to_marked_dead: Option<Duration>,
    pub kill_to_new_flow: Option<Duration>,
    pub restart_to_first_lot: Duration,
    pub final_products: u64,
    pub audit: AuditReport,
}

impl std::fmt::Display for StageKillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let cycles = |d: Duration| d.as_secs_f64() / self.cycle.as_secs_f64();
        writeln!(
            f,
            "window chain, 2 stages per type, {} ms cycles; SIGKILL of frame stage 13",
            self.cycle.as_millis()
        )?;
        writeln!(
            f,
            "  messages per traded lot: {:.2} trade messages ({} for {} lots) + {:.2} heartbeats",
            self.trade_messages as f64 / self.lots_traded.max(1) as f64,
            self.trade_messages,
            self.lots_traded,
            self.heartbeats as f64 / self.lots_traded.max(1) as f64
        )?;
        for (id, d) in &self.kill_to_next_cycle {
            writeln!(
                f,
                "  kill -> next successful cycle of consumer {id}: {:.0} ms ({:.1} cycles)",
                ms(*d),
                cycles(*d)
            )?;
        }
        writeln!(
            f,
            "  longest gap between the consumers' successful cycles: {:.0} ms before the kill, {:.0} ms after",
            ms(self.max_gap_before),
            ms(self.max_gap_after)
        )?;
        let opt =
            |d: Option<Duration>| d.map_or("not seen".to_string(), |d| format!("{:.0} ms", ms(d)));
        writeln!(
            f,
            "  kill -> victim marked dead by the leader: {}",
            opt(self.kill_to_marked_dead)
        )?;
        writeln!(
            f,
            "  kill -> a flow without the victim committed: {}",
            opt(self.kill_to_new_flow)
        )?;
        writeln!(
            f,
            "  restart -> the victim's first lot: {:.0} ms",
            ms(self.restart_to_first_lot)
        )?;
        write!(f, "  audit of all WALs: {}", self.audit)
    }
}

const WAIT: Duration = Duration::from_secs(60);

fn metric(cluster: &LocalCluster, id: NodeId, name: &str) -> Option<u64> {
    read_metric(&cluster.metrics_path(id), name)
}

fn sum(cluster: &LocalCluster, ids: &[NodeId], names: &[&str]) -> u64 {
    let all: Vec<_> = ids
        .iter()
        .filter_map(|id| cluster.stage_metrics(*id))
        .collect();
    crate::experiment::results::total(&all, names)
}

fn read_metric(path: &std::path::Path, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let m: BTreeMap<String, u64> = serde_json::from_str(&text).ok()?;
    m.get(name).copied()
}

/// Polls the consumers' successful cycles (from their metrics files) for
/// `window`: the longest gap between increments, and each consumer's first
/// increment.
fn watch_cycles(
    consumers: &[(NodeId, std::path::PathBuf)],
    window: Duration,
) -> (Duration, BTreeMap<NodeId, Duration>) {
    let start = Instant::now();
    let cycles = |p: &std::path::Path| read_metric(p, "successful_manufacture_cycles").unwrap_or(0);
    let mut last: BTreeMap<NodeId, (u64, Instant)> = consumers
        .iter()
        .map(|(c, p)| (*c, (cycles(p), start)))
        .collect();
    let mut first = BTreeMap::new();
    let mut max_gap = Duration::ZERO;
    while start.elapsed() < window {
        std::thread::sleep(Duration::from_millis(2));
        for (c, p) in consumers {
            let now = cycles(p);
            let (prev, at) = last[c];
            if now > prev {
                max_gap = max_gap.max(at.elapsed());
                first.entry(*c).or_insert_with(|| start.elapsed());
                last.insert(*c, (now, Instant::now()));
            }
        }
    }
    for (_, (_, at)) in last {
        max_gap = max_gap.max(at.elapsed());
    }
    (max_gap, first)
}

/// Runs the experiment on a started cluster of the window chain (stages 11-16).
pub async fn run(
    cluster: &mut LocalCluster,
    cycle: Duration,
    warmup: Duration,
) -> Result<StageKillReport, StageKillError> {
    let stages: Vec<NodeId> = (11..=16).map(NodeId).collect();
    let victim = NodeId(13);
    let consumers = [NodeId(15), NodeId(16)];
    let (client, transport) = cluster.client()?;
    let started = Instant::now();
    while sum(cluster, &consumers, &["final_products"]) < 5 {
        if started.elapsed() > WAIT {
            return Err(StageKillError::Timeout("the first windows", WAIT));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(warmup).await;
    let paths: Vec<(NodeId, std::path::PathBuf)> = consumers
        .iter()
        .map(|c| (*c, cluster.metrics_path(*c)))
        .collect();
    let before = paths.clone();
    let (max_gap_before, _) =
        tokio::task::spawn_blocking(move || watch_cycles(&before, Duration::from_secs(2)))
            .await
            .expect("watcher");
    let flow_before = client.status().await.map(|s| s.flow_version).ok();

    let killed = Instant::now();
    cluster.kill(victim)?;
    let after = paths.clone();
    let watcher = tokio::task::spawn_blocking(move || watch_cycles(&after, Duration::from_secs(5)));
    let mut kill_to_marked_dead = None;
    let mut kill_to_new_flow = None;
    while killed.elapsed() < Duration::from_secs(5) && kill_to_new_flow.is_none() {
        if let Ok(s) = client.status().await {
            if kill_to_marked_dead.is_none() && s.stages.contains(&(victim, Liveness::Dead)) {
                kill_to_marked_dead = Some(killed.elapsed());
            }
            if kill_to_marked_dead.is_some() && Some(s.flow_version) > flow_before {
                kill_to_new_flow = Some(killed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (max_gap_after, first) = watcher.await.expect("watcher");
    let kill_to_next_cycle = first.into_iter().collect();

    let _ = std::fs::remove_file(cluster.metrics_path(victim));
    let restarted = Instant::now();
    cluster.start_stage(victim, cycle.as_millis() as u64)?;
    while metric(cluster, victim, "successful_manufacture_cycles").unwrap_or(0) < 1 {
        if restarted.elapsed() > WAIT {
            return Err(StageKillError::Timeout(
                "the victim's first lot after restart",
                WAIT,
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let restart_to_first_lot = restarted.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let trade_messages = sum(
        cluster,
        &stages,
        &crate::experiment::results::TRADE_MESSAGES,
    );
    let heartbeats = sum(cluster, &stages, &["Heartbeat_sent"]);
    let lots_traded = sum(cluster, &stages, &["batches_received"]);
    for id in &stages {
        cluster.terminate(*id)?;
    }
    transport.shutdown().await;
    let audit = factoryos_stage::audit::audit_wals(&cluster.file().data, &stages)?;
    let final_products = audit.units_shipped;
    Ok(StageKillReport {
        cycle,
        lots_traded,
        trade_messages,
        heartbeats,
        kill_to_next_cycle,
        max_gap_before,
        max_gap_after,
        kill_to_marked_dead,
        kill_to_new_flow,
        restart_to_first_lot,
        final_products,
        audit,
    })
}
