//! `factoryos stage`: run one stage, or several in one process.

use anyhow::{bail, Context, Result};
use factoryos_coord::cluster::ClusterFile;
use factoryos_wire::ids::parse_id_list;
use factoryos_wire::NodeId;
use std::path::Path;

pub fn stage(
    config: &Path,
    ids: &str,
    tuning: factoryos_stage::setup::Tuning,
    metrics_ms: u64,
) -> Result<()> {
    let cluster = ClusterFile::load(config)?;
    let ids: Vec<NodeId> = parse_id_list(ids).map_err(anyhow::Error::msg)?;
    if ids.is_empty() {
        bail!("no stage ids given");
    }
    let mut all = Vec::new();
    for id in &ids {
        let mut opts = factoryos_stage::setup::options(&cluster, *id, tuning)?;
        opts.metrics_every = std::time::Duration::from_millis(metrics_ms);
        std::fs::create_dir_all(opts.wal_path.parent().expect("wal path has a parent"))
            .with_context(|| format!("creating the data directory of {id}"))?;
        all.push(opts);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let mut handles = Vec::new();
        for opts in all {
            let id = opts.identity.id();
            let handle = factoryos_stage::shell::start(opts)
                .await
                .with_context(|| format!("stage {id} could not start"))?;
            eprintln!("stage {id} listening on {}", handle.addr());
            handles.push(handle);
        }
        super::coord::shutdown_signal().await;
        for h in handles {
            let id = h.id();
            if let Err(e) = h.stop().await {
                eprintln!("stage {id} stopped with an error: {e}");
            }
        }
        Ok(())
    })
}

pub fn audit(config: &Path) -> Result<()> {
    let cluster = ClusterFile::load(config)?;
    let chain = cluster
        .chain()?
        .context("the cluster file names no spec, so it has no stages to audit")?;
    let ids: Vec<NodeId> = chain.stages.iter().map(|s| s.id).collect();
    let report = factoryos_stage::audit::audit_wals(&cluster.data, &ids)
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
