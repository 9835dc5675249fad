//! `factoryos jepsen`: the partition-testing harness (see docs/jepsen.md).

use anyhow::{bail, Result};
use clap::Args;
use factoryos_coord::config::CoordMode;
use factoryos_jepsen::checker::Validity;
use factoryos_jepsen::experiment::Preset;
use factoryos_jepsen::harness::{self, matrix, JepsenConfig, Progress};
use factoryos_jepsen::nemesis::Nemesis;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct JepsenArgs {
    /// Nemeses, comma-separated (each fault is one of them, drawn at
    /// random): partition-halves, partition-leader-minority,
    /// partition-leader-majority, isolate-leader, majorities-ring,
    /// partition-one-way, isolate-stage-from-coordinators, loss, delay, kill,
    /// kill-quorum (a majority of the coordinators at once), pause,
    /// membership, recipe-update; or `all`.
    #[arg(long, default_value = "all", value_parser = |s: &str| Nemesis::parse_list(s).map(Nemeses))]
    nemesis: Nemeses,
    /// How long each run's workloads run under the nemesis: `60`, `30s`, `10m`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    time: Duration,
    /// Runs, one after the other (run i uses seed + i).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// The chain stages trade on: small (5 types x 2 stages), med, large (20 x 2), xl.
    #[arg(long, default_value = "small")]
    preset: Preset,
    /// Configuration store of the coordinators.
    #[arg(long, default_value = "raft", value_parser = super::mode_parser())]
    coord_mode: CoordMode,
    /// Seed of the chain and of the nemesis and client schedules.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Register clients of the config-store workload (0: none).
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// Registers the clients share.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    registers: u16,
    /// How long production may take to resume after the final heal, in seconds.
    #[arg(long, default_value_t = 30)]
    liveness_s: u64,
    /// Run directory (one run-N/ per run, and results.json); default runs/jepsen-<time>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run each named nemesis on its own (--runs runs of each, in
    /// OUT/<nemesis>/) and end with one table of them all (OUT/matrix.md).
    #[arg(long)]
    each: bool,
    /// Print the table of a directory of --each runs, and exit.
    #[arg(long, value_name = "DIR", conflicts_with = "each")]
    summarize: Option<PathBuf>,
    /// Remove the namespaces and routes a killed run left behind, and exit.
    #[arg(long)]
    cleanup: bool,
}

/// The `--nemesis` list (a newtype: clap takes a bare `Vec` for a repeated flag).
#[derive(Debug, Clone)]
pub struct Nemeses(Vec<Nemesis>);

/// Parses `90`, `90s`, `10m` or `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}`: write a duration as 90, 90s, 10m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        other => return Err(format!("`{s}`: unknown unit `{other}` (use s, m or h)")),
    };
    if secs == 0 {
        return Err("a duration must be at least 1 s".into());
    }
    Ok(Duration::from_secs(secs))
}

/// Ctrl-C, SIGTERM or SIGHUP ends the run early: the harness heals, stops
/// the cluster, removes its lab and still writes what it saw. A second one
/// stops at once (the processes die with the harness; the lab stays, for
/// `--cleanup`).
async fn stop_on_signals(stop: tokio::sync::watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    for n in 0.. {
        tokio::select! {
            _ = term.recv() => {}
            _ = hup.recv() => {}
            _ = int.recv() => {}
        }
        if n > 0 {
            eprintln!("stopped at once; remove the lab with `factoryos jepsen --cleanup`");
            std::process::exit(130);
        }
        eprintln!(
            "stopping: healing, stopping the cluster and checking what ran (again to stop at once)"
        );
        let _ = stop.send(true);
    }
}

fn show(bar: &ProgressBar, p: &Progress) {
    for line in &p.lines {
        bar.println(line);
    }
    bar.set_position(p.elapsed.as_secs());
    bar.set_message(format!(
        "run {}/{} {}  final {}  faults {}{}",
        p.run,
        p.runs,
        p.phase,
        p.final_products,
        p.faults,
        p.last
            .as_ref()
            .map_or(String::new(), |l| format!("  last: {l}"))
    ));
}

pub fn main(args: JepsenArgs) -> Result<()> {
    if args.cleanup {
        let removed = factoryos_jepsen::hosts::netns::cleanup_leftovers()?;
        if removed.is_empty() {
            println!("nothing to clean up");
        }
        for r in removed {
            println!("removed {r}");
        }
        return Ok(());
    }
    if let Some(dir) = &args.summarize {
        print!("{}", matrix::markdown(&matrix::rows(dir)?));
        return Ok(());
    }
    let out = args.out.unwrap_or_else(|| super::default_out("jepsen"));
    // Any entry counts: a stopped run leaves run directories without
    // results, and starting over them fails each run on its certificates.
    if std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} already holds files (a harness run, finished or stopped); choose another --out",
            out.display()
        );
    }
    let mut config = JepsenConfig::new(args.nemesis.0, args.time, out, std::env::current_exe()?);
    config.runs = args.runs as usize;
    config.preset = args.preset;
    config.mode = args.coord_mode;
    config.seed = args.seed;
    config.clients = args.clients;
    config.registers = args.registers as usize;
    config.liveness_bound = Duration::from_secs(args.liveness_s.max(1));
    let runtime = tokio::runtime::Runtime::new()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    runtime.spawn(stop_on_signals(stop_tx));
    let mut all = Vec::new();
    if args.each {
        let (out, nemeses) = (config.out.clone(), config.nemeses.clone());
        for n in nemeses {
            if *stop_rx.borrow() {
                break;
            }
            println!("== {n}");
            let one = JepsenConfig {
                nemeses: vec![n],
                out: out.join(n.name()),
                ..config.clone()
            };
            all.extend(run_and_print(&runtime, &one, stop_rx.clone())?);
        }
        let table = matrix::markdown(&matrix::rows(&out)?);
        std::fs::write(out.join("matrix.md"), &table)?;
        println!("\n{table}");
    } else {
        all = run_and_print(&runtime, &config, stop_rx)?;
    }
    let (valid, invalid, unknown) = harness::tally(&all);
    println!("{valid} valid, {invalid} invalid, {unknown} unknown");
    if harness::overall(&all) != Validity::Valid {
        bail!("not every checker found the runs valid (see the reports above)");
    }
    Ok(())
}

/// Runs `config` under a progress bar and prints each run's verdicts.
fn run_and_print(
    runtime: &tokio::runtime::Runtime,
    config: &JepsenConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<harness::RunOutcome>> {
    let bar = ProgressBar::new(config.time.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let outcomes = runtime.block_on(harness::run(config, |p| show(&bar, p), stop));
    bar.finish_and_clear();
    let outcomes = outcomes?;
    for o in &outcomes {
        println!(
            "run {} (seed {}): {}  {}",
            o.index + 1,
            o.seed,
            o.valid.name(),
            o.dir.join("report.html").display()
        );
        for v in &o.verdicts {
            println!("  {:<18} {:<8} {}", v.checker, v.valid.name(), v.summary);
            for e in v.evidence.iter().take(5) {
                println!("      {e}");
            }
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "0", "5d", "s", "-3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
