//! When the leader gives an avoided link another try: a link reported broken
//! between two live stages is avoided for a while, then handed back to the
//! solver; each time it is avoided again the wait doubles (up to a cap), and
//! a link that stays out of the avoided set long enough starts again from
//! the first wait.

use factoryos_wire::NodeId;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// A (supplier, consumer) link.
pub type Link = (NodeId, NodeId);

/// The longest wait is the first one times 2^MAX_DOUBLINGS.
const MAX_DOUBLINGS: u32 = 4;

/// The leader's memory of the links it has seen avoided (not replicated: a
/// new leader starts every link from the first wait, which only retries a
/// broken link a little sooner).
#[derive(Debug)]
pub struct LinkRetries {
    first_wait: Duration,
    links: HashMap<Link, Retry>,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    /// Avoided since then; `None` while the link is not avoided.
    since: Option<Duration>,
    /// How many times it was avoided in a row.
    strikes: u32,
    /// When it last left the avoided set (handed back, or an end restarted).
    left: Option<Duration>,
}

impl LinkRetries {
    pub fn new(first_wait: Duration) -> Self {
        LinkRetries {
            first_wait,
            links: HashMap::new(),
        }
    }

    /// How long a link avoided `strikes` times in a row stays avoided.
    fn wait(&self, strikes: u32) -> Duration {
        self.first_wait * 2u32.pow(strikes.saturating_sub(1).min(MAX_DOUBLINGS))
    }

    /// Updates the memory with the links avoided `now` (time on the leader's
    /// own clock, from any origin), and returns those
    /// whose wait is over (sorted), to be handed back with `RetryLink`.
    pub fn due(&mut self, avoided: &BTreeSet<Link>, now: Duration) -> Vec<Link> {
        let longest = self.wait(MAX_DOUBLINGS + 1);
        for (link, r) in self.links.iter_mut() {
            if r.since.is_some() && !avoided.contains(link) {
                r.since = None;
                r.left = Some(now);
            }
        }
        // A link in use for the longest wait since it left has earned a
        // fresh start.
        self.links.retain(|_, r| {
            r.since.is_some() || r.left.is_some_and(|t| now.saturating_sub(t) < longest)
        });
        let mut due = Vec::new();
        for link in avoided {
            let r = self.links.entry(*link).or_insert(Retry {
                since: None,
                strikes: 0,
                left: None,
            });
            let since = match r.since {
                Some(t) => t,
                None => {
                    r.since = Some(now);
                    r.strikes += 1;
                    now
                }
            };
            let strikes = r.strikes;
            if now.saturating_sub(since) >= self.wait(strikes) {
                due.push(*link);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Link = (NodeId(1), NodeId(3));

    fn avoided(links: &[Link]) -> BTreeSet<Link> {
        links.iter().copied().collect()
    }

    #[test]
    fn an_avoided_link_is_handed_back_after_the_first_wait() {
        let mut r = LinkRetries::new(Duration::from_secs(30));
        let t0 = Duration::ZERO;
        assert!(r.due(&avoided(&[L]), t0).is_empty());
        assert!(r
            .due(&avoided(&[L]), t0 + Duration::from_secs(29))
            .is_empty());
        assert_eq!(r.due(&avoided(&[L]), t0 + Duration::from_secs(30)), vec![L]);
        // Nothing else is due, and an unknown link starts its own wait.
        let other = (NodeId(2), NodeId(3));
        assert_eq!(
            r.due(&avoided(&[L, other]), t0 + Duration::from_secs(31)),
            vec![L]
        );
    }

    #[test]
    fn each_new_avoid_doubles_the_wait_up_to_a_cap() {
        let mut r = LinkRetries::new(Duration::from_secs(10));
        let mut now = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..7 {
            // Avoided again (the retry failed), then waited out.
            assert!(r.due(&avoided(&[L]), now).is_empty());
            let start = now;
            while r.due(&avoided(&[L]), now).is_empty() {
                now += Duration::from_secs(1);
            }
            waits.push((now - start).as_secs());
            assert!(r.due(&avoided(&[]), now).is_empty(), "handed back");
            now += Duration::from_secs(1);
        }
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 160, 160]);
    }

    #[test]
    fn a_link_that_stays_in_use_starts_again_from_the_first_wait() {
        let mut r = LinkRetries::new(Duration::from_secs(10));
        let t0 = Duration::ZERO;
        r.due(&avoided(&[L]), t0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(r.due(&avoided(&[L]), t1), vec![L]);
        r.due(&avoided(&[]), t1);
        // Avoided again soon after: the second wait.
        let t2 = t1 + Duration::from_secs(5);
        r.due(&avoided(&[L]), t2);
        assert!(r
            .due(&avoided(&[L]), t2 + Duration::from_secs(19))
            .is_empty());
        let t3 = t2 + Duration::from_secs(20);
        assert_eq!(r.due(&avoided(&[L]), t3), vec![L]);
        assert!(r.due(&avoided(&[]), t3).is_empty());
        // In use for the longest wait (160 s): forgotten, back to 10 s.
        let t4 = t3 + Duration::from_secs(160);
        assert!(r.due(&avoided(&[]), t4).is_empty());
        r.due(&avoided(&[L]), t4);
        assert_eq!(r.due(&avoided(&[L]), t4 + Duration::from_secs(10)), vec![L]);
    }
}
