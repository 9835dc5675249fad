//! The glue of each command: its arguments (clap), a call into the crates,
//! and what it prints. One file per command family.

pub mod bench;
pub mod certs;
pub mod chain;
pub mod coord;
pub mod jepsen;
pub mod ops;
pub mod recovery;
pub mod run;
pub mod sim;
pub mod stage;

use anyhow::{Context, Result};
use clap::Args;
use factoryos_coord::client::CoordClient;
use factoryos_coord::cluster::ClusterFile;
use factoryos_coord::config::{CoordMode, RaftTimeouts};
use factoryos_wire::NodeId;
use std::future::Future;
use std::path::PathBuf;

/// Which chain to make: a preset, a generated shape, or a spec file.
#[derive(Args, Debug, Clone)]
pub struct ChainArgs {
    /// Chain preset: small (5 types x 2 stages), med (8 x 2), large (20 x 2),
    /// xl (200 x 5, hosted 50 stages to a process).
    #[arg(long, default_value = "small")]
    pub preset: factoryos_jepsen::experiment::Preset,
    /// A spec file (TOML) instead of a generated chain.
    #[arg(long, conflicts_with_all = ["num_types", "nodes_per_type"])]
    pub spec: Option<PathBuf>,
    /// Generator: number of item types (raw and final included).
    #[arg(long)]
    pub num_types: Option<usize>,
    /// Generator: stages per type.
    #[arg(long)]
    pub nodes_per_type: Option<usize>,
    /// Generator: how densely the middle types depend on each other.
    #[arg(long, default_value = "low")]
    pub complexity: factoryos_coord::generate::Complexity,
    /// Generator seed, and the fault schedule's: same seed, same chain.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give the raw and final types as many stages as the others.
    #[arg(long)]
    pub replicate_ends: bool,
    /// Host processes to run the stages in, the stages dealt to them in
    /// turn; each shares one QUIC endpoint and one WAL (group commit) among
    /// its stages, and a crash takes the whole host. Default: one process
    /// per stage, or 50 stages to a process above 100 stages.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub hosts: Option<u64>,
}

impl ChainArgs {
    pub fn choice(&self) -> factoryos_jepsen::experiment::ChainChoice {
        factoryos_jepsen::experiment::ChainChoice {
            preset: self.preset,
            spec: self.spec.clone(),
            num_types: self.num_types,
            nodes_per_type: self.nodes_per_type,
            complexity: self.complexity,
            seed: self.seed,
            replicate_ends: self.replicate_ends,
        }
    }
}

/// The original's operations at rates per minute (`run` and `sim`).
#[derive(Args, Debug, Clone)]
pub struct RateArgs {
    /// Crashes (SIGKILL of a stage host process: its stages together) per
    /// minute; the last live stage of a type is spared unless --allow-outages.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// What a crash kills: `host` (a host process with all its stages, as a
    /// machine's crash) or `stage` (one stage alone inside its host, which
    /// goes on; it restarts there from the host's WAL). The same where a
    /// host runs one stage.
    #[arg(long, default_value = "host", value_parser = crash_scope_parser())]
    pub crash: factoryos_jepsen::experiment::schedule::CrashScope,
    /// Let a crash take the last live stage of a type (its consumers stall
    /// until it recovers).
    #[arg(long)]
    pub allow_outages: bool,
    /// Recoveries (restart from the WAL) per minute.
    #[arg(long, default_value_t = 0.0)]
    pub recover_rate: f64,
    /// Recipe updates per minute: a type that is not a raw material gains an
    /// input, loses one or needs another quantity; stages adopt the new recipe
    /// with the next flow, and the ideal twin makes the same change.
    #[arg(long, default_value_t = 0.0)]
    pub update_dep_rate: f64,
    /// Stages added per minute: a new stage of a random type is declared to
    /// the cluster and started.
    #[arg(long, default_value_t = 0.0)]
    pub add_stage_rate: f64,
}

impl RateArgs {
    /// The rates, each checked to lie in 0..=600 per minute (and so any
    /// `more` rates the command has of its own).
    pub fn rates(
        &self,
        more: &[(&str, f64)],
    ) -> anyhow::Result<factoryos_jepsen::experiment::schedule::Rates> {
        let own = [
            ("--failure-rate", self.failure_rate),
            ("--recover-rate", self.recover_rate),
            ("--update-dep-rate", self.update_dep_rate),
            ("--add-stage-rate", self.add_stage_rate),
        ];
        for (name, v) in own.iter().chain(more) {
            if !(0.0..=600.0).contains(v) || v.is_nan() {
                anyhow::bail!("{name} must be between 0 and 600 per minute, got {v}");
            }
        }
        Ok(factoryos_jepsen::experiment::schedule::Rates {
            failure: self.failure_rate,
            recover: self.recover_rate,
            update_dep: self.update_dep_rate,
            add_stage: self.add_stage_rate,
        })
    }
}

/// The cluster file of an operator command.
#[derive(Args, Debug)]
pub struct OperatorConfig {
    /// The cluster file; the operator certificate certs/node-0.pem is used.
    #[arg(long)]
    pub config: PathBuf,
}

impl OperatorConfig {
    pub fn load(&self) -> Result<ClusterFile> {
        Ok(ClusterFile::load(&self.config)?)
    }
}

/// `runs/<what>-<unix seconds>`: where a run's files go without `--out`.
pub fn default_out(what: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{what}-{stamp}"))
}

/// The Raft timeouts a benchmark runs its coordinators with.
#[derive(Args, Debug, Clone)]
pub struct TimeoutArgs {
    /// Raft heartbeat interval in ms.
    #[arg(long, default_value_t = RaftTimeouts::default().heartbeat_ms)]
    pub heartbeat_ms: u64,
    /// Shortest election timeout in ms.
    #[arg(long, default_value_t = RaftTimeouts::default().election_min_ms)]
    pub election_min_ms: u64,
    /// Longest election timeout in ms.
    #[arg(long, default_value_t = RaftTimeouts::default().election_max_ms)]
    pub election_max_ms: u64,
}

impl TimeoutArgs {
    /// The timeouts, checked (the election range must be sound).
    pub fn timeouts(&self) -> Result<RaftTimeouts> {
        let t = RaftTimeouts {
            heartbeat_ms: self.heartbeat_ms,
            election_min_ms: self.election_min_ms,
            election_max_ms: self.election_max_ms,
        };
        t.validate().map_err(anyhow::Error::msg)?;
        Ok(t)
    }
}

/// Parses `--crash` (its possible values show in `--help`).
fn crash_scope_parser(
) -> impl clap::builder::TypedValueParser<Value = factoryos_jepsen::experiment::schedule::CrashScope>
{
    use clap::builder::TypedValueParser;
    use factoryos_jepsen::experiment::schedule::CrashScope;
    clap::builder::PossibleValuesParser::new(CrashScope::ALL.map(CrashScope::name))
        .try_map(|s| s.parse::<CrashScope>())
}

/// Parses `--coord-mode` (its possible values show in `--help`).
pub fn mode_parser() -> impl clap::builder::TypedValueParser<Value = CoordMode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(CoordMode::ALL.map(CoordMode::name))
        .try_map(|s| s.parse::<CoordMode>())
}

/// Runs `f` with an operator client of `cluster` on a fresh runtime, and
/// closes the client's endpoint afterwards, whatever `f` returned.
pub fn with_client<F, Fut>(cluster: &ClusterFile, f: F) -> Result<()>
where
    F: FnOnce(CoordClient) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (client, transport) = CoordClient::connect(cluster, NodeId::OPERATOR).context(
            "the operator certificate (node-0) is needed: `factoryos certs issue --node 0`",
        )?;
        let result = f(client).await;
        transport.shutdown().await;
        result
    })
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
