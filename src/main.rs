//! `factoryos`: the command line. Parsing and dispatch only; `commands/`
//! holds each command's arguments and thin glue, and the work lives in the
//! crates (`wire`, `coord`, `stage`, `jepsen`).

mod commands;

/// mimalloc: the simulator and the stage hosts allocate a lot per message
/// (lots, outputs, events), and glibc's malloc was a tenth of their time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use commands::{bench, certs, chain, coord, jepsen, ops, run, sim, stage, OperatorConfig};

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
    Run(run::RunArgs),
    /// The chain in deterministic simulation: the real stage cores, flow
    /// solver and state machine under a simulated network and clock (same
    /// seed, same summary), up to 100,000 stages.
    Sim(sim::SimArgs),
    /// Partition testing: the cluster on network-namespace hosts under
    /// nemeses, with histories, checkers and a report (needs root).
    Jepsen(jepsen::JepsenArgs),
    /// Make the cluster CA and node certificates (mutual TLS).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Check a supply-chain spec file.
    #[command(subcommand)]
    Spec(chain::SpecCommand),
    /// Compute and print the flow of a spec (which supplier feeds which consumer).
    Flow(chain::FlowArgs),
    /// Run one coordinator (a member of the Raft group) until Ctrl-C or SIGTERM.
    Coord(coord::CoordArgs),
    /// Add or remove a coordinator of a running Raft group (one change at a time).
    #[command(subcommand)]
    Coordinators(coord::CoordinatorsCommand),
    /// Run a stage (or several in one process) until Ctrl-C or SIGTERM.
    Stage(stage::StageArgs),
    /// Check the lot invariant across every stage's WAL (stop the stages first).
    Audit(stage::AuditArgs),
    /// Print the cluster's leader, term, members, flow version and stage liveness.
    Status(OperatorConfig),
    /// Change a type's recipe on a running cluster (its stages adopt it with the next flow).
    #[command(subcommand)]
    Recipe(ops::RecipeCommand),
    /// Add or remove stages of a running cluster.
    #[command(subcommand)]
    Stages(ops::StagesCommand),
    /// Set up a cluster directory.
    #[command(subcommand)]
    Cluster(coord::ClusterCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
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
    let result = match Cli::parse().command {
        Command::Run(args) => run::main(args),
        Command::Sim(args) => sim::main(args),
        Command::Jepsen(args) => jepsen::main(args),
        Command::Certs(cmd) => certs::main(cmd),
        Command::Spec(cmd) => chain::spec_main(cmd),
        Command::Flow(args) => chain::flow_main(args),
        Command::Coord(args) => coord::coord(args),
        Command::Coordinators(cmd) => coord::coordinators(cmd),
        Command::Stage(args) => stage::stage(args),
        Command::Audit(args) => stage::audit(args),
        Command::Status(cluster) => coord::status(cluster),
        Command::Recipe(cmd) => ops::recipe(cmd),
        Command::Stages(cmd) => ops::stages(cmd),
        Command::Cluster(cmd) => coord::cluster(cmd),
        Command::Bench(cmd) => bench::main(cmd),
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
