//! What the stages of one host process heard from, and sent to, each other
//! host (by its address): a frame between any two of their stages shows
//! both processes alive, so one heartbeat per quiet pair of hosts is enough.

use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shared by every [`super::StageCore`] of one host (a clone is the same
/// table). Times are the cores' `now`, so the cores of one host must share
/// one clock origin.
///
/// Sound because a host's stages live and die together: a crash takes the
/// whole process. A stage that fails alone inside a live host is not found
/// by silence (its host still speaks for it): its host reports it, and
/// failing that the consumers whose requests it leaves unanswered
/// (`request_timeout`, per stage). The table is hashed with `FxHash`: it is
/// written at every frame, and its keys are our own peers' addresses.
#[derive(Debug, Clone, Default)]
pub struct HostLinks(Arc<Mutex<FxHashMap<SocketAddr, Seen>>>);

#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    heard: Option<Duration>,
    sent: Option<Duration>,
}

impl HostLinks {
    fn with<R>(&self, f: impl FnOnce(&mut FxHashMap<SocketAddr, Seen>) -> R) -> R {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut table)
    }

    /// One of our stages heard from a stage of the host at `addr`.
    pub fn heard(&self, addr: SocketAddr, now: Duration) {
        self.with(|t| {
            let seen = t.entry(addr).or_default();
            seen.heard = seen.heard.max(Some(now));
        });
    }

    /// One of our stages sent to a stage of the host at `addr`.
    pub fn sent(&self, addr: SocketAddr, now: Duration) {
        self.with(|t| {
            let seen = t.entry(addr).or_default();
            seen.sent = seen.sent.max(Some(now));
        });
    }

    /// When any of our stages last heard from the host at `addr`.
    pub fn last_heard(&self, addr: SocketAddr) -> Option<Duration> {
        self.with(|t| t.get(&addr).and_then(|s| s.heard))
    }

    /// When any of our stages last sent to the host at `addr`.
    pub fn last_sent(&self, addr: SocketAddr) -> Option<Duration> {
        self.with(|t| t.get(&addr).and_then(|s| s.sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_table_and_keep_the_latest_times() {
        let a = HostLinks::default();
        let b = a.clone();
        let peer = SocketAddr::from(([127, 0, 0, 1], 7000));
        let other = SocketAddr::from(([127, 0, 0, 1], 7001));
        a.heard(peer, Duration::from_millis(30));
        b.heard(peer, Duration::from_millis(20));
        b.sent(peer, Duration::from_millis(5));
        assert_eq!(a.last_heard(peer), Some(Duration::from_millis(30)));
        assert_eq!(a.last_sent(peer), Some(Duration::from_millis(5)));
        assert_eq!(b.last_heard(other), None);
        assert_eq!(b.last_sent(other), None);
    }
}
