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

/// Watches `raft` (node `me`) and starts an election when a follower's
/// patience with a silent leader ran out; at most one per lease.
pub fn spawn(raft: Raft, me: u64, contact: LeaderContact, t: RaftTimeouts) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = (t.heartbeat() / 2).max(Duration::from_millis(5));
        let lease = Duration::from_millis(t.election_max_ms);
        let mut last_leader = None;
        let mut last_try: Option<Instant> = None;
        let mut nap = every;
        loop {
            tokio::time::sleep(nap).await;
            nap = every;
            let (follower, leader, voters) = {
                let m = raft.metrics();
                let m = m.borrow();
                let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
                (m.state.is_follower(), m.current_leader, voters)
            };
            if leader.is_some() && leader != Some(me) {
                last_leader = leader;
            }
            let (Some(silent), true) = (contact.since(), follower) else {
                continue;
            };
            let Some(rank) = rank(&voters, me, last_leader) else {
                continue;
            };
            let wait = patience(&t, rank);
            if silent < wait {
                // Wake when the patience runs out, not up to a period later.
                nap = nap.min(wait - silent);
                continue;
            }
            if last_try.is_some_and(|at| at.elapsed() < lease) {
                continue;
            }
            tracing::info!(
                leader = ?last_leader,
                silent_ms = silent.as_millis() as u64,
                "no word from the leader for its whole lease: starting an election"
            );
            last_try = Some(Instant::now());
            if raft.trigger().elect().await.is_err() {
                return;
            }
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

    #[test]
    fn contact_starts_unknown_and_then_counts_from_the_last_heard() {
        let c = LeaderContact::default();
        assert_eq!(c.since(), None);
        c.heard();
        assert!(c.since().unwrap() < Duration::from_secs(5));
    }
}
