//! `factoryos`: the command line. Parsing and dispatch only; `commands/`
//! holds the thin glue of each command, and the work lives in the crates
//! (`wire`, `coord`, `stage`, `jepsen`).

mod commands;

use clap::{Parser, Subcommand};
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
    Run(commands::run::RunArgs),
    /// Make the cluster CA and node certificates (mutual TLS).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Check a supply-chain spec file.
    #[command(subcommand)]
    Spec(SpecCommand),
    /// Compute and print the flow of a spec (which supplier feeds which consumer).
    Flow {
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
    },
    /// Run one coordinator (a member of the Raft group) until Ctrl-C or SIGTERM.
    Coord {
        /// The cluster file (see docs/operations.md); `factoryos cluster init` writes one.
        #[arg(long)]
        config: PathBuf,
        /// This coordinator's id (one of the file's [[coordinators]]).
        #[arg(long)]
        id: u64,
        /// Raft heartbeat interval in ms (overrides the file; default 50).
        #[arg(long)]
        heartbeat_ms: Option<u64>,
        /// Shortest election timeout in ms (overrides the file; default 150).
        #[arg(long)]
        election_min_ms: Option<u64>,
        /// Longest election timeout in ms (overrides the file; default 300).
        #[arg(long)]
        election_max_ms: Option<u64>,
        /// Configuration store: `raft` (default) or `file-lock` (the original
        /// system's shared directory and flock, kept for comparison; all
        /// coordinators must share the data directory's filesystem).
        #[arg(long, value_parser = ["raft", "file-lock"])]
        coord_mode: Option<String>,
        /// Join a running group (then run `factoryos coordinators add`)
        /// instead of forming a new one on first start.
        #[arg(long)]
        join: bool,
    },
    /// Add or remove a coordinator of a running Raft group (one change at a time).
    #[command(subcommand)]
    Coordinators(CoordinatorsCommand),
    /// Run a stage (or several in one process) until Ctrl-C or SIGTERM.
    Stage {
        /// The cluster file; its spec declares the stage.
        #[arg(long)]
        config: PathBuf,
        /// The stage's id.
        #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
        id: Option<u64>,
        /// Several stages hosted in this process, each with its own endpoint,
        /// WAL and identity: `11,12` or `11-16`.
        #[arg(long, value_name = "IDS")]
        ids: Option<String>,
        /// Time between manufacture cycles, in ms.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        cycle_ms: u64,
        /// How often each stage rewrites data/nN/metrics.json, in ms.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
        metrics_ms: u64,
        /// Keep each input near this many cycles' worth of units (the target buffer).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        target_cycles: u32,
        /// Most requests in flight to one supplier.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
        max_in_flight: u16,
        /// Most lots waiting in the outbound inventory before cycles block.
        #[arg(long, default_value_t = 8)]
        outbound_cap: usize,
        /// Heartbeat deadline in ms: a neighbour silent this long is reported
        /// suspect (default: 10 cycles, at least 1000).
        #[arg(long)]
        suspect_ms: Option<u64>,
    },
    /// Check the lot invariant across every stage's WAL (stop the stages first).
    Audit {
        /// The cluster file; its spec lists the stages.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the cluster's leader, term, members, flow version and stage liveness.
    Status {
        /// The cluster file; the operator certificate certs/node-0.pem is used.
        #[arg(long)]
        config: PathBuf,
    },
    /// Change a type's recipe on a running cluster (its stages adopt it with the next flow).
    #[command(subcommand)]
    Recipe(RecipeCommand),
    /// Add or remove stages of a running cluster.
    #[command(subcommand)]
    Stages(StagesCommand),
    /// Set up a cluster directory.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum CoordinatorsCommand {
    /// Add coordinator ID at ADDR (start it first with `factoryos coord --join`).
    Add {
        /// The cluster file; the operator certificate certs/node-0.pem is used.
        #[arg(long)]
        config: PathBuf,
        /// The new coordinator's id (never one used before).
        #[arg(long)]
        id: u64,
        /// Its QUIC address, e.g. 127.0.0.1:7104.
        #[arg(long)]
        addr: std::net::SocketAddr,
    },
    /// Remove coordinator ID for good (its id can never be used again).
    Remove {
        /// The cluster file; the operator certificate certs/node-0.pem is used.
        #[arg(long)]
        config: PathBuf,
        /// The coordinator to remove.
        #[arg(long)]
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
enum RecipeCommand {
    /// Replace ITEM's recipe (its version is bumped). Refused if an input is
    /// not a type of the spec or the chain would have a cycle.
    Set {
        /// The cluster file; the operator certificate certs/node-0.pem is used.
        #[arg(long)]
        config: PathBuf,
        /// The type whose recipe changes.
        #[arg(long)]
        item: String,
        /// An input and its units per cycle, e.g. `--input wood=3`; repeat for
        /// several; none makes ITEM a raw material.
        #[arg(long = "input", value_name = "TYPE=UNITS", value_parser = commands::ops::parse_input)]
        inputs: Vec<(factoryos_wire::ItemType, u32)>,
        /// Units in each lot made.
        #[arg(long = "yield", value_name = "UNITS")]
        yield_units: u32,
    },
}

#[derive(Subcommand, Debug)]
enum StagesCommand {
    /// Declare stage ID (already in the spec file's [[stages]]) to the
    /// running cluster, issuing its certificate if it has none; then start
    /// it with `factoryos stage --id ID`.
    Add {
        /// The cluster file; the operator certificate certs/node-0.pem is used.
        #[arg(long)]
        config: PathBuf,
        /// The new stage's id (never one used before).
        #[arg(long)]
        id: u64,
    },
    /// Retire stage ID for good (its id can never be used again).
    Remove {
        /// The cluster file; the operator certificate certs/node-0.pem is used.
        #[arg(long)]
        config: PathBuf,
        /// The stage to remove.
        #[arg(long)]
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Write cluster.toml and all certificates for a local cluster into DIR.
    Init {
        /// The directory to create.
        #[arg(long)]
        dir: PathBuf,
        /// Number of coordinators (3 or 5 tolerate one or two failures).
        #[arg(long, default_value_t = 3)]
        coordinators: u64,
        /// Port of coordinator 1 on 127.0.0.1; the others follow.
        #[arg(long, default_value_t = 7101)]
        base_port: u16,
        /// A spec to install when the cluster first forms (copied into DIR).
        #[arg(long)]
        spec: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum SpecCommand {
    /// Validate FILE and explain every problem with its line, column and a fix hint.
    Check {
        /// The spec file (TOML).
        file: PathBuf,
    },
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
        /// Raft heartbeat interval in ms.
        #[arg(long, default_value_t = 50)]
        heartbeat_ms: u64,
        /// Shortest election timeout in ms.
        #[arg(long, default_value_t = 150)]
        election_min_ms: u64,
        /// Longest election timeout in ms.
        #[arg(long, default_value_t = 300)]
        election_max_ms: u64,
        /// Which configuration store to measure; `both` runs them side by side.
        #[arg(long, default_value = "both", value_parser = ["raft", "file-lock", "both"])]
        coord_mode: String,
        /// Keep the cluster directory (certificates, logs, data) afterwards.
        #[arg(long)]
        keep: bool,
    },
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

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,openraft=error,factoryos_coord=info")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => commands::run::main(args),
        Command::Certs(CertsCommand::Init { dir, name, force }) => {
            commands::certs::init(&dir, &name, force)
        }
        Command::Certs(CertsCommand::Issue { dir, nodes }) => commands::certs::issue(&dir, &nodes),
        Command::Spec(SpecCommand::Check { file }) => commands::chain::check(&file),
        Command::Flow {
            file,
            dead,
            dot,
            max_suppliers,
        } => commands::chain::flow(&file, dead.as_deref(), dot, max_suppliers as usize),
        Command::Coord {
            config,
            id,
            heartbeat_ms,
            election_min_ms,
            election_max_ms,
            coord_mode,
            join,
        } => commands::coord::coord(
            &config,
            id,
            commands::coord::TimeoutFlags {
                heartbeat_ms,
                election_min_ms,
                election_max_ms,
            },
            coord_mode.as_deref(),
            join,
        ),
        Command::Coordinators(CoordinatorsCommand::Add { config, id, addr }) => {
            commands::coord::change_coordinators(&config, id, Some(addr))
        }
        Command::Coordinators(CoordinatorsCommand::Remove { config, id }) => {
            commands::coord::change_coordinators(&config, id, None)
        }
        Command::Status { config } => commands::coord::status(&config),
        Command::Recipe(RecipeCommand::Set {
            config,
            item,
            inputs,
            yield_units,
        }) => commands::ops::recipe_set(&config, &item, &inputs, yield_units),
        Command::Stages(StagesCommand::Add { config, id }) => {
            commands::ops::stages_add(&config, id)
        }
        Command::Stages(StagesCommand::Remove { config, id }) => {
            commands::ops::stages_remove(&config, id)
        }
        Command::Audit { config } => commands::stage::audit(&config),
        Command::Stage {
            config,
            id,
            ids,
            cycle_ms,
            metrics_ms,
            target_cycles,
            max_in_flight,
            outbound_cap,
            suspect_ms,
        } => {
            let ids = ids.unwrap_or_else(|| id.map(|i| i.to_string()).unwrap_or_default());
            let tuning = factoryos_stage::setup::Tuning {
                cycle: std::time::Duration::from_millis(cycle_ms),
                target_cycles,
                max_in_flight: max_in_flight as usize,
                outbound_cap,
                suspect_after: suspect_ms.map(std::time::Duration::from_millis),
            };
            commands::stage::stage(&config, &ids, tuning, metrics_ms)
        }
        Command::Cluster(ClusterCommand::Init {
            dir,
            coordinators,
            base_port,
            spec,
        }) => commands::coord::cluster_init(&dir, coordinators, base_port, spec.as_deref()),
        Command::Bench(BenchCommand::Wire {
            messages,
            rtt_samples,
        }) => commands::bench::wire(messages, rtt_samples),
        Command::Bench(BenchCommand::Flow { runs }) => commands::bench::flow(runs as usize),
        Command::Bench(BenchCommand::Wal { seconds }) => commands::bench::wal(seconds),
        Command::Bench(BenchCommand::Stage { cycle_ms, warmup }) => {
            commands::bench::stage(cycle_ms, warmup)
        }
        Command::Bench(BenchCommand::Failover {
            trials,
            coordinators,
            commits,
            heartbeat_ms,
            election_min_ms,
            election_max_ms,
            coord_mode,
            keep,
        }) => commands::bench::failover(commands::bench::FailoverArgs {
            trials: trials as usize,
            coordinators,
            commits,
            timeouts: factoryos_coord::cluster::RaftTimeouts {
                heartbeat_ms,
                election_min_ms,
                election_max_ms,
            },
            mode: coord_mode,
            keep,
        }),
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
