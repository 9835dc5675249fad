//! The simulated network between stage hosts and to the coordinators: a
//! latency drawn from a distribution, random loss between stages, and hosts
//! isolated from everything for a while (a partition).

use factoryos_wire::NodeId;
use rand::rngs::SmallRng;
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;

/// The network's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetConfig {
    /// The least one-way latency.
    pub latency: Duration,
    /// The mean of an exponentially distributed extra latency (its tail
    /// reorders messages).
    pub jitter: Duration,
    /// Probability that a message between two stages is lost (a reset
    /// connection); coordinator traffic is retried by its client instead.
    pub loss: f64,
}

impl Default for NetConfig {
    /// Loopback-like: 200 us + 100 us mean jitter, nothing lost.
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_micros(200),
            jitter: Duration::from_micros(100),
            loss: 0.0,
        }
    }
}

/// The network as it is now.
#[derive(Debug)]
pub(super) struct Net {
    pub(super) cfg: NetConfig,
    /// Hosts cut off from every other host and the coordinators, until when.
    isolated: BTreeMap<NodeId, Duration>,
}

impl Net {
    pub(super) fn new(cfg: NetConfig) -> Self {
        Net {
            cfg,
            isolated: BTreeMap::new(),
        }
    }

    /// One way's latency.
    pub(super) fn latency(&self, rng: &mut SmallRng) -> Duration {
        let jitter = self.cfg.jitter.as_secs_f64();
        let extra = if jitter > 0.0 {
            -rng.random::<f64>().max(1e-12).ln() * jitter
        } else {
            0.0
        };
        self.cfg.latency + Duration::from_secs_f64(extra)
    }

    /// Whether a message from host `a` to host `b` gets through now.
    pub(super) fn passes(&self, rng: &mut SmallRng, a: NodeId, b: NodeId) -> bool {
        if self.is_isolated(a) || self.is_isolated(b) {
            return false;
        }
        self.cfg.loss <= 0.0 || !rng.random_bool(self.cfg.loss.min(1.0))
    }

    /// Whether host `h` is cut off now.
    pub(super) fn is_isolated(&self, h: NodeId) -> bool {
        self.isolated.contains_key(&h)
    }

    pub(super) fn isolate(&mut self, h: NodeId, until: Duration) {
        self.isolated.insert(h, until);
    }

    /// Ends the isolations due by `now`; the hosts healed.
    pub(super) fn heal_due(&mut self, now: Duration) -> Vec<NodeId> {
        let due: Vec<NodeId> = self
            .isolated
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in &due {
            self.isolated.remove(h);
        }
        due
    }

    /// Ends every isolation and stops losing messages (the final heal).
    pub(super) fn heal_all(&mut self) {
        self.isolated.clear();
        self.cfg.loss = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn an_isolated_host_hears_nothing_and_loss_drops_about_its_share() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut net = Net::new(NetConfig {
            loss: 0.25,
            ..NetConfig::default()
        });
        let passed = (0..10_000)
            .filter(|_| net.passes(&mut rng, NodeId(1), NodeId(2)))
            .count();
        assert!((7_000..8_000).contains(&passed), "{passed} of 10000");
        net.isolate(NodeId(2), Duration::from_secs(3));
        assert!(!net.passes(&mut rng, NodeId(1), NodeId(2)));
        assert!(!net.passes(&mut rng, NodeId(2), NodeId(3)));
        assert!(net.heal_due(Duration::from_secs(2)).is_empty());
        assert_eq!(net.heal_due(Duration::from_secs(3)), vec![NodeId(2)]);
        net.heal_all();
        assert!(net.passes(&mut rng, NodeId(1), NodeId(2)));
        let l = net.latency(&mut rng);
        assert!(l >= Duration::from_micros(200), "{l:?}");
    }
}
