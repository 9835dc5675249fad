//! The stage's protocol as a sans-IO state machine, in the manner of
//! quinn-proto: inputs are messages, flows and clock ticks; outputs are WAL
//! writes, messages to send and suspects to report. Nothing here touches a
//! socket, a disk or a clock, so every rule is unit-tested directly.
//!
//! The shell must honour one ordering rule: **commit `Output::wal` in one
//! durable transaction before sending anything in `Output::send`**. That is
//! what makes a supplier's lot in-transit before it leaves, and a consumer's
//! lot in-queue before it confirms; several inputs may be handled before one
//! `take_output`, which group-commits their writes.
//!
//! [`StageCore`] is made of named parts, each in its own file with the rules
//! that read and change it:
//!
//! | part | file | what it holds |
//! |---|---|---|
//! | [`FlowView`] | `flow_view.rs` | the flow as this stage sees it: its suppliers per input (with shares), its consumers |
//! | [`Supply`] | `supply.rs` | the supplier side: outbound lots, lots in transit, parked requests |
//! | [`Demand`] | `demand.rs` | the consumer side: inbound lots, requests in flight, lots ever received |
//! | (in flight) | `in_flight.rs` | the requests in flight per supplier, oldest first, with per-item counts |
//! | [`Liveness`] | `liveness.rs` | per neighbour: last heard, last sent to, reported suspect; heartbeats to our watcher |
//! | [`HostLinks`] | `host_links.rs` | per host, shared by the stages of ours: when any of them last heard from and sent to it |
//! | (shares) | `shares.rs` | per input: which supplier to ask next; per lot made: which waiting consumer gets it; both by the flow's shares |
//! | (cycle) | `cycle.rs` | the manufacture cycle in its slots: consume inputs, make a lot, as soon as the inputs are there |
//!
//! Trade rules, as the tests pin them down:
//!
//! * A consumer keeps each input near `target_cycles` cycles' worth of units
//!   (held plus requested), asking the flow's suppliers of that input in
//!   proportion to their shares over time (stride scheduling: `shares.rs`;
//!   a supplier left out catches up a little, never in a burst; a new flow
//!   starts afresh), at most `max_in_flight`
//!   requests per supplier, and leaving a supplier alone for one cycle after
//!   it answered `BatchUnavailable`. A supplier silent for `quiet_after` is
//!   not asked, and what was asked of it no longer counts, so the others
//!   are asked at once, long before the leader declares it dead.
//! * A supplier with nothing in stock parks a request (bounded) and serves
//!   the parked requests from the lots it makes, its consumers taking turns
//!   by their flow shares (stride scheduling again, so a scarce supplier
//!   splits its lots by the flow, not by who asked first); after `park_timeout` it answers
//!   `BatchUnavailable`. A trade is then three messages: `RequestBatch`,
//!   `BatchSent`, `DeliveryConfirmed`.
//! * A supplier serves a `RequestBatch` only if the current flow names the
//!   requester as its consumer, and only if the request carries a flow
//!   version at least as new as its own (else it answers `BatchUnavailable`
//!   stamped with its newer version, and counts it; the consumer, seeing a
//!   newer version, fetches the flow at once).
//! * Completion of a lot already in transit (`BatchSent`,
//!   `DeliveryConfirmed`, `WaitingForBatch`) is never refused for its flow
//!   version or flow membership: a lot must never be stranded by a flow
//!   change. A lot in transit to a consumer that left the flow is completed
//!   when that consumer answers; it is never taken back, since the consumer
//!   may hold it durably already.
//! * A supplier re-sends every in-transit lot every `retransmit` until it is
//!   confirmed (right away after a restart). A consumer confirms a lot it
//!   already holds or consumed without taking it twice, and answers
//!   `WaitingForBatch` for a lot whose write is not committed yet.
//! * A flow carrying a newer recipe for the stage's type makes the stage
//!   adopt it (durably, `WalOp::Recipe`) from its next cycle. A lot of an
//!   input the new recipe dropped is still taken and held: refused, it would
//!   stay in transit at its supplier for ever.

mod cycle;
mod demand;
mod flow_view;
mod host_links;
mod in_flight;
mod liveness;
mod shares;
mod supply;

pub use demand::Demand;
pub use flow_view::FlowView;
pub use host_links::HostLinks;
pub use liveness::Liveness;
pub use supply::Supply;

use crate::metrics::StageMetrics;
use crate::records::{Meta, Records, WalOp};
use factoryos_wire::message::{Envelope, Message, GREETING};
use factoryos_wire::model::{Flow, Recipe};
use factoryos_wire::{FlowSlice, FlowVersion, ItemType, NodeId};
use std::time::Duration;

/// A stage's settings.
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub id: NodeId,
    pub item: ItemType,
    pub recipe: Recipe,
    /// Final products leave the chain when made instead of waiting outbound.
    pub is_final: bool,
    /// Time between manufacture cycles.
    pub cycle: Duration,
    /// Lots one cycle makes when inputs and room allow (the capacity the
    /// stage registers, which the flow weighs; at least 1).
    pub capacity: u32,
    /// Most lots waiting in the outbound inventory per lot of capacity;
    /// beyond it cycles block.
    pub outbound_cap: usize,
    /// Each input is kept near this many cycles' worth of units.
    pub target_cycles: u32,
    /// Most requests in flight to one supplier.
    pub max_in_flight: usize,
    /// A request unanswered this long is given up (its slot freed), unless
    /// the supplier spoke since it went out.
    pub request_timeout: Duration,
    /// A request to a supplier heard from since it went out (the supplier
    /// or its host) is given up after this long: the supplier holds it for
    /// its next lot meanwhile.
    pub request_hold: Duration,
    /// A supplier with nothing in stock parks a request this long, serving it
    /// as soon as it makes a lot, before answering `BatchUnavailable`; longer
    /// (`park_hold`) if it sent the consumer anything since, which tells the
    /// consumer it is alive.
    pub park_timeout: Duration,
    /// The longest a supplier parks a request: just under `request_hold`.
    pub park_hold: Duration,
    /// An unconfirmed lot is re-sent this often.
    pub retransmit: Duration,
    /// An explicit heartbeat goes to a neighbour we sent nothing to for this
    /// long: half of `suspect_after`, so only quiet links get one.
    pub heartbeat_every: Duration,
    /// A supplier silent this long is not waited on: what was asked of it no
    /// longer counts and new requests go to the others (0.7 of `suspect_after`).
    pub quiet_after: Duration,
    /// A neighbour silent this long is reported suspect.
    pub suspect_after: Duration,
}

impl StageConfig {
    /// The default time between manufacture cycles.
    pub const DEFAULT_CYCLE: Duration = Duration::from_millis(100);
    /// The default most lots waiting outbound.
    pub const DEFAULT_OUTBOUND_CAP: usize = 8;
    /// The default target buffer, in cycles' worth of each input.
    pub const DEFAULT_TARGET_CYCLES: u32 = 3;
    /// The default most requests in flight to one supplier.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 1;

    /// Defaults for a stage making `item` by `recipe`, with 100 ms cycles.
    pub fn new(id: NodeId, item: ItemType, recipe: Recipe, is_final: bool) -> Self {
        let mut cfg = StageConfig {
            id,
            item,
            recipe,
            is_final,
            cycle: Self::DEFAULT_CYCLE,
            capacity: 1,
            outbound_cap: Self::DEFAULT_OUTBOUND_CAP,
            target_cycles: Self::DEFAULT_TARGET_CYCLES,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            request_timeout: Duration::ZERO,
            request_hold: Duration::ZERO,
            park_timeout: Duration::ZERO,
            park_hold: Duration::ZERO,
            retransmit: Duration::ZERO,
            heartbeat_every: Duration::ZERO,
            quiet_after: Duration::ZERO,
            suspect_after: Duration::ZERO,
        };
        cfg.set_cycle(Self::DEFAULT_CYCLE);
        cfg
    }

    /// Sets the cycle and the timings that follow it, with floors for tiny
    /// cycles: requests time out after 10 cycles (at least 500 ms), or 20
    /// to a supplier that speaks, are parked half of 10 (or until a cycle
    /// before 20), lots are re-sent every 5 cycles (at least 250 ms) and a
    /// neighbour silent for 10 cycles (at least 1 s) is suspect.
    pub fn set_cycle(&mut self, cycle: Duration) {
        self.cycle = cycle;
        self.request_timeout = (cycle * 10).max(Duration::from_millis(500));
        self.request_hold = self.request_timeout * 2;
        self.park_timeout = self.request_timeout / 2;
        self.park_hold = self.request_hold - cycle.min(self.request_hold / 10);
        self.retransmit = (cycle * 5).max(Duration::from_millis(250));
        self.set_suspect_after((cycle * 10).max(Duration::from_millis(1000)));
    }

    /// Sets the silence after which a neighbour is suspect, and the two
    /// timings that follow it: links quiet for half of it get a heartbeat
    /// (trade traffic counts as one, so a busy link gets none), and a
    /// supplier quiet for 0.7 of it is not waited on. A live neighbour is
    /// never silent much past half of it, so neither fires on one.
    pub fn set_suspect_after(&mut self, after: Duration) {
        self.suspect_after = after;
        self.heartbeat_every = after / 2;
        self.quiet_after = after * 7 / 10;
    }
}

/// What the shell must do after feeding inputs: commit `wal`, then send `send`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Writes to commit, in one durable transaction, before any send.
    pub wal: Vec<WalOp>,
    /// Messages to send after the commit, in order.
    pub send: Vec<(NodeId, Message)>,
    /// Neighbours to report to the leader as suspect.
    pub suspects: Vec<NodeId>,
    /// A peer stamped a newer flow than ours: fetch it.
    pub flow_behind: Option<FlowVersion>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.wal.is_empty()
            && self.send.is_empty()
            && self.suspects.is_empty()
            && self.flow_behind.is_none()
    }
}

/// The stage protocol state machine.
#[derive(Debug)]
pub struct StageCore {
    cfg: StageConfig,
    /// The sequence number of the next lot made.
    seq: u64,
    flow: FlowView,
    supply: Supply,
    demand: Demand,
    liveness: Liveness,
    slots: cycle::Slots,
    /// Stopping: no more cycles or requests; trades in flight finish.
    draining: bool,
    /// Wall-clock ms since the Unix epoch at `now == 0` (stamps lots' `made_ms`).
    wall_origin_ms: u64,
    out: Output,
    metrics: StageMetrics,
}

impl StageCore {
    /// A stage rebuilt from its WAL records (empty for a new stage). A
    /// recipe adopted before the crash wins over `cfg`'s if it is newer.
    pub fn new(mut cfg: StageConfig, records: Records) -> Self {
        let mut metrics = StageMetrics::default();
        if let Some(r) = records.recipe {
            if r.version > cfg.recipe.version {
                cfg.recipe = r;
            }
        }
        let supply = Supply::recover(records.out, &mut metrics);
        let restarted =
            records.meta.next_seq > 0 || records.meta.flow_version > FlowVersion::default();
        let demand = Demand::recover(records.inbound, records.meta.next_seq, &mut metrics);
        StageCore {
            seq: records.meta.next_seq,
            cfg,
            flow: FlowView::restarted(records.meta.flow_version),
            supply,
            demand,
            liveness: if restarted {
                Liveness::restarted()
            } else {
                Liveness::default()
            },
            slots: cycle::Slots::default(),
            draining: false,
            wall_origin_ms: 0,
            out: Output::default(),
            metrics,
        }
    }

    /// Shares `links` with the other stages of our host (whose cores must
    /// use the same clock origin): a frame between any stages of two hosts
    /// then keeps all their links awake, so a quiet pair of hosts needs one
    /// heartbeat, not one per stage (see [`HostLinks`] for why that holds).
    pub fn share_host(&mut self, links: HostLinks) {
        self.liveness.share_host(links);
    }

    pub fn config(&self) -> &StageConfig {
        &self.cfg
    }

    /// Sets the wall-clock time (ms since the Unix epoch) of `now == 0`, so
    /// lots carry when they were made. Without it `made_ms` counts from 0.
    pub fn set_wall_origin(&mut self, unix_ms: u64) {
        self.wall_origin_ms = unix_ms;
    }

    pub fn metrics(&self) -> &StageMetrics {
        &self.metrics
    }

    pub fn flow_version(&self) -> FlowVersion {
        self.flow.version()
    }

    /// Lots waiting outbound.
    pub fn outbound_len(&self) -> usize {
        self.supply.outbound_len()
    }

    /// Lots sent and not yet confirmed.
    pub fn in_transit_len(&self) -> usize {
        self.supply.in_transit_len()
    }

    /// Units held of input `item`.
    pub fn held_units(&self, item: &ItemType) -> u32 {
        self.demand.held_units(item)
    }

    /// Takes what the shell must do: commit `wal`, then send.
    pub fn take_output(&mut self) -> Output {
        self.demand.committed();
        std::mem::take(&mut self.out)
    }

    fn meta(&self) -> WalOp {
        WalOp::Meta(Meta {
            next_seq: self.seq,
            flow_version: self.flow.version(),
        })
    }

    fn send(&mut self, now: Duration, to: NodeId, msg: Message) {
        self.liveness.sent_to(to, self.flow.addr_of(to), now);
        self.out.send.push((to, msg));
    }

    /// Installs our slice of a flow read from the coordinators (older ones
    /// are ignored), and adopts the recipe it carries for our type if that
    /// is newer; whether it installed it.
    pub fn set_slice(&mut self, now: Duration, slice: &FlowSlice) -> bool {
        if slice.stage != self.cfg.id || !self.flow.is_news(slice) {
            return false;
        }
        if let Some(recipe) = slice.recipes.get(&self.cfg.item) {
            if recipe.version > self.cfg.recipe.version {
                self.adopt_recipe(recipe.clone());
            }
        }
        self.flow.install(slice);
        self.demand.new_flow(&self.flow);
        self.supply.new_flow(now);
        self.liveness.follow(&self.flow.neighbours(), now);
        self.greet_after_restart(now);
        self.metrics.flow_updates += 1;
        let meta = self.meta();
        self.out.wal.push(meta);
        true
    }

    /// [`StageCore::set_slice`] with our slice of a whole flow (tests and
    /// simulations, which hold the whole flow).
    pub fn set_flow(&mut self, now: Duration, flow: &Flow) -> bool {
        let slice = flow.slice(self.cfg.id, Some(&self.cfg.item));
        self.set_slice(now, &slice)
    }

    fn adopt_recipe(&mut self, recipe: Recipe) {
        tracing::info!(
            stage = %self.cfg.id,
            from = self.cfg.recipe.version,
            to = recipe.version,
            inputs = ?recipe.inputs,
            "recipe updated"
        );
        // Requests for inputs the recipe no longer needs are dropped; a lot
        // that still arrives for one is taken (see `on_batch`).
        self.demand.drop_requests_not_in(&recipe);
        self.out.wal.push(WalOp::Recipe(recipe.clone()));
        self.cfg.recipe = recipe;
        self.metrics.recipe_updates += 1;
    }

    /// Handles one message from `from` (the transport checked `env.sender == from`).
    pub fn on_message(&mut self, now: Duration, from: NodeId, env: &Envelope) {
        if self.liveness.heard_from(from, self.flow.addr_of(from), now) {
            tracing::debug!(stage = %self.cfg.id, peer = %from, "suspect heard from again");
        }
        if env.flow_version > self.flow.version() {
            self.out.flow_behind = Some(
                self.out
                    .flow_behind
                    .map_or(env.flow_version, |v| v.max(env.flow_version)),
            );
        }
        match &env.body {
            Message::RequestBatch { req, item } => {
                self.on_request(now, from, env.flow_version, *req, item)
            }
            Message::BatchSent { req, lot } => self.on_batch(now, from, *req, lot),
            Message::BatchUnavailable { req, .. } => self.on_unavailable(now, from, *req),
            Message::DeliveryConfirmed { lot } => self.on_confirmed(lot),
            Message::WaitingForBatch { lot } => self.supply.consumer_waits(lot, now),
            Message::Heartbeat { seq: GREETING } => self.demand.supplier_restarted(from),
            // Heartbeats only refresh liveness; markers and coordinator traffic
            // are not the trade core's business.
            _ => {}
        }
        // A lot that came in, or room that a served request made, may be
        // what a waiting cycle lacked: make it now, and serve it at once.
        if !self.draining && self.slots.is_waiting() && self.cycle_if_due(now) {
            self.serve_parked(now);
        }
    }

    /// Begins stopping: no more manufacture cycles or requests, parked
    /// requests are answered unavailable; lots in transit are still re-sent
    /// and confirmations still taken, so trades in flight finish.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Advances time: manufacture cycles that are due, requests, re-sends,
    /// heartbeats and suspicion.
    pub fn tick(&mut self, now: Duration) {
        if self.draining {
            self.serve_parked(now);
            self.retransmit(now);
            self.heartbeats(now);
            return;
        }
        self.cycle_if_due(now);
        self.serve_parked(now);
        self.expire_requests(now);
        self.request_inputs(now);
        self.retransmit(now);
        self.heartbeats(now);
    }

    /// The earliest moment at which a tick may do anything, if no input
    /// (message, slice, drain) comes first; `now` or earlier if a tick now
    /// would. Ask it after a tick or an input: a shell running many stages
    /// then ticks only those due and gets the same run as ticking all of
    /// them (the simulator's test `ticking_only_due_stages_changes_nothing`
    /// pins it).
    pub fn next_tick(&self, now: Duration) -> Duration {
        let c = &self.cfg;
        let due = self
            .liveness
            .due(self.flow.watcher().is_some())
            .min(self.supply.due(c.retransmit))
            .min(self.park_due());
        if self.draining {
            return due;
        }
        if self.would_request(now) {
            return Duration::ZERO;
        }
        due.min(self.cycle_due()).min(self.demand_due(now))
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
