//! A fault-injection UDP socket for the harness: it wraps quinn's socket and
//! drops, delays, duplicates and reorders outgoing datagrams, per destination
//! address, under the control of a [`FaultController`] that can be changed
//! while the endpoint runs. The kernel of the test machines has no netem, so
//! this is how delay and duplication are injected.
//!
//! When no rule is set the wrapper costs one relaxed atomic load per
//! transmit; an endpoint built without a controller has no wrapper at all.

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// What happens to datagrams sent to one destination.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRule {
    /// Probability that a datagram is dropped.
    pub drop: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Fixed delay added to every datagram.
    pub delay: Duration,
    /// Uniform random extra delay in `[0, jitter)`.
    pub jitter: Duration,
    /// Probability that a datagram is held back by up to `reorder_window`,
    /// so that later datagrams overtake it.
    pub reorder: f64,
    pub reorder_window: Duration,
}

impl FaultRule {
    /// A rule dropping every datagram (a one-way partition).
    pub fn blackhole() -> Self {
        FaultRule {
            drop: 1.0,
            ..Default::default()
        }
    }

    fn is_noop(&self) -> bool {
        self.drop <= 0.0
            && self.duplicate <= 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.reorder <= 0.0
    }
}

/// Counts of what the fault socket did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Datagrams that matched a rule.
    pub seen: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub delayed: u64,
    pub reordered: u64,
}

#[derive(Debug)]
struct ControllerInner {
    active: AtomicBool,
    state: Mutex<ControllerState>,
    seen: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
    reordered: AtomicU64,
}

#[derive(Debug)]
struct ControllerState {
    per_peer: HashMap<SocketAddr, FaultRule>,
    default: Option<FaultRule>,
    rng: SmallRng,
}

/// Run-time control of one or more [`FaultySocket`]s. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FaultController {
    inner: Arc<ControllerInner>,
}

impl FaultController {
    /// A controller with no rules; `seed` makes the random choices replayable.
    pub fn new(seed: u64) -> Self {
        FaultController {
            inner: Arc::new(ControllerInner {
                active: AtomicBool::new(false),
                state: Mutex::new(ControllerState {
                    per_peer: HashMap::new(),
                    default: None,
                    rng: SmallRng::seed_from_u64(seed),
                }),
                seen: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                duplicated: AtomicU64::new(0),
                delayed: AtomicU64::new(0),
                reordered: AtomicU64::new(0),
            }),
        }
    }

    /// Sets the rule for datagrams sent to `peer`.
    pub fn set_rule(&self, peer: SocketAddr, rule: FaultRule) {
        self.update(|s| {
            s.per_peer.insert(peer, rule);
        });
    }

    /// Sets the rule for destinations without a rule of their own.
    pub fn set_default(&self, rule: Option<FaultRule>) {
        self.update(|s| s.default = rule);
    }

    /// The rule for destinations without a rule of their own.
    pub fn default_rule(&self) -> Option<FaultRule> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .default
            .clone()
    }

    pub fn clear_rule(&self, peer: SocketAddr) {
        self.update(|s| {
            s.per_peer.remove(&peer);
        });
    }

    /// Heals everything.
    pub fn clear_all(&self) {
        self.update(|s| {
            s.per_peer.clear();
            s.default = None;
        });
    }

    pub fn stats(&self) -> FaultStats {
        let i = &self.inner;
        FaultStats {
            seen: i.seen.load(Ordering::Relaxed),
            dropped: i.dropped.load(Ordering::Relaxed),
            duplicated: i.duplicated.load(Ordering::Relaxed),
            delayed: i.delayed.load(Ordering::Relaxed),
            reordered: i.reordered.load(Ordering::Relaxed),
        }
    }

    fn update(&self, f: impl FnOnce(&mut ControllerState)) {
        let mut state = self.lock();
        f(&mut state);
        let active = state.default.as_ref().is_some_and(|r| !r.is_noop())
            || state.per_peer.values().any(|r| !r.is_noop());
        self.inner.active.store(active, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ControllerState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides the fate of one datagram to `dest`: `None` when no rule
    /// applies, otherwise one delay per copy to send (empty = dropped).
    fn plan(&self, dest: SocketAddr) -> Option<Vec<Duration>> {
        if !self.inner.active.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.lock();
        let rule = state
            .per_peer
            .get(&dest)
            .or(state.default.as_ref())?
            .clone();
        if rule.is_noop() {
            return None;
        }
        let i = &self.inner;
        i.seen.fetch_add(1, Ordering::Relaxed);
        let rng = &mut state.rng;
        if rng.random_bool(rule.drop.clamp(0.0, 1.0)) {
            i.dropped.fetch_add(1, Ordering::Relaxed);
            return Some(Vec::new());
        }
        let copies = if rng.random_bool(rule.duplicate.clamp(0.0, 1.0)) {
            i.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let mut delays = Vec::with_capacity(copies);
        for _ in 0..copies {
            let mut d = rule.delay;
            if !rule.jitter.is_zero() {
                d += rule.jitter.mul_f64(rng.random::<f64>());
            }
            if !rule.reorder_window.is_zero() && rng.random_bool(rule.reorder.clamp(0.0, 1.0)) {
                i.reordered.fetch_add(1, Ordering::Relaxed);
                d += rule.reorder_window.mul_f64(rng.random::<f64>());
            }
            if !d.is_zero() {
                i.delayed.fetch_add(1, Ordering::Relaxed);
            }
            delays.push(d);
        }
        Some(delays)
    }
}

/// quinn's UDP socket, wrapped to apply a [`FaultController`]'s rules.
#[derive(Debug)]
pub struct FaultySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    faults: FaultController,
}

impl FaultySocket {
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, faults: FaultController) -> Self {
        FaultySocket { inner, faults }
    }
}

/// One datagram owned, so it can be sent later.
struct Datagram {
    destination: SocketAddr,
    ecn: Option<quinn::udp::EcnCodepoint>,
    src_ip: Option<IpAddr>,
    contents: Vec<u8>,
}

impl Datagram {
    fn send(&self, socket: &dyn AsyncUdpSocket) -> io::Result<()> {
        socket.try_send(&Transmit {
            destination: self.destination,
            ecn: self.ecn,
            contents: &self.contents,
            segment_size: None,
            src_ip: self.src_ip,
        })
    }
}

impl AsyncUdpSocket for FaultySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let Some(first) = self.faults.plan(transmit.destination) else {
            return self.inner.try_send(transmit);
        };
        // A GSO transmit carries several datagrams: each meets its own fate.
        let seg = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let mut plan = Some(first);
        let mut result = Ok(());
        for chunk in transmit.contents.chunks(seg) {
            let delays = match plan.take() {
                Some(p) => p,
                None => self
                    .faults
                    .plan(transmit.destination)
                    .unwrap_or_else(|| vec![Duration::ZERO]),
            };
            let datagram = Arc::new(Datagram {
                destination: transmit.destination,
                ecn: transmit.ecn,
                src_ip: transmit.src_ip,
                contents: chunk.to_vec(),
            });
            for (copy, delay) in delays.into_iter().enumerate() {
                let handle = tokio::runtime::Handle::try_current();
                match handle {
                    Ok(handle) if !delay.is_zero() => {
                        let socket = self.inner.clone();
                        let datagram = datagram.clone();
                        handle.spawn(async move {
                            tokio::time::sleep(delay).await;
                            // A late datagram that cannot be sent is lost, as on a real network.
                            let _ = datagram.send(socket.as_ref());
                        });
                    }
                    _ => {
                        // The first copy reports a full socket buffer so that quinn
                        // waits and retries, as without faults; a lost duplicate is
                        // what UDP does anyway.
                        let sent = datagram.send(self.inner.as_ref());
                        if copy == 0 && result.is_ok() {
                            result = sent;
                        }
                    }
                }
            }
        }
        result
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn no_rule_means_no_plan() {
        let c = FaultController::new(1);
        assert!(c.plan(addr(1)).is_none());
        c.set_rule(addr(1), FaultRule::default());
        assert!(
            c.plan(addr(1)).is_none(),
            "a no-op rule keeps the fast path"
        );
    }

    #[test]
    fn rules_apply_per_destination_and_heal() {
        let c = FaultController::new(1);
        c.set_rule(addr(1), FaultRule::blackhole());
        assert_eq!(c.plan(addr(1)), Some(vec![]));
        assert!(c.plan(addr(2)).is_none());
        c.set_default(Some(FaultRule {
            delay: Duration::from_millis(5),
            ..Default::default()
        }));
        assert_eq!(c.plan(addr(2)), Some(vec![Duration::from_millis(5)]));
        c.clear_all();
        assert!(c.plan(addr(1)).is_none());
    }

    #[test]
    fn probabilities_are_seeded_and_roughly_right() {
        let rule = FaultRule {
            drop: 0.3,
            duplicate: 0.2,
            ..Default::default()
        };
        let run = |seed| {
            let c = FaultController::new(seed);
            c.set_default(Some(rule.clone()));
            (0..10_000)
                .map(|_| c.plan(addr(9)).unwrap().len())
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "same seed, same fates");
        let dropped = a.iter().filter(|&&n| n == 0).count();
        let dup = a.iter().filter(|&&n| n == 2).count();
        assert!((2_700..3_300).contains(&dropped), "dropped {dropped}");
        // Duplication is drawn among the 70% not dropped.
        assert!((1_150..1_650).contains(&dup), "duplicated {dup}");
    }
}
