//! The operator's changes of a running chain: `factoryos recipe set` and
//! `factoryos stages add|remove`.

use super::{with_client, OperatorConfig};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use factoryos_coord::operator::declare_stage;
use factoryos_wire::model::Recipe;
use factoryos_wire::{ItemType, NodeId};
use std::collections::BTreeMap;

#[derive(Subcommand, Debug)]
pub enum RecipeCommand {
    /// Replace ITEM's recipe (its version is bumped). Refused if an input is
    /// not a type of the spec or the chain would have a cycle.
    Set {
        #[command(flatten)]
        cluster: OperatorConfig,
        /// The type whose recipe changes.
        #[arg(long)]
        item: String,
        /// An input and its units per cycle, e.g. `--input wood=3`; repeat for
        /// several; none makes ITEM a raw material.
        #[arg(long = "input", value_name = "TYPE=UNITS", value_parser = parse_input)]
        inputs: Vec<(ItemType, u32)>,
        /// Units in each lot made.
        #[arg(long = "yield", value_name = "UNITS")]
        yield_units: u32,
        /// Only if the recipe is still at version N (compare-and-set); else
        /// refused with its current version (see `recipe show`).
        #[arg(long, value_name = "N")]
        if_version: Option<u32>,
    },
    /// Print ITEM's recipe and its version, as the cluster holds it now (a
    /// linearizable read).
    Show {
        #[command(flatten)]
        cluster: OperatorConfig,
        /// The type whose recipe to print.
        #[arg(long)]
        item: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum StagesCommand {
    /// Declare stage ID (already in the spec file's [[stages]]) to the
    /// running cluster, issuing its certificate if it has none; then start
    /// it with `factoryos stage --id ID`.
    Add {
        #[command(flatten)]
        cluster: OperatorConfig,
        /// The new stage's id (never one used before).
        #[arg(long)]
        id: u64,
    },
    /// Retire stage ID for good (its id can never be used again).
    Remove {
        #[command(flatten)]
        cluster: OperatorConfig,
        /// The stage to remove.
        #[arg(long)]
        id: u64,
    },
}

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

pub fn recipe(cmd: RecipeCommand) -> Result<()> {
    let (cluster, item, inputs, yield_units, if_version) = match cmd {
        RecipeCommand::Show { cluster, item } => return recipe_show(cluster, item),
        RecipeCommand::Set {
            cluster,
            item,
            inputs,
            yield_units,
            if_version,
        } => (cluster, item, inputs, yield_units, if_version),
    };
    if yield_units == 0 {
        bail!("--yield must be at least 1");
    }
    let mut map = BTreeMap::new();
    for (name, units) in inputs {
        if map.insert(name.clone(), units).is_some() {
            bail!("input `{name}` is given twice");
        }
    }
    let recipe = Recipe {
        inputs: map,
        yield_units,
        version: 0,
    };
    let item = ItemType::from(item.as_str());
    with_client(&cluster.load()?, |client| async move {
        let index = client
            .update_recipe(item.clone(), recipe, if_version)
            .await
            .with_context(|| format!("updating the recipe of `{item}`"))?;
        println!(
            "recipe of `{item}` committed at log index {index}; its stages adopt it with the next flow"
        );
        Ok(())
    })
}

fn recipe_show(cluster: OperatorConfig, item: String) -> Result<()> {
    let item = ItemType::from(item.as_str());
    with_client(&cluster.load()?, |client| async move {
        let r = client.read_recipe(item.clone(), true).await?;
        let inputs: Vec<String> = r.inputs.iter().map(|(i, u)| format!("{i}={u}")).collect();
        println!(
            "{item} v{}: {} -> {} units a lot",
            r.version,
            if inputs.is_empty() {
                "raw material".to_string()
            } else {
                inputs.join(" ")
            },
            r.yield_units
        );
        Ok(())
    })
}

pub fn stages(cmd: StagesCommand) -> Result<()> {
    match cmd {
        StagesCommand::Add { cluster, id } => stages_add(cluster, NodeId(id)),
        StagesCommand::Remove { cluster, id } => {
            with_client(&cluster.load()?, |client| async move {
                let index = client.remove_stage(NodeId(id)).await?;
                println!(
                    "stage n{id} removed for good at log index {index} (its id is never reused)"
                );
                Ok(())
            })
        }
    }
}

fn stages_add(config: OperatorConfig, id: NodeId) -> Result<()> {
    let cluster = config.load()?;
    let chain = cluster
        .chain()?
        .context("the cluster file names no spec: a stage's type is declared there")?;
    let Some(decl) = chain.stages.iter().find(|s| s.id == id).cloned() else {
        bail!(
            "declare the stage in the spec file first ({}):\n\n[[stages]]\nid = {}\ntype = \"...\"",
            cluster
                .spec
                .as_ref()
                .map_or("spec.toml".into(), |p| p.display().to_string()),
            id.0
        );
    };
    let file = cluster.clone();
    with_client(&cluster, |client| async move {
        let declared = declare_stage(&file, &client, &decl).await?;
        if let Some(cert) = &declared.issued {
            println!("issued {}", cert.display());
        }
        println!(
            "stage {id} declared at log index {}; start it with\n  factoryos stage --config {} --id {}",
            declared.index,
            config.config.display(),
            id.0
        );
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
