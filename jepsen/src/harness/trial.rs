//! One harness run's cluster: set-up on namespace hosts, the nemesis
//! schedule applied, production sampled, the final heal, the wait for
//! production, the stop, and what the checkers then read.

use super::verdicts::Evidence;
use super::{HarnessError, JepsenConfig, Progress};
use crate::checker::liveness;
use crate::experiment::live::Live;
use crate::history::{Entry, History};
use crate::hosts::netns::{NetnsLab, Rules};
use crate::local::LocalCluster;
use crate::nemesis::{Fault, NemesisSchedule, Step, Topology};
use crate::op::{Op, Target};
use crate::workload::{self, Members};
use factoryos_coord::client::CoordClient;
use factoryos_coord::cluster::LocalInit;
use factoryos_coord::events;
use factoryos_coord::spec::ChainSpec;
use factoryos_wire::model::Spec;
use factoryos_wire::{NodeId, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long the cluster may take to come up.
const STARTUP: Duration = Duration::from_secs(90);
/// Manufacture cycle of the stages.
pub(super) const CYCLE_MS: u64 = 100;
/// How long no stage may re-send a lot before the trades count as settled
/// (four re-send periods of the 100 ms cycle the harness runs).
const TRADES_QUIET: Duration = Duration::from_secs(2);
/// How often the loop looks at the schedule and samples production.
const TICK: Duration = Duration::from_millis(50);
/// Coordinators added by the membership nemesis get ids from here (never a
/// stage's).
const ADDED_COORDINATORS: u64 = 1_000_001;

/// Final products, summed over the final stages' lives (a restarted stage's
/// counters start again at zero).
#[derive(Debug, Default)]
struct Meter {
    last: BTreeMap<NodeId, u64>,
    total: u64,
}

impl Meter {
    fn sample(&mut self, cluster: &LocalCluster, finals: &[NodeId]) -> u64 {
        for id in finals {
            let Some(m) = cluster.stage_metrics(*id) else {
                continue;
            };
            let now = m.counters.final_products;
            let last = self.last.entry(*id).or_default();
            self.total += if now >= *last { now - *last } else { now };
            *last = now;
        }
        self.total
    }
}

/// One run's cluster and what the run knows of it.
pub struct Trial {
    pub(super) cluster: LocalCluster,
    lab: Arc<NetnsLab>,
    pub(super) chain: ChainSpec,
    /// The spec as the store holds it (recipe updates applied by its rule).
    spec: Spec,
    live: Live,
    /// The coordinators in the group now, with their addresses (shared with
    /// the register clients, which follow it).
    pub(super) members: Members,
    next_coordinator: u64,
    /// Processes a nemesis has down now (killed, or removed from the group).
    down: BTreeSet<NodeId>,
    client: CoordClient,
    transport: Transport,
    pub(super) history: History,
    meter: Meter,
    finals: Vec<NodeId>,
}

impl Trial {
    /// Makes the lab and the cluster in `dir`, starts every process and
    /// waits until every stage is registered and a flow committed.
    pub(super) async fn start(
        config: &JepsenConfig,
        seed: u64,
        dir: &Path,
    ) -> Result<Trial, HarnessError> {
        std::fs::create_dir_all(dir)?;
        let mut chain = config.preset.chain(seed);
        workload::add_registers(&mut chain, config.registers);
        let spec_path = dir.join("chain.toml");
        std::fs::write(&spec_path, factoryos_coord::spec::render(&chain))?;
        let lab = Arc::new(NetnsLab::create()?);
        let mut init = LocalInit::new(3, Some(&spec_path));
        init.mode = config.mode;
        let mut cluster =
            LocalCluster::create_in(&dir.join("cluster"), &config.binary, &init, lab.clone())?;
        cluster.set_metrics_interval(200);
        cluster.start_all()?;
        let live = Live::new(&chain);
        for g in live.groups() {
            cluster.start_stage_group(g, CYCLE_MS)?;
        }
        let (client, transport) = cluster.client()?;
        let members = Members::new(cluster.file().coordinators.iter().map(|(i, a)| (*i, *a)));
        let trial = Trial {
            finals: chain
                .stages
                .iter()
                .filter(|s| s.item == chain.spec.final_type)
                .map(|s| s.id)
                .collect(),
            members,
            next_coordinator: ADDED_COORDINATORS,
            down: BTreeSet::new(),
            history: History::create(&dir.join("history.jsonl"))?,
            cluster,
            lab,
            spec: chain.spec.clone(),
            chain,
            live,
            client: client.with_timeout(Duration::from_secs(5)),
            transport,
            meter: Meter::default(),
        };
        trial.until_registered().await?;
        trial.write_hosts(&dir.join("hosts.json"))?;
        Ok(trial)
    }

    /// `hosts.json`: the lab's subnet and every host (name, namespace, address).
    pub(super) fn write_hosts(&self, path: &Path) -> std::io::Result<()> {
        let hosts: Vec<serde_json::Value> = self
            .lab
            .hosts()
            .into_values()
            .map(|h| serde_json::json!({"name": h.name, "ns": h.ns, "ip": h.ip.to_string()}))
            .collect();
        let lab = serde_json::json!({"cidr": self.lab.cidr(), "hosts": hosts});
        std::fs::write(path, serde_json::to_vec_pretty(&lab)?)
    }

    async fn until_registered(&self) -> Result<(), HarnessError> {
        let started = Instant::now();
        loop {
            if let Ok(s) = self.client.status().await {
                if s.stages.len() == self.live.ids.len() && s.flow_version.0 > 0 {
                    return Ok(());
                }
            }
            if started.elapsed() > STARTUP {
                return Err(HarnessError::Startup(
                    STARTUP,
                    "not every stage registered".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader as the members that answer quickly see it: the one named
    /// in the highest term (an isolated old leader may still believe it leads).
    async fn leader(&self) -> Option<NodeId> {
        let mut best: Option<(u64, NodeId)> = None;
        for id in self.members.ids() {
            let one = CoordClient::new(self.transport.clone(), vec![id])
                .with_attempts(1)
                .with_timeout(Duration::from_millis(300));
            if let Ok(s) = one.status().await {
                if let Some(l) = s.leader.filter(|l| self.members.ids().contains(l)) {
                    if best.is_none_or(|(term, _)| s.term > term) {
                        best = Some((s.term, l));
                    }
                }
            }
        }
        best.map(|(_, l)| l)
    }

    /// The cluster as the nemesis draws on it now.
    async fn topology(&self) -> Topology {
        Topology {
            coordinators: self.members.ids(),
            stage_hosts: self.live.groups().to_vec(),
            leader: self.leader().await,
            ips: self.cluster.hosts().node_ips(),
            next_coordinator: NodeId(self.next_coordinator),
            spec: Some(self.spec.clone()),
            made: self.live.made(),
        }
    }

    /// Applies `ops`; the first error, if one failed (the rest still run).
    async fn apply(&mut self, ops: &[Op]) -> Result<(), String> {
        let mut first_error = None;
        for op in ops {
            let mut target = Target {
                cluster: &mut self.cluster,
                client: &self.client,
                cycle_ms: CYCLE_MS,
            };
            let result = op.apply(&mut target).await;
            self.applied(op, result.is_ok()).await;
            if let Err(e) = result {
                tracing::warn!(op = %op.describe(), error = %e, "nemesis operation failed");
                first_error.get_or_insert(format!("{}: {e}", op.describe()));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Keeps the run's view of the cluster in step with what `op` did.
    async fn applied(&mut self, op: &Op, ok: bool) {
        match op {
            Op::RemoveCoordinator { id } | Op::AddCoordinator { id } => {
                if matches!(op, Op::RemoveCoordinator { .. }) {
                    self.down.insert(*id);
                }
                // Whatever the answer said, the group knows who it has.
                if let Ok(status) = self.client.status().await {
                    self.members.set(&status.member_addrs);
                    self.client.learn(&status);
                }
                self.next_coordinator = self.next_coordinator.max(id.0 + 1);
            }
            Op::Crash { host: id, .. } | Op::KillCoordinator { id } | Op::KillLeader { id } => {
                self.down.insert(*id);
            }
            Op::RecoverStages { host: id, .. } | Op::RecoverCoordinator { id } if ok => {
                self.down.remove(id);
            }
            Op::UpdateRecipe { item, recipe, .. } if ok => {
                if let Ok(next) = factoryos_coord::state::update_recipe(&self.spec, item, recipe) {
                    self.spec = next;
                }
            }
            _ => {}
        }
    }

    fn inject_entry(fault: &Fault, outcome: &Result<(), String>) -> Entry {
        let detail = match outcome {
            Ok(()) => fault.detail.clone(),
            Err(e) => format!("{} (failed: {e})", fault.detail),
        };
        Entry::NemesisStart {
            t_ns: History::now(),
            nemesis: fault.nemesis.name().into(),
            detail,
        }
    }

    /// One step of the schedule at `now`, if one is due.
    async fn step(&mut self, schedule: &mut NemesisSchedule, now: Duration, view: &mut Progress) {
        let step = match schedule.due(now) {
            None => return,
            // A heal needs no look at the cluster.
            Some(false) => schedule.poll(now, &self.topology_without_leader()),
            Some(true) => {
                let topo = self.topology().await;
                schedule.poll(now, &topo)
            }
        };
        match step {
            Some(Step::Inject(fault)) => {
                let outcome = self.apply(&fault.inject).await;
                self.history.push(Self::inject_entry(&fault, &outcome));
                view.faults += 1;
                view.last = Some(format!("{} {}", fault.nemesis, fault.detail));
                view.lines.push(format!(
                    "{:>6.1}s  {} {}",
                    now.as_secs_f64(),
                    fault.nemesis,
                    fault.detail
                ));
            }
            Some(Step::Heal(fault)) => self.heal(&fault).await,
            None => {}
        }
    }

    fn topology_without_leader(&self) -> Topology {
        Topology {
            coordinators: self.members.ids(),
            stage_hosts: self.live.groups().to_vec(),
            leader: None,
            ips: BTreeMap::new(),
            next_coordinator: NodeId(self.next_coordinator),
            spec: None,
            made: BTreeSet::new(),
        }
    }

    /// Runs the nemesis schedule for `config.time`; the faults injected,
    /// and the schedule (its held fault is healed by [`Trial::heal_all`]).
    pub(super) async fn drive(
        &mut self,
        config: &JepsenConfig,
        seed: u64,
        index: usize,
        progress: &mut impl FnMut(&Progress),
        stop: &watch::Receiver<bool>,
    ) -> (usize, NemesisSchedule) {
        let mut schedule = NemesisSchedule::new(seed, config.nemeses.clone(), config.timing);
        let clock = Instant::now();
        let mut view = Progress {
            run: index + 1,
            runs: config.runs,
            phase: "nemesis",
            ..Progress::default()
        };
        let mut last_sample = Instant::now();
        while clock.elapsed() < config.time && !*stop.borrow() {
            let now = clock.elapsed();
            self.step(&mut schedule, now, &mut view).await;
            if last_sample.elapsed() >= Duration::from_millis(500) {
                last_sample = Instant::now();
                view.final_products = self.sample_production();
                view.elapsed = now;
                progress(&view);
                view.lines.clear();
            }
            tokio::time::sleep(TICK).await;
        }
        (view.faults, schedule)
    }

    async fn heal(&mut self, fault: &Fault) {
        let outcome = self.apply(&fault.heal).await;
        if let Err(e) = &outcome {
            tracing::warn!(nemesis = %fault.nemesis, error = %e, "heal failed");
        }
        self.history.push(Entry::NemesisStop {
            t_ns: History::now(),
            nemesis: fault.nemesis.name().into(),
        });
    }

    fn sample_production(&mut self) -> u64 {
        let total = self.meter.sample(&self.cluster, &self.finals);
        self.history.push(Entry::Production {
            t_ns: History::now(),
            final_products: total,
        });
        total
    }

    /// Every process that should run (not down by a nemesis) but ended on
    /// its own, with how it ended.
    fn unexpected_exits(&mut self) -> Vec<String> {
        let expected: Vec<NodeId> = self
            .members
            .ids()
            .into_iter()
            .chain(self.live.groups().iter().map(|g| g[0]))
            .filter(|id| !self.down.contains(id))
            .collect();
        expected
            .into_iter()
            .filter_map(|id| {
                Some(format!(
                    "{id} exited on its own: {}",
                    self.cluster.exit_status(id)?
                ))
            })
            .collect()
    }

    /// Heals whatever is left: the held fault, the network, delays, paused
    /// and stopped processes. What ended on its own is reported, not hidden.
    pub(super) async fn heal_all(&mut self, schedule: &mut NemesisSchedule) -> Vec<String> {
        if let Some(fault) = schedule.take_held() {
            self.heal(&fault).await;
        }
        let exits = self.unexpected_exits();
        if let Err(e) = self.lab.set_rules(&Rules::default()) {
            tracing::warn!(error = %e, "could not clear the network rules");
        }
        let every: Vec<NodeId> = self
            .members
            .ids()
            .into_iter()
            .chain(self.live.ids.clone())
            .collect();
        let clear = Op::Faults {
            nodes: every,
            rule: None,
        };
        let _ = self.apply(std::slice::from_ref(&clear)).await;
        for id in self.members.ids() {
            let _ = self.cluster.resume(id);
            if !self.cluster.is_running(id) {
                let _ = self.cluster.start(id);
            }
        }
        for g in self.live.groups().to_vec() {
            let _ = self.cluster.resume(g[0]);
            if !self.cluster.is_running(g[0]) {
                let _ = self.cluster.start_stage_group(&g, CYCLE_MS);
            }
        }
        self.down.clear();
        exits
    }

    /// After the final heal: when production resumed, and whether every
    /// coordinator answers a final linearizable read, within `bound`.
    pub(super) async fn settle(&mut self, bound: Duration) -> liveness::AfterHeal {
        let at_heal = self.sample_production();
        let healed = Instant::now();
        let mut resumed_after = None;
        while healed.elapsed() < bound {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if self.sample_production() > at_heal {
                resumed_after = Some(healed.elapsed());
                break;
            }
        }
        // Each coordinator must answer within the same bound (a node that
        // was cut off may need the group to elect again first).
        let mut final_reads = Vec::new();
        for id in self.members.ids() {
            let one = CoordClient::new(self.transport.clone(), vec![id])
                .with_attempts(1)
                .with_timeout(Duration::from_secs(2));
            let answer = loop {
                match one.read_flow(true).await {
                    Ok(_) => break Ok(()),
                    Err(e) if healed.elapsed() >= bound => break Err(e.to_string()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            final_reads.push((id, answer));
        }
        let trades_settled_after = self.trades_settle(healed, bound).await;
        liveness::AfterHeal {
            products_at_heal: at_heal,
            resumed_after,
            bound,
            final_reads,
            trades_settled_after,
        }
    }

    /// Waits, within `bound` of the heal, until no stage has re-sent a lot
    /// for [`TRADES_QUIET`]: every lot in transit is then younger than a
    /// re-send period, so the stop's drain sees it confirmed. A connection a
    /// partition left half-open is repaired here, not cut short by the stop.
    async fn trades_settle(&self, healed: Instant, bound: Duration) -> Option<Duration> {
        let resent = || -> u64 {
            self.live
                .ids
                .iter()
                .filter_map(|id| self.cluster.stage_metrics(*id))
                .map(|m| m.counters.lots_retransmitted)
                .sum()
        };
        let (mut last, mut since) = (resent(), Instant::now());
        while healed.elapsed() < bound {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = resent();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= TRADES_QUIET {
                return Some(healed.elapsed());
            }
        }
        None
    }

    /// Stops every stage cleanly (they drain; their last WAL writes land),
    /// then the coordinators.
    pub(super) async fn stop(&mut self) -> Result<(), HarnessError> {
        let hosts: Vec<NodeId> = self
            .live
            .groups()
            .iter()
            .map(|g| g[0])
            .filter(|h| self.cluster.is_running(*h))
            .collect();
        self.cluster.terminate_all(&hosts)?;
        self.transport.shutdown().await;
        self.cluster.stop_all();
        Ok(())
    }

    /// What the checkers read, once everything is stopped: the history with
    /// every node's event log merged in, every WAL, and which nodes were
    /// coordinators (every node directory that is not a stage's).
    pub(super) fn evidence(
        &self,
        config: &JepsenConfig,
        after: liveness::AfterHeal,
        exits: Vec<String>,
    ) -> Result<Evidence, HarnessError> {
        let stages: BTreeSet<NodeId> = self.live.ids.iter().copied().collect();
        let mut node_events = Vec::new();
        let mut coordinators = BTreeSet::new();
        for entry in std::fs::read_dir(&self.cluster.file().data)? {
            let name = entry?.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix('n')?.parse().ok())
            else {
                continue;
            };
            let id = NodeId(id);
            if !stages.contains(&id) {
                coordinators.insert(id);
            }
            let path = self.cluster.file().node_dir(id).join(events::FILE_NAME);
            node_events.extend(events::read(&path)?);
        }
        node_events.sort_by_key(|e| e.t_ns);
        for e in &node_events {
            self.history.push(Entry::Node(e.clone()));
        }
        Ok(Evidence {
            entries: self.history.entries(),
            node_events,
            coordinators,
            records: factoryos_stage::audit::read_wals(self.cluster.file(), &self.live.ids)?,
            initial: workload::initial_states(&self.chain, config.registers),
            after,
            exits,
        })
    }
}
