//! `factoryos spec check` and `factoryos flow`.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use factoryos_coord::solver::{solve, SolverConfig};
use factoryos_coord::{render, spec};
use factoryos_wire::ids::parse_id_list;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum SpecCommand {
    /// Validate FILE and explain every problem with its line, column and a fix hint.
    Check {
        /// The spec file (TOML).
        file: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct FlowArgs {
    /// The spec file (TOML; see examples/window.toml).
    file: PathBuf,
    /// Stages to treat as dead, e.g. `3` or `3,4` or `1-2`.
    #[arg(long, value_name = "IDS")]
    dead: Option<String>,
    /// Print Graphviz DOT instead of a table (render with `dot -Tpng`).
    #[arg(long)]
    dot: bool,
    /// Most suppliers of one input a consumer is linked to.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    max_suppliers: u16,
}

pub fn spec_main(cmd: SpecCommand) -> Result<()> {
    match cmd {
        SpecCommand::Check { file } => check(&file),
    }
}

pub fn flow_main(args: FlowArgs) -> Result<()> {
    flow(
        &args.file,
        args.dead.as_deref(),
        args.dot,
        args.max_suppliers as usize,
    )
}

fn check(file: &Path) -> Result<()> {
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

fn flow(file: &Path, dead: Option<&str>, dot: bool, max_suppliers: usize) -> Result<()> {
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
