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
