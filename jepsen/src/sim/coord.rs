//! The simulated coordinator: the real state machine ([`ClusterConfig::apply`])
//! and the real leader's decisions ([`factoryos_coord::lead`]), with Raft
//! itself reduced to a commit latency (the harness tests the Raft group;
//! here one leader never fails). It also answers the stages' slice watches.

use factoryos_coord::lead::retries::LinkRetries;
use factoryos_coord::lead::{self, FlowProposal, Unwell, FULL_EVERY, REVIVE_EVERY};
use factoryos_coord::solver::SolverConfig;
use factoryos_coord::state::{ClusterConfig, Command, CommandResponse};
use factoryos_wire::{FlowSlice, FlowVersion, NodeId, SliceIndex, SliceUpdate};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A stage's watch waiting for a newer flow.
#[derive(Debug, Clone, Copy)]
pub(super) struct Watch {
    pub(super) life: u32,
    pub(super) known: FlowVersion,
    pub(super) digest: Option<u64>,
}

/// What one turn of the leader's loop asks for.
#[derive(Debug, Default)]
pub(super) struct Turn {
    /// Stages to probe, and why.
    pub(super) probes: Vec<(NodeId, Unwell)>,
    /// Proposals of the leader's own, in order (it waits for them).
    pub(super) proposals: Vec<Command>,
    /// Edges of the flow it solved, if it solved one (the solve's cost).
    pub(super) solved_edges: Option<usize>,
}

/// Flow figures of the run (all deterministic but the solver's wall time).
#[derive(Debug, Default, Clone)]
pub(super) struct FlowStats {
    pub(super) committed: u64,
    pub(super) whole: u64,
    pub(super) refused: u64,
    /// Encoded size of each flow proposal's log entry (refused ones too).
    pub(super) entry_bytes: Vec<u64>,
    /// Bytes of slice answers sent to the stages, per committed flow.
    pub(super) slice_bytes: Vec<u64>,
    /// Wall time of each solve (not part of the deterministic summary).
    pub(super) solve_wall: Vec<Duration>,
}

#[derive(Debug)]
pub(super) struct SimCoord {
    pub(super) cfg: ClusterConfig,
    index: u64,
    solver: SolverConfig,
    retries: LinkRetries,
    changes_since_full: u32,
    /// Per stage: absent = never probed; `None` = probing; `Some(t)` = last probe ended at t.
    probing: BTreeMap<NodeId, Option<Duration>>,
    /// The leader's own proposals not applied yet (it waits for them).
    waiting: usize,
    /// Whether the flow proposal in flight is whole.
    proposing_whole: bool,
    pub(super) watches: BTreeMap<NodeId, Watch>,
    index_of: Option<(FlowVersion, SliceIndex)>,
    pub(super) flows: FlowStats,
}

impl SimCoord {
    pub(super) fn new(link_retry: Duration) -> Self {
        SimCoord {
            cfg: ClusterConfig::default(),
            index: 0,
            solver: SolverConfig::default(),
            retries: LinkRetries::new(link_retry),
            changes_since_full: FULL_EVERY,
            probing: BTreeMap::new(),
            waiting: 0,
            proposing_whole: false,
            watches: BTreeMap::new(),
            index_of: None,
            flows: FlowStats::default(),
        }
    }

    /// Applies a committed command at the next log index.
    pub(super) fn apply(&mut self, cmd: &Command) -> CommandResponse {
        self.index += 1;
        self.cfg.apply(self.index, cmd)
    }

    /// One of the leader's own proposals was applied with `response` (only
    /// the leader commits flows, so this is where they are counted).
    pub(super) fn own_applied(&mut self, cmd: &Command, response: &CommandResponse) {
        self.waiting = self.waiting.saturating_sub(1);
        let is_flow = matches!(
            cmd,
            Command::CommitFlow { .. } | Command::CommitFlowChange { .. }
        );
        match response {
            CommandResponse::FlowCommitted { .. } => {
                self.changes_since_full = if self.proposing_whole {
                    0
                } else {
                    self.changes_since_full + 1
                };
                self.flows.committed += 1;
                self.flows.whole += u64::from(self.proposing_whole);
                self.flows.slice_bytes.push(0);
            }
            CommandResponse::Rejected { .. } if is_flow => self.flows.refused += 1,
            _ => {}
        }
    }

    /// A turn of the leader's loop at `now`, as `node/leader.rs` takes it:
    /// probes due, then avoided links due for another try, else the flow
    /// if it is stale. Nothing while its own proposals are in flight.
    pub(super) fn turn(&mut self, now: Duration) -> Turn {
        let mut turn = Turn::default();
        if self.waiting > 0 || self.cfg.spec.is_none() {
            return turn;
        }
        for (id, unwell) in lead::unwell(&self.cfg) {
            let due = self
                .probing
                .get(&id)
                .is_none_or(|last| last.is_some_and(|t| now.saturating_sub(t) >= REVIVE_EVERY));
            if due {
                self.probing.insert(id, None);
                turn.probes.push((id, unwell));
            }
        }
        let due = self.retries.due(&self.cfg.avoid, now);
        if !due.is_empty() {
            turn.proposals = due
                .into_iter()
                .map(|(supplier, consumer)| Command::RetryLink { supplier, consumer })
                .collect();
        } else if self.cfg.flow_is_stale() {
            let started = Instant::now();
            match lead::flow_proposal(&self.cfg, &self.solver, self.changes_since_full) {
                Ok(FlowProposal {
                    cmd,
                    whole,
                    edges,
                    entry_bytes,
                    ..
                }) => {
                    self.flows.solve_wall.push(started.elapsed());
                    self.proposing_whole = whole;
                    turn.solved_edges = Some(edges);
                    self.flows.entry_bytes.push(entry_bytes as u64);
                    turn.proposals.push(cmd);
                }
                Err(e) => tracing::error!(error = %e, "the simulated leader cannot compute a flow"),
            }
        }
        self.waiting = turn.proposals.len();
        turn
    }

    /// What the leader remembers of `stage`'s probes, and whether it waits
    /// on its own proposals (for a test's evidence).
    #[cfg(test)]
    pub(super) fn probe_state(&self, stage: NodeId) -> String {
        format!(
            "probing {:?}, waiting on {} proposals, flow stale {}",
            self.probing.get(&stage),
            self.waiting,
            self.cfg.flow_is_stale()
        )
    }

    /// A probe of `stage` ended at `now`.
    pub(super) fn probe_done(&mut self, stage: NodeId, now: Duration) {
        self.probing.insert(stage, Some(now));
    }

    /// `stage`'s answer for a holder of `digest`, cut from one index per
    /// flow; its encoded size counts to the current flow's slice bytes.
    pub(super) fn answer(&mut self, stage: NodeId, digest: Option<u64>) -> SliceUpdate {
        let version = self.cfg.flow.version;
        if self.index_of.as_ref().is_none_or(|(v, _)| *v != version) {
            let stages = &self.cfg.stages;
            let index = SliceIndex::new(&self.cfg.flow, |id| stages.get(&id).map(|r| &r.desc));
            self.index_of = Some((version, index));
        }
        let (_, index) = self.index_of.as_ref().expect("indexed above");
        let cfg = &self.cfg;
        let item = cfg.stages.get(&stage).map(|r| &r.desc.item);
        let addr_of = |id: NodeId| cfg.stages.get(&id).map(|r| r.desc.addr);
        let slice: FlowSlice = index.slice(&cfg.flow, stage, item, addr_of);
        let update = SliceUpdate::for_holder(slice, digest);
        let bytes = postcard::to_stdvec(&update).map_or(0, |b| b.len() as u64);
        if let Some(last) = self.flows.slice_bytes.last_mut() {
            *last += bytes;
        }
        update
    }
}
