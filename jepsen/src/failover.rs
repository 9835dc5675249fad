//! Leader failover and commit latency of the coordination cluster, measured
//! on real processes: `factoryos bench failover`.
//!
//! Each trial: wait until every coordinator runs and one leads; time
//! `commits_per_trial` writes (a stage re-registering with another capacity,
//! which also makes the leader commit a new flow); note the flow version;
//! **SIGKILL the leader**; then keep writing until a flow newer than the
//! noted one is committed and readable (linearizably), asking only the
//! survivors (so a client's timeout on the dead node is not counted).
//! Failover time = kill → that flow. The killed coordinator is restarted
//! before the next trial.
//!
//! Where a commit's time goes: before each kill the leader is asked for its
//! own timing of every commit phase ([`CommitPhase`]), and a status request
//! to it alone gives the round trip that any request pays (network, QUIC,
//! serving); the report keeps the last trial's.

use crate::local::{LocalCluster, LocalError};
use crate::op::{Op, Target};
use factoryos_coord::client::CoordClient;
use factoryos_coord::cluster::LocalInit;
use factoryos_coord::config::{CoordMode, RaftTimeouts};
use factoryos_wire::model::{CommitPhase, PhaseTiming, StageDescriptor};
use factoryos_wire::{ItemType, NodeId, Transport};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("{0} did not happen within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("writing the chain: {0}")]
    Io(#[from] std::io::Error),
    #[error("the chain: {0}")]
    Spec(#[from] factoryos_coord::spec::SpecErrors),
    #[error(transparent)]
    Op(#[from] crate::op::OpError),
    #[error("{mode}: {source} (logs in {})", logs.display())]
    InMode {
        mode: CoordMode,
        logs: PathBuf,
        source: Box<FailoverError>,
    },
}

/// What `factoryos bench failover` measures.
#[derive(Debug, Clone)]
pub struct FailoverBench {
    /// Leader kills per mode.
    pub trials: usize,
    pub coordinators: u64,
    /// Writes timed per trial.
    pub commits: usize,
    pub timeouts: RaftTimeouts,
    /// The stores to measure, one after the other, in this order.
    pub modes: Vec<CoordMode>,
}

/// Measures every mode of `bench` on its own cluster of `binary`'s
/// processes in `dir/<mode>/`, with the window chain installed; `progress`
/// hears of every finished trial.
pub async fn compare(
    bench: &FailoverBench,
    dir: &Path,
    binary: &Path,
    mut progress: impl FnMut(CoordMode, usize),
) -> Result<Vec<(CoordMode, FailoverReport)>, FailoverError> {
    let spec = dir.join("chain.toml");
    std::fs::write(&spec, crate::WINDOW_CHAIN)?;
    let chain = factoryos_coord::spec::load(&spec)?;
    let writer = chain.stages.first().expect("the window chain has stages");
    let mut reports = Vec::new();
    for mode in &bench.modes {
        let mut init = LocalInit::new(bench.coordinators, Some(&spec));
        init.mode = *mode;
        init.raft = bench.timeouts;
        let at = dir.join(mode.name());
        let mut cluster = LocalCluster::create(&at, binary, &init)?;
        cluster.start_all()?;
        let stage = (writer.id, &writer.item);
        let report = measure(&mut cluster, bench.trials, bench.commits, stage, |done| {
            progress(*mode, done)
        })
        .await;
        cluster.stop_all();
        match report {
            Ok(report) => reports.push((*mode, report)),
            Err(e) => {
                return Err(FailoverError::InMode {
                    mode: *mode,
                    logs: at.join("logs"),
                    source: Box::new(e),
                })
            }
        }
    }
    Ok(reports)
}

/// What was measured.
#[derive(Debug, Clone, Default)]
pub struct FailoverReport {
    /// Kill of the leader -> next committed flow, per trial.
    pub failovers: Vec<Duration>,
    /// Kill of the leader -> a survivor reports a new leader, per trial.
    pub elections: Vec<Duration>,
    /// Client write round trips (commit + apply), all trials together.
    pub commits: Vec<Duration>,
    /// Leaders killed, in order.
    pub killed: Vec<NodeId>,
    /// Status round trips to the leader alone: what every request pays.
    pub round_trips: Vec<Duration>,
    /// The last trial's leader and its timing of each commit phase.
    pub phases: Option<(NodeId, Vec<PhaseTiming>)>,
}

impl FailoverReport {
    /// The report as JSON (durations in ms).
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let summary = |samples: &[Duration]| {
            serde_json::json!({
                "samples": samples.len(),
                "p50_ms": ms(percentile(samples, 0.5)),
                "p99_ms": ms(percentile(samples, 0.99)),
                "max_ms": ms(percentile(samples, 1.0)),
            })
        };
        serde_json::json!({
            "failover": summary(&self.failovers),
            "election": summary(&self.elections),
            "commit": summary(&self.commits),
            "round_trip": summary(&self.round_trips),
            "killed": self.killed.iter().map(|n| n.0).collect::<Vec<_>>(),
            "leader_phases": self.phases.as_ref().map(|(leader, phases)| serde_json::json!({
                "leader": leader.0,
                "phases": phases.iter().map(|p| serde_json::json!({
                    "phase": format!("{:?}", p.phase),
                    "samples": p.samples,
                    "p50_ms": p.p50_us as f64 / 1000.0,
                    "p99_ms": p.p99_us as f64 / 1000.0,
                    "max_ms": p.max_us as f64 / 1000.0,
                })).collect::<Vec<_>>(),
            })),
        })
    }
}

/// Percentile `p` (0..=1) of `samples` (nearest rank); zero when empty.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

impl std::fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "leader failover (SIGKILL of the leader -> next committed flow), {} trials: p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
            self.failovers.len(),
            ms(percentile(&self.failovers, 0.5)),
            ms(percentile(&self.failovers, 0.99)),
            ms(percentile(&self.failovers, 1.0)),
        )?;
        writeln!(
            f,
            "  of which SIGKILL -> a survivor names a new leader:                 p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
            ms(percentile(&self.elections, 0.5)),
            ms(percentile(&self.elections, 0.99)),
            ms(percentile(&self.elections, 1.0)),
        )?;
        write!(
            f,
            "commit latency (client write round trip), {} writes: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
            self.commits.len(),
            percentile(&self.commits, 0.5),
            percentile(&self.commits, 0.99),
            percentile(&self.commits, 1.0),
        )?;
        if !self.round_trips.is_empty() {
            write!(
                f,
                "\n  a status round trip to the leader (network, QUIC, serving):       p50 {:.2?}  p99 {:.2?}",
                percentile(&self.round_trips, 0.5),
                percentile(&self.round_trips, 0.99),
            )?;
        }
        if let Some((leader, phases)) = &self.phases {
            write!(
                f,
                "\n  where the time goes on the leader ({leader}, its latest samples):"
            )?;
            for p in phases {
                let indent = if p.phase == CommitPhase::Proposal {
                    ""
                } else {
                    "  "
                };
                let us = |v: u64| Duration::from_micros(v);
                write!(
                    f,
                    "\n    {indent}{:<58} p50 {:>9.2?}  p99 {:>9.2?}  ({} samples)",
                    p.phase.describe(),
                    us(p.p50_us),
                    us(p.p99_us),
                    p.samples
                )?;
            }
        }
        Ok(())
    }
}

const WAIT: Duration = Duration::from_secs(30);

async fn until<T>(
    what: &'static str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> Result<T, FailoverError> {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > WAIT {
            return Err(FailoverError::Timeout(what, WAIT));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn probe_stage(id: NodeId, item: &ItemType, capacity: u32) -> StageDescriptor {
    StageDescriptor {
        id,
        item: item.clone(),
        addr: "127.0.0.1:9".parse().expect("valid address"),
        recipe_version: 1,
        capacity,
    }
}

/// Runs `trials` failovers on a started cluster whose spec declares `stage`
/// (a stage id of type `item`, used as the write that changes the flow).
pub async fn measure(
    cluster: &mut LocalCluster,
    trials: usize,
    commits_per_trial: usize,
    stage: (NodeId, &ItemType),
    mut progress: impl FnMut(usize),
) -> Result<FailoverReport, FailoverError> {
    let (client, transport): (CoordClient, Transport) = cluster.client()?;
    let mut report = FailoverReport::default();
    let mut trial = Trial {
        client: &client,
        transport: &transport,
        stage,
        capacity: 1,
    };
    for done in 0..trials {
        for id in cluster.coordinators() {
            if !cluster.is_running(id) {
                cluster.start(id)?;
            }
        }
        let leader = trial.whole_group(cluster).await?;
        for _ in 0..commits_per_trial {
            if let Some(t) = trial.timed_write().await {
                report.commits.push(t);
            }
        }
        let only_leader = CoordClient::new(transport.clone(), vec![leader]).with_attempts(1);
        for _ in 0..commits_per_trial {
            let t = Instant::now();
            if only_leader.status().await.is_ok() {
                report.round_trips.push(t.elapsed());
            }
        }
        if let Ok(phases) = only_leader.commit_timings().await {
            report.phases = Some((leader, phases));
        }
        let (failover, election) = trial.kill_leader(cluster, leader).await?;
        report.failovers.push(failover);
        report.elections.push(election);
        report.killed.push(leader);
        cluster.start(leader)?;
        progress(done + 1);
    }
    transport.shutdown().await;
    Ok(report)
}

/// One trial's client side: the writes that change the flow, alternating
/// the probe stage's capacity.
struct Trial<'a> {
    client: &'a CoordClient,
    transport: &'a Transport,
    stage: (NodeId, &'a ItemType),
    capacity: u32,
}

impl Trial<'_> {
    /// A write that changes the flow's input (the stage's capacity).
    fn next_write(&mut self) -> StageDescriptor {
        self.capacity = 3 - self.capacity;
        probe_stage(self.stage.0, self.stage.1, self.capacity)
    }

    /// Waits until every coordinator runs, answers, and one leads; the leader.
    async fn whole_group(&self, cluster: &LocalCluster) -> Result<NodeId, FailoverError> {
        let members = cluster.coordinators().len();
        let leader = until("a leader", async || {
            let s = self.client.status().await.ok()?;
            (s.members.len() == members).then_some(s.leader).flatten()
        })
        .await?;
        // Every coordinator must answer before the kill, so the trial starts from a whole group.
        for id in cluster.coordinators() {
            let single = CoordClient::new(self.transport.clone(), vec![id]).with_attempts(1);
            until("every coordinator answering", async || {
                single.status().await.ok()
            })
            .await?;
        }
        Ok(leader)
    }

    /// One client write's round trip, if it committed.
    async fn timed_write(&mut self) -> Option<Duration> {
        let write = self.next_write();
        let t = Instant::now();
        self.client.register(write).await.ok()?;
        Some(t.elapsed())
    }

    /// SIGKILLs `leader`; kill -> next committed flow, and kill -> a new
    /// leader named, asking only the survivors (so a client's timeout on
    /// the dead node is not counted).
    async fn kill_leader(
        &mut self,
        cluster: &mut LocalCluster,
        leader: NodeId,
    ) -> Result<(Duration, Duration), FailoverError> {
        let client = self.client;
        let before = until("a current flow", async || {
            let f = client.read_flow(true).await.ok()?;
            let s = client.status().await.ok()?;
            (s.flow_version == f.version).then_some(f.version)
        })
        .await?;
        let killed_at = Instant::now();
        let kill = Op::KillLeader { id: leader };
        kill.apply(&mut Target {
            cluster,
            client,
            cycle_ms: 0,
        })
        .await?;
        let write = self.next_write();
        let survivors: Vec<NodeId> = cluster
            .coordinators()
            .into_iter()
            .filter(|c| *c != leader)
            .collect();
        let survivors = CoordClient::new(self.transport.clone(), survivors);
        let election = until("a new leader", async || {
            let s = survivors.status().await.ok()?;
            (s.leader.is_some() && s.leader != Some(leader)).then(|| killed_at.elapsed())
        })
        .await?;
        tracing::debug!(?election, "new leader known");
        let mut registered = false;
        until("a flow committed by a new leader", async || {
            if !registered {
                registered = survivors.register(write.clone()).await.is_ok();
                if !registered {
                    return None;
                }
            }
            let f = survivors.read_flow(true).await.ok()?;
            (f.version > before).then_some(())
        })
        .await?;
        Ok((killed_at.elapsed(), election))
    }
}
