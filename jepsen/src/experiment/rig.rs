//! The cluster under test: its processes, the run's view of them, an
//! operator client and the run's clocks. Operations are applied here, to
//! the processes and through the client, and noted in the run's record.

use super::live::{Live, LARGE_CHAIN};
use super::record::{unix_ms, Moment, Record};
use super::results::Reports;
use super::{RunConfig, RunError};
use crate::local::LocalCluster;
use crate::op::{Op, OpKind, Target};
use factoryos_coord::client::CoordClient;
use factoryos_coord::cluster::LocalInit;
use factoryos_coord::config::RaftTimeouts;
use factoryos_coord::spec::ChainSpec;
use factoryos_wire::{NodeId, Transport};
use std::time::{Duration, Instant};

/// How long the cluster may take to come up.
const STARTUP: Duration = Duration::from_secs(60);

/// The coordinators' heartbeat interval for a chain of `stages` on this
/// machine: Raft's default (50 ms) up to [`LARGE_CHAIN`] stages, 150 ms
/// above. Measured
/// at `--preset xl` with host crashes (300 ms cycles, 300 s): 57 leader
/// elections at 50 ms, 2 at 150 ms.
pub fn default_heartbeat_ms(stages: usize) -> u64 {
    if stages > LARGE_CHAIN {
        150
    } else {
        RaftTimeouts::default().heartbeat_ms
    }
}

/// A running cluster of real processes, and what the run knows of it.
pub struct Rig {
    pub cluster: LocalCluster,
    pub live: Live,
    pub client: CoordClient,
    transport: Transport,
    pub cycle: Duration,
    /// Stages make lots from the moment they start (raw materials before
    /// any flow exists), so the ideal twin's wall time runs from here.
    pub stages_started: Instant,
    /// The run's clock: it starts once every stage is registered and a
    /// flow is committed.
    pub clock: Instant,
    pub clock_unix_ms: u64,
    /// What restarted stages counted in their earlier lives.
    carried: Reports,
}

impl Rig {
    /// Writes the cluster into the run directory, starts the coordinators
    /// and every stage host, and waits until every stage is registered and
    /// a flow committed.
    pub async fn start(config: &RunConfig, chain: &ChainSpec) -> Result<Rig, RunError> {
        std::fs::create_dir_all(&config.out)?;
        let spec_path = config.out.join("chain.toml");
        std::fs::write(&spec_path, factoryos_coord::spec::render(chain))?;
        let mut init = LocalInit::new(config.coordinators, Some(&spec_path));
        init.mode = config.mode;
        let heartbeat = config
            .raft_heartbeat_ms
            .unwrap_or_else(|| default_heartbeat_ms(chain.stages.len()));
        if heartbeat != RaftTimeouts::default().heartbeat_ms {
            init.raft = RaftTimeouts::with_heartbeat(heartbeat);
        }
        let mut cluster = LocalCluster::create(&config.out.join("cluster"), &config.binary, &init)?;
        // Every stage rewrites its metrics file this often: at a thousand
        // stages, twice a second is 2,000 file replacements a second.
        let large = chain.stages.len() > LARGE_CHAIN;
        cluster.set_metrics_interval(if large { 2000 } else { 500 });
        cluster.start_all()?;
        let live = Live::hosted(chain, config.hosts);
        let stages_started = Instant::now();
        let cycle_ms = config.cycle.as_millis().max(1) as u64;
        for g in live.groups() {
            cluster.start_stage_group(g, cycle_ms)?;
        }
        let (client, transport) = cluster.client()?;
        let rig = Rig {
            cluster,
            live,
            client,
            transport,
            cycle: config.cycle,
            stages_started,
            clock: Instant::now(),
            clock_unix_ms: unix_ms(),
            carried: Reports::new(),
        };
        rig.until_registered().await
    }

    async fn until_registered(mut self) -> Result<Rig, RunError> {
        let started = Instant::now();
        loop {
            if let Ok(s) = self.client.status().await {
                if s.stages.len() == self.live.ids.len() && s.flow_version.0 > 0 {
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
        self.clock = Instant::now();
        self.clock_unix_ms = unix_ms();
        Ok(self)
    }

    pub fn cycle_ms(&self) -> u64 {
        self.cycle.as_millis().max(1) as u64
    }

    pub fn moment(&self) -> Moment {
        let elapsed = self.clock.elapsed();
        Moment {
            elapsed,
            at_s: elapsed.as_secs_f64(),
            cycle: (self.stages_started.elapsed().as_secs_f64() / self.cycle.as_secs_f64()) as u64,
            at_ms: super::record::unix_ms(),
        }
    }

    /// The coordinators' leader, as the group reports it now.
    pub async fn leader(&self) -> Option<NodeId> {
        self.client.status().await.ok().and_then(|s| s.leader)
    }

    /// Applies `op` and notes it in `record`. An operation the
    /// coordinators refuse (a recipe update, an added stage) is logged and
    /// skipped; one the processes cannot take ends the run.
    pub async fn apply(
        &mut self,
        op: Op,
        moment: &Moment,
        record: &mut Record,
    ) -> Result<(), RunError> {
        match &op {
            Op::RecoverStages { stages, .. } => self.carry_earlier_lives(stages),
            Op::RecoverStage { stage, .. } => self.carry_earlier_lives(&[*stage]),
            _ => {}
        }
        let cycle_ms = self.cycle_ms();
        let mut target = Target {
            cluster: &mut self.cluster,
            client: &self.client,
            cycle_ms,
        };
        match op.apply(&mut target).await {
            Ok(()) => {}
            Err(e) if matches!(op.kind(), OpKind::UpdateRecipe | OpKind::AddStage) => {
                tracing::warn!(op = %op.describe(), error = %e, "operation not applied");
                if let Op::AddStage { decl } = &op {
                    // It may be in the spec file or declared already.
                    self.live.spend(decl.id);
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        record.applied(&op, moment, &mut self.live);
        Ok(())
    }

    /// A restarted stage counts from zero: keep what its earlier life
    /// counted (as of its last metrics file), and remove that file.
    fn carry_earlier_lives(&mut self, stages: &[NodeId]) {
        for s in stages {
            if let Some(m) = self.cluster.stage_metrics(*s) {
                self.carried.entry(*s).or_default().add_earlier_life(&m);
            }
            let _ = std::fs::remove_file(self.cluster.metrics_path(*s));
        }
    }

    /// Every stage's figures: its current life's file plus what its earlier
    /// lives counted.
    pub fn reports(&self) -> Reports {
        self.live
            .ids
            .iter()
            .filter_map(|id| {
                let mut now = self.cluster.stage_metrics(*id);
                if let Some(before) = self.carried.get(id) {
                    now.get_or_insert_with(Default::default)
                        .add_earlier_life(before);
                }
                now.map(|m| (*id, m))
            })
            .collect()
    }

    /// Stops every running stage cleanly at once (so its last metrics and
    /// WAL writes are in), then the coordinators.
    pub async fn stop(&mut self) -> Result<(), RunError> {
        let running = self.live.running_hosts();
        self.cluster.terminate_all(&running)?;
        self.transport.shutdown().await;
        self.cluster.stop_all();
        Ok(())
    }
}
