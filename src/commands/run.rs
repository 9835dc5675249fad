//! `factoryos run`: the main job.

use anyhow::{bail, Result};
use clap::Args;
use factoryos_jepsen::experiment::{run, Progress, RunConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub chain: super::ChainArgs,
    /// How long to run, in seconds (counted once every stage is registered).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Time between manufacture cycles, in ms.
    #[arg(long, default_value_t = 100)]
    pub cycle: u64,
    #[command(flatten)]
    pub ops: super::RateArgs,
    /// Let crashes pick the coordinators' leader too.
    #[arg(long)]
    pub leader_can_fail: bool,
    /// Configuration store of the coordinators.
    #[arg(long, default_value = "raft", value_parser = super::mode_parser())]
    pub coord_mode: factoryos_coord::config::CoordMode,
    /// Raft heartbeat interval of the coordinators, in ms; elections after
    /// 4 to 6 of them. Default: 50 ms (elections after 150–250 ms) up to
    /// 100 stages, 150 ms above (a thousand stages on one machine delay
    /// the coordinators' appends past 50 ms, and openraft times every
    /// append out at one heartbeat interval). Longer is steadier and
    /// fails over more slowly.
    #[arg(long, value_parser = clap::value_parser!(u64).range(5..=5000))]
    pub raft_heartbeat_ms: Option<u64>,
    /// Number of coordinators (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub coordinators: u64,
    /// Run directory (cluster, logs, metrics.csv, summary.json); default runs/run-<time>.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The run's configuration, with the arguments checked.
fn config(args: RunArgs) -> Result<RunConfig> {
    let rates = args.ops.rates(&[])?;
    let out = args.out.unwrap_or_else(|| super::default_out("run"));
    if out.join("cluster").exists() {
        bail!(
            "{} already holds a run; choose another --out",
            out.display()
        );
    }
    Ok(RunConfig {
        chain: args.chain.choice(),
        hosts: args.chain.hosts.map(|h| h as usize),
        seed: args.chain.seed,
        duration: Duration::from_secs(args.duration.max(1)),
        cycle: Duration::from_millis(args.cycle.max(1)),
        failure_rate: rates.failure,
        recover_rate: rates.recover,
        update_dep_rate: rates.update_dep,
        add_stage_rate: rates.add_stage,
        allow_outages: args.ops.allow_outages,
        crash_scope: args.ops.crash,
        leader_can_fail: args.leader_can_fail,
        mode: args.coord_mode,
        coordinators: args.coordinators,
        raft_heartbeat_ms: args.raft_heartbeat_ms,
        out,
        binary: std::env::current_exe()?,
    })
}

/// The progress bar: seconds of the run, live figures, each op printed above it.
fn progress_bar(duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn show(bar: &ProgressBar, p: &Progress) {
    for (at, what) in &p.new_ops {
        bar.println(format!("{at:>7.1}s  {what}"));
    }
    bar.set_position(p.elapsed.as_secs());
    bar.set_message(format!(
        "final {}  ok-cycles {:.0}%  live {} dead {}  leader {}{}",
        p.final_products,
        p.successful_ratio * 100.0,
        p.live,
        p.dead,
        p.leader.map_or("-".into(), |l| l.to_string()),
        p.last_op
            .as_ref()
            .map_or(String::new(), |o| format!("  last: {o}"))
    ));
}

pub fn main(args: RunArgs) -> Result<()> {
    let config = config(args)?;
    let chain = factoryos_jepsen::experiment::chain(&config)?;
    eprintln!(
        "starting {} coordinators and {} stages ({} types) in {}",
        config.coordinators,
        chain.stages.len(),
        chain.spec.types.len(),
        config.out.display()
    );
    let bar = progress_bar(config.duration);
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = stop_tx.send(true);
            }
        });
        run(&config, |p| show(&bar, p), stop_rx).await
    });
    bar.finish_and_clear();
    let report = report?;
    println!("{}", report.table);
    println!("{}", report.summary.render());
    println!(
        "\nfiles in {}: metrics.csv, summary.json, ops.log, final_products.png, cycle_outcomes.png; cluster and logs in cluster/",
        report.out.display()
    );
    for note in &report.plot_notes {
        eprintln!("plot skipped: {note}");
    }
    let s = &report.summary;
    if s.lots_lost > 0 || s.lots_duplicated > 0 || s.lots_miscounted > 0 {
        bail!("the lot invariant does not hold (see the audit figures above)");
    }
    Ok(())
}
