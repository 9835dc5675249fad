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
pub mod stage;

use anyhow::{Context, Result};
use clap::Args;
use factoryos_coord::client::CoordClient;
use factoryos_coord::cluster::ClusterFile;
use factoryos_coord::config::CoordMode;
use factoryos_wire::NodeId;
use std::future::Future;
use std::path::PathBuf;

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
