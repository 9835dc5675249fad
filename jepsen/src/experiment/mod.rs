//! `factoryos run`: a whole local cluster of real processes on a generated
//! (or given) chain, faults injected at the original's rates, and the
//! results: the original's metric table, a summary against the ideal twin,
//! and files.

pub mod ideal;
pub mod ops;
pub mod plots;
pub mod reroute;
pub mod results;

use crate::local::{LocalCluster, LocalError};
use factoryos_coord::cluster::RaftTimeouts;
use factoryos_coord::generate::{generate, ChainShape, Complexity};
use factoryos_coord::spec::ChainSpec;
use factoryos_wire::{ItemType, NodeId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use results::{ChainOp, Fault, Recovery, Reroute, StageMetrics, Summary};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A chain size, as in the original's experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// 5 types x 2 stages.
    Small,
    /// 8 types x 2 stages.
    Med,
    /// 20 types x 2 stages.
    Large,
    /// 200 types x 5 stages (1,000 stages, hosted 50 to a process).
    Xl,
}

impl Preset {
    pub fn shape(self) -> (usize, usize) {
        match self {
            Preset::Small => (5, 2),
            Preset::Med => (8, 2),
            Preset::Large => (20, 2),
            Preset::Xl => (200, 5),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Small => "small",
            Preset::Med => "med",
            Preset::Large => "large",
            Preset::Xl => "xl",
        }
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "small" => Ok(Preset::Small),
            "med" | "medium" => Ok(Preset::Med),
            "large" => Ok(Preset::Large),
            "xl" => Ok(Preset::Xl),
            other => Err(format!(
                "unknown preset {other:?}: use small, med, large or xl"
            )),
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub preset: Preset,
    /// A spec file instead of a generated chain.
    pub spec: Option<PathBuf>,
    pub num_types: Option<usize>,
    pub nodes_per_type: Option<usize>,
    pub complexity: Complexity,
    pub seed: u64,
    pub replicate_ends: bool,
    pub duration: Duration,
    pub cycle: Duration,
    /// Stage crashes per minute.
    pub failure_rate: f64,
    /// Recoveries per minute.
    pub recover_rate: f64,
    /// Recipe updates per minute.
    pub update_dep_rate: f64,
    /// Stages added per minute.
    pub add_stage_rate: f64,
    /// Whether a crash may take the last live stage of a type.
    pub allow_outages: bool,
    /// Whether the Raft leader may be killed too.
    pub leader_can_fail: bool,
    pub file_lock: bool,
    pub coordinators: u64,
    /// The run directory (cluster, logs, results).
    pub out: PathBuf,
    /// The `factoryos` binary to start processes with.
    pub binary: PathBuf,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("spec: {0}")]
    Spec(#[from] factoryos_coord::spec::SpecErrors),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the cluster did not come up within {0:?}: {1}")]
    Startup(Duration, String),
    #[error("audit: {0}")]
    Wal(#[from] factoryos_stage::wal::WalError),
    #[error("certificates: {0}")]
    Certs(#[from] factoryos_wire::CertError),
    #[error("adding a stage: {0}")]
    AddStage(String),
}

/// Live figures for a progress display.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub elapsed: Duration,
    pub final_products: u64,
    pub successful_ratio: f64,
    pub live: usize,
    pub dead: usize,
    pub leader: Option<NodeId>,
    pub last_op: Option<String>,
    /// Operations since the previous report, as `at_s` and what was done.
    pub new_ops: Vec<(f64, String)>,
}

impl Progress {
    /// Records an operation: shown as the last one, reported once in
    /// `new_ops`, and kept in the run's `ops.log`.
    fn op(&mut self, log: &mut Vec<(f64, String)>, at_s: f64, what: String) {
        self.last_op = Some(format!("{what} at {at_s:.1}s"));
        self.new_ops.push((at_s, what.clone()));
        log.push((at_s, what));
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub table: String,
    pub summary: Summary,
    pub out: PathBuf,
    /// Why a plot was not drawn, if one was not.
    pub plot_notes: Vec<String>,
}

/// The chain of a run: a spec file, or the original's shape.
pub fn chain(config: &RunConfig) -> Result<ChainSpec, RunError> {
    if let Some(path) = &config.spec {
        return Ok(factoryos_coord::spec::load(path)?);
    }
    let (types, per_type) = config.preset.shape();
    let mut shape = ChainShape::new(
        config.num_types.unwrap_or(types),
        config.nodes_per_type.unwrap_or(per_type),
    );
    shape.complexity = config.complexity;
    shape.seed = config.seed;
    shape.replicate_ends = config.replicate_ends;
    shape.first_id = 11;
    Ok(generate(&shape))
}

const STARTUP: Duration = Duration::from_secs(60);
/// Stages per host process for large chains.
const HOST_GROUP: usize = 50;
/// How often the leader's view is polled while a crash is not yet detected.
const DETECT_POLL: Duration = Duration::from_millis(100);
/// The no-crash baseline of a reroute is taken this long before the crash.
const BASELINE_BEFORE_MS: u64 = 5_000;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A crash of a stage host, followed until the leader marks it dead.
#[derive(Debug)]
struct CrashWatch {
    at_s: f64,
    at_unix_ms: u64,
    killed: Instant,
    host: NodeId,
    victims: BTreeSet<NodeId>,
    items: BTreeSet<ItemType>,
    detect_ms: Option<u64>,
}

/// The run's view of its cluster: which stages exist, on which hosts, and
/// what is down.
struct Live {
    ids: Vec<NodeId>,
    /// Stage host processes; each is known by its first stage's id.
    groups: Vec<Vec<NodeId>>,
    host_of: BTreeMap<NodeId, NodeId>,
    item_of: BTreeMap<NodeId, String>,
    dead_hosts: BTreeSet<NodeId>,
    dead_coords: BTreeSet<NodeId>,
}

impl Live {
    fn live_of(&self, item: &str, dead: &BTreeSet<NodeId>) -> usize {
        self.ids
            .iter()
            .filter(|s| self.item_of[s] == item && !dead.contains(&self.host_of[s]))
            .count()
    }

    fn group(&self, host: NodeId) -> &[NodeId] {
        self.groups
            .iter()
            .find(|g| g[0] == host)
            .map_or(&[], |g| g.as_slice())
    }

    /// Hosts a crash may take: live ones, and unless `allow_outages`, only
    /// those whose every stage leaves a live stage of its type behind.
    fn crash_candidates(&self, allow_outages: bool) -> Vec<NodeId> {
        self.groups
            .iter()
            .map(|g| g[0])
            .filter(|h| !self.dead_hosts.contains(h))
            .filter(|h| {
                let mut after = self.dead_hosts.clone();
                after.insert(*h);
                allow_outages
                    || self
                        .group(*h)
                        .iter()
                        .all(|s| self.live_of(&self.item_of[s], &after) > 0)
            })
            .collect()
    }

    fn dead_stages(&self) -> usize {
        self.ids
            .iter()
            .filter(|s| self.dead_hosts.contains(&self.host_of[s]))
            .count()
    }
}

/// Draws the time to the next event of a Poisson process of `per_min` a minute.
fn next_in(rng: &mut SmallRng, per_min: f64) -> Option<Duration> {
    let rate = per_min / 60.0;
    (rate > 0.0).then(|| Duration::from_secs_f64(-rng.random::<f64>().max(1e-12).ln() / rate))
}

/// Runs the experiment. `stop` ends it early (Ctrl-C); results are still made.
pub async fn run(
    config: &RunConfig,
    mut progress: impl FnMut(&Progress),
    stop: watch::Receiver<bool>,
) -> Result<RunReport, RunError> {
    let chain = chain(config)?;
    std::fs::create_dir_all(&config.out)?;
    let spec_path = config.out.join("chain.toml");
    std::fs::write(&spec_path, factoryos_coord::spec::render(&chain))?;
    let mut cluster = LocalCluster::create(
        &config.out.join("cluster"),
        &config.binary,
        config.coordinators,
        Some(&spec_path),
        RaftTimeouts::default(),
        config.file_lock,
    )?;
    cluster.set_metrics_interval(500);
    cluster.start_all()?;

    // Stages: one process each, or hosted in groups for large chains.
    let ids: Vec<NodeId> = chain.stages.iter().map(|s| s.id).collect();
    let cycle_ms = config.cycle.as_millis().max(1) as u64;
    let groups: Vec<Vec<NodeId>> = if ids.len() > 100 {
        ids.chunks(HOST_GROUP).map(|c| c.to_vec()).collect()
    } else {
        ids.iter().map(|i| vec![*i]).collect()
    };
    // Stages make lots from the moment they start (raw materials before any
    // flow exists), so the ideal twin gets the same wall time: from here.
    let stages_started = Instant::now();
    for g in &groups {
        cluster.start_stage_group(g, cycle_ms)?;
    }
    let mut live = Live {
        host_of: groups
            .iter()
            .flat_map(|g| g.iter().map(move |s| (*s, g[0])))
            .collect(),
        item_of: chain
            .stages
            .iter()
            .map(|s| (s.id, s.item.to_string()))
            .collect(),
        ids,
        groups,
        dead_hosts: BTreeSet::new(),
        dead_coords: BTreeSet::new(),
    };
    let final_type = chain.spec.final_type.to_string();
    let raw: BTreeSet<String> = chain.raw_types().iter().map(|t| t.to_string()).collect();

    let (client, transport) = cluster.client()?;
    // The clock starts once every stage is registered and a flow committed.
    let started = Instant::now();
    loop {
        if let Ok(s) = client.status().await {
            if s.stages.len() == live.ids.len() && s.flow_version.0 > 0 {
                break;
            }
        }
        if started.elapsed() > STARTUP {
            return Err(RunError::Startup(
                STARTUP,
                "not every stage registered".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut rng = SmallRng::seed_from_u64(config.seed ^ 0x5eed);
    let clock = Instant::now();
    let clock_unix_ms = unix_ms();
    let mut next_crash = next_in(&mut rng, config.failure_rate);
    let mut next_recover = next_in(&mut rng, config.recover_rate);
    let mut next_update = next_in(&mut rng, config.update_dep_rate);
    let mut next_add = next_in(&mut rng, config.add_stage_rate);
    let mut spec_now = chain.spec.clone();
    let mut events: Vec<ideal::ChainEvent> = Vec::new();
    let mut changes: Vec<ChainOp> = Vec::new();
    let mut faults: Vec<Fault> = Vec::new();
    let mut crashes: Vec<CrashWatch> = Vec::new();
    let mut recoveries: Vec<(Recovery, Instant)> = Vec::new();
    let mut view = Progress::default();
    let mut op_log: Vec<(f64, String)> = Vec::new();
    let mut carried: StageMetrics = StageMetrics::new();
    let mut series: Vec<(f64, u64)> = vec![(0.0, 0)];
    let mut windows: Vec<(NodeId, f64, Option<f64>)> = Vec::new();
    let mut last_status = Instant::now() - Duration::from_secs(1);
    let mut last_detect_poll = Instant::now();
    while clock.elapsed() < config.duration && !*stop.borrow() {
        let now = clock.elapsed();
        let at_s = now.as_secs_f64();
        let cycle_now =
            (stages_started.elapsed().as_secs_f64() / config.cycle.as_secs_f64()) as u64;
        if next_crash.is_some_and(|t| now >= t) {
            next_crash = next_in(&mut rng, config.failure_rate).map(|d| now + d);
            let mut candidates = live.crash_candidates(config.allow_outages);
            let mut leader = None;
            if config.leader_can_fail && live.dead_coords.is_empty() {
                leader = client.status().await.ok().and_then(|s| s.leader);
                candidates.extend(leader);
            }
            if !candidates.is_empty() {
                let victim = candidates[rng.random_range(0..candidates.len())];
                cluster.kill(victim)?;
                let op = if Some(victim) == leader {
                    live.dead_coords.insert(victim);
                    "kill-leader"
                } else {
                    live.dead_hosts.insert(victim);
                    let victims: BTreeSet<NodeId> = live.group(victim).iter().copied().collect();
                    crashes.push(CrashWatch {
                        at_s,
                        at_unix_ms: unix_ms(),
                        killed: Instant::now(),
                        host: victim,
                        items: victims
                            .iter()
                            .map(|s| ItemType::from(live.item_of[s].as_str()))
                            .collect(),
                        victims,
                        detect_ms: None,
                    });
                    "crash"
                };
                windows.push((victim, at_s, None));
                faults.push(Fault {
                    at_s,
                    op: op.into(),
                    node: victim.0,
                });
                view.op(&mut op_log, at_s, format!("{op} {victim}"));
                tracing::info!(%victim, op, at_s, "fault injected");
            }
        }
        if next_recover.is_some_and(|t| now >= t) {
            next_recover = next_in(&mut rng, config.recover_rate).map(|d| now + d);
            let pool: Vec<NodeId> = live
                .dead_hosts
                .iter()
                .chain(live.dead_coords.iter())
                .copied()
                .collect();
            if !pool.is_empty() {
                let back = pool[rng.random_range(0..pool.len())];
                if let Some(w) = windows
                    .iter_mut()
                    .rev()
                    .find(|w| w.0 == back && w.2.is_none())
                {
                    w.2 = Some(at_s);
                }
                if live.dead_coords.remove(&back) {
                    cluster.start(back)?;
                } else {
                    live.dead_hosts.remove(&back);
                    let group = live.group(back).to_vec();
                    for s in &group {
                        // A restarted stage counts from zero: keep what its
                        // earlier life counted (as of its last metrics file).
                        if let Some(m) = cluster.stage_metrics(*s) {
                            carry(&mut carried, s.0, m);
                        }
                        let _ = std::fs::remove_file(cluster.metrics_path(*s));
                    }
                    cluster.start_stage_group(&group, cycle_ms)?;
                    recoveries.push((
                        Recovery {
                            at_s,
                            node: back.0,
                            first_lot_ms: None,
                        },
                        Instant::now(),
                    ));
                }
                view.op(&mut op_log, at_s, format!("recover {back}"));
                tracing::info!(node = %back, at_s, "recovered");
            }
        }
        if next_update.is_some_and(|t| now >= t) {
            next_update = next_in(&mut rng, config.update_dep_rate).map(|d| now + d);
            let made: BTreeSet<ItemType> = live
                .item_of
                .values()
                .map(|i| ItemType::from(i.as_str()))
                .collect();
            if let Some((item, recipe, change)) =
                ops::draw_recipe_update(&spec_now, &made, &mut rng)
            {
                match client.update_recipe(item.clone(), recipe.clone()).await {
                    Ok(_) => {
                        if let Some(adopted) = ops::apply_update(&mut spec_now, &item, &recipe) {
                            let detail = format!("{item} v{}: {change}", adopted.version);
                            events.push(ideal::ChainEvent {
                                cycle: cycle_now,
                                change: ideal::ChainChange::Recipe {
                                    item,
                                    recipe: adopted,
                                },
                            });
                            view.op(&mut op_log, at_s, format!("recipe {detail}"));
                            tracing::info!(%detail, at_s, "recipe updated");
                            changes.push(ChainOp {
                                at_s,
                                op: "update-recipe".into(),
                                detail,
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "recipe update not committed"),
                }
            }
        }
        if next_add.is_some_and(|t| now >= t) {
            next_add = next_in(&mut rng, config.add_stage_rate).map(|d| now + d);
            let types: Vec<&ItemType> = spec_now.types.iter().map(|t| &t.name).collect();
            let item = types[rng.random_range(0..types.len())].clone();
            let id = NodeId(live.ids.iter().map(|i| i.0).max().unwrap_or(10) + 1);
            match add_stage(&mut cluster, &client, id, &item, cycle_ms).await {
                Ok(()) => {
                    live.ids.push(id);
                    live.groups.push(vec![id]);
                    live.host_of.insert(id, id);
                    live.item_of.insert(id, item.to_string());
                    events.push(ideal::ChainEvent {
                        cycle: cycle_now,
                        change: ideal::ChainChange::AddStage(factoryos_coord::solver::StageState {
                            id,
                            item: item.clone(),
                            capacity: 1,
                            live: true,
                        }),
                    });
                    let detail = format!("{id} makes {item}");
                    view.op(&mut op_log, at_s, format!("add stage {detail}"));
                    tracing::info!(%detail, at_s, "stage added");
                    changes.push(ChainOp {
                        at_s,
                        op: "add-stage".into(),
                        detail,
                    });
                }
                Err(e) => tracing::warn!(%id, error = %e, "could not add a stage"),
            }
        }
        // Recoveries: the restarted stage's first lot.
        for (r, at) in recoveries
            .iter_mut()
            .filter(|(r, _)| r.first_lot_ms.is_none())
        {
            let made = cluster
                .stage_metrics(NodeId(r.node))
                .and_then(|m| m.get("successful_manufacture_cycles").copied())
                .unwrap_or(0);
            if made > 0 {
                r.first_lot_ms = Some(at.elapsed().as_millis() as u64);
            }
        }
        // Crashes: when the leader holds every victim dead.
        let undetected = crashes
            .iter()
            .any(|c| c.detect_ms.is_none() && live.dead_hosts.contains(&c.host));
        if undetected && last_detect_poll.elapsed() >= DETECT_POLL {
            last_detect_poll = Instant::now();
            if let Ok(status) = client.status().await {
                let dead: BTreeSet<NodeId> = status
                    .stages
                    .iter()
                    .filter(|(_, l)| *l == factoryos_wire::model::Liveness::Dead)
                    .map(|(id, _)| *id)
                    .collect();
                for c in crashes.iter_mut().filter(|c| c.detect_ms.is_none()) {
                    if live.dead_hosts.contains(&c.host) && c.victims.is_subset(&dead) {
                        c.detect_ms = Some(c.killed.elapsed().as_millis() as u64);
                    }
                }
            }
        }
        if last_status.elapsed() >= Duration::from_millis(500) {
            last_status = Instant::now();
            let metrics = read_metrics(&cluster, &live.ids, &carried);
            view.elapsed = now;
            view.final_products = metrics
                .iter()
                .filter(|(id, _)| live.item_of[&NodeId(**id)] == final_type)
                .map(|(_, m)| m.get("final_products").copied().unwrap_or(0))
                .sum();
            view.successful_ratio = successful_ratio(&metrics, &live.item_of, &raw);
            view.dead = live.dead_stages();
            view.live = live.ids.len() - view.dead;
            view.leader = client.status().await.ok().and_then(|s| s.leader);
            series.push((now.as_secs_f64(), view.final_products));
            progress(&view);
            view.new_ops.clear();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = clock.elapsed();
    let wall = stages_started.elapsed();
    // Products made from here on (while stages stop) are not counted: the
    // twin's time ends now too.
    let stop_unix_ms = unix_ms();

    // Stop every stage cleanly so its last metrics and WAL writes are in.
    let running: Vec<NodeId> = live
        .groups
        .iter()
        .map(|g| g[0])
        .filter(|h| !live.dead_hosts.contains(h))
        .collect();
    cluster.terminate_all(&running)?;
    transport.shutdown().await;
    cluster.stop_all();

    let ids = &live.ids;
    let metrics = read_metrics(&cluster, ids, &carried);
    let records = factoryos_stage::audit::read_wals(&cluster.file().data, ids)?;
    let refs: Vec<(NodeId, &factoryos_stage::records::Records)> =
        records.iter().map(|(id, r)| (*id, r)).collect();
    let audit = factoryos_stage::audit::audit(&refs);
    let genealogy = reroute::Genealogy::new(records.iter().map(|(_, r)| r));
    let final_products = genealogy.finals_made_by(stop_unix_ms);
    let reroutes: Vec<Reroute> = crashes
        .iter()
        .map(|c| Reroute {
            at_s: c.at_s,
            node: c.host.0,
            detect_ms: c.detect_ms,
            first_product_ms: genealogy.first_product_through(c.at_unix_ms, &c.items, &c.victims),
            baseline_ms: c
                .at_unix_ms
                .checked_sub(BASELINE_BEFORE_MS)
                .filter(|t| *t >= clock_unix_ms)
                .and_then(|t| genealogy.first_product_through(t, &c.items, &BTreeSet::new())),
        })
        .collect();
    let all_live = chain.stage_states(&BTreeSet::new());
    let cycles = (wall.as_secs_f64() / config.cycle.as_secs_f64()) as u64;
    let twin = ideal::simulate(&chain.spec, &all_live, cycles, 8, &events);
    let ideal = twin.final_products;
    let sum = |names: &[&str]| results::total(metrics.values(), names);
    let lots = sum(&["batches_received"]).max(1) as f64;
    let trade = sum(&results::TRADE_MESSAGES) as f64;
    let summary = Summary {
        preset: if config.spec.is_some() {
            "spec".into()
        } else {
            config.preset.name().into()
        },
        seed: config.seed,
        types: chain.spec.types.len(),
        stages: ids.len(),
        coordinators: config.coordinators,
        coord_mode: if config.file_lock {
            "file-lock"
        } else {
            "raft"
        }
        .into(),
        duration_s: elapsed.as_secs_f64(),
        cycle_ms,
        final_products,
        final_products_while_stopping: audit.lots_shipped.saturating_sub(final_products),
        ideal_final_products: ideal,
        efficiency: final_products as f64 / ideal.max(1) as f64,
        successful_cycle_ratio: successful_ratio(&metrics, &live.item_of, &raw),
        ideal_successful_cycle_ratio: twin.successful_ratio(),
        successful_cycle_ratio_all: successful_ratio(&metrics, &live.item_of, &BTreeSet::new()),
        messages_per_lot: trade / lots,
        heartbeats_per_lot: sum(&["Heartbeat_sent"]) as f64 / lots,
        lots_lost: audit.lost.len(),
        lots_duplicated: audit.duplicated.len(),
        lots_miscounted: audit.miscounted.len(),
        lots_in_transit: audit.in_transit.len(),
        faults_injected: faults.len(),
        faults,
        recoveries: recoveries.into_iter().map(|(r, _)| r).collect(),
        reroutes,
        recipe_updates: changes.iter().filter(|c| c.op == "update-recipe").count(),
        stages_added: changes.iter().filter(|c| c.op == "add-stage").count(),
        chain_changes: changes,
    };
    results::write_files(&config.out, &metrics, &summary)?;
    let log: String = op_log
        .iter()
        .map(|(at, what)| format!("{at:>9.3}s  {what}\n"))
        .collect();
    std::fs::write(config.out.join("ops.log"), log)?;
    series.push((elapsed.as_secs_f64(), summary.final_products));
    let shaded: Vec<plots::Window> = windows
        .iter()
        .map(|(_, start, end)| plots::Window {
            start_s: *start,
            end_s: end.unwrap_or(elapsed.as_secs_f64()),
        })
        .collect();
    let title = format!(
        "{} chain, {} stages: final products (efficiency {:.2})",
        summary.preset, summary.stages, summary.efficiency
    );
    let ideal_per_s = ideal as f64 / elapsed.as_secs_f64().max(1e-9);
    let outcomes: Vec<plots::Outcomes> = metrics
        .iter()
        .map(|(id, m)| plots::Outcomes {
            stage: *id,
            item: live.item_of[&NodeId(*id)].clone(),
            successful: m.get("successful_manufacture_cycles").copied().unwrap_or(0),
            skipped: m.get("skipped_manufacture_cycles").copied().unwrap_or(0),
            blocked: m.get("blocked_manufacture_cycles").copied().unwrap_or(0),
        })
        .collect();
    let mut plot_notes = Vec::new();
    if let Err(e) = plots::final_products(
        &config.out.join("final_products.png"),
        &series,
        &shaded,
        &summary
            .chain_changes
            .iter()
            .map(|c| c.at_s)
            .collect::<Vec<_>>(),
        ideal_per_s,
        &title,
    ) {
        plot_notes.push(e.to_string());
    }
    if let Err(e) = plots::cycle_outcomes(
        &config.out.join("cycle_outcomes.png"),
        &outcomes,
        "cycle outcomes per stage",
    ) {
        plot_notes.push(e.to_string());
    }
    let table = results::render_table(&results::table(&metrics));
    Ok(RunReport {
        table,
        summary,
        out: config.out.clone(),
        plot_notes,
    })
}

/// The original's "add node" operation on a running cluster: a certificate
/// for `id`, the stage declared in the cluster's spec file (so the process,
/// and coordinators that restart, know it), `AddStage` through the store
/// (so coordinators let it connect), then the process itself.
async fn add_stage(
    cluster: &mut LocalCluster,
    client: &factoryos_coord::client::CoordClient,
    id: NodeId,
    item: &ItemType,
    cycle_ms: u64,
) -> Result<(), RunError> {
    let file = cluster.file().clone();
    factoryos_wire::ClusterCa::load(&file.certs)?
        .issue(id)?
        .save(&file.certs)?;
    let spec = file
        .spec
        .ok_or_else(|| RunError::AddStage("the cluster file names no spec".into()))?;
    let mut text = std::fs::read_to_string(&spec)?;
    text.push_str(&format!("\n[[stages]]\nid = {}\ntype = \"{item}\"\n", id.0));
    std::fs::write(&spec, text)?;
    let desc = factoryos_wire::model::StageDescriptor {
        id,
        item: item.clone(),
        // Not listening yet: it registers its real address when it starts.
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        recipe_version: 0,
        capacity: 1,
    };
    client
        .add_stage(desc)
        .await
        .map_err(|e| RunError::AddStage(e.to_string()))?;
    cluster.start_stage_group(&[id], cycle_ms)?;
    Ok(())
}

/// Metrics that are values of the moment, not counts: a stage's earlier
/// lives do not add to them.
const GAUGES: [&str; 4] = [
    "uptime_ms",
    "outbound_lots",
    "in_transit_lots",
    "recipe_version",
];

/// Adds the counters of one ended life of stage `id` to `carried`.
fn carry(carried: &mut StageMetrics, id: u64, life: BTreeMap<String, u64>) {
    let total = carried.entry(id).or_default();
    for (name, v) in life {
        if !GAUGES.contains(&name.as_str()) {
            *total.entry(name).or_default() += v;
        }
    }
}

/// Every stage's metrics: its current life's file plus what its earlier
/// lives counted.
fn read_metrics(cluster: &LocalCluster, ids: &[NodeId], carried: &StageMetrics) -> StageMetrics {
    ids.iter()
        .filter_map(|id| {
            let mut m = cluster.stage_metrics(*id);
            if let Some(before) = carried.get(&id.0) {
                let m = m.get_or_insert_with(BTreeMap::new);
                for (name, v) in before {
                    *m.entry(name.clone()).or_default() += v;
                }
            }
            m.map(|m| (id.0, m))
        })
        .collect()
}

/// Successful cycles over all cycles, of the stages that are not raw materials.
fn successful_ratio(
    metrics: &StageMetrics,
    item_of: &BTreeMap<NodeId, String>,
    raw: &BTreeSet<String>,
) -> f64 {
    let (ok, total) = metrics
        .iter()
        .filter(|(id, _)| !raw.contains(&item_of[&NodeId(**id)]))
        .fold((0u64, 0u64), |(ok, total), (_, m)| {
            (
                ok + m.get("successful_manufacture_cycles").copied().unwrap_or(0),
                total + m.get("total_manufacture_cycles").copied().unwrap_or(0),
            )
        });
    ok as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_lives_add_their_counts_but_not_their_gauges() {
        let life = |cycles: u64, uptime: u64| {
            BTreeMap::from([
                ("total_manufacture_cycles".to_string(), cycles),
                ("uptime_ms".to_string(), uptime),
            ])
        };
        let mut carried = StageMetrics::new();
        carry(&mut carried, 13, life(40, 4_000));
        carry(&mut carried, 13, life(10, 1_000));
        assert_eq!(carried[&13]["total_manufacture_cycles"], 50);
        assert!(!carried[&13].contains_key("uptime_ms"));
    }
}
