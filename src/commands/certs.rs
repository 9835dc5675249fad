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
    /// Issue node certificates (node-N.pem, node-N.key), or one host
    /// certificate for a process running several stages (host-N.pem,
    /// host-N.key, N its first id), signed by the CA in DIR.
    Issue {
        /// Directory holding ca.pem and ca.key; the new files are written there.
        #[arg(long)]
        dir: PathBuf,
        /// The node id(s), one certificate each: one id, a list, or ranges,
        /// e.g. `7`, `1,2,3` or `1-5,9`.
        #[arg(
            long = "node",
            value_name = "IDS",
            required_unless_present = "host",
            conflicts_with = "host"
        )]
        nodes: Vec<String>,
        /// The stages of one host process, one certificate for them all:
        /// `factoryos stage --ids` with the same ids presents it.
        #[arg(long, value_name = "IDS")]
        host: Option<String>,
    },
}

pub fn main(cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::Init { dir, name, force } => init(&dir, &name, force),
        CertsCommand::Issue { dir, nodes, host } => match host {
            Some(list) => issue_host(&dir, &list),
            None => issue(&dir, &nodes),
        },
    }
}

fn init(dir: &Path, name: &str, force: bool) -> Result<()> {
    let ca = ClusterCa::generate(name)?;
    ca.save(dir, force)?;
    println!("cluster CA written to {}", dir.join("ca.pem").display());
    Ok(())
}

fn load_ca(dir: &Path) -> Result<ClusterCa> {
    ClusterCa::load(dir).with_context(|| {
        format!(
            "no usable CA in {} (run `factoryos certs init --dir {}` first)",
            dir.display(),
            dir.display()
        )
    })
}

fn issue_host(dir: &Path, list: &str) -> Result<()> {
    let ca = load_ca(dir)?;
    let ids = parse_id_list(list).map_err(anyhow::Error::msg)?;
    let host = ca.issue_host(&ids)?;
    host.save(dir)?;
    let (name, _) = NodeIdentity::host_file_names(host.ids()).context("no ids given")?;
    println!(
        "issued a host certificate for {} stage(s) in {} ({name})",
        host.ids().len(),
        dir.display()
    );
    Ok(())
}

fn issue(dir: &Path, nodes: &[String]) -> Result<()> {
    let ca = load_ca(dir)?;
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
