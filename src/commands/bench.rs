//! `factoryos bench wire|flow`.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

fn bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({per_sec})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

pub fn wire(messages: u64, rtt_samples: u64) -> Result<()> {
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

pub fn flow(runs: usize) -> Result<()> {
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

pub struct FailoverArgs {
    pub trials: usize,
    pub coordinators: u64,
    pub commits: usize,
    pub timeouts: factoryos_coord::cluster::RaftTimeouts,
    /// Which stores to measure: "raft", "file-lock" or "both".
    pub mode: String,
    pub keep: bool,
}

pub fn failover(args: FailoverArgs) -> Result<()> {
    use factoryos_jepsen::failover::{measure, percentile, FailoverReport};
    use factoryos_jepsen::local::LocalCluster;
    use factoryos_wire::NodeId;
    args.timeouts.validate().map_err(anyhow::Error::msg)?;
    let modes: Vec<bool> = match args.mode.as_str() {
        "raft" => vec![false],
        "file-lock" => vec![true],
        _ => vec![false, true],
    };
    let dir = tempfile::Builder::new()
        .prefix("factoryos-failover-")
        .tempdir()?;
    let spec = dir.path().join("chain.toml");
    std::fs::write(&spec, WINDOW)?;
    let binary = std::env::current_exe()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let t = args.timeouts;
    let mut reports: Vec<(&str, FailoverReport)> = Vec::new();
    for file_lock in modes {
        let name = if file_lock { "file-lock" } else { "raft" };
        let mut cluster = LocalCluster::create(
            &dir.path().join(name),
            &binary,
            args.coordinators,
            Some(&spec),
            args.timeouts,
            file_lock,
        )?;
        cluster.start_all()?;
        let bar = bar(args.trials as u64);
        bar.set_message(name.to_string());
        let report = runtime.block_on(measure(
            &mut cluster,
            args.trials,
            args.commits,
            (NodeId(11), "wood"),
            |done| bar.set_position(done as u64),
        ));
        bar.finish_and_clear();
        cluster.stop_all();
        match report {
            Ok(report) => reports.push((name, report)),
            Err(e) => {
                let kept = dir.keep();
                anyhow::bail!(
                    "{name}: {e} (logs kept in {})",
                    kept.join(name).join("logs").display()
                );
            }
        }
    }
    println!(
        "{} coordinators; Raft heartbeat {} ms, election timeout {}-{} ms; file-lock poll {} ms",
        args.coordinators,
        t.heartbeat_ms,
        t.election_min_ms,
        t.election_max_ms,
        factoryos_coord::cluster::FILE_LOCK_POLL.as_millis()
    );
    for (name, report) in &reports {
        println!("== {name}\n{report}");
    }
    if let [(_, raft), (_, lock)] = reports.as_slice() {
        let p50 = |r: &FailoverReport| percentile(&r.failovers, 0.5).as_secs_f64();
        println!(
            "failover p50 ratio raft / file-lock: {:.2} (same run, same machine)",
            p50(raft) / p50(lock).max(1e-9)
        );
    }
    if args.keep {
        let kept = dir.keep();
        println!("cluster directories kept: {}", kept.display());
    }
    Ok(())
}

/// The chain the failover benchmark installs (the window example).
const WINDOW: &str = include_str!("../../examples/window.toml");

pub fn wal(seconds: u64) -> Result<()> {
    use factoryos_stage::wal::measure_commits;
    let dir = tempfile::Builder::new()
        .prefix("factoryos-wal-")
        .tempdir()?;
    let each = std::time::Duration::from_secs(seconds.max(1));
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

pub fn stage(cycle_ms: u64, warmup_s: u64) -> Result<()> {
    use factoryos_jepsen::local::LocalCluster;
    let dir = tempfile::Builder::new()
        .prefix("factoryos-stage-bench-")
        .tempdir()?;
    let spec = dir.path().join("chain.toml");
    std::fs::write(&spec, WINDOW)?;
    let mut cluster = LocalCluster::create(
        &dir.path().join("cluster"),
        &std::env::current_exe()?,
        3,
        Some(&spec),
        factoryos_coord::cluster::RaftTimeouts::default(),
        false,
    )?;
    cluster.set_metrics_interval(5);
    cluster.start_all()?;
    for id in 11..=16 {
        cluster.start_stage(factoryos_wire::NodeId(id), cycle_ms)?;
    }
    eprintln!("running the window chain: warm-up {warmup_s} s, then a SIGKILL of stage 13 ...");
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(factoryos_jepsen::stage_kill::run(
        &mut cluster,
        std::time::Duration::from_millis(cycle_ms),
        std::time::Duration::from_secs(warmup_s),
    ));
    cluster.stop_all();
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
