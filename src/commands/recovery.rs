//! `factoryos bench recovery`: the whole chain's recovery from a fault,
//! Raft coordination against the file lock, trials interleaved. The work
//! lives in `factoryos_jepsen::recovery`; this file parses, shows progress,
//! prints and writes the files.

use super::bench::{bar, modes_parser, Modes};
use super::jepsen::parse_duration;
use anyhow::{bail, Result};
use clap::Args;
use factoryos_jepsen::recovery::{report, RecoveryBench, RecoveryFault};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct RecoveryArgs {
    /// Trials per fault and mode (each a fresh cluster of the window chain).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..))]
    trials: u16,
    /// Faults, comma-separated, or all: kill-stage (SIGKILL of a supplier
    /// with an alternative), kill-leader (SIGKILL of the coordination leader
    /// and of a supplier), pause-leader (SIGSTOP of the leader for --hold,
    /// a supplier killed), restart-stage (SIGKILL of a supplier and its
    /// immediate restart), partition-leader (the leader cut off from every
    /// host for --hold on network-namespace hosts, a supplier killed; needs
    /// root and `ip netns`, left out of `all` with a note without them).
    #[arg(long, default_value = "all", value_parser = parse_faults)]
    fault: Faults,
    /// Which configuration store to measure: raft, file-lock, or both,
    /// interleaved trial by trial.
    #[arg(long, default_value = "both", value_parser = modes_parser())]
    coord_mode: Modes,
    /// Time between manufacture cycles, in ms.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(5..))]
    cycle_ms: u64,
    /// Production before the fault (e.g. 3s).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// How long a pause or a partition lasts before it is healed (e.g. 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    hold: Duration,
    /// How long a trial waits for production to resume through the new route.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    deadline: Duration,
    #[command(flatten)]
    timeouts: super::TimeoutArgs,
    /// Where recovery.csv, recovery.json and recovery-cdf.png go; default
    /// runs/recovery-<time>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the results as one JSON document instead of the tables.
    #[arg(long)]
    json: bool,
    /// Print the tables of an earlier run's DIR/recovery.json and draw its
    /// DIR/recovery-cdf.png again, without running anything.
    #[arg(long, value_name = "DIR")]
    summarize: Option<PathBuf>,
    /// Keep every trial's cluster directory (logs, event logs, WALs) in
    /// OUT/trials/, not only a failed trial's.
    #[arg(long)]
    keep: bool,
}

/// The faults `--fault` names (a newtype: clap takes a bare `Vec` for a
/// repeated flag).
#[derive(Debug, Clone)]
struct Faults(Vec<RecoveryFault>);

fn parse_faults(s: &str) -> Result<Faults, String> {
    RecoveryFault::parse_list(s).map(Faults)
}

pub fn main(args: RecoveryArgs) -> Result<()> {
    if let Some(dir) = &args.summarize {
        return summarize(dir, args.json);
    }
    let timeouts = args.timeouts.timeouts()?;
    let mut faults = args.fault.0;
    if faults.iter().any(|f| f.needs_netns()) {
        if let Err(e) = factoryos_jepsen::hosts::netns::check_support() {
            if faults.len() < RecoveryFault::ALL.len() {
                bail!("partition-leader needs network-namespace hosts: {e}");
            }
            eprintln!("note: partition-leader left out: {e}");
            faults.retain(|f| !f.needs_netns());
        }
    }
    let bench = RecoveryBench {
        trials: args.trials as usize,
        faults,
        modes: args.coord_mode.0,
        cycle: Duration::from_millis(args.cycle_ms),
        warmup: args.warmup,
        hold: args.hold,
        deadline: args.deadline,
        timeouts,
        keep: args.keep,
    };
    let out = args.out.unwrap_or_else(|| super::default_out("recovery"));
    if out.join("recovery.csv").exists() {
        bail!(
            "{} already holds a recovery run; choose another --out",
            out.display()
        );
    }
    std::fs::create_dir_all(&out)?;
    let scratch = tempfile::Builder::new()
        .prefix("factoryos-recovery-")
        .tempdir()?;
    let trials_dir = if args.keep {
        out.join("trials")
    } else {
        scratch.path().to_owned()
    };
    let total = bench.trials * bench.faults.len() * bench.modes.len();
    let bar = bar(total as u64);
    bar.set_message("trials");
    let runtime = tokio::runtime::Runtime::new()?;
    let binary = std::env::current_exe()?;
    let result = runtime.block_on(factoryos_jepsen::recovery::run(
        &bench,
        &trials_dir,
        &binary,
        |r| {
            bar.set_message(format!("{} {}", r.fault, r.mode.name()));
            bar.inc(1);
        },
    ));
    bar.finish_and_clear();
    let records = match result {
        Ok(records) => records,
        Err(e) => {
            // The failed trial's directory is named in the error.
            let _ = scratch.keep();
            bail!("{e}");
        }
    };
    let json = report::json(&bench, &records);
    std::fs::write(out.join("recovery.csv"), report::csv(&records))?;
    std::fs::write(
        out.join("recovery.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    let png = out.join("recovery-cdf.png");
    let plotted = report::cdf_png(&png, &records);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("{}", report::settings(&bench));
        print!("{}", report::table(&records));
    }
    match plotted {
        Ok(()) => eprintln!(
            "wrote {}/recovery.csv, recovery.json, recovery-cdf.png",
            out.display()
        ),
        Err(e) => eprintln!(
            "wrote {}/recovery.csv, recovery.json; no plot: {e}",
            out.display()
        ),
    }
    Ok(())
}

/// `--summarize DIR`: the tables and the plot of a finished run, again.
fn summarize(dir: &std::path::Path, json: bool) -> Result<()> {
    let path = dir.join("recovery.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (not a bench recovery --out directory?)",
            path.display()
        )
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let records =
        report::records_from_json(&v).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if json {
        println!("{text}");
    } else {
        println!("settings: {}", v["settings"]);
        print!("{}", report::table(&records));
    }
    let png = dir.join("recovery-cdf.png");
    match report::cdf_png(&png, &records) {
        Ok(()) => eprintln!("drew {}", png.display()),
        Err(e) => eprintln!("no plot: {e}"),
    }
    Ok(())
}
