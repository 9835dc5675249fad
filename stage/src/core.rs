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
//! Trade rules, as the tests pin them down:
//!
//! * A consumer keeps each input near `target_cycles` cycles' worth of units
//!   (held plus requested), asking the flow's suppliers of that input, the
//!   least loaded relative to its share first, at most `max_in_flight`
//!   requests per supplier, and leaving a supplier alone for one cycle after
//!   it answered `BatchUnavailable`. A supplier silent for three heartbeat
//!   periods is not asked, and what was asked of it no longer counts, so the
//!   others are asked at once, long before the leader declares it dead.
//! * A supplier with nothing in stock parks a request (bounded) and serves it
//!   from the next lot it makes; after `park_timeout` it answers
//!   `BatchUnavailable`. A trade is then three messages: `RequestBatch`,
//!   `BatchSent`, `DeliveryConfirmed`.
//! * A supplier serves a `RequestBatch` only if the current flow names the
//!   requester as its consumer, and only if the request carries a flow
//!   version at least as new as its own (else it is refused and counted).
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

use crate::metrics::StageMetrics;
use crate::records::{InRecord, Meta, OutRecord, OutState, Records, WalOp};
use factoryos_wire::message::{Envelope, Message};
use factoryos_wire::model::{Flow, Lot, Recipe};
use factoryos_wire::{FlowVersion, ItemType, LotId, NodeId, RequestId};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
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
    /// Most lots waiting in the outbound inventory; beyond it cycles block.
    pub outbound_cap: usize,
    /// Each input is kept near this many cycles' worth of units.
    pub target_cycles: u32,
    /// Most requests in flight to one supplier.
    pub max_in_flight: usize,
    /// A request unanswered this long is given up (its slot freed).
    pub request_timeout: Duration,
    /// A supplier with nothing in stock parks a request this long, serving it
    /// as soon as it makes a lot, before answering `BatchUnavailable`.
    pub park_timeout: Duration,
    /// An unconfirmed lot is re-sent this often.
    pub retransmit: Duration,
    /// An explicit heartbeat goes to a neighbour we sent nothing to for this long.
    pub heartbeat_every: Duration,
    /// A neighbour silent this long is reported suspect.
    pub suspect_after: Duration,
}

impl StageConfig {
    /// Defaults for a stage making `item` by `recipe`: 100 ms cycles.
    pub fn new(id: NodeId, item: ItemType, recipe: Recipe, is_final: bool) -> Self {
        StageConfig {
            id,
            item,
            recipe,
            is_final,
            cycle: Duration::from_millis(100),
            outbound_cap: 8,
            target_cycles: 3,
            max_in_flight: 2,
            request_timeout: Duration::from_millis(1000),
            park_timeout: Duration::from_millis(500),
            retransmit: Duration::from_millis(500),
            heartbeat_every: Duration::from_millis(200),
            suspect_after: Duration::from_millis(1000),
        }
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

#[derive(Debug, Clone)]
struct Held {
    lot: Lot,
    from: NodeId,
    remaining: u32,
}

#[derive(Debug, Clone)]
struct Transit {
    lot: Lot,
    to: NodeId,
    /// When it was last sent; `None` = never since recovery (send at once).
    last_sent: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    supplier: NodeId,
    sent_at: Duration,
}

/// The stage protocol state machine.
#[derive(Debug)]
pub struct StageCore {
    cfg: StageConfig,
    seq: u64,
    flow: Flow,
    /// Whether `flow` holds edges (after a restart only its version is known).
    flow_loaded: bool,
    /// Input item -> its suppliers with shares (per-mille).
    suppliers: BTreeMap<ItemType, Vec<(NodeId, u32)>>,
    consumers: BTreeSet<NodeId>,
    outbound: VecDeque<Lot>,
    in_transit: BTreeMap<LotId, Transit>,
    inbound: BTreeMap<ItemType, VecDeque<Held>>,
    /// Every lot ever received (held or consumed): never taken twice.
    received: HashSet<LotId>,
    /// Lots received since the last `take_output` (not durable yet).
    uncommitted: HashSet<LotId>,
    pending: BTreeMap<RequestId, (ItemType, Pending)>,
    /// Requests waiting here for a lot: (consumer, request, item, parked at).
    parked: VecDeque<(NodeId, RequestId, ItemType, Duration)>,
    next_req: u64,
    /// Units in the last lot received per input item (to size requests).
    lot_size: HashMap<ItemType, u32>,
    unavailable_until: HashMap<NodeId, Duration>,
    last_heard: BTreeMap<NodeId, Duration>,
    last_sent_to: BTreeMap<NodeId, Duration>,
    reported: BTreeSet<NodeId>,
    heartbeat_seq: u64,
    next_cycle: Option<Duration>,
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
        metrics.recipe_version = cfg.recipe.version as u64;
        let mut outbound = Vec::new();
        let mut in_transit = BTreeMap::new();
        for r in records.out {
            match r.state {
                OutState::InQueue => {
                    metrics.wal_recovered_in_queue += 1;
                    outbound.push(r.lot);
                }
                OutState::InTransit { to } => {
                    metrics.wal_recovered_in_transit += 1;
                    in_transit.insert(
                        r.lot.id,
                        Transit {
                            lot: r.lot,
                            to,
                            last_sent: None,
                        },
                    );
                }
                OutState::Delivered { .. } => metrics.batches_delivered += 1,
                OutState::Shipped => metrics.final_products += 1,
            }
        }
        outbound.sort_by_key(|l| l.id.seq);
        let mut held: Vec<InRecord> = Vec::new();
        let mut received = HashSet::new();
        for r in records.inbound {
            received.insert(r.lot.id);
            if r.remaining > 0 {
                held.push(r);
            }
        }
        metrics.wal_recovered_inbound = held.len() as u64;
        // Oldest first: arrival order is not recorded, lot ids order them per producer.
        held.sort_by_key(|r| (r.lot.id.seq, r.lot.id.producer));
        let mut inbound: BTreeMap<ItemType, VecDeque<Held>> = BTreeMap::new();
        for r in held {
            inbound
                .entry(r.lot.item.clone())
                .or_default()
                .push_back(Held {
                    lot: r.lot,
                    from: r.from,
                    remaining: r.remaining,
                });
        }
        let flow = Flow {
            version: records.meta.flow_version,
            ..Flow::default()
        };
        StageCore {
            seq: records.meta.next_seq,
            next_req: records.meta.next_seq << 16,
            cfg,
            flow,
            flow_loaded: false,
            suppliers: BTreeMap::new(),
            consumers: BTreeSet::new(),
            outbound: outbound.into(),
            in_transit,
            inbound,
            received,
            uncommitted: HashSet::new(),
            pending: BTreeMap::new(),
            parked: VecDeque::new(),
            lot_size: HashMap::new(),
            unavailable_until: HashMap::new(),
            last_heard: BTreeMap::new(),
            last_sent_to: BTreeMap::new(),
            reported: BTreeSet::new(),
            heartbeat_seq: 0,
            next_cycle: None,
            wall_origin_ms: 0,
            out: Output::default(),
            metrics,
        }
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
        self.flow.version
    }

    /// Lots waiting outbound.
    pub fn outbound_len(&self) -> usize {
        self.outbound.len()
    }

    /// Lots sent and not yet confirmed.
    pub fn in_transit_len(&self) -> usize {
        self.in_transit.len()
    }

    /// Units held of input `item`.
    pub fn held_units(&self, item: &ItemType) -> u32 {
        self.inbound
            .get(item)
            .map(|q| q.iter().map(|h| h.remaining).sum())
            .unwrap_or(0)
    }

    /// Takes what the shell must do: commit `wal`, then send.
    pub fn take_output(&mut self) -> Output {
        self.uncommitted.clear();
        std::mem::take(&mut self.out)
    }

    fn meta(&self) -> WalOp {
        WalOp::Meta(Meta {
            next_seq: self.seq,
            flow_version: self.flow.version,
        })
    }

    fn send(&mut self, now: Duration, to: NodeId, msg: Message) {
        self.last_sent_to.insert(to, now);
        self.out.send.push((to, msg));
    }

    /// Installs a flow read from the coordinators (older ones are ignored),
    /// and adopts the recipe it carries for our type if that is newer.
    pub fn set_flow(&mut self, now: Duration, flow: &Flow) {
        let older = flow.version < self.flow.version;
        if older || (flow.version == self.flow.version && self.flow_loaded) {
            return;
        }
        if let Some(recipe) = flow.recipes.get(&self.cfg.item) {
            if recipe.version > self.cfg.recipe.version {
                tracing::info!(
                    stage = %self.cfg.id,
                    from = self.cfg.recipe.version,
                    to = recipe.version,
                    inputs = ?recipe.inputs,
                    "recipe updated"
                );
                self.cfg.recipe = recipe.clone();
                self.metrics.recipe_updates += 1;
                self.metrics.recipe_version = recipe.version as u64;
                // Requests for inputs the recipe no longer needs are dropped;
                // a lot that still arrives for one is taken (see `on_batch`).
                let inputs = &self.cfg.recipe.inputs;
                self.pending
                    .retain(|_, (item, _)| inputs.contains_key(item));
                self.out.wal.push(WalOp::Recipe(recipe.clone()));
            }
        }
        self.flow = flow.clone();
        self.flow_loaded = true;
        let me = self.cfg.id;
        let mut suppliers: BTreeMap<ItemType, Vec<(NodeId, u32)>> = BTreeMap::new();
        for e in flow.edges.iter().filter(|e| e.consumer == me) {
            suppliers
                .entry(e.item.clone())
                .or_default()
                .push((e.supplier, e.share));
        }
        self.suppliers = suppliers;
        self.consumers = flow.consumers_of(me).map(|e| e.consumer).collect();
        let neighbours = self.neighbours();
        self.last_heard.retain(|n, _| neighbours.contains(n));
        self.reported.retain(|n| neighbours.contains(n));
        for n in neighbours {
            self.last_heard.entry(n).or_insert(now);
        }
        self.metrics.flow_updates += 1;
        let meta = self.meta();
        self.out.wal.push(meta);
    }

    fn neighbours(&self) -> BTreeSet<NodeId> {
        self.suppliers
            .values()
            .flatten()
            .map(|(s, _)| *s)
            .chain(self.consumers.iter().copied())
            .collect()
    }

    /// Handles one message from `from` (the transport checked `env.sender == from`).
    pub fn on_message(&mut self, now: Duration, from: NodeId, env: &Envelope) {
        self.last_heard.insert(from, now);
        if self.reported.remove(&from) {
            tracing::debug!(stage = %self.cfg.id, peer = %from, "suspect heard from again");
        }
        if env.flow_version > self.flow.version {
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
            Message::BatchUnavailable { req, .. } => {
                self.metrics.batch_unavailable_received += 1;
                if self
                    .pending
                    .get(req)
                    .is_some_and(|(_, p)| p.supplier == from)
                {
                    self.pending.remove(req);
                }
                self.unavailable_until.insert(from, now + self.cfg.cycle);
            }
            Message::DeliveryConfirmed { lot } => {
                if let Some(t) = self.in_transit.remove(lot) {
                    self.metrics.batches_delivered += 1;
                    self.out.wal.push(WalOp::Out(OutRecord {
                        lot: t.lot,
                        state: OutState::Delivered { to: t.to },
                    }));
                }
            }
            Message::WaitingForBatch { lot } => {
                if let Some(t) = self.in_transit.get_mut(lot) {
                    t.last_sent = Some(now);
                }
            }
            // Heartbeats only refresh liveness; markers and coordinator traffic
            // are not the trade core's business.
            _ => {}
        }
    }

    fn on_request(
        &mut self,
        now: Duration,
        from: NodeId,
        version: FlowVersion,
        req: RequestId,
        item: &ItemType,
    ) {
        if version < self.flow.version {
            self.metrics.stale_flow_refused += 1;
            return;
        }
        let unavailable = Message::BatchUnavailable {
            req,
            item: item.clone(),
        };
        if item != &self.cfg.item || !self.consumers.contains(&from) {
            self.metrics.requests_refused_not_in_flow += 1;
            self.metrics.batch_unavailable_sent += 1;
            self.send(now, from, unavailable);
            return;
        }
        match self.outbound.pop_front() {
            Some(lot) => self.ship(now, from, req, lot),
            None => {
                // Nothing in stock: keep the request (bounded) and serve it
                // from the next lot made, instead of a round trip of refusals.
                let limit = self.consumers.len().max(1) * self.cfg.max_in_flight;
                if self.parked.len() < limit {
                    self.parked.push_back((from, req, item.clone(), now));
                } else {
                    self.metrics.batch_unavailable_sent += 1;
                    self.send(now, from, unavailable);
                }
            }
        }
    }

    /// Sends `lot` to `to` in answer to `req`: in transit first (WAL), then sent.
    fn ship(&mut self, now: Duration, to: NodeId, req: RequestId, lot: Lot) {
        self.out.wal.push(WalOp::Out(OutRecord {
            lot: lot.clone(),
            state: OutState::InTransit { to },
        }));
        self.in_transit.insert(
            lot.id,
            Transit {
                lot: lot.clone(),
                to,
                last_sent: Some(now),
            },
        );
        self.metrics.batches_sent += 1;
        self.send(
            now,
            to,
            Message::BatchSent {
                req: Some(req),
                lot,
            },
        );
    }

    /// Serves parked requests from the outbound inventory; answers those
    /// parked too long (or from stages the flow no longer names) unavailable.
    fn serve_parked(&mut self, now: Duration) {
        let mut keep = VecDeque::new();
        while let Some((to, req, item, at)) = self.parked.pop_front() {
            let expired = now.saturating_sub(at) >= self.cfg.park_timeout;
            if !self.consumers.contains(&to) || expired {
                self.metrics.batch_unavailable_sent += 1;
                self.send(now, to, Message::BatchUnavailable { req, item });
            } else if let Some(lot) = self.outbound.pop_front() {
                self.ship(now, to, req, lot);
            } else {
                keep.push_back((to, req, item, at));
            }
        }
        self.parked = keep;
    }

    fn on_batch(&mut self, now: Duration, from: NodeId, req: Option<RequestId>, lot: &Lot) {
        if let Some(r) = req {
            if self
                .pending
                .get(&r)
                .is_some_and(|(_, p)| p.supplier == from)
            {
                self.pending.remove(&r);
            }
        }
        if self.received.contains(&lot.id) {
            self.metrics.duplicate_lots_received += 1;
            let answer = if self.uncommitted.contains(&lot.id) {
                Message::WaitingForBatch { lot: lot.id }
            } else {
                Message::DeliveryConfirmed { lot: lot.id }
            };
            self.send(now, from, answer);
            return;
        }
        if !self.cfg.recipe.inputs.contains_key(&lot.item) {
            // Not an input (any more): a recipe update dropped it while the lot
            // was on its way. It is taken all the same: refused, it would stay
            // in transit at the supplier for ever; taken, it is held here
            // (and used again if a later recipe needs it).
            self.metrics.lots_received_not_input += 1;
            tracing::debug!(stage = %self.cfg.id, lot = %lot.id, item = %lot.item, "took a lot that is not an input of the current recipe");
        }
        self.received.insert(lot.id);
        self.uncommitted.insert(lot.id);
        self.metrics.batches_received += 1;
        self.lot_size.insert(lot.item.clone(), lot.units.max(1));
        self.out.wal.push(WalOp::In(InRecord {
            lot: lot.clone(),
            from,
            remaining: lot.units,
        }));
        self.inbound
            .entry(lot.item.clone())
            .or_default()
            .push_back(Held {
                lot: lot.clone(),
                from,
                remaining: lot.units,
            });
        self.send(now, from, Message::DeliveryConfirmed { lot: lot.id });
    }

    /// Advances time: manufacture cycles that are due, requests, re-sends,
    /// heartbeats and suspicion.
    pub fn tick(&mut self, now: Duration) {
        let next = *self.next_cycle.get_or_insert(now);
        if now >= next {
            self.cycle(now);
            // Skip cycles missed while stalled instead of bursting to catch up.
            let mut n = next + self.cfg.cycle;
            if n <= now {
                n = now + self.cfg.cycle;
            }
            self.next_cycle = Some(n);
        }
        self.serve_parked(now);
        self.expire_requests(now);
        self.request_inputs(now);
        self.retransmit(now);
        self.heartbeats(now);
    }

    /// One manufacture cycle.
    fn cycle(&mut self, now: Duration) {
        if !self.cfg.is_final && self.outbound.len() >= self.cfg.outbound_cap {
            self.metrics.blocked_manufacture_cycles += 1;
            return;
        }
        let ready = self
            .cfg
            .recipe
            .inputs
            .iter()
            .all(|(item, units)| self.held_units(item) >= *units);
        if !ready {
            self.metrics.skipped_manufacture_cycles += 1;
            return;
        }
        let mut genealogy = Vec::new();
        let inputs = self.recipe_inputs();
        for (item, mut need) in inputs {
            let queue = self.inbound.entry(item).or_default();
            while need > 0 {
                let Some(front) = queue.front_mut() else {
                    break;
                };
                let take = need.min(front.remaining);
                front.remaining -= take;
                need -= take;
                genealogy.push((front.lot.id, take));
                self.out.wal.push(WalOp::In(InRecord {
                    lot: front.lot.clone(),
                    from: front.from,
                    remaining: front.remaining,
                }));
                if front.remaining == 0 {
                    queue.pop_front();
                }
            }
        }
        let lot = Lot {
            id: LotId::new(self.cfg.id, self.seq),
            item: self.cfg.item.clone(),
            units: self.cfg.recipe.yield_units,
            genealogy,
            made_ms: self.wall_origin_ms + now.as_millis() as u64,
        };
        self.seq += 1;
        let state = if self.cfg.is_final {
            self.metrics.final_products += 1;
            OutState::Shipped
        } else {
            self.outbound.push_back(lot.clone());
            OutState::InQueue
        };
        self.out.wal.push(WalOp::Out(OutRecord { lot, state }));
        let meta = self.meta();
        self.out.wal.push(meta);
        self.metrics.successful_manufacture_cycles += 1;
    }

    fn expire_requests(&mut self, now: Duration) {
        let timeout = self.cfg.request_timeout;
        let before = self.pending.len();
        self.pending
            .retain(|_, (_, p)| now.saturating_sub(p.sent_at) < timeout);
        self.metrics.requests_timed_out += (before - self.pending.len()) as u64;
    }

    fn in_flight(&self, supplier: NodeId) -> usize {
        self.pending
            .values()
            .filter(|(_, p)| p.supplier == supplier)
            .count()
    }

    /// The recipe's inputs and their units per cycle (owned, so the caller
    /// may mutate the core while walking them).
    fn recipe_inputs(&self) -> Vec<(ItemType, u32)> {
        self.cfg
            .recipe
            .inputs
            .iter()
            .map(|(i, u)| (i.clone(), *u))
            .collect()
    }

    /// Keeps every input near its target by asking the flow's suppliers.
    fn request_inputs(&mut self, now: Duration) {
        let inputs = self.recipe_inputs();
        for (item, units) in inputs {
            let Some(suppliers) = self.suppliers.get(&item).cloned() else {
                continue;
            };
            let target = units * self.cfg.target_cycles.max(1);
            let lot = *self.lot_size.get(&item).unwrap_or(&1) as u64;
            // A supplier silent for three heartbeat periods is probably down: do
            // not wait on what was asked of it, and ask the others instead.
            let silent_after = self.cfg.heartbeat_every * 3;
            let responsive = |core: &Self, s: NodeId| {
                core.last_heard
                    .get(&s)
                    .is_none_or(|t| now.saturating_sub(*t) < silent_after)
            };
            loop {
                let requested = self
                    .pending
                    .values()
                    .filter(|(i, p)| i == &item && responsive(self, p.supplier))
                    .count() as u64;
                if self.held_units(&item) as u64 + requested * lot >= target as u64 {
                    break;
                }
                // The available supplier with the fewest requests per share.
                let choice = suppliers
                    .iter()
                    .filter(|(s, share)| {
                        *share > 0
                            && responsive(self, *s)
                            && self.in_flight(*s) < self.cfg.max_in_flight
                            && self.unavailable_until.get(s).is_none_or(|t| *t <= now)
                    })
                    .min_by_key(|(s, share)| {
                        (
                            (self.in_flight(*s) as u64 + 1) * 1_000_000 / *share as u64,
                            *s,
                        )
                    })
                    .map(|(s, _)| *s);
                let Some(supplier) = choice else { break };
                let req = RequestId(self.next_req);
                self.next_req += 1;
                self.pending.insert(
                    req,
                    (
                        item.clone(),
                        Pending {
                            supplier,
                            sent_at: now,
                        },
                    ),
                );
                self.metrics.batches_requested += 1;
                self.send(
                    now,
                    supplier,
                    Message::RequestBatch {
                        req,
                        item: item.clone(),
                    },
                );
            }
        }
    }

    fn retransmit(&mut self, now: Duration) {
        let every = self.cfg.retransmit;
        let due: Vec<LotId> = self
            .in_transit
            .iter()
            .filter(|(_, t)| t.last_sent.is_none_or(|at| now.saturating_sub(at) >= every))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let t = self.in_transit.get_mut(&id).expect("listed above");
            t.last_sent = Some(now);
            let (to, lot) = (t.to, t.lot.clone());
            self.metrics.lots_retransmitted += 1;
            self.send(now, to, Message::BatchSent { req: None, lot });
        }
    }

    fn heartbeats(&mut self, now: Duration) {
        for n in self.neighbours() {
            let idle = self
                .last_sent_to
                .get(&n)
                .is_none_or(|t| now.saturating_sub(*t) >= self.cfg.heartbeat_every);
            if idle {
                self.heartbeat_seq += 1;
                self.metrics.heartbeats_sent += 1;
                let seq = self.heartbeat_seq;
                self.send(now, n, Message::Heartbeat { seq });
            }
            let silent = self
                .last_heard
                .get(&n)
                .is_some_and(|t| now.saturating_sub(*t) >= self.cfg.suspect_after);
            if silent && self.reported.insert(n) {
                self.metrics.nodes_reported_suspect += 1;
                self.out.suspects.push(n);
            }
        }
    }
}

#[cfg(test)]
mod tests;
