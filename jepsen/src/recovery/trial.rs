//! One trial of `bench recovery`: a fresh cluster of the window chain, the
//! warm-up, the fault (as operations), the observation until production
//! resumes, the heal, the stop, the audit and the safety checks.

use super::phases::{self, Phase, Phases, Scene};
use super::{RecoveryBench, RecoveryError, RecoveryFault};
use crate::checker::{election, fencing, Validity};
use crate::hosts::netns::NetnsLab;
use crate::local::LocalCluster;
use crate::nemesis::{Nemesis, Topology};
use crate::op::{Op, Target};
use crate::stage_kill::Roles;
use factoryos_coord::client::CoordClient;
use factoryos_coord::cluster::LocalInit;
use factoryos_coord::config::CoordMode;
use factoryos_coord::events::{self, monotonic_ns, NodeEvent};
use factoryos_wire::model::Liveness;
use factoryos_wire::NodeId;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a cluster may take to come up and make its first products.
const STARTUP: Duration = Duration::from_secs(60);
/// How often the observation reads the event logs.
const POLL: Duration = Duration::from_millis(50);
/// Production watched after the last phase, so the skipped cycles of every
/// trial cover the recovery and a little of what follows.
const AFTER: Duration = Duration::from_secs(1);

/// What one trial measured.
#[derive(Debug, Clone, Serialize)]
pub struct TrialRecord {
    pub fault: RecoveryFault,
    #[serde(serialize_with = "mode_name")]
    pub mode: CoordMode,
    pub trial: usize,
    /// The supplier killed.
    pub victim: NodeId,
    /// The leader before the fault.
    pub leader: Option<NodeId>,
    /// Each phase seen, from the fault.
    #[serde(serialize_with = "phase_ms")]
    pub phases: Phases,
    /// Skipped cycles of the victim's consumers, from the fault to a second
    /// after production resumed.
    pub skipped_affected: u64,
    /// Skipped cycles of every other stage (not the victim) in that time.
    pub skipped_elsewhere: u64,
    /// Safety violations: two leaders in a term, a flow acted upon that no
    /// coordinator committed (or an older one after a newer), a lot lost,
    /// duplicated or miscounted.
    pub violations: Vec<String>,
}

fn mode_name<S: serde::Serializer>(mode: &CoordMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mode.name())
}

fn phase_ms<S: serde::Serializer>(phases: &Phases, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(phases.len()))?;
    for (phase, d) in phases {
        map.serialize_entry(phase.name(), &(d.as_secs_f64() * 1000.0))?;
    }
    map.end()
}

/// A fault as operations: injected at once, released after the hold (a
/// pause or a partition ends), healed after the observation.
#[derive(Debug, Default)]
struct Plan {
    inject: Vec<Op>,
    release: Vec<Op>,
    heal: Vec<Op>,
}

/// A trial's cluster and who plays which part.
struct Rig {
    cluster: LocalCluster,
    roles: Roles,
    cycle_ms: u64,
}

/// Runs one trial in `dir`.
pub(super) async fn run(
    bench: &RecoveryBench,
    fault: RecoveryFault,
    mode: CoordMode,
    trial: usize,
    dir: &Path,
    binary: &Path,
) -> Result<TrialRecord, RecoveryError> {
    std::fs::create_dir_all(dir)?;
    let spec = dir.join("chain.toml");
    std::fs::write(&spec, crate::WINDOW_CHAIN)?;
    let chain = factoryos_coord::spec::load(&spec)?;
    let roles = Roles::of(&chain).ok_or(RecoveryError::NoVictim)?;
    let mut init = LocalInit::new(3, Some(&spec));
    init.mode = mode;
    init.raft = bench.timeouts;
    let at = dir.join("cluster");
    let cluster = if fault.needs_netns() {
        let lab = Arc::new(NetnsLab::create()?);
        LocalCluster::create_in(&at, binary, &init, lab)?
    } else {
        LocalCluster::create(&at, binary, &init)?
    };
    let mut rig = Rig {
        cluster,
        roles,
        cycle_ms: bench.cycle.as_millis().max(1) as u64,
    };
    rig.cluster.set_metrics_interval(50);
    let result = rig.measure(bench, fault).await;
    rig.cluster.stop_all();
    let (leader, phases, (skipped_affected, skipped_elsewhere), violations) = result?;
    Ok(TrialRecord {
        fault,
        mode,
        trial,
        victim: rig.roles.victim,
        leader,
        phases,
        skipped_affected,
        skipped_elsewhere,
        violations,
    })
}

type Measured = (Option<NodeId>, Phases, (u64, u64), Vec<String>);

impl Rig {
    async fn measure(
        &mut self,
        bench: &RecoveryBench,
        fault: RecoveryFault,
    ) -> Result<Measured, RecoveryError> {
        self.cluster.start_all()?;
        for id in self.roles.stages.clone() {
            self.cluster.start_stage(id, self.cycle_ms)?;
        }
        let (client, transport) = self.cluster.client()?;
        self.until("the first final products", || async {
            let made: u64 = self
                .roles
                .finals
                .iter()
                .filter_map(|id| self.cluster.stage_metrics(*id))
                .map(|r| r.counters.final_products)
                .sum();
            made >= 3 && client.status().await.is_ok_and(|s| s.leader.is_some())
        })
        .await?;
        tokio::time::sleep(bench.warmup).await;
        let leader = client.status().await?.leader;
        let plan = self.plan(fault, leader)?;
        let before = self.skipped();
        let mut scene = Scene {
            fault,
            t0_ns: monotonic_ns(),
            restarted_ns: None,
            victim: self.roles.victim,
            leader,
            coordinators: self.cluster.coordinators().into_iter().collect(),
            consumers: self.roles.consumers.iter().copied().collect(),
            siblings: self.roles.siblings.iter().copied().collect(),
            finals: self.roles.finals.iter().copied().collect(),
        };
        for op in &plan.inject {
            if matches!(op, Op::RecoverStages { .. }) {
                scene.restarted_ns = Some(monotonic_ns());
            }
            self.apply(&client, op).await?;
        }
        let phases = self.observe(bench, &client, &plan, &scene).await?;
        let after = self.skipped();
        let skipped = self.skipped_since(&before, &after);
        for op in &plan.heal {
            self.apply(&client, op).await?;
        }
        let victim = self.roles.victim;
        self.until("the victim's registration after the heal", || async {
            client
                .status()
                .await
                .is_ok_and(|s| s.stages.contains(&(victim, Liveness::Alive)))
        })
        .await?;
        let violations = self.stop_and_check(transport).await?;
        Ok((leader, phases, skipped, violations))
    }

    /// The fault's operations on this cluster.
    fn plan(&self, fault: RecoveryFault, leader: Option<NodeId>) -> Result<Plan, RecoveryError> {
        let victim = self.roles.victim;
        let crash = Op::Crash {
            host: victim,
            stages: vec![victim],
        };
        let recover = Op::RecoverStages {
            host: victim,
            stages: vec![victim],
        };
        let leader = || leader.ok_or(RecoveryError::Timeout("a leader", STARTUP));
        let plan = match fault {
            RecoveryFault::KillStage => Plan {
                inject: vec![crash],
                release: vec![],
                heal: vec![recover],
            },
            RecoveryFault::RestartStage => Plan {
                inject: vec![crash, recover],
                ..Plan::default()
            },
            RecoveryFault::KillLeader => Plan {
                inject: vec![Op::KillLeader { id: leader()? }, crash],
                release: vec![],
                heal: vec![Op::RecoverCoordinator { id: leader()? }, recover],
            },
            RecoveryFault::PauseLeader => Plan {
                inject: vec![Op::Pause { id: leader()? }, crash],
                release: vec![Op::Resume { id: leader()? }],
                heal: vec![recover],
            },
            RecoveryFault::PartitionLeader => {
                let topo = self.topology(leader()?);
                let mut rng = rand::rngs::SmallRng::seed_from_u64(0);
                let isolate = Nemesis::IsolateLeader
                    .draw(&topo, &mut rng)
                    .ok_or(RecoveryError::Timeout("a leader to isolate", STARTUP))?;
                let mut inject = isolate.inject;
                inject.push(crash);
                Plan {
                    inject,
                    release: isolate.heal,
                    heal: vec![recover],
                }
            }
        };
        Ok(plan)
    }

    /// The cluster as the partition nemeses draw on it.
    fn topology(&self, leader: NodeId) -> Topology {
        Topology {
            coordinators: self.cluster.coordinators(),
            stage_hosts: self.roles.stages.iter().map(|s| vec![*s]).collect(),
            leader: Some(leader),
            ips: self.cluster.hosts().node_ips(),
            next_coordinator: NodeId(1_000_001),
            spec: None,
            made: BTreeSet::new(),
        }
    }

    async fn apply(&mut self, client: &CoordClient, op: &Op) -> Result<(), RecoveryError> {
        tracing::debug!(op = %op.describe(), "recovery trial");
        let mut target = Target {
            cluster: &mut self.cluster,
            client,
            cycle_ms: self.cycle_ms,
        };
        Ok(op.apply(&mut target).await?)
    }

    /// Reads the event logs until production resumed (and the hold ended),
    /// then a little longer; releases a held fault after the hold.
    async fn observe(
        &mut self,
        bench: &RecoveryBench,
        client: &CoordClient,
        plan: &Plan,
        scene: &Scene,
    ) -> Result<Phases, RecoveryError> {
        let started = Instant::now();
        let mut released = plan.release.is_empty();
        let mut done_at: Option<Instant> = None;
        loop {
            tokio::time::sleep(POLL).await;
            if !released && started.elapsed() >= bench.hold {
                for op in &plan.release {
                    self.apply(client, op).await?;
                }
                released = true;
            }
            let phases = phases::phases(scene, &self.events()?);
            if released && done_at.is_none() && phases.contains_key(&Phase::Resumed) {
                done_at = Some(Instant::now());
            }
            let settled = done_at.is_some_and(|t| t.elapsed() >= AFTER);
            if settled || (released && started.elapsed() >= bench.deadline) {
                return Ok(phases);
            }
        }
    }

    /// Every node's event log, in time order.
    fn events(&self) -> Result<Vec<NodeEvent>, RecoveryError> {
        let file = self.cluster.file();
        let ids = self
            .cluster
            .coordinators()
            .into_iter()
            .chain(self.roles.stages.iter().copied());
        let mut all = Vec::new();
        for id in ids {
            all.extend(events::read(&file.node_dir(id).join(events::FILE_NAME))?);
        }
        all.sort_by_key(|e| e.t_ns);
        Ok(all)
    }

    /// Each stage's skipped cycles so far, from its metrics file.
    fn skipped(&self) -> BTreeMap<NodeId, u64> {
        self.roles
            .stages
            .iter()
            .filter_map(|id| {
                let r = self.cluster.stage_metrics(*id)?;
                Some((*id, r.counters.skipped_manufacture_cycles))
            })
            .collect()
    }

    /// Skipped cycles between two readings: the consumers', everyone else's
    /// (the victim, whose counters restart, left out).
    fn skipped_since(
        &self,
        before: &BTreeMap<NodeId, u64>,
        after: &BTreeMap<NodeId, u64>,
    ) -> (u64, u64) {
        let (mut affected, mut elsewhere) = (0, 0);
        for (id, now) in after {
            if *id == self.roles.victim {
                continue;
            }
            let n = now.saturating_sub(before.get(id).copied().unwrap_or(0));
            if self.roles.consumers.contains(id) {
                affected += n;
            } else {
                elsewhere += n;
            }
        }
        (affected, elsewhere)
    }

    /// Stops the stages (they drain their trades), then audits every WAL
    /// and checks the event logs: the trial's safety violations.
    async fn stop_and_check(
        &mut self,
        transport: factoryos_wire::Transport,
    ) -> Result<Vec<String>, RecoveryError> {
        self.cluster.terminate_all(&self.roles.stages)?;
        transport.shutdown().await;
        let mut violations = Vec::new();
        let audit = factoryos_stage::audit::audit_wals(self.cluster.file(), &self.roles.stages)?;
        if !audit.is_clean() {
            violations.push(format!("lots: {audit}"));
        }
        let events = self.events()?;
        let coordinators: BTreeSet<NodeId> = self.cluster.coordinators().into_iter().collect();
        let theirs: Vec<NodeEvent> = events
            .iter()
            .filter(|e| coordinators.contains(&e.node))
            .cloned()
            .collect();
        for verdict in [election::check(&theirs), fencing::check(&events)] {
            if verdict.valid != Validity::Valid {
                violations.push(format!("{}: {}", verdict.checker, verdict.summary));
                violations.extend(verdict.evidence.iter().take(3).cloned());
            }
        }
        Ok(violations)
    }

    /// Waits for `cond`, polling every 20 ms, at most [`STARTUP`].
    async fn until<F, Fut>(&self, what: &'static str, mut cond: F) -> Result<(), RecoveryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while !cond().await {
            if started.elapsed() > STARTUP {
                return Err(RecoveryError::Timeout(what, STARTUP));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}
