//! `factoryos coord`, `factoryos status` and `factoryos cluster init`.

use anyhow::{bail, Context, Result};
use factoryos_coord::cluster::{ClusterFile, RaftTimeouts};
use factoryos_coord::node::{Coordinator, OPERATOR};
use factoryos_wire::NodeId;
use std::future::Future;
use std::path::Path;

/// Raft timing flags that override the cluster file.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeoutFlags {
    pub heartbeat_ms: Option<u64>,
    pub election_min_ms: Option<u64>,
    pub election_max_ms: Option<u64>,
}

impl TimeoutFlags {
    fn apply(self, mut t: RaftTimeouts) -> Result<RaftTimeouts> {
        if let Some(v) = self.heartbeat_ms {
            t.heartbeat_ms = v;
        }
        if let Some(v) = self.election_min_ms {
            t.election_min_ms = v;
        }
        if let Some(v) = self.election_max_ms {
            t.election_max_ms = v;
        }
        t.validate().map_err(anyhow::Error::msg)?;
        Ok(t)
    }
}

pub fn coord(
    config: &Path,
    id: u64,
    flags: TimeoutFlags,
    mode: Option<&str>,
    join: bool,
) -> Result<()> {
    let cluster = ClusterFile::load(config)?;
    let mut opts = cluster.coordinator_options(NodeId(id))?;
    opts.join = join;
    opts.timeouts = flags.apply(opts.timeouts)?;
    if let Some(mode) = mode {
        opts.mode = factoryos_coord::cluster::parse_mode(mode, cluster.data.join("shared"))
            .map_err(anyhow::Error::msg)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let node = Coordinator::start(opts)
            .await
            .with_context(|| format!("coordinator {id} could not start"))?;
        eprintln!(
            "coordinator n{id} listening on {}; Ctrl-C to stop",
            node.transport().local_addr()?
        );
        shutdown_signal().await;
        node.shutdown().await;
        Ok(())
    })
}

/// Waits for Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
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
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A client speaking as the operator (certificate node-0).
fn operator_client(
    cluster: &ClusterFile,
) -> Result<(
    factoryos_coord::client::CoordClient,
    factoryos_wire::Transport,
)> {
    cluster
        .client(OPERATOR)
        .context("the operator certificate (node-0) is needed: `factoryos certs issue --node 0`")
}

/// Runs `f` with an operator client of `cluster` on a fresh runtime, and
/// closes the client's endpoint afterwards, whatever `f` returned.
pub(crate) fn with_client<F, Fut>(cluster: &ClusterFile, f: F) -> Result<()>
where
    F: FnOnce(factoryos_coord::client::CoordClient) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (client, transport) = operator_client(cluster)?;
        let result = f(client).await;
        transport.shutdown().await;
        result
    })
}

pub fn change_coordinators(
    config: &Path,
    id: u64,
    add: Option<std::net::SocketAddr>,
) -> Result<()> {
    let cluster = ClusterFile::load(config)?;
    with_client(&cluster, |client| async move {
        let status = match add {
            Some(addr) => client.add_coordinator(NodeId(id), addr).await?,
            None => client.remove_coordinator(NodeId(id)).await?,
        };
        let members: Vec<String> = status.members.iter().map(|m| m.to_string()).collect();
        println!("coordinators now: {}", members.join(", "));
        Ok(())
    })
}

pub fn status(config: &Path) -> Result<()> {
    let cluster = ClusterFile::load(config)?;
    with_client(&cluster, |client| async move {
        let status = client.status().await?;
        let leader = status
            .leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into());
        let members: Vec<String> = status.members.iter().map(|m| m.to_string()).collect();
        println!("leader        {leader}");
        println!("term          {}", status.term);
        println!("members       {}", members.join(", "));
        println!("flow version  {}", status.flow_version);
        let count = |l: factoryos_wire::model::Liveness| {
            status.stages.iter().filter(|(_, s)| *s == l).count()
        };
        use factoryos_wire::model::Liveness::*;
        println!(
            "stages        {} registered: {} alive, {} suspect, {} dead",
            status.stages.len(),
            count(Alive),
            count(Suspect),
            count(Dead)
        );
        for (id, l) in &status.stages {
            if *l != Alive {
                println!("  {id:>6}  {l:?}");
            }
        }
        Ok(())
    })
}

pub fn cluster_init(
    dir: &Path,
    coordinators: u64,
    base_port: u16,
    spec: Option<&Path>,
) -> Result<()> {
    if !(1..=9).contains(&coordinators) {
        bail!("--coordinators must be between 1 and 9 (3 or 5 for fault tolerance)");
    }
    if base_port as u64 + coordinators > 65_536 || base_port == 0 {
        bail!("--base-port {base_port} leaves no room for {coordinators} ports");
    }
    if dir.join("cluster.toml").exists() {
        bail!("{} already holds a cluster.toml", dir.display());
    }
    let path = ClusterFile::init_local(dir, coordinators, base_port, spec)?;
    println!(
        "wrote {} (and certs/); start each coordinator with",
        path.display()
    );
    for i in 1..=coordinators {
        println!("  factoryos coord --config {} --id {i}", path.display());
    }
    Ok(())
}
