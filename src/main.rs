//! `factoryos`: the command line. Parsing and dispatch only; every command's
//! work lives in the crates (`wire`, `coord`, `stage`, `jepsen`).

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use factoryos_wire::ids::parse_id_list;
use factoryos_wire::{ClusterCa, NodeId, NodeIdentity};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "factoryos",
    version,
    about = "A distributed, self-organizing supply-chain manufacturing system",
    long_about = "factoryOS runs a supply chain as a cluster: stages make lots and trade them over \
QUIC, a Raft group decides which supplier feeds which consumer, and a write-ahead log keeps every \
lot through crashes.\n\nLogs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more detail."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a whole local cluster and print the experiment's results.
    Run(RunArgs),
    /// Make the cluster CA and node certificates (mutual TLS).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Chain preset: small (5 types x 2 stages), med (8 x 2), large (20 x 2), xl (200 x 5).
    #[arg(long, default_value = "small", value_parser = ["small", "med", "large", "xl"])]
    preset: String,
    /// Number of coordinators in the Raft group (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=5))]
    coordinators: u8,
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// Create a cluster CA (ca.pem, ca.key) in DIR.
    Init {
        /// Directory for the CA files (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// A name for the cluster, written into the CA's subject.
        #[arg(long, default_value = "factoryos")]
        name: String,
        /// Replace an existing CA (certificates it issued stop being accepted).
        #[arg(long)]
        force: bool,
    },
    /// Issue node certificates (node-N.pem, node-N.key) signed by the CA in DIR.
    Issue {
        /// Directory holding ca.pem and ca.key; the node files are written there.
        #[arg(long)]
        dir: PathBuf,
        /// The node id(s): one id, a list, or ranges, e.g. `7`, `1,2,3` or `1-5,9`.
        #[arg(long = "node", value_name = "IDS", required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Messages/s and request round-trip latency of the QUIC transport over loopback.
    Wire {
        /// One-way messages to stream for the throughput measurement.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Sequential requests for the round-trip latency measurement.
        #[arg(long, default_value_t = 5_000)]
        rtt_samples: u64,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Certs(cmd) => certs(cmd),
        Command::Bench(BenchCommand::Wire {
            messages,
            rtt_samples,
        }) => bench_wire(messages, rtt_samples),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain of causes on one line, no backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> Result<()> {
    println!(
        "factoryos run: the local cluster runner is not built yet (see the project's issues).\n\
         With --preset {} it will start {} coordinators (Raft), the preset's stages as OS \
         processes, certificates and data directories under a fresh run directory, and print \
         the metrics table and summary.",
        args.preset, args.coordinators
    );
    Ok(())
}

fn certs(cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::Init { dir, name, force } => {
            let ca = ClusterCa::generate(&name)?;
            ca.save(&dir, force)?;
            println!("cluster CA written to {}", dir.join("ca.pem").display());
        }
        CertsCommand::Issue { dir, nodes } => {
            let ca = ClusterCa::load(&dir).with_context(|| {
                format!(
                    "no usable CA in {} (run `factoryos certs init --dir {}` first)",
                    dir.display(),
                    dir.display()
                )
            })?;
            let mut ids: Vec<NodeId> = Vec::new();
            for list in &nodes {
                ids.extend(parse_id_list(list).map_err(anyhow::Error::msg)?);
            }
            ids.sort();
            ids.dedup();
            for id in &ids {
                ca.issue(*id)?.save(&dir)?;
            }
            let (first, _) = NodeIdentity::file_names(ids[0]);
            println!(
                "issued {} node certificate(s) in {} ({}{})",
                ids.len(),
                dir.display(),
                first,
                if ids.len() > 1 { ", ..." } else { "" }
            );
        }
    }
    Ok(())
}

fn bench_wire(messages: u64, rtt_samples: u64) -> Result<()> {
    use factoryos_wire::bench::{run, Phase, WireBenchConfig};
    use indicatif::{ProgressBar, ProgressStyle};
    let config = WireBenchConfig {
        messages,
        rtt_samples,
    };
    let bar = ProgressBar::new(messages);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec})")
            .expect("valid template")
            .progress_chars("=> "),
    );
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
