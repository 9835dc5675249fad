//! One simulated stage: the real [`StageCore`] with its WAL in memory, and
//! the shell's one rule of order: a batch of WAL writes is durable before
//! anything the core said alongside it is sent. While a batch commits, new
//! inputs wait and are handled together afterwards (group commit), as the
//! stage process does.

use super::wal::SimWal;
use factoryos_coord::backoff::Backoff;
use factoryos_stage::core::{HostLinks, Output, StageConfig, StageCore};
use factoryos_stage::metrics::{StageMetrics, StageReport};
use factoryos_wire::message::Envelope;
use factoryos_wire::metrics::MessageTotals;
use factoryos_wire::{FlowSlice, NodeId};
use std::time::Duration;

/// What reaches a stage.
#[derive(Debug)]
pub(super) enum Input {
    Message(NodeId, Envelope),
    Slice(FlowSlice),
}

#[derive(Debug)]
pub(super) struct SimStage {
    pub(super) cfg: StageConfig,
    /// The host process it runs in (crashes and partitions take hosts).
    pub(super) host: NodeId,
    /// `None` while it is down.
    pub(super) core: Option<StageCore>,
    /// Incremented at every crash: events for an earlier life are dropped.
    pub(super) life: u32,
    pub(super) wal: SimWal,
    /// The slice it holds (the coordinator answers by its digest).
    pub(super) slice: Option<FlowSlice>,
    /// A batch is committing; inputs wait in `inbox`.
    pub(super) committing: Option<Output>,
    inbox: Vec<Input>,
    /// A read of the flow is under way (one at a time).
    pub(super) fetching: bool,
    /// Waits between registration tries (the stage process's rule).
    pub(super) backoff: Backoff,
    /// Counters of its earlier lives.
    earlier: StageMetrics,
    pub(super) messages: MessageTotals,
}

impl SimStage {
    pub(super) fn new(cfg: StageConfig, host: NodeId) -> Self {
        SimStage {
            cfg,
            host,
            core: None,
            life: 0,
            wal: SimWal::default(),
            slice: None,
            committing: None,
            inbox: Vec::new(),
            fetching: false,
            backoff: Backoff::registration(),
            earlier: StageMetrics::default(),
            messages: MessageTotals::default(),
        }
    }

    /// Starts (or restarts) from its WAL, sharing `links` with the other
    /// stages of its host.
    pub(super) fn start(&mut self, links: HostLinks) {
        let mut core = StageCore::new(self.cfg.clone(), self.wal.records());
        core.share_host(links);
        self.core = Some(core);
    }

    /// Killed: what it had not committed is gone, and so is all it held in memory.
    pub(super) fn crash(&mut self) {
        if let Some(core) = self.core.take() {
            self.earlier.add(core.metrics());
        }
        self.life += 1;
        self.slice = None;
        self.committing = None;
        self.inbox.clear();
        self.fetching = false;
    }

    pub(super) fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Hands `input` to the core, or queues it behind a commit; whether the
    /// core took it (then its output is due).
    pub(super) fn feed(&mut self, now: Duration, input: Input) -> bool {
        if self.committing.is_some() {
            self.inbox.push(input);
            return false;
        }
        let Some(core) = &mut self.core else {
            return false;
        };
        match input {
            Input::Message(from, env) => core.on_message(now, from, &env),
            Input::Slice(slice) => {
                core.set_slice(now, &slice);
            }
        }
        true
    }

    /// After a commit: the inputs that waited, handled together.
    pub(super) fn feed_waiting(&mut self, now: Duration) -> bool {
        let waiting = std::mem::take(&mut self.inbox);
        let mut fed = false;
        for input in waiting {
            fed |= self.feed(now, input);
        }
        fed
    }

    /// Counters over every life.
    pub(super) fn report(&self) -> StageReport {
        let mut counters = self.earlier.clone();
        if let Some(core) = &self.core {
            counters.add(core.metrics());
        }
        StageReport {
            counters,
            messages: self.messages,
            ..StageReport::default()
        }
    }

    /// Successful cycles in this life.
    pub(super) fn made_this_life(&self) -> u64 {
        self.core
            .as_ref()
            .map_or(0, |c| c.metrics().successful_manufacture_cycles)
    }
}
