//! `factoryos bench wire|flow|failover|recovery|wal|stage`: the measurements of
//! docs/experiments.md. The work lives in the crates; this file parses,
//! shows progress and prints.

use anyhow::Result;
use clap::Subcommand;
use factoryos_coord::config::{CoordMode, FILE_LOCK_POLL};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Messages/s and request round-trip latency of the QUIC transport over loopback.
    Wire {
        /// One-way messages to stream for the throughput measurement.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Sequential requests for the round-trip latency measurement.
        #[arg(long, default_value_t = 5_000)]
        rtt_samples: u64,
    },
    /// Leader failover (SIGKILL of the leader -> next committed flow) and commit
    /// latency of a local coordinator cluster of real processes.
    Failover {
        /// Leader kills to measure.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
        trials: u16,
        /// Coordinators in the group.
        #[arg(long, default_value_t = 3)]
        coordinators: u64,
        /// Writes timed per trial for the commit latency.
        #[arg(long, default_value_t = 25)]
        commits: usize,
        #[command(flatten)]
        timeouts: super::TimeoutArgs,
        /// Which configuration store to measure: raft, file-lock, or both
        /// side by side in one run.
        #[arg(long, default_value = "both", value_parser = modes_parser())]
        coord_mode: Modes,
        /// Keep the cluster directory (certificates, logs, data) afterwards.
        #[arg(long)]
        keep: bool,
        /// Print the results as one JSON object (durations in ms) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The whole chain's recovery from a fault (kill or restart of a
    /// supplier; kill, pause or partition of the leader, with a supplier
    /// killed), Raft against the file lock, trials interleaved: phases from
    /// the fault, percentiles, ratios, recovery.csv and a CDF plot.
    Recovery(super::recovery::RecoveryArgs),
    /// A supplier's SIGKILL seen from its consumers (window chain, real processes).
    Stage {
        /// Time between manufacture cycles, in ms.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(5..))]
        cycle_ms: u64,
        /// Seconds of production before the kill.
        #[arg(long, default_value_t = 5)]
        warmup: u64,
    },
    /// Durable WAL transitions/s: one per redb commit vs group commits.
    Wal {
        /// Seconds per batch size.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Flow solver time for generated chains from 100 to 10,000 stages.
    Flow {
        /// Repetitions per chain shape.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
        runs: u16,
    },
}

pub fn main(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Wire {
            messages,
            rtt_samples,
        } => wire(messages, rtt_samples),
        BenchCommand::Flow { runs } => flow(runs as usize),
        BenchCommand::Wal { seconds } => wal(seconds),
        BenchCommand::Stage { cycle_ms, warmup } => stage(cycle_ms, warmup),
        BenchCommand::Recovery(args) => super::recovery::main(args),
        BenchCommand::Failover {
            trials,
            coordinators,
            commits,
            timeouts,
            coord_mode,
            keep,
            json,
        } => failover(
            factoryos_jepsen::failover::FailoverBench {
                trials: trials as usize,
                coordinators,
                commits,
                timeouts: timeouts.timeouts()?,
                modes: coord_mode.0,
            },
            keep,
            json,
        ),
    }
}

/// The stores `--coord-mode` names (a newtype: clap takes a bare `Vec` for
/// a repeated flag).
#[derive(Debug, Clone)]
pub struct Modes(pub Vec<CoordMode>);

/// `raft`, `file-lock` or `both` (every mode, in that order).
pub(super) fn modes_parser() -> impl clap::builder::TypedValueParser<Value = Modes> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["raft", "file-lock", "both"]).try_map(|s| {
        match s.as_str() {
            "both" => Ok(Modes(CoordMode::ALL.to_vec())),
            one => one.parse::<CoordMode>().map(|m| Modes(vec![m])),
        }
    })
}

pub(super) fn bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({per_sec})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A scratch directory for a benchmark's cluster.
fn scratch(prefix: &str) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix(prefix).tempdir()?)
}

fn wire(messages: u64, rtt_samples: u64) -> Result<()> {
    use factoryos_wire::bench::{run, Phase, WireBenchConfig};
    let config = WireBenchConfig {
        messages,
        rtt_samples,
    };
    let bar = bar(messages);
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(run(&config, |phase, done, total| {
        let msg = match phase {
            Phase::Throughput => "one-way",
            Phase::RoundTrip => "round trips",
        };
        if bar.message() != msg {
            bar.set_message(msg);
            bar.set_length(total);
            bar.reset();
        }
        bar.set_position(done);
    }))?;
    bar.finish_and_clear();
    println!("{report}");
    Ok(())
}

fn flow(runs: usize) -> Result<()> {
    use factoryos_coord::bench::{measure, SHAPES};
    let bar = bar(SHAPES.len() as u64);
    bar.set_message("shapes");
    let mut rows = Vec::new();
    for (types, per_type, complexity) in SHAPES {
        rows.push(measure(*types, *per_type, *complexity, runs));
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "flow solver, {runs} runs per shape (default solver settings: max 8 suppliers per input)"
    );
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

fn failover(
    bench: factoryos_jepsen::failover::FailoverBench,
    keep: bool,
    json: bool,
) -> Result<()> {
    use factoryos_jepsen::failover::{compare, percentile, FailoverReport};
    let dir = scratch("factoryos-failover-")?;
    let bar = bar(bench.trials as u64);
    let runtime = tokio::runtime::Runtime::new()?;
    let binary = std::env::current_exe()?;
    let result = runtime.block_on(compare(&bench, dir.path(), &binary, |mode, done| {
        if bar.message() != mode.name() {
            bar.set_message(mode.name());
            bar.reset();
        }
        bar.set_position(done as u64);
    }));
    bar.finish_and_clear();
    let reports = match result {
        Ok(reports) => reports,
        Err(e) => {
            let _ = dir.keep();
            anyhow::bail!("{e}");
        }
    };
    let t = bench.timeouts;
    let p50 = |r: &FailoverReport| percentile(&r.failovers, 0.5).as_secs_f64();
    let ratio = match reports.as_slice() {
        [(_, raft), (_, lock)] => Some(p50(raft) / p50(lock).max(1e-9)),
        _ => None,
    };
    if json {
        let modes: serde_json::Map<String, serde_json::Value> = reports
            .iter()
            .map(|(mode, r)| (mode.name().to_string(), r.to_json()))
            .collect();
        let out = serde_json::json!({
            "coordinators": bench.coordinators,
            "heartbeat_ms": t.heartbeat_ms,
            "election_min_ms": t.election_min_ms,
            "election_max_ms": t.election_max_ms,
            "file_lock_poll_ms": FILE_LOCK_POLL.as_millis() as u64,
            "modes": modes,
            "failover_p50_ratio_raft_to_file_lock": ratio,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        if keep {
            eprintln!("cluster directories kept: {}", dir.keep().display());
        }
        return Ok(());
    }
    println!(
        "{} coordinators; Raft heartbeat {} ms, election timeout {}-{} ms; file-lock poll {} ms",
        bench.coordinators,
        t.heartbeat_ms,
        t.election_min_ms,
        t.election_max_ms,
        FILE_LOCK_POLL.as_millis()
    );
    for (mode, report) in &reports {
        println!("== {mode}\n{report}");
    }
    if let Some(ratio) = ratio {
        println!("failover p50 ratio raft / file-lock: {ratio:.2} (same run, same machine)");
    }
    if keep {
        println!("cluster directories kept: {}", dir.keep().display());
    }
    Ok(())
}

fn wal(seconds: u64) -> Result<()> {
    use factoryos_stage::wal::measure_commits;
    let dir = scratch("factoryos-wal-")?;
    let each = Duration::from_secs(seconds.max(1));
    let batches = [1usize, 4, 16, 64];
    let bar = bar(batches.len() as u64);
    bar.set_message("batch sizes");
    let mut rows = Vec::new();
    for batch in batches {
        let (n, elapsed) = measure_commits(dir.path(), batch, each)?;
        rows.push((batch, n, elapsed));
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "redb WAL, immediate durability, quick repair on; {}s per batch size, in {}",
        each.as_secs(),
        dir.path().display()
    );
    let base = rows[0].1 as f64 / rows[0].2.as_secs_f64();
    for (batch, n, elapsed) in rows {
        let per_sec = n as f64 / elapsed.as_secs_f64();
        println!(
            "  {batch:>3} transitions per commit: {per_sec:>9.0} transitions/s  ({:>7.0} commits/s, x{:.1} the one-per-commit rate)",
            per_sec / batch as f64,
            per_sec / base
        );
    }
    Ok(())
}

fn stage(cycle_ms: u64, warmup_s: u64) -> Result<()> {
    let dir = scratch("factoryos-stage-bench-")?;
    eprintln!(
        "running the window chain: warm-up {warmup_s} s, then a SIGKILL of a frame stage ..."
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(factoryos_jepsen::stage_kill::bench(
        dir.path(),
        &std::env::current_exe()?,
        Duration::from_millis(cycle_ms),
        Duration::from_secs(warmup_s),
    ));
    match report {
        Ok(r) => {
            println!("{r}");
            Ok(())
        }
        Err(e) => {
            let kept = dir.keep();
            anyhow::bail!("{e} (cluster kept in {})", kept.display())
        }
    }
}
