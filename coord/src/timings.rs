//! Where a coordinator's commits spend their time: the latest samples of
//! each [`CommitPhase`], recorded on the write path and served to
//! `factoryos bench failover` (`ClientRequest::CommitTimings`).

use factoryos_wire::model::{CommitPhase, PhaseTiming};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Samples kept per phase: the newest this many.
const KEEP: usize = 4096;

/// Recent durations per phase. Cheap to clone: clones share the samples.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    samples: Arc<Mutex<BTreeMap<CommitPhase, VecDeque<u32>>>>,
}

impl Timings {
    /// Records that `phase` took `took`.
    pub fn record(&self, phase: CommitPhase, took: Duration) {
        let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        let mut all = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let ring = all.entry(phase).or_default();
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(micros);
    }

    /// Records `phase` as having run from `since` until now.
    pub fn since(&self, phase: CommitPhase, since: Instant) {
        self.record(phase, since.elapsed());
    }

    /// Percentiles of every phase that has samples, in [`CommitPhase::ALL`] order.
    pub fn summary(&self) -> Vec<PhaseTiming> {
        let all = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .filter(|(_, ring)| !ring.is_empty())
            .map(|(phase, ring)| {
                let mut sorted: Vec<u32> = ring.iter().copied().collect();
                sorted.sort_unstable();
                let at =
                    |p: f64| u64::from(sorted[((sorted.len() - 1) as f64 * p).round() as usize]);
                PhaseTiming {
                    phase: *phase,
                    samples: sorted.len() as u64,
                    p50_us: at(0.5),
                    p99_us: at(0.99),
                    max_us: at(1.0),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_newest_samples_of_each_phase() {
        let t = Timings::default();
        for ms in 1..=100 {
            t.record(CommitPhase::Replication, Duration::from_millis(ms));
        }
        t.record(CommitPhase::LogFlush, Duration::from_micros(700));
        let s = t.summary();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].phase, CommitPhase::LogFlush);
        assert_eq!((s[0].samples, s[0].p50_us, s[0].max_us), (1, 700, 700));
        let r = &s[1];
        assert_eq!(
            (r.samples, r.p50_us, r.p99_us, r.max_us),
            (100, 51_000, 99_000, 100_000)
        );

        for _ in 0..KEEP {
            t.record(CommitPhase::Replication, Duration::from_micros(5));
        }
        let r = t.summary().remove(1);
        assert_eq!(
            (r.samples, r.max_us),
            (KEEP as u64, 5),
            "old samples are dropped"
        );
    }
}
