//! One harness run: its cluster on namespace hosts, the workloads, the
//! nemesis schedule applied, the final heal, the wait for production, the
//! stop, and the verdicts.

use super::{report, HarnessError, JepsenConfig, Progress, RunOutcome};
use crate::checker::{self, election, fencing, linear, liveness, lots, Verdict};
use crate::experiment::live::Live;
use crate::history::{Entry, History};
use crate::hosts::netns::{NetnsLab, Rules};
use crate::local::LocalCluster;
use crate::nemesis::{Fault, NemesisSchedule, Step, Topology};
use crate::op::{Op, Target};
use crate::workload;
use factoryos_coord::client::CoordClient;
use factoryos_coord::cluster::LocalInit;
use factoryos_coord::events::{self, NodeEvent};
use factoryos_coord::spec::ChainSpec;
use factoryos_stage::records::Records;
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
const CYCLE_MS: u64 = 100;
/// How often the loop looks at the schedule and samples production.
const TICK: Duration = Duration::from_millis(50);
/// How long the linearizability search may take, per register.
const LINEAR_BUDGET: Duration = Duration::from_secs(60);
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
    cluster: LocalCluster,
    lab: Arc<NetnsLab>,
    chain: ChainSpec,
    /// The spec as the store holds it (recipe updates applied by its rule).
    spec: Spec,
    live: Live,
    /// The coordinators in the group now, and every coordinator ever.
    members: Vec<NodeId>,
    every_coordinator: BTreeSet<NodeId>,
    next_coordinator: u64,
    client: CoordClient,
    transport: Transport,
    history: History,
    meter: Meter,
    finals: Vec<NodeId>,
    started: Instant,
}

impl Trial {
    /// Makes the lab and the cluster in `dir`, starts every process and
    /// waits until every stage is registered and a flow committed.
    async fn start(config: &JepsenConfig, seed: u64, dir: &Path) -> Result<Trial, HarnessError> {
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
        let client = client.with_timeout(Duration::from_secs(5));
        let members = cluster.coordinators();
        let finals = chain
            .stages
            .iter()
            .filter(|s| s.item == chain.spec.final_type)
            .map(|s| s.id)
            .collect();
        let trial = Trial {
            every_coordinator: members.iter().copied().collect(),
            members,
            next_coordinator: ADDED_COORDINATORS,
            history: History::create(&dir.join("history.jsonl"))?,
            cluster,
            lab,
            spec: chain.spec.clone(),
            chain,
            live,
            client,
            transport,
            meter: Meter::default(),
            finals,
            started: Instant::now(),
        };
        trial.until_registered().await?;
        trial.write_hosts(&dir.join("hosts.json"))?;
        Ok(trial)
    }

    /// `hosts.json`: the lab's subnet and every host (name, namespace, address).
    fn write_hosts(&self, path: &Path) -> std::io::Result<()> {
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

    /// The cluster as the nemesis draws on it now.
    async fn topology(&self) -> Topology {
        let leader = self.client.status().await.ok().and_then(|s| s.leader);
        let ips = self
            .lab
            .hosts()
            .into_values()
            .filter_map(|h| Some((NodeId(h.name.strip_prefix('n')?.parse().ok()?), h.ip)))
            .collect();
        Topology {
            coordinators: self.members.clone(),
            stage_hosts: self.live.groups().to_vec(),
            leader: leader.filter(|l| self.members.contains(l)),
            ips,
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
            match op.apply(&mut target).await {
                Ok(()) => self.applied(op),
                Err(e) => {
                    tracing::warn!(op = %op.describe(), error = %e, "nemesis operation failed");
                    first_error.get_or_insert(format!("{}: {e}", op.describe()));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Keeps the run's view of the group in step with a membership change.
    fn applied(&mut self, op: &Op) {
        match op {
            Op::RemoveCoordinator { id } => self.members.retain(|m| m != id),
            Op::AddCoordinator { id } => {
                self.members.push(*id);
                self.every_coordinator.insert(*id);
                self.next_coordinator = self.next_coordinator.max(id.0 + 1);
            }
            Op::UpdateRecipe { item, recipe, .. } => {
                if let Ok(next) = factoryos_coord::state::update_recipe(&self.spec, item, recipe) {
                    self.spec = next;
                }
            }
            _ => {}
        }
    }

    fn inject_entry(&self, fault: &Fault, outcome: &Result<(), String>) -> Entry {
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

    /// Runs the nemesis schedule for `config.time`; the faults injected.
    async fn drive(
        &mut self,
        config: &JepsenConfig,
        seed: u64,
        index: usize,
        progress: &mut impl FnMut(&Progress),
        stop: &watch::Receiver<bool>,
    ) -> Result<(usize, NemesisSchedule), HarnessError> {
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
            if schedule.is_due(now) {
                let topo = self.topology().await;
                match schedule.poll(now, &topo) {
                    Some(Step::Inject(fault)) => {
                        let outcome = self.apply(&fault.inject).await;
                        self.history.push(self.inject_entry(&fault, &outcome));
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
            if last_sample.elapsed() >= Duration::from_millis(500) {
                last_sample = Instant::now();
                view.final_products = self.sample_production();
                view.elapsed = now;
                progress(&view);
                view.lines.clear();
            }
            tokio::time::sleep(TICK).await;
        }
        Ok((view.faults, schedule))
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

    /// Heals whatever is left: the held fault, the network, paused and
    /// stopped processes.
    async fn heal_all(&mut self, schedule: &mut NemesisSchedule) {
        if let Some(fault) = schedule.take_held() {
            self.heal(&fault).await;
        }
        if let Err(e) = self.lab.set_rules(&Rules::default()) {
            tracing::warn!(error = %e, "could not clear the network rules");
        }
        let members = self.members.clone();
        for id in members {
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
    }

    /// After the final heal: when production resumed, and whether every
    /// coordinator answers a final linearizable read.
    async fn settle(&mut self, bound: Duration) -> liveness::AfterHeal {
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
        for id in self.members.clone() {
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
        liveness::AfterHeal {
            products_at_heal: at_heal,
            resumed_after,
            bound,
            final_reads,
        }
    }

    /// Stops every stage cleanly (their last WAL writes land), then the coordinators.
    async fn stop(&mut self) -> Result<(), HarnessError> {
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

    /// Every node's event log, merged in time order into the history.
    fn collect_events(&self) -> std::io::Result<Vec<NodeEvent>> {
        let mut all = Vec::new();
        let ids = self.every_coordinator.iter().chain(self.live.ids.iter());
        for id in ids {
            let path = self.cluster.file().node_dir(*id).join(events::FILE_NAME);
            all.extend(events::read(&path)?);
        }
        all.sort_by_key(|e| e.t_ns);
        for e in &all {
            self.history.push(Entry::Node(e.clone()));
        }
        Ok(all)
    }

    /// Every checker's verdict on this run.
    fn check(
        &self,
        config: &JepsenConfig,
        after: &liveness::AfterHeal,
    ) -> Result<Vec<Verdict>, HarnessError> {
        let node_events = self.collect_events()?;
        let coordinator_events: Vec<NodeEvent> = node_events
            .iter()
            .filter(|e| self.every_coordinator.contains(&e.node))
            .cloned()
            .collect();
        let records = factoryos_stage::audit::read_wals(self.cluster.file(), &self.live.ids)?;
        let refs: Vec<(NodeId, &Records)> = records.iter().map(|(id, r)| (*id, r)).collect();
        let initial = workload::initial_states(&self.chain, config.registers);
        Ok(vec![
            linearizable(&self.history.entries(), &initial),
            lots::check(&refs),
            election::check(&coordinator_events),
            fencing::check(&node_events),
            liveness::check(after),
        ])
    }
}

/// Every register of the history, checked.
fn linearizable(
    history: &[Entry],
    initial: &BTreeMap<String, crate::history::Register>,
) -> Verdict {
    let by_key = linear::operations(history);
    let total: usize = by_key.values().map(Vec::len).sum();
    if total == 0 {
        return Verdict::unknown("linearizability", "no register operation completed".into());
    }
    let budget = LINEAR_BUDGET;
    let mut evidence = Vec::new();
    let mut unknown = Vec::new();
    for (key, ops) in &by_key {
        let Some(start) = initial.get(key) else {
            continue;
        };
        match linear::check(*start, ops, budget) {
            linear::Outcome::Linearizable => {}
            linear::Outcome::Unknown => unknown.push(key.clone()),
            linear::Outcome::NotLinearizable { stuck } => {
                for op in stuck.iter().take(8) {
                    evidence.push(format!(
                        "{key}: op {} by client {} {:?} invoked {} ns, completed {:?}, read {:?}",
                        op.id, op.process, op.op, op.invoke_ns, op.complete_ns, op.read
                    ));
                }
            }
        }
    }
    let summary = format!("{total} operations on {} registers", by_key.len());
    if evidence.is_empty() && !unknown.is_empty() {
        return Verdict::unknown(
            "linearizability",
            format!(
                "{summary}; the search ran out of time on {}",
                unknown.join(", ")
            ),
        );
    }
    Verdict::new("linearizability", evidence, summary)
}

/// Register operations completed ok, failed, indeterminate.
fn tally_ops(history: &[Entry]) -> (usize, usize, usize) {
    history.iter().fold((0, 0, 0), |(o, f, i), e| match e {
        Entry::Ok { .. } => (o + 1, f, i),
        Entry::Fail { .. } => (o, f + 1, i),
        Entry::Info { .. } => (o, f, i + 1),
        _ => (o, f, i),
    })
}

/// Runs trial `index` of `config`.
pub async fn run_one(
    config: &JepsenConfig,
    index: usize,
    progress: &mut impl FnMut(&Progress),
    stop: watch::Receiver<bool>,
) -> Result<RunOutcome, HarnessError> {
    let seed = config.seed + index as u64;
    let dir = config.out.join(format!("run-{}", index + 1));
    let mut trial = Trial::start(config, seed, &dir).await?;
    let (stop_clients, clients_stop) = watch::channel(false);
    let mut transports = Vec::new();
    for _ in 0..config.clients {
        transports.push(trial.cluster.client()?.1);
    }
    let keys = workload::register_names(config.registers);
    let clients = workload::spawn(
        transports.clone(),
        &trial.members,
        keys,
        trial.history.clone(),
        seed,
        clients_stop,
    );
    let (faults, mut schedule) = trial.drive(config, seed, index, progress, &stop).await?;
    progress(&Progress {
        run: index + 1,
        runs: config.runs,
        phase: "healing",
        ..Progress::default()
    });
    trial.heal_all(&mut schedule).await;
    let after = trial.settle(config.liveness_bound).await;
    let _ = stop_clients.send(true);
    for c in clients {
        let _ = c.await;
    }
    for t in &transports {
        t.shutdown().await;
    }
    trial.stop().await?;
    trial.write_hosts(&dir.join("hosts.json"))?;
    let verdicts = trial.check(config, &after)?;
    let entries = trial.history.entries();
    report::write_run(&dir, config, seed, &verdicts, &entries, trial.started)?;
    Ok(RunOutcome {
        index,
        seed,
        valid: checker::overall(&verdicts),
        ops: tally_ops(&entries),
        dir,
        verdicts,
        faults,
    })
}
