//! `factoryos run`: the main job.

use anyhow::{bail, Result};
use factoryos_jepsen::experiment::{run, Preset, RunConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

pub struct RunArgs {
    pub preset: Preset,
    pub spec: Option<PathBuf>,
    pub num_types: Option<usize>,
    pub nodes_per_type: Option<usize>,
    pub complexity: factoryos_coord::generate::Complexity,
    pub seed: u64,
    pub replicate_ends: bool,
    pub duration_s: u64,
    pub cycle_ms: u64,
    pub failure_rate: f64,
    pub recover_rate: f64,
    pub update_dep_rate: f64,
    pub leader_can_fail: bool,
    pub file_lock: bool,
    pub coordinators: u64,
    pub out: Option<PathBuf>,
}

pub fn main(args: RunArgs) -> Result<()> {
    if args.update_dep_rate > 0.0 {
        bail!(
            "--update-dep-rate is not supported yet: running stages keep the recipe they started \
             with, so a recipe update would change the flow but not what stages consume"
        );
    }
    for (name, v) in [
        ("--failure-rate", args.failure_rate),
        ("--recover-rate", args.recover_rate),
    ] {
        if !(0.0..=600.0).contains(&v) || v.is_nan() {
            bail!("{name} must be between 0 and 600 per minute, got {v}");
        }
    }
    let out = args.out.unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("runs").join(format!("run-{stamp}"))
    });
    if out.join("cluster").exists() {
        bail!(
            "{} already holds a run; choose another --out",
            out.display()
        );
    }
    let config = RunConfig {
        preset: args.preset,
        spec: args.spec,
        num_types: args.num_types,
        nodes_per_type: args.nodes_per_type,
        complexity: args.complexity,
        seed: args.seed,
        replicate_ends: args.replicate_ends,
        duration: Duration::from_secs(args.duration_s.max(1)),
        cycle: Duration::from_millis(args.cycle_ms.max(1)),
        failure_rate: args.failure_rate,
        recover_rate: args.recover_rate,
        leader_can_fail: args.leader_can_fail,
        file_lock: args.file_lock,
        coordinators: args.coordinators,
        out: out.clone(),
        binary: std::env::current_exe()?,
    };
    let chain = factoryos_jepsen::experiment::chain(&config)?;
    eprintln!(
        "starting {} coordinators and {} stages ({} types) in {}",
        config.coordinators,
        chain.stages.len(),
        chain.spec.types.len(),
        out.display()
    );
    let bar = ProgressBar::new(config.duration.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = stop_tx.send(true);
            }
        });
        run(
            &config,
            |p| {
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
            },
            stop_rx,
        )
        .await
    });
    bar.finish_and_clear();
    let report = report?;
    println!("{}", report.table);
    println!("{}", report.summary.render());
    println!(
        "\nfiles in {}: metrics.csv, summary.json, final_products.png, cycle_outcomes.png; cluster and logs in cluster/",
        report.out.display()
    );
    for note in &report.plot_notes {
        eprintln!("plot skipped: {note}");
    }
    if report.summary.lots_lost > 0
        || report.summary.lots_duplicated > 0
        || report.summary.lots_miscounted > 0
    {
        bail!("the lot invariant does not hold (see the audit figures above)");
    }
    Ok(())
}
