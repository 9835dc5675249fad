//! `factoryos stage` (one stage, or several in one process) and `factoryos audit`.

use super::shutdown_signal;
use anyhow::{bail, Context, Result};
use clap::Args;
use factoryos_coord::cluster::ClusterFile;
use factoryos_stage::core::StageConfig;
use factoryos_stage::setup::Tuning;
use factoryos_wire::ids::parse_id_list;
use factoryos_wire::NodeId;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct StageArgs {
    /// The cluster file; its spec declares the stage.
    #[arg(long)]
    config: PathBuf,
    /// The stage's id.
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    id: Option<u64>,
    /// Several stages hosted in this process, sharing one QUIC endpoint and
    /// the host certificate issued for exactly these ids (`factoryos certs
    /// issue --host IDS`); their records share one WAL: `11,12` or `11-16`.
    /// A stage listed in the host's down file (data/nFIRST/down, one id per
    /// line) is killed inside the live process, and started again from the
    /// WAL once the file no longer lists it.
    #[arg(long, value_name = "IDS")]
    ids: Option<String>,
    /// Time between manufacture cycles, in ms.
    #[arg(long, default_value_t = StageConfig::DEFAULT_CYCLE.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    cycle_ms: u64,
    /// How often each stage rewrites data/nN/metrics.json, in ms.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    metrics_ms: u64,
    /// Keep each input near this many cycles' worth of units (the target buffer).
    #[arg(long, default_value_t = StageConfig::DEFAULT_TARGET_CYCLES, value_parser = clap::value_parser!(u32).range(1..))]
    target_cycles: u32,
    /// Most requests in flight to one supplier.
    #[arg(long, default_value_t = StageConfig::DEFAULT_MAX_IN_FLIGHT as u16, value_parser = clap::value_parser!(u16).range(1..))]
    max_in_flight: u16,
    /// Most lots waiting in the outbound inventory before cycles block.
    #[arg(long, default_value_t = StageConfig::DEFAULT_OUTBOUND_CAP)]
    outbound_cap: usize,
    /// Heartbeat deadline in ms: a neighbour silent this long is reported
    /// suspect; links quiet for half of it get a heartbeat, and a supplier
    /// silent for 0.7 of it is not waited on (default: 10 cycles, at least 1000).
    #[arg(long)]
    suspect_ms: Option<u64>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The cluster file; its spec lists the stages.
    #[arg(long)]
    config: PathBuf,
}

impl StageArgs {
    fn tuning(&self) -> Tuning {
        Tuning {
            cycle: Duration::from_millis(self.cycle_ms),
            target_cycles: self.target_cycles,
            max_in_flight: self.max_in_flight as usize,
            outbound_cap: self.outbound_cap,
            suspect_after: self.suspect_ms.map(Duration::from_millis),
        }
    }

    fn ids(&self) -> Result<Vec<NodeId>> {
        let list = match (&self.ids, self.id) {
            (Some(list), _) => list.clone(),
            (None, Some(id)) => id.to_string(),
            (None, None) => bail!("no stage ids given"),
        };
        let ids = parse_id_list(&list).map_err(anyhow::Error::msg)?;
        if ids.is_empty() {
            bail!("no stage ids given");
        }
        Ok(ids)
    }
}

pub fn stage(args: StageArgs) -> Result<()> {
    let cluster = ClusterFile::load(&args.config)?;
    let ids = args.ids()?;
    let mut all = Vec::new();
    for &id in &ids {
        let mut opts = factoryos_stage::setup::options(&cluster, id, args.tuning())?;
        opts.metrics_every = Duration::from_millis(args.metrics_ms);
        std::fs::create_dir_all(cluster.node_dir(id))
            .with_context(|| format!("creating the data directory of {id}"))?;
        all.push(opts);
    }
    let host = factoryos_stage::setup::host_options(&cluster, &ids)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let mut host = factoryos_stage::host::start(host, all)
            .await
            .context("the stages could not start")?;
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        eprintln!("stage {} listening on {}", list.join(","), host.addr());
        host.serve(shutdown_signal()).await;
        for (id, outcome) in host.stop().await {
            if let Err(e) = outcome {
                eprintln!("stage {id} stopped with an error: {e}");
            }
        }
        Ok(())
    })
}

pub fn audit(args: AuditArgs) -> Result<()> {
    let cluster = ClusterFile::load(&args.config)?;
    let chain = cluster
        .chain()?
        .context("the cluster file names no spec, so it has no stages to audit")?;
    let ids: Vec<NodeId> = chain.stages.iter().map(|s| s.id).collect();
    let report = factoryos_stage::audit::audit_wals(&cluster, &ids)
        .context("reading the WALs (stop the stages first: an open WAL is locked)")?;
    println!("{report}");
    if !report.is_clean() {
        for (what, lots) in [
            ("lost", &report.lost),
            ("duplicated", &report.duplicated),
            ("miscounted", &report.miscounted),
            ("unknown origin", &report.orphans),
        ] {
            if !lots.is_empty() {
                let list: Vec<String> = lots.iter().take(20).map(|l| l.to_string()).collect();
                println!("  {what}: {}", list.join(" "));
            }
        }
        bail!("the lot invariant does not hold");
    }
    Ok(())
}
