//! `factoryos certs init|issue`.

use anyhow::{Context, Result};
use clap::Subcommand;
use factoryos_wire::ids::parse_id_list;
use factoryos_wire::{ClusterCa, NodeId, NodeIdentity};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Create a cluster CA (ca.pem, ca.key) in DIR.
    Init {
        /// Directory for the CA files (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// A name for the cluster, written into the CA's subject.
        #[arg(long, default_value = "factoryos")]
        name: String,
        /// Replace an existing CA (certificates it issued stop being accepted).
        #[arg(long)]
        force: bool,
    },
    /// Issue node certificates (node-N.pem, node-N.key) signed by the CA in DIR.
    Issue {
        /// Directory holding ca.pem and ca.key; the node files are written there.
        #[arg(long)]
        dir: PathBuf,
        /// The node id(s): one id, a list, or ranges, e.g. `7`, `1,2,3` or `1-5,9`.
        #[arg(long = "node", value_name = "IDS", required = true)]
        nodes: Vec<String>,
    },
}

pub fn main(cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::Init { dir, name, force } => init(&dir, &name, force),
        CertsCommand::Issue { dir, nodes } => issue(&dir, &nodes),
    }
}

fn init(dir: &Path, name: &str, force: bool) -> Result<()> {
    let ca = ClusterCa::generate(name)?;
    ca.save(dir, force)?;
    println!("cluster CA written to {}", dir.join("ca.pem").display());
    Ok(())
}

fn issue(dir: &Path, nodes: &[String]) -> Result<()> {
    let ca = ClusterCa::load(dir).with_context(|| {
        format!(
            "no usable CA in {} (run `factoryos certs init --dir {}` first)",
            dir.display(),
            dir.display()
        )
    })?;
    let mut ids: Vec<NodeId> = Vec::new();
    for list in nodes {
        ids.extend(parse_id_list(list).map_err(anyhow::Error::msg)?);
    }
    ids.sort();
    ids.dedup();
    for id in &ids {
        ca.issue(*id)?.save(dir)?;
    }
    let (first, _) = NodeIdentity::file_names(ids[0]);
    println!(
        "issued {} node certificate(s) in {} ({}{})",
        ids.len(),
        dir.display(),
        first,
        if ids.len() > 1 { ", ..." } else { "" }
    );
    Ok(())
}
