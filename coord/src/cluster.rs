//! `cluster.toml`: where the coordinators are, where certificates and data
//! live, the Raft timeouts and, optionally, the chain to install.
//!
//! ```toml
//! certs = "certs"                 # ca.pem + node-N.pem/.key (relative to this file)
//! data = "data"                   # each node keeps data/nN/
//! spec = "examples/window.toml"   # optional: installed when the cluster first forms
//!
//! [[coordinators]]
//! id = 1
//! addr = "127.0.0.1:7001"
//!
//! [raft]                          # optional; these are the defaults
//! heartbeat_ms = 50
//! election_min_ms = 150
//! election_max_ms = 300
//! ```

use factoryos_wire::NodeId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Raft timing. The defaults were chosen by measurement on loopback (see
/// `docs/architecture.md`): heartbeats well under the election timeout, and an
/// election window wide enough that split votes are rare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
            election_max_ms: 300,
        }
    }
}

impl RaftTimeouts {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    certs: PathBuf,
    data: PathBuf,
    spec: Option<PathBuf>,
    #[serde(default)]
    coordinators: Vec<RawMember>,
    #[serde(default)]
    raft: RaftTimeouts,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    id: u64,
    addr: SocketAddr,
}

/// A loaded `cluster.toml`, paths resolved against its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFile {
    pub certs: PathBuf,
    pub data: PathBuf,
    pub spec: Option<PathBuf>,
    pub coordinators: BTreeMap<NodeId, SocketAddr>,
    pub raft: RaftTimeouts,
}

/// Why a cluster file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl ClusterFile {
    pub fn load(path: &Path) -> Result<Self, ClusterFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClusterFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ClusterFileError> {
        let invalid = |message: String| ClusterFileError::Invalid {
            path: path.to_owned(),
            message,
        };
        let raw: RawCluster = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            invalid(format!("{at}{}", e.message().trim()))
        })?;
        raw.raft
            .validate()
            .map_err(|m| invalid(format!("[raft] {m}")))?;
        if raw.coordinators.is_empty() {
            return Err(invalid("no [[coordinators]]: list 3 or 5".into()));
        }
        let mut coordinators = BTreeMap::new();
        for m in raw.coordinators {
            if m.id == 0 {
                return Err(invalid(
                    "coordinator id 0 is reserved for operator tools".into(),
                ));
            }
            if coordinators.insert(NodeId(m.id), m.addr).is_some() {
                return Err(invalid(format!("coordinator id {} is listed twice", m.id)));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(ClusterFile {
            certs: base.join(raw.certs),
            data: base.join(raw.data),
            spec: raw.spec.map(|s| base.join(s)),
            coordinators,
            raft: raw.raft,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_paths() {
        let text = "certs = \"certs\"\ndata = \"d\"\n[[coordinators]]\nid = 1\naddr = \"127.0.0.1:7001\"\n[[coordinators]]\nid = 2\naddr = \"127.0.0.1:7002\"\n";
        let f = ClusterFile::parse(Path::new("/x/cluster.toml"), text).unwrap();
        assert_eq!(f.certs, PathBuf::from("/x/certs"));
        assert_eq!(f.coordinators.len(), 2);
        assert_eq!(f.raft, RaftTimeouts::default());
    }

    #[test]
    fn refuses_bad_files_with_a_reason() {
        let p = Path::new("c.toml");
        let err = |t: &str| ClusterFile::parse(p, t).unwrap_err().to_string();
        let base = "certs = \"c\"\ndata = \"d\"\n";
        assert_eq!(err(base), "c.toml: no [[coordinators]]: list 3 or 5");
        let dup = format!("{base}[[coordinators]]\nid = 1\naddr = \"127.0.0.1:1\"\n[[coordinators]]\nid = 1\naddr = \"127.0.0.1:2\"\n");
        assert_eq!(err(&dup), "c.toml: coordinator id 1 is listed twice");
        let raft = format!(
            "{base}[[coordinators]]\nid = 1\naddr = \"127.0.0.1:1\"\n[raft]\nheartbeat_ms = 200\n"
        );
        assert_eq!(
            err(&raft),
            "c.toml: [raft] election_min_ms (150) must exceed heartbeat_ms (200)"
        );
        assert!(err(&format!("{base}bogus = 1\n")).contains("unknown field `bogus`"));
    }
}
