//! Retry waits for calls to the coordinators: doubling from a first wait up
//! to a cap, each drawn at random from its upper half ("equal jitter"), so
//! that many stages failing together do not all come back together.

use rand::Rng;
use std::time::Duration;

/// The wait before each next try of one call.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    tries: u32,
}

impl Backoff {
    /// Waits from `first`, doubling, never above `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            first,
            cap: cap.max(first),
            tries: 0,
        }
    }

    /// A stage's registration: from 200 ms up to 5 s.
    pub fn registration() -> Self {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// The wait before the next try: uniform between half and all of the
    /// current step, which doubles with every call up to the cap.
    pub fn next_wait(&mut self, rng: &mut impl Rng) -> Duration {
        let step = self
            .first
            .saturating_mul(1u32 << self.tries.min(16))
            .min(self.cap);
        self.tries = self.tries.saturating_add(1);
        let half = step / 2;
        half + Duration::from_nanos(rng.random_range(0..=(step - half).as_nanos() as u64))
    }

    /// The call succeeded: the next failure starts from the first wait.
    pub fn reset(&mut self) {
        self.tries = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let steps = [100, 200, 400, 800, 1000, 1000];
        for step in steps {
            let w = b.next_wait(&mut rng).as_millis() as u64;
            assert!(
                (step / 2..=step).contains(&w),
                "{w} ms for a step of {step}"
            );
        }
        b.reset();
        assert!(b.next_wait(&mut rng) <= Duration::from_millis(100));
        // Two stages failing together spread out.
        let mut a = Backoff::registration();
        let mut c = Backoff::registration();
        let (mut ra, mut rc) = (SmallRng::seed_from_u64(2), SmallRng::seed_from_u64(3));
        let spread: Vec<bool> = (0..5)
            .map(|_| a.next_wait(&mut ra) != c.next_wait(&mut rc))
            .collect();
        assert!(spread.iter().all(|d| *d));
    }
}
