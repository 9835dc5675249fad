//! `factoryos certs init|issue`.

use anyhow::{Context, Result};
use factoryos_wire::ids::parse_id_list;
use factoryos_wire::{ClusterCa, NodeId, NodeIdentity};
use std::path::Path;

pub fn init(dir: &Path, name: &str, force: bool) -> Result<()> {
    let ca = ClusterCa::generate(name)?;
    ca.save(dir, force)?;
    println!("cluster CA written to {}", dir.join("ca.pem").display());
    Ok(())
}

pub fn issue(dir: &Path, nodes: &[String]) -> Result<()> {
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
