//! The leader's duties, done while this coordinator leads: install the
//! bootstrap spec, confirm suspects with its own probe (dead → `MarkDead`,
//! alive → route around the broken link with `AvoidLink`), give avoided links
//! another try after a while (`RetryLink`), revive stages held dead that
//! answer, and whenever the configuration is newer than the flow, solve and
//! propose `CommitFlow { based_on }` (or, when few edges moved, only the
//! change: `CommitFlowChange`).

use super::Shared;
use crate::config_store::ConfigStore;
use crate::events::What;
use crate::lead::retries::LinkRetries;
use crate::lead::{self, Unwell, FULL_EVERY, REVIVE_EVERY};
use crate::state::{ClusterConfig, Command, CommandResponse};
use factoryos_wire::message::Message;
use factoryos_wire::{FlowVersion, NodeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Per stage: absent = never probed; `None` = a probe is running;
/// `Some(t)` = the last one ended at `t`.
type Probing = Arc<Mutex<HashMap<NodeId, Option<Instant>>>>;

/// The leader's loop: react to every new configuration and leadership change.
pub(super) async fn leader_duties<S: ConfigStore>(shared: Shared<S>) {
    let mut config = shared.store.config();
    let mut leading = shared.store.leading();
    let probing: Probing = Arc::default();
    let mut memory = Memory::new(&shared);
    loop {
        if *leading.borrow_and_update() {
            let snapshot = config.borrow_and_update().clone();
            lead_once(&shared, &snapshot, &probing, &mut memory).await;
        } else {
            // A leader's clocks start when it starts leading.
            memory = Memory::new(&shared);
        }
        // Wait for something to change (bounded, so a failed proposal is retried).
        tokio::select! {
            r = config.changed() => if r.is_err() { return },
            r = leading.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// What a leader remembers between turns (not replicated: a new leader
/// starts afresh).
struct Memory {
    /// When this leader started leading: the origin of its retry clock.
    since: Instant,
    retries: LinkRetries,
    /// Flows committed as changes since the last whole one.
    changes_since_full: u32,
}

impl Memory {
    fn new<S>(shared: &Shared<S>) -> Self {
        Memory {
            since: Instant::now(),
            retries: LinkRetries::new(shared.link_retry),
            // The first flow a leader commits is whole.
            changes_since_full: FULL_EVERY,
        }
    }
}

async fn lead_once<S: ConfigStore>(
    shared: &Shared<S>,
    cfg: &Arc<ClusterConfig>,
    probing: &Probing,
    memory: &mut Memory,
) {
    if cfg.spec.is_none() {
        if let Some(spec) = &shared.bootstrap_spec {
            let set = Command::SetSpec { spec: spec.clone() };
            if let Err(e) = shared.store.propose(set).await {
                tracing::warn!(error = %e, "could not install the bootstrap spec");
            }
        }
        return;
    }
    probe_the_unwell(shared, cfg, probing);
    let due = memory.retries.due(&cfg.avoid, memory.since.elapsed());
    if !due.is_empty() {
        // The configuration changes: the flow is solved on the next turn.
        for (supplier, consumer) in due {
            tracing::info!(%supplier, %consumer, "an avoided link gets another try");
            let _ = shared
                .store
                .propose(Command::RetryLink { supplier, consumer })
                .await;
        }
        return;
    }
    if cfg.flow_is_stale() {
        commit_flow(shared, cfg, &mut memory.changes_since_full).await;
    }
}

/// Confirms suspects with our own probe, and probes the dead now and then
/// (a stage declared dead by mistake, or back without re-registering, is
/// revived): one probe per stage at a time, each in its own task.
fn probe_the_unwell<S: ConfigStore>(shared: &Shared<S>, cfg: &ClusterConfig, probing: &Probing) {
    for (id, unwell) in lead::unwell(cfg) {
        let due = {
            let mut p = probing.lock().unwrap_or_else(|e| e.into_inner());
            let due = p
                .get(&id)
                .is_none_or(|last| last.is_some_and(|t: Instant| t.elapsed() >= REVIVE_EVERY));
            if due {
                p.insert(id, None);
            }
            due
        };
        if !due {
            continue;
        }
        let shared = shared.clone();
        let probing = probing.clone();
        tokio::spawn(async move {
            let alive = probe(&shared, id).await;
            act_on_verdict(&shared, id, &unwell, alive).await;
            // Remember when: the dead are probed again after REVIVE_EVERY.
            probing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, Some(Instant::now()));
        });
    }
}

/// Whether `stage` answers a heartbeat request, trying twice (a loaded
/// machine may miss one deadline; a dead stage misses both).
async fn probe<S: ConfigStore>(shared: &Shared<S>, stage: NodeId) -> bool {
    for _ in 0..2 {
        let request =
            shared
                .transport
                .request(stage, FlowVersion(0), Message::Heartbeat { seq: 0 });
        if matches!(
            tokio::time::timeout(shared.probe_timeout, request).await,
            Ok(Ok(_))
        ) {
            return true;
        }
    }
    false
}

/// Commits what the probe of `stage` showed ([`lead::verdict`]): the
/// flow read after `MarkAlive` decides which links are avoided.
async fn act_on_verdict<S: ConfigStore>(
    shared: &Shared<S>,
    stage: NodeId,
    unwell: &Unwell,
    alive: bool,
) {
    match (unwell, alive) {
        (Unwell::Dead, true) => {
            tracing::info!(%stage, "a stage held dead answers the leader: alive again")
        }
        (Unwell::Dead, false) => return,
        (Unwell::Suspect { .. }, false) => {
            tracing::info!(%stage, "suspect confirmed dead by the leader's probe")
        }
        (Unwell::Suspect { reporters }, true) => {
            tracing::info!(%stage, ?reporters, "suspect answers the leader: a broken link, not a death")
        }
    }
    let flow = shared.store.config().borrow().flow.clone();
    for cmd in lead::verdict(&flow, stage, unwell, alive) {
        let _ = shared.store.propose(cmd).await;
    }
}

async fn commit_flow<S: ConfigStore>(
    shared: &Shared<S>,
    cfg: &Arc<ClusterConfig>,
    changes_since_full: &mut u32,
) {
    let started = Instant::now();
    // Off the runtime: a solve at 1,000 stages takes tens of ms, and the
    // runtime's few threads also carry Raft's 50 ms heartbeats.
    let (snapshot, solver, since_full) = (cfg.clone(), shared.solver.clone(), *changes_since_full);
    let solved =
        tokio::task::spawn_blocking(move || lead::flow_proposal(&snapshot, &solver, since_full))
            .await;
    let proposal = match solved {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot compute a flow");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "the flow solver failed");
            return;
        }
    };
    let solved = started.elapsed();
    let whole = proposal.whole;
    match shared.store.propose(proposal.cmd).await {
        Ok(CommandResponse::FlowCommitted { version }) => {
            *changes_since_full = if whole { 0 } else { *changes_since_full + 1 };
            shared.log.record(What::FlowProposed {
                version: version.0,
                whole,
                edges: proposal.edges,
                entry_bytes: proposal.entry_bytes,
                solve_us: solved.as_micros() as u64,
            });
            tracing::info!(
                %version,
                based_on = cfg.config_version,
                kept = proposal.churn.kept,
                added = proposal.churn.added,
                removed = proposal.churn.removed,
                form = if whole { "whole" } else { "change" },
                entry_bytes = proposal.entry_bytes,
                solve_us = solved.as_micros() as u64,
                commit_us = started.elapsed().as_micros() as u64,
                "flow committed"
            )
        }
        Ok(CommandResponse::Rejected { reason }) => {
            tracing::debug!(%reason, "flow proposal refused; recomputing")
        }
        Ok(other) => tracing::warn!(?other, "unexpected answer to CommitFlow"),
        Err(e) => tracing::debug!(error = %e, "flow proposal failed; will retry"),
    }
}
