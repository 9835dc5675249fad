//! What a supplier's crash costs its consumers, on real processes:
//! `factoryos bench stage`.
//!
//! The window chain (2 stages per type) runs; after a warm-up, one frame
//! stage (a supplier with an alternative) is killed with SIGKILL. Measured: how long until each of its
//! consumers completes its next successful cycle, the longest gap between
//! their successful cycles before and after the kill, how long until the
//! leader marks the victim dead and commits a flow without it, how long the
//! restarted victim takes to make a lot again, messages per traded lot, and
//! the audit of every WAL at the end.

use crate::local::{LocalCluster, LocalError};
use crate::op::{Op, Target};
use factoryos_coord::client::CoordClient;
use factoryos_coord::cluster::LocalInit;
use factoryos_coord::spec::ChainSpec;
use factoryos_stage::audit::AuditReport;
use factoryos_stage::metrics::StageReport;
use factoryos_wire::model::Liveness;
use factoryos_wire::{FlowVersion, ItemType, MessageKind, NodeId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    #[error("writing the chain: {0}")]
    Io(#[from] std::io::Error),
    #[error("the chain: {0}")]
    Spec(#[from] factoryos_coord::spec::SpecErrors),
    #[error("the chain has no stage of a middle type to kill")]
    NoVictim,
    #[error(transparent)]
    Op(#[from] crate::op::OpError),
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct StageKillReport {
    pub cycle: Duration,
    /// The supplier killed.
    pub victim: NodeId,
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
            "window chain, 2 stages per type, {} ms cycles; SIGKILL of frame stage {}",
            self.cycle.as_millis(),
            self.victim
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

/// Who plays which part: the chain's stages, the victim (the first stage of
/// a type that is neither raw nor final, so it has an alternative and
/// consumers), the other stages of its type, the stages that consume its
/// type, and the final stages.
#[derive(Debug, Clone)]
pub(crate) struct Roles {
    pub(crate) stages: Vec<NodeId>,
    pub(crate) victim: NodeId,
    pub(crate) siblings: Vec<NodeId>,
    pub(crate) consumers: Vec<NodeId>,
    pub(crate) finals: Vec<NodeId>,
}

impl Roles {
    pub(crate) fn of(chain: &ChainSpec) -> Option<Roles> {
        let spec = &chain.spec;
        let middle =
            |t: &ItemType| t != &spec.final_type && spec.recipe(t).is_some_and(|r| !r.is_raw());
        let victim = chain.stages.iter().find(|s| middle(&s.item))?;
        let ids = |keep: &dyn Fn(&factoryos_coord::spec::StageDecl) -> bool| {
            chain
                .stages
                .iter()
                .filter(|s| keep(s))
                .map(|s| s.id)
                .collect()
        };
        Some(Roles {
            stages: ids(&|_| true),
            victim: victim.id,
            siblings: ids(&|s| s.item == victim.item && s.id != victim.id),
            consumers: ids(&|s| {
                spec.recipe(&s.item)
                    .is_some_and(|r| r.inputs.contains_key(&victim.item))
            }),
            finals: ids(&|s| s.item == spec.final_type),
        })
    }
}

/// Runs the whole experiment in `dir`: 3 coordinators and the window
/// chain's stages as processes of `binary`, then the kill, the restart and
/// the audit.
pub async fn bench(
    dir: &Path,
    binary: &Path,
    cycle: Duration,
    warmup: Duration,
) -> Result<StageKillReport, StageKillError> {
    let spec = dir.join("chain.toml");
    std::fs::write(&spec, crate::WINDOW_CHAIN)?;
    let chain = factoryos_coord::spec::load(&spec)?;
    let roles = Roles::of(&chain).ok_or(StageKillError::NoVictim)?;
    let init = LocalInit::new(3, Some(&spec));
    let mut cluster = LocalCluster::create(&dir.join("cluster"), binary, &init)?;
    cluster.set_metrics_interval(5);
    cluster.start_all()?;
    let cycle_ms = cycle.as_millis().max(1) as u64;
    for id in &roles.stages {
        cluster.start_stage(*id, cycle_ms)?;
    }
    let report = measure(&mut cluster, &roles, cycle, warmup).await;
    cluster.stop_all();
    report
}

fn reports(cluster: &LocalCluster, ids: &[NodeId]) -> Vec<StageReport> {
    ids.iter()
        .filter_map(|id| cluster.stage_metrics(*id))
        .collect()
}

fn successful_cycles(path: &Path) -> u64 {
    StageReport::read(path).map_or(0, |r| r.counters.successful_manufacture_cycles)
}

/// Polls the consumers' successful cycles (from their metrics files) for
/// `window`: the longest gap between increments, and each consumer's first
/// increment.
fn watch_cycles(
    consumers: &[(NodeId, PathBuf)],
    window: Duration,
) -> (Duration, BTreeMap<NodeId, Duration>) {
    let start = Instant::now();
    let mut last: BTreeMap<NodeId, (u64, Instant)> = consumers
        .iter()
        .map(|(c, p)| (*c, (successful_cycles(p), start)))
        .collect();
    let mut first = BTreeMap::new();
    let mut max_gap = Duration::ZERO;
    while start.elapsed() < window {
        std::thread::sleep(Duration::from_millis(2));
        for (c, p) in consumers {
            let now = successful_cycles(p);
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

/// The consumers' metrics files.
fn paths(cluster: &LocalCluster, roles: &Roles) -> Vec<(NodeId, PathBuf)> {
    roles
        .consumers
        .iter()
        .map(|c| (*c, cluster.metrics_path(*c)))
        .collect()
}

/// Watches the consumers' cycles for `window` without blocking the runtime.
async fn watch(
    paths: Vec<(NodeId, PathBuf)>,
    window: Duration,
) -> (Duration, BTreeMap<NodeId, Duration>) {
    tokio::task::spawn_blocking(move || watch_cycles(&paths, window))
        .await
        .expect("the cycle watcher does not panic")
}

/// Waits for `cond` on the cluster, polling every `every`.
async fn until(
    what: &'static str,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<Duration, StageKillError> {
    let started = Instant::now();
    while !cond() {
        if started.elapsed() > WAIT {
            return Err(StageKillError::Timeout(what, WAIT));
        }
        tokio::time::sleep(every).await;
    }
    Ok(started.elapsed())
}

/// Measures on a started cluster of the chain `roles` was drawn from.
async fn measure(
    cluster: &mut LocalCluster,
    roles: &Roles,
    cycle: Duration,
    warmup: Duration,
) -> Result<StageKillReport, StageKillError> {
    let (client, transport) = cluster.client()?;
    until(
        "the first final products",
        Duration::from_millis(20),
        || {
            reports(cluster, &roles.consumers)
                .iter()
                .map(|r| r.counters.final_products)
                .sum::<u64>()
                >= 5
        },
    )
    .await?;
    tokio::time::sleep(warmup).await;
    let (max_gap_before, _) = watch(paths(cluster, roles), Duration::from_secs(2)).await;
    let flow_before = client.status().await.map(|s| s.flow_version).ok();

    let killed = Instant::now();
    let crash = Op::Crash {
        host: roles.victim,
        stages: vec![roles.victim],
    };
    crash
        .apply(&mut Target {
            cluster,
            client: &client,
            cycle_ms: cycle.as_millis() as u64,
        })
        .await?;
    let watcher = tokio::spawn(watch(paths(cluster, roles), Duration::from_secs(5)));
    let (kill_to_marked_dead, kill_to_new_flow) =
        follow_death(&client, roles.victim, flow_before, killed).await;
    let (max_gap_after, first) = watcher.await.expect("the watcher task does not panic");

    let _ = std::fs::remove_file(cluster.metrics_path(roles.victim));
    cluster.start_stage(roles.victim, cycle.as_millis() as u64)?;
    let victim = cluster.metrics_path(roles.victim);
    let restart_to_first_lot = until(
        "the victim's first lot after restart",
        Duration::from_millis(2),
        || successful_cycles(&victim) >= 1,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let all = reports(cluster, &roles.stages);
    let total = |f: fn(&StageReport) -> u64| all.iter().map(f).sum::<u64>();
    let (trade_messages, heartbeats, lots_traded) = (
        total(|r| r.messages.trade_sent()),
        total(|r| r.messages.sent(MessageKind::Heartbeat)),
        total(|r| r.counters.batches_received),
    );
    for id in &roles.stages {
        cluster.terminate(*id)?;
    }
    transport.shutdown().await;
    let audit = factoryos_stage::audit::audit_wals(cluster.file(), &roles.stages)?;
    Ok(StageKillReport {
        cycle,
        victim: roles.victim,
        lots_traded,
        trade_messages,
        heartbeats,
        kill_to_next_cycle: first.into_iter().collect(),
        max_gap_before,
        max_gap_after,
        kill_to_marked_dead,
        kill_to_new_flow,
        restart_to_first_lot,
        final_products: audit.units_shipped,
        audit,
    })
}

/// Kill -> the leader marks `victim` dead, and -> a newer flow (for 5 s at most).
async fn follow_death(
    client: &CoordClient,
    victim: NodeId,
    flow_before: Option<FlowVersion>,
    killed: Instant,
) -> (Option<Duration>, Option<Duration>) {
    let mut marked_dead = None;
    let mut new_flow = None;
    while killed.elapsed() < Duration::from_secs(5) && new_flow.is_none() {
        if let Ok(s) = client.status().await {
            if marked_dead.is_none() && s.stages.contains(&(victim, Liveness::Dead)) {
                marked_dead = Some(killed.elapsed());
            }
            if marked_dead.is_some() && Some(s.flow_version) > flow_before {
                new_flow = Some(killed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (marked_dead, new_flow)
}
