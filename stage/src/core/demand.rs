//! The consumer side: lots held per input (oldest first, partly consumed),
//! every lot ever received (never taken twice), and the requests in flight
//! that keep each input near its target.

use super::flow_view::FlowView;
use super::in_flight::{InFlight, Pending};
use super::shares::Shares;
use super::StageCore;
use crate::metrics::StageMetrics;
use crate::records::{InRecord, WalOp};
use factoryos_wire::message::Message;
use factoryos_wire::model::{Lot, Recipe};
use factoryos_wire::{ItemType, LotId, NodeId, RequestId};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Demand {
    inbound: BTreeMap<ItemType, VecDeque<Held>>,
    /// Every lot ever received (held or consumed): never taken twice.
    received: FxHashSet<LotId>,
    /// Lots received since the last `take_output` (not durable yet).
    uncommitted: FxHashSet<LotId>,
    pending: InFlight,
    next_req: u64,
    /// Units in the last lot received per input item (to size requests).
    lot_size: BTreeMap<ItemType, u32>,
    /// Suppliers that answered `BatchUnavailable`, left alone until then.
    unavailable_until: FxHashMap<NodeId, Duration>,
    /// Per input: which supplier is asked next, by the flow's shares.
    shares: BTreeMap<ItemType, Shares>,
}

#[derive(Debug, Clone)]
struct Held {
    lot: Lot,
    from: NodeId,
    remaining: u32,
}

impl Demand {
    /// The consumer side as the WAL left it. Request ids continue from the
    /// lot sequence (`next_seq << 16`), so a restart never reuses one.
    pub(super) fn recover(
        records: Vec<InRecord>,
        next_seq: u64,
        metrics: &mut StageMetrics,
    ) -> Self {
        let mut held: Vec<InRecord> = Vec::new();
        let mut received = FxHashSet::default();
        for r in records {
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
        Demand {
            inbound,
            received,
            next_req: next_seq << 16,
            ..Demand::default()
        }
    }

    pub(super) fn held_units(&self, item: &ItemType) -> u32 {
        self.inbound
            .get(item)
            .map(|q| q.iter().map(|h| h.remaining).sum())
            .unwrap_or(0)
    }

    /// A new flow: the shares start afresh, and requests to a stage it no
    /// longer names as a supplier of their item are forgotten (it may be
    /// down, behind a live host that would keep them held).
    pub(super) fn new_flow(&mut self, flow: &FlowView) {
        self.shares.clear();
        self.pending.retain(|s, item| {
            flow.suppliers_of(item)
                .is_some_and(|v| v.iter().any(|(x, _)| *x == s))
        });
    }

    /// `supplier` greeted us after a restart: what we asked of it before
    /// died with its memory, so it is asked afresh.
    pub(super) fn supplier_restarted(&mut self, supplier: NodeId) {
        self.pending.retain(|s, _| s != supplier);
    }

    /// What was received so far is durable now.
    pub(super) fn committed(&mut self) {
        self.uncommitted.clear();
    }

    /// A recipe update: requests for inputs it no longer needs are dropped.
    pub(super) fn drop_requests_not_in(&mut self, recipe: &Recipe) {
        self.pending
            .retain(|_, item| recipe.inputs.contains_key(item));
    }

    /// Takes `need` units of `item`, oldest lots first: the lots and units
    /// taken go to `genealogy`, each lot's new state to `wal`.
    pub(super) fn consume(
        &mut self,
        item: &ItemType,
        mut need: u32,
        genealogy: &mut Vec<(LotId, u32)>,
        wal: &mut Vec<WalOp>,
    ) {
        let queue = self.inbound.entry(item.clone()).or_default();
        while need > 0 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            let take = need.min(front.remaining);
            front.remaining -= take;
            need -= take;
            genealogy.push((front.lot.id, take));
            wal.push(WalOp::In(InRecord {
                lot: front.lot.clone(),
                from: front.from,
                remaining: front.remaining,
            }));
            if front.remaining == 0 {
                queue.pop_front();
            }
        }
    }
}

impl StageCore {
    pub(super) fn on_batch(
        &mut self,
        now: Duration,
        from: NodeId,
        req: Option<RequestId>,
        lot: &Lot,
    ) {
        if let Some(r) = req {
            self.demand.pending.answered(r, from);
        }
        if self.demand.received.contains(&lot.id) {
            self.metrics.duplicate_lots_received += 1;
            let answer = if self.demand.uncommitted.contains(&lot.id) {
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
        let d = &mut self.demand;
        d.received.insert(lot.id);
        d.uncommitted.insert(lot.id);
        d.lot_size.insert(lot.item.clone(), lot.units.max(1));
        d.inbound
            .entry(lot.item.clone())
            .or_default()
            .push_back(Held {
                lot: lot.clone(),
                from,
                remaining: lot.units,
            });
        self.metrics.batches_received += 1;
        self.out.wal.push(WalOp::In(InRecord {
            lot: lot.clone(),
            from,
            remaining: lot.units,
        }));
        self.send(now, from, Message::DeliveryConfirmed { lot: lot.id });
    }

    pub(super) fn on_unavailable(&mut self, now: Duration, from: NodeId, req: RequestId) {
        self.metrics.batch_unavailable_received += 1;
        self.demand.pending.answered(req, from);
        self.demand
            .unavailable_until
            .insert(from, now + self.cfg.cycle);
    }

    /// Gives up requests unanswered for `request_timeout` (or, to a
    /// supplier heard from since, which holds them for its next lots, for
    /// `request_hold`); a supplier that spoke to us before but nothing since
    /// such a request is reported suspect (its watcher may be down too, or
    /// cut off from it).
    pub(super) fn expire_requests(&mut self, now: Duration) {
        let (timeout, hold) = (self.cfg.request_timeout, self.cfg.request_hold);
        if self
            .demand
            .pending
            .oldest()
            .is_none_or(|t| now.saturating_sub(t) < timeout)
        {
            return;
        }
        let (liveness, flow) = (&self.liveness, &self.flow);
        let heard_since = |s: NodeId, sent_at| liveness.heard_since(s, flow.addr_of(s), sent_at);
        let expired = self.demand.pending.expire(now, timeout, hold, heard_since);
        self.metrics.requests_timed_out += expired.len() as u64;
        for (supplier, sent_at) in expired {
            // Not one that never spoke to us since we started: after our
            // restart its first answers may still be on their way to our old
            // port (its dial there takes the handshake timeout to fail).
            let silent = self.liveness.ever_heard(supplier)
                && self
                    .liveness
                    .last_heard(supplier)
                    .is_none_or(|t| t <= sent_at);
            if silent {
                self.report_suspect(supplier);
            }
        }
    }

    /// When a tick may next act on the consumer side, with no input before
    /// it: per supplier with requests in flight, stop waiting on it if it
    /// stays quiet (`quiet_after`), give its oldest request up
    /// (`request_timeout`, or `request_hold` once it spoke since); or ask a
    /// supplier left alone after `BatchUnavailable` again. (What its host's
    /// other stages hear later only makes a supplier responsive again, which
    /// needs no tick: it asks for fewer requests, not more.)
    pub(super) fn demand_due(&self, now: Duration) -> Duration {
        let cfg = &self.cfg;
        let pending = self
            .demand
            .pending
            .oldest_per_supplier()
            .map(|(s, oldest)| {
                let heard = self.liveness.heard_since(s, self.flow.addr_of(s), oldest);
                let quiet = oldest + cfg.quiet_after;
                match (heard, quiet > now) {
                    (true, _) => oldest + cfg.request_hold,
                    (false, true) => quiet.min(oldest + cfg.request_timeout),
                    (false, false) => oldest + cfg.request_timeout,
                }
            })
            .min()
            .unwrap_or(Duration::MAX);
        let back = self
            .demand
            .unavailable_until
            .values()
            .copied()
            .filter(|t| *t > now)
            .min();
        pending.min(back.unwrap_or(Duration::MAX))
    }

    /// Keeps every input near its target by asking the flow's suppliers.
    pub(super) fn request_inputs(&mut self, now: Duration) {
        // Only the inputs short of their target (on most ticks none: this
        // runs every tick, so it allocates nothing then).
        let short: Vec<(ItemType, u64)> = self
            .cfg
            .recipe
            .inputs
            .iter()
            .filter(|(i, u)| {
                self.flow.suppliers_of(i).is_some()
                    && self.wants_more(now, i, self.input_target(**u))
            })
            .map(|(i, u)| (i.clone(), self.input_target(*u)))
            .collect();
        for (item, target) in short {
            let Some(suppliers) = self.flow.suppliers_of(&item).map(<[_]>::to_vec) else {
                continue;
            };
            while self.wants_more(now, &item, target) {
                let Some(supplier) = self.pick_supplier(now, &item, &suppliers) else {
                    break;
                };
                self.ask(now, supplier, &item);
            }
        }
    }

    /// A supplier that left our oldest request to it unanswered for
    /// `quiet_after`, silent all that time (it and, with a shared host, its
    /// host: a live supplier holds a request it cannot serve yet for up to
    /// `park_timeout`, and its host's other stages still speak for it), is
    /// probably down: do not wait on what was asked of it, and ask the
    /// others instead. (A live supplier with a shared host is heard from
    /// within `heartbeat_every`, well before `quiet_after`.)
    fn responsive(&self, now: Duration, supplier: NodeId) -> bool {
        match self.demand.pending.oldest_to(supplier) {
            Some(oldest) => self.responsive_since(now, supplier, oldest),
            None => true,
        }
    }

    /// [`Self::responsive`] for a supplier whose oldest request was sent at `oldest`.
    fn responsive_since(&self, now: Duration, supplier: NodeId, oldest: Duration) -> bool {
        let addr = self.flow.addr_of(supplier);
        self.liveness.heard_since(supplier, addr, oldest)
            || now.saturating_sub(oldest) < self.cfg.quiet_after
    }

    /// Whether held plus requested units of `item` fall short of `target`.
    fn wants_more(&self, now: Duration, item: &ItemType, target: u64) -> bool {
        let held = self.demand.held_units(item) as u64;
        if held >= target {
            // The common case, and it needs no count of the requests.
            return false;
        }
        let lot = *self.demand.lot_size.get(item).unwrap_or(&1) as u64;
        let pending = &self.demand.pending;
        // Every supplier is responsive while no request is older than
        // `quiet_after` (the common case: no scan).
        let all_responsive = pending
            .oldest()
            .is_none_or(|t| now.saturating_sub(t) < self.cfg.quiet_after);
        let requested: usize = if all_responsive {
            pending.of_item_count(item)
        } else {
            pending
                .of_item(item)
                .filter(|(s, oldest, _)| self.responsive_since(now, *s, *oldest))
                .map(|(_, _, n)| n)
                .sum()
        };
        held + requested as u64 * lot < target
    }

    /// The next supplier by the flow's shares among those available: a
    /// share, responsive, under its in-flight limit, not left alone after
    /// `BatchUnavailable`.
    fn pick_supplier(
        &mut self,
        now: Duration,
        item: &ItemType,
        suppliers: &[(NodeId, u32)],
    ) -> Option<NodeId> {
        let eligible: Vec<(NodeId, u32)> = suppliers
            .iter()
            .filter(|(s, share)| self.may_ask(now, *s, *share))
            .copied()
            .collect();
        self.demand
            .shares
            .entry(item.clone())
            .or_default()
            .pick(eligible)
    }

    /// Whether `supplier` (with `share` of an input) may be asked now. The
    /// cheap tests first: whether it is responsive looks up when its host
    /// was last heard from.
    fn may_ask(&self, now: Duration, supplier: NodeId, share: u32) -> bool {
        share > 0
            && self.demand.pending.to(supplier) < self.cfg.max_in_flight
            && self
                .demand
                .unavailable_until
                .get(&supplier)
                .is_none_or(|t| *t <= now)
            && self.responsive(now, supplier)
    }

    /// Whether [`Self::request_inputs`] would ask a supplier now: an input
    /// short of its target with a supplier that may be asked.
    pub(super) fn would_request(&self, now: Duration) -> bool {
        self.cfg.recipe.inputs.iter().any(|(item, units)| {
            self.flow.suppliers_of(item).is_some_and(|suppliers| {
                self.wants_more(now, item, self.input_target(*units))
                    && suppliers
                        .iter()
                        .any(|(s, share)| self.may_ask(now, *s, *share))
            })
        })
    }

    /// The units of an input the consumer keeps (held plus requested), for
    /// `units` of it a lot.
    fn input_target(&self, units: u32) -> u64 {
        (units * self.cfg.target_cycles.max(1) * self.cfg.capacity.max(1)) as u64
    }

    fn ask(&mut self, now: Duration, supplier: NodeId, item: &ItemType) {
        let req = RequestId(self.demand.next_req);
        self.demand.next_req += 1;
        let pending = Pending {
            req,
            item: item.clone(),
            sent_at: now,
        };
        self.demand.pending.insert(supplier, pending);
        self.metrics.batches_requested += 1;
        let request = Message::RequestBatch {
            req,
            item: item.clone(),
        };
        self.send(now, supplier, request);
    }
}
