//! `factoryos spec check` and `factoryos flow`.

use anyhow::{bail, Result};
use factoryos_coord::solver::{solve, SolverConfig};
use factoryos_coord::{render, spec};
use factoryos_wire::ids::parse_id_list;
use std::collections::BTreeSet;
use std::path::Path;

pub fn check(file: &Path) -> Result<()> {
    match spec::load(file) {
        Ok(chain) => {
            let raw: Vec<&str> = chain.raw_types().iter().map(|t| t.as_str()).collect();
            println!(
                "{}: ok: {} types, {} stages, final type `{}`, raw materials: {}",
                file.display(),
                chain.spec.types.len(),
                chain.stages.len(),
                chain.spec.final_type,
                raw.join(", ")
            );
            Ok(())
        }
        Err(errors) => {
            eprintln!("{errors}");
            bail!("{} problem(s) in {}", errors.errors.len(), file.display())
        }
    }
}

pub fn flow(file: &Path, dead: Option<&str>, dot: bool, max_suppliers: usize) -> Result<()> {
    let chain = match spec::load(file) {
        Ok(chain) => chain,
        Err(errors) => {
            eprintln!("{errors}");
            bail!(
                "{} is not a valid spec (see `factoryos spec check`)",
                file.display()
            )
        }
    };
    let dead: BTreeSet<_> = match dead {
        Some(list) => parse_id_list(list)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .collect(),
        None => BTreeSet::new(),
    };
    for id in &dead {
        if !chain.stages.iter().any(|s| s.id == *id) {
            bail!(
                "--dead names stage {id}, which {} does not declare",
                file.display()
            );
        }
    }
    let stages = chain.stage_states(&dead);
    let config = SolverConfig { max_suppliers };
    let plan = solve(&chain.spec, &stages, &[], &BTreeSet::new(), &config)?;
    if dot {
        print!("{}", render::dot(&stages, &plan));
    } else {
        print!("{}", render::table(&stages, &plan));
    }
    Ok(())
}
