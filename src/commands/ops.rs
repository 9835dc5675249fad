//! The operator's changes of a running chain: `factoryos recipe set` and
//! `factoryos stages add|remove`.

use super::coord::with_client;
use anyhow::{bail, Context, Result};
use factoryos_coord::cluster::ClusterFile;
use factoryos_wire::model::{Recipe, StageDescriptor};
use factoryos_wire::{ClusterCa, ItemType, NodeId, NodeIdentity};
use std::collections::BTreeMap;
use std::path::Path;

/// Parses `name=units` (one input of a recipe).
pub fn parse_input(s: &str) -> Result<(ItemType, u32), String> {
    let (name, units) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: write an input as TYPE=UNITS, e.g. wood=3"))?;
    let units: u32 = units
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: UNITS must be a whole number"))?;
    if name.trim().is_empty() || units == 0 {
        return Err(format!("`{s}`: needs a type name and at least 1 unit"));
    }
    Ok((ItemType::from(name.trim()), units))
}

pub fn recipe_set(
    config: &Path,
    item: &str,
    inputs: &[(ItemType, u32)],
    yield_units: u32,
) -> Result<()> {
    if yield_units == 0 {
        bail!("--yield must be at least 1");
    }
    let mut map = BTreeMap::new();
    for (name, units) in inputs {
        if map.insert(name.clone(), *units).is_some() {
            bail!("input `{name}` is given twice");
        }
    }
    let cluster = ClusterFile::load(config)?;
    let recipe = Recipe {
        inputs: map,
        yield_units,
        version: 0,
    };
    let item = ItemType::from(item);
    with_client(&cluster, |client| async move {
        let index = client
            .update_recipe(item.clone(), recipe)
            .await
            .with_context(|| format!("updating the recipe of `{item}`"))?;
        println!(
            "recipe of `{item}` committed at log index {index}; its stages adopt it with the next flow"
        );
        Ok(())
    })
}

pub fn stages_add(config: &Path, id: u64) -> Result<()> {
    let cluster = ClusterFile::load(config)?;
    let id = NodeId(id);
    let chain = cluster
        .chain()?
        .context("the cluster file names no spec: a stage's type is declared there")?;
    let Some(decl) = chain.stages.iter().find(|s| s.id == id) else {
        bail!(
            "declare the stage in the spec file first ({}):\n\n[[stages]]\nid = {}\ntype = \"...\"",
            cluster
                .spec
                .as_ref()
                .map_or("spec.toml".into(), |p| p.display().to_string()),
            id.0
        );
    };
    let (cert, _) = NodeIdentity::file_names(id);
    if !cluster.certs.join(&cert).exists() {
        ClusterCa::load(&cluster.certs)
            .context(
                "issuing the stage's certificate needs the CA key (ca.key) in the certs directory",
            )?
            .issue(id)?
            .save(&cluster.certs)?;
        println!("issued {}", cluster.certs.join(cert).display());
    }
    let desc = StageDescriptor {
        id,
        item: decl.item.clone(),
        // Its real address arrives when it registers.
        addr: decl
            .addr
            .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        recipe_version: chain.spec.recipe(&decl.item).map_or(0, |r| r.version),
        capacity: decl.capacity,
    };
    with_client(&cluster, |client| async move {
        let index = client.add_stage(desc).await?;
        println!(
            "stage {id} declared at log index {index}; start it with\n  factoryos stage --config {} --id {}",
            config.display(),
            id.0
        );
        Ok(())
    })
}

pub fn stages_remove(config: &Path, id: u64) -> Result<()> {
    let cluster = ClusterFile::load(config)?;
    with_client(&cluster, |client| async move {
        let index = client.remove_stage(NodeId(id)).await?;
        println!("stage n{id} removed for good at log index {index} (its id is never reused)");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_parse_or_say_what_is_wrong() {
        assert_eq!(parse_input("wood=3"), Ok(("wood".into(), 3)));
        assert_eq!(parse_input(" glass = 1"), Ok(("glass".into(), 1)));
        for bad in ["wood", "wood=", "wood=x", "=3", "wood=0", "wood=-1"] {
            assert!(parse_input(bad).is_err(), "{bad}");
        }
    }
}
