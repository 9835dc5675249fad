//! The supplier side: lots waiting outbound, lots in transit until their
//! consumer confirms them (re-sent until then), and requests parked while
//! the outbound inventory is empty, served by the consumers' flow shares.

use super::shares::Shares;
use super::StageCore;
use crate::metrics::StageMetrics;
use crate::records::{OutRecord, OutState, WalOp};
use factoryos_wire::message::Message;
use factoryos_wire::model::Lot;
use factoryos_wire::{FlowVersion, ItemType, LotId, NodeId, RequestId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

#[derive(Debug)]
pub struct Supply {
    outbound: VecDeque<Lot>,
    in_transit: BTreeMap<LotId, Transit>,
    /// Requests waiting here for a lot, oldest first.
    parked: VecDeque<Parked>,
    /// Whose parked request a new lot goes to: consumers take turns by
    /// their flow shares (a new flow starts the turns afresh).
    turns: Shares,
    /// When our last new flow came: a request parked before it is not
    /// held past `park_timeout` (the consumer may have new suppliers).
    flow_at: Duration,
    /// When we last made a lot (`None`: not since we started).
    made_at: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Transit {
    lot: Lot,
    to: NodeId,
    /// When it was last sent; `None` = never since recovery (send at once).
    last_sent: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Parked {
    consumer: NodeId,
    req: RequestId,
    item: ItemType,
    at: Duration,
}

impl Supply {
    /// The supplier side as the WAL left it: lots in queue wait outbound
    /// again, lots in transit are re-sent at once.
    pub(super) fn recover(records: Vec<OutRecord>, metrics: &mut StageMetrics) -> Self {
        let mut outbound = Vec::new();
        let mut in_transit = BTreeMap::new();
        for r in records {
            match r.state {
                OutState::InQueue => {
                    metrics.wal_recovered_in_queue += 1;
                    outbound.push(r.lot);
                }
                OutState::InTransit { to } => {
                    metrics.wal_recovered_in_transit += 1;
                    let transit = Transit {
                        lot: r.lot,
                        to,
                        last_sent: None,
                    };
                    in_transit.insert(transit.lot.id, transit);
                }
                OutState::Delivered { .. } => metrics.batches_delivered += 1,
                OutState::Shipped => metrics.final_products += 1,
            }
        }
        outbound.sort_by_key(|l| l.id.seq);
        Supply {
            outbound: outbound.into(),
            in_transit,
            parked: VecDeque::new(),
            turns: Shares::default(),
            flow_at: Duration::ZERO,
            made_at: None,
        }
    }

    /// When a tick may next act on the supplier side, with no input before
    /// it, apart from refusing parked requests ([`StageCore::park_due`]):
    /// parked requests to serve (at once), lots in transit to re-send
    /// (every `retransmit`).
    pub(super) fn due(&self, retransmit: Duration) -> Duration {
        if !self.parked.is_empty() && !self.outbound.is_empty() {
            return Duration::ZERO;
        }
        let resend = self
            .in_transit
            .values()
            .map(|t| t.last_sent.map_or(Duration::ZERO, |at| at + retransmit));
        resend.min().unwrap_or(Duration::MAX)
    }

    /// A new flow at `now`: the consumers' shares changed.
    pub(super) fn new_flow(&mut self, now: Duration) {
        self.turns = Shares::default();
        self.flow_at = now;
    }

    pub(super) fn outbound_len(&self) -> usize {
        self.outbound.len()
    }

    pub(super) fn in_transit_len(&self) -> usize {
        self.in_transit.len()
    }

    /// A lot made at `now`, waiting for a request.
    pub(super) fn stock(&mut self, now: Duration, lot: Lot) {
        self.made_at = Some(now);
        self.outbound.push_back(lot);
    }

    /// The consumer re-asserts a transit: the lot reached it, its write is
    /// not durable yet; wait a retransmit period before re-sending.
    pub(super) fn consumer_waits(&mut self, lot: &LotId, now: Duration) {
        if let Some(t) = self.in_transit.get_mut(lot) {
            t.last_sent = Some(now);
        }
    }
}

impl StageCore {
    pub(super) fn on_request(
        &mut self,
        now: Duration,
        from: NodeId,
        version: FlowVersion,
        req: RequestId,
        item: &ItemType,
    ) {
        let unavailable = Message::BatchUnavailable {
            req,
            item: item.clone(),
        };
        if version < self.flow.version() {
            // Refused, and said so: the answer carries our newer flow
            // version, which tells the consumer to fetch the flow.
            self.metrics.stale_flow_refused += 1;
            self.metrics.batch_unavailable_sent += 1;
            self.send(now, from, unavailable);
            return;
        }
        if self.draining {
            // Stopping: no new trade starts.
            self.metrics.batch_unavailable_sent += 1;
            self.send(now, from, unavailable);
            return;
        }
        if item != &self.cfg.item || !self.flow.serves(from) {
            self.metrics.requests_refused_not_in_flow += 1;
            self.metrics.batch_unavailable_sent += 1;
            self.send(now, from, unavailable);
            return;
        }
        match self.supply.outbound.pop_front() {
            Some(lot) => {
                let share = self.flow.share_of(from);
                self.supply.turns.pick([(from, share)]);
                self.ship(now, from, req, lot)
            }
            None => {
                // Nothing in stock: keep the request (bounded) and serve it
                // from the next lot made, instead of a round trip of refusals.
                let limit = self.flow.consumer_count().max(1) * self.cfg.max_in_flight;
                if self.supply.parked.len() < limit {
                    self.supply.parked.push_back(Parked {
                        consumer: from,
                        req,
                        item: item.clone(),
                        at: now,
                    });
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
        let transit = Transit {
            lot: lot.clone(),
            to,
            last_sent: Some(now),
        };
        self.supply.in_transit.insert(lot.id, transit);
        self.metrics.batches_sent += 1;
        let sent = Message::BatchSent {
            req: Some(req),
            lot,
        };
        self.send(now, to, sent);
    }

    /// Serves parked requests from the outbound inventory, the consumers
    /// taking turns by their flow shares (each one's oldest request first);
    /// answers those parked too long (or from stages the flow no longer
    /// names) unavailable.
    pub(super) fn serve_parked(&mut self, now: Duration) {
        // Most ticks: nothing to refuse, and nothing in stock to serve.
        let parked = &self.supply.parked;
        if parked.is_empty()
            || (self.supply.outbound.is_empty() && !parked.iter().any(|p| self.refuses(p, now)))
        {
            return;
        }
        let parked = std::mem::take(&mut self.supply.parked);
        let (refuse, mut keep): (VecDeque<Parked>, VecDeque<Parked>) =
            parked.into_iter().partition(|p| self.refuses(p, now));
        for p in refuse {
            self.metrics.batch_unavailable_sent += 1;
            let answer = Message::BatchUnavailable {
                req: p.req,
                item: p.item,
            };
            self.send(now, p.consumer, answer);
        }
        while !keep.is_empty() && !self.supply.outbound.is_empty() {
            let waiting: BTreeSet<NodeId> = keep.iter().map(|p| p.consumer).collect();
            let eligible = waiting.into_iter().map(|c| (c, self.flow.share_of(c)));
            let Some(next) = self.supply.turns.pick(eligible) else {
                break;
            };
            let i = keep
                .iter()
                .position(|p| p.consumer == next)
                .expect("picked among the waiting");
            let p = keep.remove(i).expect("a valid index");
            let lot = self.supply.outbound.pop_front().expect("checked non-empty");
            self.ship(now, p.consumer, p.req, lot);
        }
        self.supply.parked = keep;
    }

    /// When a tick may next refuse a parked request (at once if that passed).
    pub(super) fn park_due(&self) -> Duration {
        let refuse = self.supply.parked.iter().map(|p| self.parked_until(p));
        refuse.min().unwrap_or(Duration::MAX)
    }

    /// Until when parked request `p` is held: `park_timeout` after it came
    /// while nothing went to its consumer (or its host) since, which would
    /// take our silence for a crash; else the consumer hears that we live
    /// and keeps the request for `request_hold`, and we hold it until just
    /// before (`park_hold`), for a lot, instead of a refusal and a new
    /// request every `park_timeout`. Not past `park_timeout` once a new
    /// flow came after it: the consumer asked by the old flow, and the new
    /// one may name suppliers with lots that nobody asked for (at start-up
    /// a chain's consumers ask the first suppliers registered, and the
    /// fill stalled behind them for the whole hold).
    fn parked_until(&self, p: &Parked) -> Duration {
        let making = self.supply.made_at.is_some_and(|t| t > p.at);
        if making && p.at >= self.supply.flow_at && self.consumer_heard_since(p) {
            p.at + self.cfg.park_hold
        } else {
            p.at + self.cfg.park_timeout
        }
    }

    /// Whether we (or our host) sent `p`'s consumer (or its host) anything
    /// since it asked: it hears that we live.
    fn consumer_heard_since(&self, p: &Parked) -> bool {
        self.liveness
            .last_sent(p.consumer, self.flow.addr_of(p.consumer))
            .is_some_and(|t| t > p.at)
    }

    /// Whether parked request `p` is answered unavailable now: from a stage
    /// the flow no longer names, we are stopping, or parked too long
    /// ([`Self::parked_until`]).
    fn refuses(&self, p: &Parked, now: Duration) -> bool {
        !self.flow.serves(p.consumer) || self.draining || now >= self.parked_until(p)
    }

    /// The consumer holds `lot` durably: it is delivered.
    pub(super) fn on_confirmed(&mut self, lot: &LotId) {
        if let Some(t) = self.supply.in_transit.remove(lot) {
            self.metrics.batches_delivered += 1;
            self.out.wal.push(WalOp::Out(OutRecord {
                lot: t.lot,
                state: OutState::Delivered { to: t.to },
            }));
        }
    }

    /// Re-sends every lot in transit unconfirmed for a retransmit period.
    pub(super) fn retransmit(&mut self, now: Duration) {
        let every = self.cfg.retransmit;
        let due: Vec<(NodeId, Lot)> = self
            .supply
            .in_transit
            .values_mut()
            .filter(|t| t.last_sent.is_none_or(|at| now.saturating_sub(at) >= every))
            .map(|t| {
                t.last_sent = Some(now);
                (t.to, t.lot.clone())
            })
            .collect();
        for (to, lot) in due {
            self.metrics.lots_retransmitted += 1;
            self.send(now, to, Message::BatchSent { req: None, lot });
        }
    }
}
