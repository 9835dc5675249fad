//! Prompt elections: a follower that has heard nothing from its leader for
//! the leader's whole lease starts the election itself, instead of waiting
//! one more election timeout as openraft 0.9's own timer does.
//!
//! openraft grants no vote while a voter's leader lease (`election_max`
//! since the last heartbeat) holds, so the earliest a new leader can win is
//! when the lease runs out; its timer then waits a further random election
//! timeout. Here each follower watches when it last accepted an
//! append-entries ([`LeaderContact`]) and calls `trigger().elect()` a little
//! after the lease ran out, staggered by its rank among the followers so two
//! of them rarely split the vote. Safety does not depend on it (any node may
//! campaign at any time in Raft); it only moves the election earlier.

use super::Raft;
use crate::config::RaftTimeouts;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// When this node last accepted an append-entries (entries or a heartbeat)
/// from a leader. Cheap to clone: clones share the instant.
#[derive(Debug, Clone, Default)]
pub struct LeaderContact(Arc<Mutex<Option<Instant>>>);

impl LeaderContact {
    /// Notes that a leader was heard from now.
    pub fn heard(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// How long ago a leader was last heard from (`None`: never).
    pub fn since(&self) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.elapsed())
    }
}

/// How long a follower of rank `rank` (0 = first among the followers) waits
/// without word from the leader before it campaigns: the lease, a margin for
/// the other voters' leases (they heard the same heartbeat a little later),
/// and one heartbeat per rank.
pub fn patience(t: &RaftTimeouts, rank: usize) -> Duration {
    let heartbeat = t.heartbeat();
    Duration::from_millis(t.election_max_ms) + heartbeat / 2 + heartbeat * rank as u32
}

/// This node's rank among the voters other than `leader`, if it is one.
fn rank(voters: &[u64], me: u64, leader: Option<u64>) -> Option<usize> {
    voters
        .iter()
        .filter(|v| Some(**v) != leader)
        .position(|v| *v == me)
}

/// Elections started in a row without hearing from a leader before this
/// watcher leaves it to openraft's own timer: one retry mends a refusal by
/// a voter whose lease had not quite run out; more would hurt when the
/// refusal is for a shorter log (each try votes for itself in a new term,
/// which the voter with the longer log then cannot win), and an isolated
/// node must not inflate its term every few heartbeats.
const MAX_TRIES: u32 = 2;

/// What the watcher sees at one look.
#[derive(Debug, Clone)]
struct Seen {
    follower: bool,
    /// Candidate or follower: an election may still be needed.
    campaigning_allowed: bool,
    leader: Option<u64>,
    term: u64,
    voters: Vec<u64>,
    /// How long ago a leader was last heard from.
    heard: Option<Duration>,
}

/// What to do after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Look again after this long.
    LookIn(Duration),
    Elect,
}

/// The decisions of one node's watcher, apart from openraft (pure, so the
/// rules can be tested on their own).
#[derive(Debug)]
struct Watch {
    me: u64,
    t: RaftTimeouts,
    every: Duration,
    last_leader: Option<u64>,
    /// (follower?, leader, term) last seen, and since when: silence counts
    /// only from there, so a leader that just stepped down (it heard no
    /// append-entries while it led) does not campaign at once against the
    /// leader that replaced it.
    role: (bool, Option<u64>, u64),
    role_since: Instant,
    /// The last election this watcher started, and how many in a row.
    last_try: Option<Instant>,
    tries: u32,
}

impl Watch {
    fn new(me: u64, t: RaftTimeouts, now: Instant) -> Self {
        Watch {
            me,
            t,
            every: (t.heartbeat() / 2).max(Duration::from_millis(5)),
            last_leader: None,
            role: (false, None, 0),
            role_since: now,
            last_try: None,
            tries: 0,
        }
    }

    /// An election started by this watcher is retried after two heartbeats
    /// without a leader (a voter whose lease had not quite run out refused).
    fn retry(&self) -> Duration {
        self.t.heartbeat() * 2
    }

    fn look(&mut self, now: Instant, seen: &Seen) -> Next {
        let role = (seen.follower, seen.leader, seen.term);
        if role != self.role {
            self.role = role;
            self.role_since = now;
        }
        if seen.leader.is_some() && seen.leader != Some(self.me) {
            self.last_leader = seen.leader;
        }
        if !seen.campaigning_allowed {
            self.last_try = None;
            self.tries = 0;
            return Next::LookIn(self.every);
        }
        if let Some(at) = self.last_try {
            let since_try = now.saturating_duration_since(at);
            if seen.heard.is_some_and(|h| h < since_try) {
                // A leader spoke after our try: back to watching.
                self.last_try = None;
                self.tries = 0;
            } else if self.tries >= MAX_TRIES {
                return Next::LookIn(self.every);
            } else if since_try >= self.retry() {
                return self.elect(now);
            } else {
                return Next::LookIn(self.retry() - since_try);
            }
        }
        let (Some(heard), true) = (seen.heard, seen.follower) else {
            return Next::LookIn(self.every);
        };
        let silent = heard.min(now.saturating_duration_since(self.role_since));
        let Some(rank) = rank(&seen.voters, self.me, self.last_leader) else {
            return Next::LookIn(self.every);
        };
        let wait = patience(&self.t, rank);
        if silent < wait {
            // Wake when the patience runs out, not up to a period later.
            return Next::LookIn(self.every.min(wait - silent));
        }
        self.elect(now)
    }

    fn elect(&mut self, now: Instant) -> Next {
        self.last_try = Some(now);
        self.tries += 1;
        Next::Elect
    }

    /// The Raft core heard a leader after all (its vote was refreshed
    /// within the lease): the try that was about to start is called off.
    fn stand_down(&mut self) {
        self.last_try = None;
        self.tries = 0;
    }
}

/// Watches `raft` (node `me`) and starts an election when a follower's
/// patience with a silent leader ran out.
pub fn spawn(raft: Raft, me: u64, contact: LeaderContact, t: RaftTimeouts) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut watch = Watch::new(me, t, Instant::now());
        let mut next = Next::LookIn(watch.every);
        loop {
            match next {
                Next::LookIn(nap) => tokio::time::sleep(nap).await,
                Next::Elect => {
                    // The contact is noted outside the Raft core: if the core
                    // stalled, heartbeats may be queued in it. Ask the core
                    // itself (after what is queued) whether its lease ran out.
                    if watch.tries == 1 {
                        let lease = Duration::from_millis(t.election_max_ms);
                        let fresh = raft
                            .with_raft_state(move |s| {
                                s.vote_last_modified().is_some_and(|u| u.elapsed() < lease)
                            })
                            .await;
                        match fresh {
                            Err(_) => return,
                            Ok(true) => {
                                watch.stand_down();
                                next = Next::LookIn(watch.every);
                                continue;
                            }
                            Ok(false) => {}
                        }
                    }
                    tracing::info!(
                        leader = ?watch.last_leader,
                        try_ = watch.tries,
                        "no word from the leader for its whole lease: starting an election"
                    );
                    if raft.trigger().elect().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(watch.every).await;
                }
            }
            let seen = {
                let m = raft.metrics();
                let m = m.borrow();
                Seen {
                    follower: m.state.is_follower(),
                    campaigning_allowed: m.state.is_follower() || m.state.is_candidate(),
                    leader: m.current_leader,
                    term: m.current_term,
                    voters: m.membership_config.membership().voter_ids().collect(),
                    heard: contact.since(),
                }
            };
            next = watch.look(Instant::now(), &seen);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_campaign_after_the_lease_one_heartbeat_apart() {
        let t = RaftTimeouts::default();
        let first = patience(&t, 0);
        assert!(first > Duration::from_millis(t.election_max_ms));
        assert!(first < Duration::from_millis(t.election_max_ms) + t.heartbeat());
        assert_eq!(patience(&t, 1) - first, t.heartbeat());
    }

    #[test]
    fn rank_skips_the_leader_and_ignores_non_voters() {
        assert_eq!(rank(&[1, 2, 3], 2, Some(1)), Some(0));
        assert_eq!(rank(&[1, 2, 3], 3, Some(1)), Some(1));
        assert_eq!(rank(&[1, 2, 3], 3, Some(2)), Some(1));
        assert_eq!(rank(&[1, 2, 3], 1, None), Some(0));
        assert_eq!(rank(&[1, 2, 3], 4, Some(1)), None);
    }

    fn seen(follower: bool, leader: Option<u64>, term: u64, heard_ms: Option<u64>) -> Seen {
        Seen {
            follower,
            campaigning_allowed: true,
            leader,
            term,
            voters: vec![1, 2, 3],
            heard: heard_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn a_follower_campaigns_once_its_patience_with_a_silent_leader_ran_out() {
        let t = RaftTimeouts::default();
        let t0 = Instant::now();
        let mut w = Watch::new(2, t, t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Led by 1 for a while; heard 10 ms ago: look again before the patience ends.
        assert!(matches!(
            w.look(at(0), &seen(true, Some(1), 1, Some(10))),
            Next::LookIn(_)
        ));
        let patience_ms = patience(&t, 0).as_millis() as u64;
        match w.look(at(1_100), &seen(true, Some(1), 1, Some(patience_ms - 5))) {
            Next::LookIn(d) => assert_eq!(d, Duration::from_millis(5)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            w.look(at(1_105), &seen(true, Some(1), 1, Some(patience_ms))),
            Next::Elect
        );
        // Refused: retried after two heartbeats, at most MAX_TRIES in a row.
        assert!(matches!(
            w.look(at(1_110), &seen(false, None, 2, Some(patience_ms + 5))),
            Next::LookIn(_)
        ));
        assert_eq!(
            w.look(at(1_205), &seen(false, None, 2, Some(patience_ms + 100))),
            Next::Elect
        );
        assert!(matches!(
            w.look(at(1_305), &seen(false, None, 3, Some(patience_ms + 200))),
            Next::LookIn(_)
        ));
        assert!(matches!(
            w.look(at(1_405), &seen(false, None, 4, Some(patience_ms + 300))),
            Next::LookIn(_)
        ));
        assert!(matches!(
            w.look(at(2_405), &seen(false, None, 4, Some(patience_ms + 1_300))),
            Next::LookIn(_)
        ));
        // A leader speaks: watching again from scratch.
        assert!(matches!(
            w.look(at(2_500), &seen(true, Some(3), 5, Some(1))),
            Next::LookIn(_)
        ));
        assert_eq!(w.tries, 0);
    }

    #[test]
    fn a_leader_that_stepped_down_waits_a_whole_patience_before_it_campaigns() {
        let t = RaftTimeouts::default();
        let t0 = Instant::now();
        let mut w = Watch::new(1, t, t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // It led (no append-entries heard for 60 s), then a new leader's term arrived.
        let leading = Seen {
            campaigning_allowed: false,
            ..seen(false, Some(1), 1, Some(60_000))
        };
        assert!(matches!(w.look(at(60_000), &leading), Next::LookIn(_)));
        assert!(matches!(
            w.look(at(60_010), &seen(true, None, 2, Some(60_010))),
            Next::LookIn(_)
        ));
        let patience_ms = patience(&t, 0).as_millis() as u64;
        assert!(matches!(
            w.look(
                at(60_010 + patience_ms - 1),
                &seen(true, None, 2, Some(60_300))
            ),
            Next::LookIn(_)
        ));
    }

    #[test]
    fn contact_starts_unknown_and_then_counts_from_the_last_heard() {
        let c = LeaderContact::default();
        assert_eq!(c.since(), None);
        c.heard();
        assert!(c.since().unwrap() < Duration::from_secs(5));
    }
}
