//! Heartbeats on the group's own clock, apart from how long a reply may take.
//!
//! openraft 0.9 sends a leader's heartbeats every `heartbeat_interval` and
//! also gives every append-entries (and the heartbeat round that confirms a
//! linearizable read) that same interval to be answered. With one setting
//! for both, a group whose round trip exceeds the heartbeat (50 ms by
//! default: the partition harness's `delay` nemesis, or machines far apart)
//! commits nothing at all, while its followers, who do hear the heartbeats,
//! never elect another leader. So openraft's interval is set to
//! [`RaftTimeouts::reply_timeout_ms`] with its own heartbeats off, and this task
//! triggers a heartbeat every `heartbeat_ms` while the node leads.

use super::Raft;
use crate::config::RaftTimeouts;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Triggers a heartbeat every heartbeat interval while `raft` leads; ends
/// when the Raft core has shut down.
pub fn spawn(raft: Raft, t: RaftTimeouts) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(t.heartbeat());
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let leading = raft.metrics().borrow().state.is_leader();
            if leading && raft.trigger().heartbeat().await.is_err() {
                return;
            }
        }
    })
}
