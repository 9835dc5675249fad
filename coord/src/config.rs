//! Settings every part of coordination reads and none owns: the Raft
//! timeouts and the coordination mode. A leaf: it imports nothing of coord.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Raft timing. The defaults were chosen by measurement on loopback (see
/// `docs/architecture.md`): heartbeats well under the election timeout, and an
/// election window wide enough that split votes are rare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTimeouts {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for RaftTimeouts {
    fn default() -> Self {
        RaftTimeouts {
            heartbeat_ms: 50,
            election_min_ms: 150,
            election_max_ms: 250,
        }
    }
}

impl RaftTimeouts {
    /// Heartbeats every `heartbeat_ms`, elections after 4 to 6 of them: a
    /// group on a loaded machine (every append-entries has the longest
    /// election timeout to be answered, so a slower disk or CPU needs a
    /// longer one, at the price of a slower failover).
    pub fn with_heartbeat(heartbeat_ms: u64) -> Self {
        let hb = heartbeat_ms.max(1);
        RaftTimeouts {
            heartbeat_ms: hb,
            election_min_ms: hb * 4,
            election_max_ms: hb * 6,
        }
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// How long an append-entries (a heartbeat included) may take to be
    /// answered: just under the shortest election timeout (openraft wants
    /// its interval below that), where a heartbeat every `heartbeat_ms`
    /// alone would make a round trip above one heartbeat fatal.
    pub fn reply_timeout_ms(&self) -> u64 {
        self.election_min_ms
            .saturating_sub(1)
            .max(self.heartbeat_ms)
    }

    /// Checks the ordering openraft needs.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 {
            return Err("heartbeat_ms must be at least 1".into());
        }
        if self.election_min_ms <= self.heartbeat_ms {
            return Err(format!(
                "election_min_ms ({}) must exceed heartbeat_ms ({})",
                self.election_min_ms, self.heartbeat_ms
            ));
        }
        if self.election_max_ms <= self.election_min_ms {
            return Err(format!(
                "election_max_ms ({}) must exceed election_min_ms ({})",
                self.election_max_ms, self.election_min_ms
            ));
        }
        Ok(())
    }
}

/// Which configuration store the coordinators use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoordMode {
    /// The Raft group (the default).
    #[default]
    Raft,
    /// The original system's shared directory and `flock` (see
    /// [`crate::filelock`]); every coordinator must see the same directory.
    #[serde(alias = "filelock")]
    FileLock,
}

impl CoordMode {
    pub const ALL: [CoordMode; 2] = [CoordMode::Raft, CoordMode::FileLock];

    pub fn name(self) -> &'static str {
        match self {
            CoordMode::Raft => "raft",
            CoordMode::FileLock => "file-lock",
        }
    }
}

impl std::fmt::Display for CoordMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CoordMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raft" => Ok(CoordMode::Raft),
            "file-lock" | "filelock" => Ok(CoordMode::FileLock),
            other => Err(format!(
                "unknown coordination mode {other:?}: use raft or file-lock"
            )),
        }
    }
}

/// The poll interval of file-lock mode (lock attempts and re-reads).
pub const FILE_LOCK_POLL: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_heartbeat_keeps_elections_four_to_six_beats_away() {
        let t = RaftTimeouts::with_heartbeat(150);
        assert_eq!((t.election_min_ms, t.election_max_ms), (600, 900));
        assert!(t.validate().is_ok());
        assert!(
            RaftTimeouts::with_heartbeat(0).validate().is_ok(),
            "0 is taken as 1"
        );
    }

    #[test]
    fn modes_read_back_their_names() {
        for mode in CoordMode::ALL {
            assert_eq!(mode.name().parse::<CoordMode>(), Ok(mode));
        }
        assert_eq!("filelock".parse::<CoordMode>(), Ok(CoordMode::FileLock));
        assert!("zookeeper"
            .parse::<CoordMode>()
            .unwrap_err()
            .contains("raft or file-lock"));
    }
}
