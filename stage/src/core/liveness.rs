//! Liveness of the links to the flow's neighbours: when each was last heard
//! from and last sent to; an explicit heartbeat to our watcher when that
//! link is quiet, and a watched neighbour silent past the deadline (or a
//! supplier silent through a whole request) reported suspect once. In a
//! host of many stages, a frame between any stages of two hosts counts for
//! all of them ([`HostLinks`]).

use super::host_links::HostLinks;
use super::StageCore;
use factoryos_wire::message::{Message, GREETING};
use factoryos_wire::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
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
    /// No watched neighbour falls silent before this (`None`: look at the
    /// next tick), so most ticks skip the scan.
    suspicion_due: Option<Duration>,
    /// What this host's other stages heard and sent, by host (`None`: a
    /// stage alone, or one whose host does not share it).
    host: Option<HostLinks>,
    /// The watcher, its address, and the earliest time its link can have
    /// been quiet for a heartbeat period: sends only move that later, so
    /// the ticks before it skip the look at the tables.
    heartbeat_due: Option<(NodeId, Option<SocketAddr>, Duration)>,
    /// A restarted stage that has not greeted its first flow's neighbours.
    greet: bool,
}

impl Liveness {
    /// The links of a stage restarted from its WAL: it greets the
    /// neighbours of its first flow ([`StageCore::greet_after_restart`]).
    pub(super) fn restarted() -> Self {
        Liveness {
            greet: true,
            ..Liveness::default()
        }
    }

    /// Shares `links` with the other stages of our host.
    pub(super) fn share_host(&mut self, links: HostLinks) {
        self.host = Some(links);
    }

    /// A frame from `from` (at `addr`, if the flow says); whether it was a
    /// suspect we had reported.
    pub(super) fn heard_from(
        &mut self,
        from: NodeId,
        addr: Option<SocketAddr>,
        now: Duration,
    ) -> bool {
        self.last_heard.insert(from, now);
        if let Some((host, addr)) = self.host_at(addr) {
            host.heard(addr, now);
        }
        let first = self.ever_heard.insert(from);
        let was_reported = self.reported.remove(&from);
        if first || was_reported {
            // Watched again (or for the first time): its deadline may be
            // the next one.
            self.suspicion_due = None;
        }
        was_reported
    }

    pub(super) fn sent_to(&mut self, to: NodeId, addr: Option<SocketAddr>, now: Duration) {
        self.last_sent_to.insert(to, now);
        if let Some((host, addr)) = self.host_at(addr) {
            host.sent(addr, now);
        }
    }

    /// Our host's shared table and `addr`, when both are known.
    fn host_at(&self, addr: Option<SocketAddr>) -> Option<(&HostLinks, SocketAddr)> {
        self.host.as_ref().zip(addr)
    }

    /// When `peer`'s host (at `addr`) was last heard from by any stage of
    /// ours, or `peer` by us, whichever is later.
    pub(super) fn host_heard(&self, peer: NodeId, addr: Option<SocketAddr>) -> Option<Duration> {
        let by_host = self.host_at(addr).and_then(|(h, a)| h.last_heard(a));
        self.last_heard(peer).max(by_host)
    }

    /// Whether `peer` or its host (at `addr`) was heard from after `since`
    /// (strictly: a neighbour's clock started by a new flow at the moment
    /// of a request is no word from it).
    pub(super) fn heard_since(
        &self,
        peer: NodeId,
        addr: Option<SocketAddr>,
        since: Duration,
    ) -> bool {
        self.host_heard(peer, addr).is_some_and(|t| t > since)
    }

    /// When we, or (with a shared host) any stage of ours, last sent
    /// anything to `peer` or its host (at `addr`).
    pub(super) fn last_sent(&self, peer: NodeId, addr: Option<SocketAddr>) -> Option<Duration> {
        let by_host = self.host_at(addr).and_then(|(h, a)| h.last_sent(a));
        self.last_sent_to.get(&peer).copied().max(by_host)
    }

    /// Whether neither we nor (with a shared host) any stage of ours sent
    /// anything to the watcher `w`'s host (at `addr`) for `every`.
    fn quiet_to_watcher(
        &mut self,
        w: NodeId,
        addr: Option<SocketAddr>,
        now: Duration,
        every: Duration,
    ) -> bool {
        if let Some((due_w, due_addr, due)) = self.heartbeat_due {
            if due_w == w && due_addr == addr && now < due {
                return false;
            }
        }
        let last = self.last_sent(w, addr);
        let quiet = last.is_none_or(|t| now.saturating_sub(t) >= every);
        self.heartbeat_due = match last {
            Some(t) if !quiet => Some((w, addr, t + every)),
            _ => None,
        };
        quiet
    }

    /// A new flow: forget who left it, start the clocks for who joined (a
    /// new link is quiet, and gets a heartbeat, only after a period).
    pub(super) fn follow(&mut self, neighbours: &BTreeSet<NodeId>, now: Duration) {
        self.last_heard.retain(|n, _| neighbours.contains(n));
        self.last_sent_to.retain(|n, _| neighbours.contains(n));
        self.reported.retain(|n| neighbours.contains(n));
        self.suspicion_due = None;
        self.heartbeat_due = None;
        for n in neighbours {
            self.last_heard.entry(*n).or_insert(now);
            self.last_sent_to.entry(*n).or_insert(now);
        }
    }

    /// Whether `peer` spoke to us at all since this stage started.
    /// When a tick may next send a heartbeat (to a watcher, if we have
    /// one) or report a silent neighbour, with no input before it. Both
    /// cached deadlines are lower bounds: frames sent or heard by the other
    /// stages of our host only move them later.
    pub(super) fn due(&self, has_watcher: bool) -> Duration {
        let heartbeat = match (has_watcher, self.heartbeat_due) {
            (false, _) => Duration::MAX,
            (true, Some((_, _, due))) => due,
            (true, None) => Duration::ZERO,
        };
        heartbeat.min(self.suspicion_due.unwrap_or(Duration::ZERO))
    }

    pub(super) fn ever_heard(&self, peer: NodeId) -> bool {
        self.ever_heard.contains(&peer)
    }

    /// When `peer`, a neighbour, was last heard from.
    pub(super) fn last_heard(&self, peer: NodeId) -> Option<Duration> {
        self.last_heard.get(&peer).copied()
    }
}

impl StageCore {
    /// A heartbeat to our watcher if we (or, with a shared host, any stage
    /// of ours) sent its host nothing for a heartbeat period; the
    /// neighbours we watch, silent past the deadline (they and their host),
    /// reported suspect once.
    pub(super) fn heartbeats(&mut self, now: Duration) {
        if let Some(w) = self.flow.watcher() {
            let every = self.cfg.heartbeat_every;
            let addr = self.flow.addr_of(w);
            if self.liveness.quiet_to_watcher(w, addr, now, every) {
                self.liveness.heartbeat_seq += 1;
                let seq = self.liveness.heartbeat_seq;
                self.send_heartbeat(now, w, seq);
            }
        }
        // Only a neighbour that spoke to us since we started falls silent: one
        // that never did may not have our address or flow yet (we just
        // restarted, or it just joined). Reporting it anyway made every
        // restarted stage report live neighbours a second after its start,
        // and the leader then routed around those links for good. The same
        // holds for unanswered requests (`expire_requests`).
        if self.liveness.suspicion_due.is_some_and(|t| now < t) {
            return;
        }
        let after = self.cfg.suspect_after;
        let l = &self.liveness;
        let flow = &self.flow;
        // Each watched neighbour we may report, with when it (or its host)
        // was last heard from (read once: the host's table is behind a lock).
        let candidates: Vec<(NodeId, Duration)> = flow
            .watched()
            .iter()
            .copied()
            .filter(|n| l.ever_heard(*n) && !l.reported.contains(n))
            .filter_map(|n| Some((n, l.host_heard(n, flow.addr_of(n))?)))
            .collect();
        let silent: Vec<NodeId> = candidates
            .iter()
            .filter(|(_, t)| now.saturating_sub(*t) >= after)
            .map(|(n, _)| *n)
            .collect();
        // The others' deadlines (those reported now are left out: they
        // come back only when heard from).
        let due = candidates
            .iter()
            .map(|(_, t)| *t + after)
            .filter(|t| *t > now)
            .min()
            .unwrap_or(Duration::MAX);
        self.liveness.suspicion_due = Some(due);
        for n in silent {
            self.report_suspect(n);
        }
    }

    /// After a restart, one heartbeat to every neighbour of the first flow
    /// ([`GREETING`]). A consumer whose request to us the crash lost then
    /// hears from us before that request expires, and does not report us
    /// suspect (the leader's probe would find us alive and avoid the link
    /// as broken for half a minute, leaving us idle with our outbound stock
    /// ageing); it forgets the request, which would otherwise be held for
    /// `request_hold` now that we speak, and asks again.
    pub(super) fn greet_after_restart(&mut self, now: Duration) {
        if !std::mem::take(&mut self.liveness.greet) {
            return;
        }
        for n in self.flow.neighbours() {
            self.send_heartbeat(now, n, GREETING);
        }
    }

    /// One explicit heartbeat to `to`, counted.
    fn send_heartbeat(&mut self, now: Duration, to: NodeId, seq: u64) {
        self.metrics.heartbeats_sent += 1;
        self.send(now, to, Message::Heartbeat { seq });
    }

    /// Reports `n` suspect unless it was reported and not heard from since.
    pub(super) fn report_suspect(&mut self, n: NodeId) {
        if self.liveness.reported.insert(n) {
            self.metrics.nodes_reported_suspect += 1;
            self.out.suspects.push(n);
        }
    }
}
