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

use crate::local::{LocalCluster, LocalError};
use factoryos_coord::client::CoordClient;
use factoryos_wire::model::StageDescriptor;
use factoryos_wire::{NodeId, Transport};
use std::time::{Duration, Instant};

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("{0} did not happen within {1:?}")]
    Timeout(&'static str, Duration),
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
        )
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

fn probe_stage(id: NodeId, item: &str, capacity: u32) -> StageDescriptor {
    StageDescriptor {
        id,
        item: item.into(),
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
    stage: (NodeId, &str),
    mut progress: impl FnMut(usize),
) -> Result<FailoverReport, FailoverError> {
    let (client, transport): (CoordClient, Transport) = cluster.client()?;
    let mut report = FailoverReport::default();
    let mut capacity = 1;
    for trial in 0..trials {
        for id in cluster.coordinators() {
            if !cluster.is_running(id) {
                cluster.start(id)?;
            }
        }
        let leader = until("a leader", async || {
            let s = client.status().await.ok()?;
            (s.members.len() == cluster.coordinators().len())
                .then_some(s.leader)
                .flatten()
        })
        .await?;
        // Every coordinator must answer before the kill, so the trial starts from a whole group.
        for id in cluster.coordinators() {
            let single = CoordClient::new(transport.clone(), vec![id]).with_attempts(1);
            until("every coordinator answering", async || {
                single.status().await.ok()
            })
            .await?;
        }
        for _ in 0..commits_per_trial {
            capacity = 3 - capacity;
            let t = Instant::now();
            if client
                .register(probe_stage(stage.0, stage.1, capacity))
                .await
                .is_ok()
            {
                report.commits.push(t.elapsed());
            }
        }
        let before = until("a current flow", async || {
            let f = client.read_flow(true).await.ok()?;
            let s = client.status().await.ok()?;
            (s.flow_version == f.version).then_some(f.version)
        })
        .await?;

        let killed_at = Instant::now();
        cluster.kill(leader)?;
        capacity = 3 - capacity;
        // Ask the survivors: this times the group, not a client's wait on the dead node.
        let survivors: Vec<NodeId> = cluster
            .coordinators()
            .into_iter()
            .filter(|c| *c != leader)
            .collect();
        let survivors = CoordClient::new(transport.clone(), survivors);
        let mut registered = false;
        let t_leader = until("a new leader", async || {
            let s = survivors.status().await.ok()?;
            (s.leader.is_some() && s.leader != Some(leader)).then(|| killed_at.elapsed())
        })
        .await?;
        tracing::debug!(?t_leader, "new leader known");
        until("a flow committed by a new leader", async || {
            if !registered {
                registered = survivors
                    .register(probe_stage(stage.0, stage.1, capacity))
                    .await
                    .is_ok();
                if !registered {
                    return None;
                }
            }
            let f = survivors.read_flow(true).await.ok()?;
            (f.version > before).then_some(())
        })
        .await?;
        report.failovers.push(killed_at.elapsed());
        report.elections.push(t_leader);
        report.killed.push(leader);
        cluster.start(leader)?;
        progress(trial + 1);
    }
    transport.shutdown().await;
    Ok(report)
}
