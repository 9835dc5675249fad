//! `factoryos jepsen`: the partition-testing harness. Each run puts every
//! coordinator and stage process on its own network-namespace host, runs
//! the production workload (a generated chain trading) and the config-store
//! workload (register clients) while a nemesis schedule injects and heals
//! faults, heals everything, waits for production to resume, and then
//! checks the history, the nodes' event logs and every WAL.
//!
//! | module | what lives there |
//! |---|---|
//! | this one | the configuration, a run from set-up to verdicts, several runs |
//! | [`trial`] | one run's cluster: set-up, applying faults, production sampled, the final heal, the stop |
//! | [`verdicts`] | the checkers run on what a stopped run left |
//! | [`report`] | `results.json`, the timeline PNG and `report.html` |
//! | [`matrix`] | one table over per-nemesis runs (`--each`) |

pub mod matrix;
pub mod report;
pub mod trial;
pub mod verdicts;

use crate::checker::{self, Validity, Verdict};
use crate::experiment::Preset;
use crate::hosts::netns::NetnsError;
use crate::nemesis::{Nemesis, Timing};
use factoryos_coord::config::CoordMode;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a harness run needs.
#[derive(Debug, Clone)]
pub struct JepsenConfig {
    pub nemeses: Vec<Nemesis>,
    /// How long the workloads run under the nemesis, per run.
    pub time: Duration,
    pub runs: usize,
    pub preset: Preset,
    pub mode: CoordMode,
    /// The chain's and the schedules' seed; run `i` uses `seed + i`.
    pub seed: u64,
    /// Register clients (0: no config-store workload).
    pub clients: usize,
    /// Registers they share.
    pub registers: usize,
    pub timing: Timing,
    /// How long production may take to resume after the final heal.
    pub liveness_bound: Duration,
    pub out: PathBuf,
    pub binary: PathBuf,
}

impl JepsenConfig {
    /// Defaults for `nemeses` over `time`.
    pub fn new(nemeses: Vec<Nemesis>, time: Duration, out: PathBuf, binary: PathBuf) -> Self {
        JepsenConfig {
            nemeses,
            time,
            runs: 1,
            preset: Preset::Small,
            mode: CoordMode::Raft,
            seed: 1,
            clients: 5,
            registers: 3,
            timing: Timing::default(),
            liveness_bound: Duration::from_secs(30),
            out,
            binary,
        }
    }
}

/// Why a run could not be carried out (not a verdict: an inability to test).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    #[error("the cluster did not come up within {0:?}: {1}")]
    Startup(Duration, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("reading the WALs: {0}")]
    Wal(#[from] factoryos_stage::wal::WalError),
    #[error("{0}")]
    Op(#[from] crate::op::OpError),
}

/// One run's outcome.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub index: usize,
    pub seed: u64,
    pub dir: PathBuf,
    pub verdicts: Vec<Verdict>,
    pub valid: Validity,
    /// Faults injected, by nemesis name.
    pub faults: usize,
    /// Register operations: ok, fail, info.
    pub ops: (usize, usize, usize),
}

/// What a harness user sees while it runs.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub run: usize,
    pub runs: usize,
    pub elapsed: Duration,
    pub phase: &'static str,
    pub final_products: u64,
    pub faults: usize,
    pub last: Option<String>,
    /// Lines to print above the progress bar, once.
    pub lines: Vec<String>,
}

/// Runs the harness `config.runs` times; every run's outcome.
pub async fn run(
    config: &JepsenConfig,
    mut progress: impl FnMut(&Progress),
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<RunOutcome>, HarnessError> {
    crate::hosts::netns::check_support()?;
    std::fs::create_dir_all(&config.out)?;
    let mut outcomes = Vec::new();
    for index in 0..config.runs {
        if *stop.borrow() {
            break;
        }
        let outcome = match run_one(config, index, &mut progress, stop.clone()).await {
            Ok(outcome) => outcome,
            // The run could not be carried out: say so as a verdict, go on.
            Err(e) => {
                tracing::error!(run = index + 1, error = %e, "the run failed");
                failed_run(config, index, &e)
            }
        };
        progress(&Progress {
            run: index + 1,
            runs: config.runs,
            phase: "done",
            lines: vec![format!(
                "run {} (seed {}): {} — {}",
                index + 1,
                outcome.seed,
                outcome.valid.name(),
                outcome
                    .verdicts
                    .iter()
                    .map(|v| format!("{} {}", v.checker, v.valid.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
            ..Progress::default()
        });
        outcomes.push(outcome);
    }
    report::write_summary(&config.out, config, &outcomes)?;
    Ok(outcomes)
}

/// The outcome of a run that could not be carried out.
fn failed_run(config: &JepsenConfig, index: usize, e: &HarnessError) -> RunOutcome {
    let verdicts = vec![Verdict::unknown(
        "harness",
        format!("the run could not be carried out: {e}"),
    )];
    RunOutcome {
        index,
        seed: config.seed + index as u64,
        dir: config.out.join(format!("run-{}", index + 1)),
        valid: Validity::Unknown,
        verdicts,
        faults: 0,
        ops: (0, 0, 0),
    }
}

/// Runs trial `index` of `config`: set-up, the workloads under the nemesis,
/// the final heal and wait, the stop; then, with the cluster gone, the
/// verdicts and the files.
async fn run_one(
    config: &JepsenConfig,
    index: usize,
    progress: &mut impl FnMut(&Progress),
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<RunOutcome, HarnessError> {
    let seed = config.seed + index as u64;
    let dir = config.out.join(format!("run-{}", index + 1));
    let mut trial = trial::Trial::start(config, seed, &dir).await?;
    let (stop_clients, clients_stop) = tokio::sync::watch::channel(false);
    let mut transports = Vec::new();
    for _ in 0..config.clients {
        transports.push(trial.cluster.client()?.1);
    }
    let clients = crate::workload::spawn(
        transports.clone(),
        trial.members.clone(),
        crate::workload::register_names(config.registers),
        trial.history.clone(),
        seed,
        clients_stop,
    );
    let (faults, mut schedule) = trial.drive(config, seed, index, progress, &stop).await;
    progress(&Progress {
        run: index + 1,
        runs: config.runs,
        phase: "healing",
        ..Progress::default()
    });
    let mut exits = trial.heal_all(&mut schedule).await;
    let after = trial.settle(config.liveness_bound).await;
    let _ = stop_clients.send(true);
    for c in clients {
        if let Err(e) = c.await {
            exits.push(format!("a register client ended: {e}"));
        }
    }
    for t in &transports {
        t.shutdown().await;
    }
    trial.stop().await?;
    trial.write_hosts(&dir.join("hosts.json"))?;
    let evidence = trial.evidence(config, after, exits)?;
    // The lab and its processes go before the (possibly long) checks.
    drop(trial);
    let verdicts = verdicts::verdicts(&evidence);
    report::write_run(&dir, config, seed, &verdicts, &evidence.entries)?;
    Ok(RunOutcome {
        index,
        seed,
        valid: checker::overall(&verdicts),
        ops: verdicts::tally_ops(&evidence.entries),
        dir,
        verdicts,
        faults,
    })
}

/// `N valid, N invalid, N unknown` over every checker of every run.
pub fn tally(outcomes: &[RunOutcome]) -> (usize, usize, usize) {
    let all = outcomes.iter().flat_map(|o| &o.verdicts);
    all.fold((0, 0, 0), |(v, i, u), x| match x.valid {
        Validity::Valid => (v + 1, i, u),
        Validity::Invalid => (v, i + 1, u),
        Validity::Unknown => (v, i, u + 1),
    })
}

/// The whole harness's verdict.
pub fn overall(outcomes: &[RunOutcome]) -> Validity {
    let verdicts: Vec<Verdict> = outcomes.iter().flat_map(|o| o.verdicts.clone()).collect();
    checker::overall(&verdicts)
}
