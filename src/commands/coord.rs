//! `factoryos coord`, `coordinators add|remove`, `status` and `cluster init`.

use super::{shutdown_signal, with_client, OperatorConfig};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use factoryos_coord::cluster::{ClusterFile, LocalInit};
use factoryos_coord::config::{CoordMode, RaftTimeouts};
use factoryos_coord::node::{Coordinator, CoordinatorOptions};
use factoryos_wire::model::{ClusterStatus, Liveness};
use factoryos_wire::NodeId;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct CoordArgs {
    /// The cluster file (see docs/operations.md); `factoryos cluster init` writes one.
    #[arg(long)]
    config: PathBuf,
    /// This coordinator's id (one of the file's [[coordinators]]).
    #[arg(long)]
    id: u64,
    /// Raft heartbeat interval in ms (overrides the file; default 50).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Shortest election timeout in ms (overrides the file; default 150).
    #[arg(long)]
    election_min_ms: Option<u64>,
    /// Longest election timeout in ms (overrides the file; default 300).
    #[arg(long)]
    election_max_ms: Option<u64>,
    /// Configuration store (overrides the file's `mode`): `raft` (default) or
    /// `file-lock` (the original system's shared directory and flock, kept for
    /// comparison; every coordinator must see the file's `shared` directory,
    /// by default data/shared).
    #[arg(long, value_parser = super::mode_parser())]
    coord_mode: Option<CoordMode>,
    /// Join a running group (then run `factoryos coordinators add`)
    /// instead of forming a new one on first start.
    #[arg(long)]
    join: bool,
}

#[derive(Subcommand, Debug)]
pub enum CoordinatorsCommand {
    /// Add coordinator ID at ADDR (start it first with `factoryos coord --join`).
    Add {
        #[command(flatten)]
        cluster: OperatorConfig,
        /// The new coordinator's id (never one used before).
        #[arg(long)]
        id: u64,
        /// Its QUIC address, e.g. 127.0.0.1:7104.
        #[arg(long)]
        addr: std::net::SocketAddr,
    },
    /// Remove coordinator ID for good (its id can never be used again).
    Remove {
        #[command(flatten)]
        cluster: OperatorConfig,
        /// The coordinator to remove.
        #[arg(long)]
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Write cluster.toml and all certificates for a local cluster into DIR.
    Init {
        /// The directory to create.
        #[arg(long)]
        dir: PathBuf,
        /// Number of coordinators (3 or 5 tolerate one or two failures).
        #[arg(long, default_value_t = 3)]
        coordinators: u64,
        /// Port of coordinator 1 on 127.0.0.1; the others follow.
        #[arg(long, default_value_t = 7101)]
        base_port: u16,
        /// A spec to install when the cluster first forms (copied into DIR).
        #[arg(long)]
        spec: Option<PathBuf>,
    },
}

/// The options `args` ask for: the file's, with the flags' overrides.
fn options(args: &CoordArgs) -> Result<CoordinatorOptions> {
    let mut cluster = ClusterFile::load(&args.config)?;
    if let Some(mode) = args.coord_mode {
        // Only the kind changes: a file-lock cluster's shared directory is
        // the file's, whoever picks the mode.
        cluster.mode = mode;
    }
    let mut opts = CoordinatorOptions::from_cluster(&cluster, NodeId(args.id))?;
    opts.join = args.join;
    opts.timeouts = timeouts(args, opts.timeouts)?;
    Ok(opts)
}

fn timeouts(args: &CoordArgs, mut t: RaftTimeouts) -> Result<RaftTimeouts> {
    if let Some(v) = args.heartbeat_ms {
        t.heartbeat_ms = v;
    }
    if let Some(v) = args.election_min_ms {
        t.election_min_ms = v;
    }
    if let Some(v) = args.election_max_ms {
        t.election_max_ms = v;
    }
    t.validate().map_err(anyhow::Error::msg)?;
    Ok(t)
}

pub fn coord(args: CoordArgs) -> Result<()> {
    let opts = options(&args)?;
    let id = args.id;
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

pub fn coordinators(cmd: CoordinatorsCommand) -> Result<()> {
    let (cluster, id, add) = match cmd {
        CoordinatorsCommand::Add { cluster, id, addr } => (cluster, id, Some(addr)),
        CoordinatorsCommand::Remove { cluster, id } => (cluster, id, None),
    };
    with_client(&cluster.load()?, |client| async move {
        let status = match add {
            Some(addr) => client.add_coordinator(NodeId(id), addr).await?,
            None => client.remove_coordinator(NodeId(id)).await?,
        };
        let members: Vec<String> = status.members.iter().map(|m| m.to_string()).collect();
        println!("coordinators now: {}", members.join(", "));
        Ok(())
    })
}

pub fn status(cluster: OperatorConfig) -> Result<()> {
    with_client(&cluster.load()?, |client| async move {
        print_status(&client.status().await?);
        Ok(())
    })
}

fn print_status(status: &ClusterStatus) {
    let leader = status
        .leader
        .map(|l| l.to_string())
        .unwrap_or_else(|| "none".into());
    let members: Vec<String> = status.members.iter().map(|m| m.to_string()).collect();
    println!("leader        {leader}");
    println!("term          {}", status.term);
    println!("members       {}", members.join(", "));
    println!("flow version  {}", status.flow_version);
    let count = |l: Liveness| status.stages.iter().filter(|(_, s)| *s == l).count();
    println!(
        "stages        {} registered: {} alive, {} suspect, {} dead",
        status.stages.len(),
        count(Liveness::Alive),
        count(Liveness::Suspect),
        count(Liveness::Dead)
    );
    for (id, l) in &status.stages {
        if *l != Liveness::Alive {
            println!("  {id:>6}  {l:?}");
        }
    }
}

pub fn cluster(cmd: ClusterCommand) -> Result<()> {
    let ClusterCommand::Init {
        dir,
        coordinators,
        base_port,
        spec,
    } = cmd;
    cluster_init(&dir, coordinators, base_port, spec.as_deref())
}

fn cluster_init(dir: &Path, coordinators: u64, base_port: u16, spec: Option<&Path>) -> Result<()> {
    if !(1..=9).contains(&coordinators) {
        bail!("--coordinators must be between 1 and 9 (3 or 5 for fault tolerance)");
    }
    if base_port as u64 + coordinators > 65_536 || base_port == 0 {
        bail!("--base-port {base_port} leaves no room for {coordinators} ports");
    }
    if dir.join("cluster.toml").exists() {
        bail!("{} already holds a cluster.toml", dir.display());
    }
    let path = LocalInit::new(coordinators, spec).write(dir, base_port)?;
    println!(
        "wrote {} (and certs/); start each coordinator with",
        path.display()
    );
    for i in 1..=coordinators {
        println!("  factoryos coord --config {} --id {i}", path.display());
    }
    Ok(())
}
