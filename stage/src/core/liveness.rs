//! Liveness of the links to the flow's neighbours: when each was last heard
//! from and last sent to; an explicit heartbeat to our watcher when that
//! link is quiet, and a watched neighbour silent past the deadline (or a
//! supplier silent through a whole request) reported suspect once.

use super::StageCore;
use factoryos_wire::message::Message;
use factoryos_wire::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Liveness {
    last_heard: BTreeMap<NodeId, Duration>,
    last_sent_to: BTreeMap<NodeId, Duration>,
    /// Neighbours reported suspect and not heard from since.
    reported: BTreeSet<NodeId>,
    /// Neighbours heard from at least once since this stage started.
    ever_heard: BTreeSet<NodeId>,
    heartbeat_seq: u64,
}

impl Liveness {
    /// A frame from `from`; whether it was a suspect we had reported.
    pub(super) fn heard_from(&mut self, from: NodeId, now: Duration) -> bool {
        self.last_heard.insert(from, now);
        self.ever_heard.insert(from);
        self.reported.remove(&from)
    }

    pub(super) fn sent_to(&mut self, to: NodeId, now: Duration) {
        self.last_sent_to.insert(to, now);
    }

    /// A new flow: forget who left it, start the clocks for who joined (a
    /// new link is quiet, and gets a heartbeat, only after a period).
    pub(super) fn follow(&mut self, neighbours: &BTreeSet<NodeId>, now: Duration) {
        self.last_heard.retain(|n, _| neighbours.contains(n));
        self.last_sent_to.retain(|n, _| neighbours.contains(n));
        self.reported.retain(|n| neighbours.contains(n));
        for n in neighbours {
            self.last_heard.entry(*n).or_insert(now);
            self.last_sent_to.entry(*n).or_insert(now);
        }
    }

    /// Whether `peer` spoke to us at all since this stage started.
    pub(super) fn ever_heard(&self, peer: NodeId) -> bool {
        self.ever_heard.contains(&peer)
    }

    /// When `peer`, a neighbour, was last heard from.
    pub(super) fn last_heard(&self, peer: NodeId) -> Option<Duration> {
        self.last_heard.get(&peer).copied()
    }

    /// Whether `peer`, a neighbour, has been silent for `at_least`.
    pub(super) fn silent_for(&self, peer: NodeId, now: Duration, at_least: Duration) -> bool {
        self.last_heard
            .get(&peer)
            .is_some_and(|t| now.saturating_sub(*t) >= at_least)
    }
}

impl StageCore {
    /// A heartbeat to our watcher if we sent it nothing for a heartbeat
    /// period; the neighbours we watch, silent past the deadline, reported
    /// suspect once.
    pub(super) fn heartbeats(&mut self, now: Duration) {
        if let Some(w) = self.flow.watcher() {
            let idle = self
                .liveness
                .last_sent_to
                .get(&w)
                .is_none_or(|t| now.saturating_sub(*t) >= self.cfg.heartbeat_every);
            if idle {
                self.liveness.heartbeat_seq += 1;
                self.metrics.heartbeats_sent += 1;
                let seq = self.liveness.heartbeat_seq;
                self.send(now, w, Message::Heartbeat { seq });
            }
        }
        // Only a neighbour that spoke to us since we started falls silent: one
        // that never did may not have our address or flow yet (we just
        // restarted, or it just joined). Reporting it anyway made every
        // restarted stage report live neighbours a second after its start,
        // and the leader then routed around those links for good. The same
        // holds for unanswered requests (`expire_requests`).
        let watched: Vec<NodeId> = self
            .flow
            .watched()
            .iter()
            .copied()
            .filter(|n| self.liveness.ever_heard(*n))
            .collect();
        for n in watched {
            if self.liveness.silent_for(n, now, self.cfg.suspect_after) {
                self.report_suspect(n);
            }
        }
    }

    /// Reports `n` suspect unless it was reported and not heard from since.
    pub(super) fn report_suspect(&mut self, n: NodeId) {
        if self.liveness.reported.insert(n) {
            self.metrics.nodes_reported_suspect += 1;
            self.out.suspects.push(n);
        }
    }
}
