//! `factoryos sim`: the chain in deterministic simulation.

use anyhow::{bail, Context, Result};
use clap::Args;
use factoryos_jepsen::sim::{run, scale, NetConfig, SimConfig, SimProgress, SimReport};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct SimArgs {
    #[command(flatten)]
    pub chain: super::ChainArgs,
    /// Stages in all, with --types: a generated chain of that many types,
    /// stages/types of each (raw and final types included).
    #[arg(long, requires = "types", conflicts_with_all = ["spec", "num_types", "nodes_per_type"])]
    pub stages: Option<usize>,
    /// Item types of a generated chain of --stages (or --scale) stages.
    #[arg(long)]
    pub types: Option<usize>,
    /// A sweep: one simulation per stage count (with --types), then a table,
    /// a CSV and a PNG of how the figures grow (scale.md, scale.csv,
    /// scale.png in --out).
    #[arg(long, value_delimiter = ',', requires = "types", conflicts_with_all = ["stages", "spec"])]
    pub scale: Vec<usize>,
    /// Simulated seconds of each sweep run, in order (default --duration for all).
    #[arg(long, value_delimiter = ',', requires = "scale")]
    pub scale_durations: Vec<u64>,
    /// Simulated seconds to run (then the stages drain and every WAL is audited).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Time between manufacture cycles, in ms.
    #[arg(long, default_value_t = 100)]
    pub cycle: u64,
    #[command(flatten)]
    pub ops: super::RateArgs,
    /// Restart every crashed host at the end, before the audit (then no lot
    /// may stay in transit).
    #[arg(long)]
    pub final_recovery: bool,
    /// Least one-way network latency, in microseconds.
    #[arg(long, default_value_t = 200)]
    pub latency_us: u64,
    /// Mean of the exponential extra latency, in microseconds (its tail reorders).
    #[arg(long, default_value_t = 100)]
    pub jitter_us: u64,
    /// Fraction of stage-to-stage messages lost, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Partitions per minute: a random running host is cut off from every
    /// other host and the coordinators.
    #[arg(long, default_value_t = 0.0)]
    pub partition_rate: f64,
    /// How long a partition lasts, in ms.
    #[arg(long, default_value_t = 5000)]
    pub partition_ms: u64,
    /// A command's time from proposal to applied (Raft's commit), in ms.
    #[arg(long, default_value_t = 3)]
    pub commit_ms: u64,
    /// The leader's time to solve a flow, in ns per edge of the flow (the
    /// simulated clock's model of the solver; its wall time is printed apart).
    #[arg(long, default_value_t = 300)]
    pub solve_ns_per_edge: u64,
    /// One stage WAL commit (with its fsync), in ms.
    #[arg(long, default_value_t = 2)]
    pub wal_ms: u64,
    /// Write summary.json here (the printed summary is the same).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The simulation's configuration, with the arguments checked.
fn config(args: &SimArgs, stages: Option<usize>, duration: u64) -> Result<SimConfig> {
    let rates = args
        .ops
        .rates(&[("--partition-rate", args.partition_rate)])?;
    if !(0.0..=1.0).contains(&args.loss) || args.loss.is_nan() {
        bail!("--loss must be between 0 and 1, got {}", args.loss);
    }
    let mut choice = args.chain.choice();
    if args.types.is_some() && stages.is_none() {
        bail!("--types needs --stages (or --scale)");
    }
    if let (Some(stages), Some(types)) = (stages, args.types) {
        if types < 2 || stages < types {
            bail!("--stages {stages} --types {types}: at least 2 types and a stage per type");
        }
        choice.num_types = Some(types);
        choice.nodes_per_type = Some(stages / types);
        choice.replicate_ends = true;
    }
    let chain = choice.chain()?;
    let mut cfg = SimConfig::new(chain, args.chain.seed, Duration::from_secs(duration.max(1)));
    cfg.name = choice.name();
    cfg.hosts = args.chain.hosts.map(|h| h as usize);
    cfg.cycle = Duration::from_millis(args.cycle.max(1));
    cfg.rates = rates;
    cfg.allow_outages = args.ops.allow_outages;
    cfg.crash_scope = args.ops.crash;
    cfg.final_recovery = args.final_recovery;
    cfg.net = NetConfig {
        latency: Duration::from_micros(args.latency_us),
        jitter: Duration::from_micros(args.jitter_us),
        loss: args.loss,
    };
    cfg.partition_rate = args.partition_rate;
    cfg.partition_hold = Duration::from_millis(args.partition_ms);
    cfg.commit_latency = Duration::from_millis(args.commit_ms);
    cfg.wal_latency = Duration::from_millis(args.wal_ms);
    cfg.solve_per_edge = Duration::from_nanos(args.solve_ns_per_edge);
    Ok(cfg)
}

fn show(bar: &ProgressBar, p: SimProgress) {
    bar.set_position(p.simulated.as_secs());
    bar.set_message(format!("final {}  events {}", p.final_products, p.events));
}

pub fn main(args: SimArgs) -> Result<()> {
    if !args.scale.is_empty() {
        return sweep(&args);
    }
    let cfg = config(&args, args.stages, args.duration)?;
    let report = simulate(cfg);
    println!("{}", report.render());
    println!("{}", report.render_wall());
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let json = serde_json::to_vec_pretty(&report)?;
        let path = out.join("summary.json");
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    let s = &report.summary;
    if s.lots_lost > 0 || s.lots_duplicated > 0 || s.lots_miscounted > 0 {
        bail!("the lot invariant does not hold (see the audit figures above)");
    }
    Ok(())
}

/// One simulation with a progress bar.
fn simulate(cfg: SimConfig) -> SimReport {
    eprintln!(
        "simulating {} stages ({} types), seed {}, {} s",
        cfg.chain.stages.len(),
        cfg.chain.spec.types.len(),
        cfg.seed,
        cfg.duration.as_secs()
    );
    let bar = ProgressBar::new(cfg.duration.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} simulated s {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let report = run(cfg, |p| show(&bar, p));
    bar.finish_and_clear();
    report
}

/// `--scale`: one simulation per size, then the table, CSV and PNG.
fn sweep(args: &SimArgs) -> Result<()> {
    if !args.scale_durations.is_empty() && args.scale_durations.len() != args.scale.len() {
        bail!(
            "--scale-durations names {} durations for {} sizes",
            args.scale_durations.len(),
            args.scale.len()
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| super::default_out("sim-scale"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut rows = Vec::new();
    for (i, stages) in args.scale.iter().enumerate() {
        let duration = args
            .scale_durations
            .get(i)
            .copied()
            .unwrap_or(args.duration);
        let report = simulate(config(args, Some(*stages), duration)?);
        println!("{}\n{}\n", report.render(), report.render_wall());
        rows.push(scale::ScaleRow::of(&report));
    }
    let table = scale::render_table(&rows);
    println!("{table}");
    std::fs::write(out.join("scale.md"), &table)?;
    std::fs::write(out.join("scale.csv"), scale::render_csv(&rows))?;
    match scale::plot(&out.join("scale.png"), &rows) {
        Ok(()) => println!("files in {}: scale.md, scale.csv, scale.png", out.display()),
        Err(e) => eprintln!("plot skipped: {e}"),
    }
    if rows.iter().any(|r| r.lots_lost_or_duplicated > 0) {
        bail!("the lot invariant does not hold in a run of the sweep (see above)");
    }
    Ok(())
}
