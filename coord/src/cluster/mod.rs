//! `cluster.toml`: where the coordinators are, where certificates and data
//! live, the coordination mode, the Raft timeouts and, optionally, the chain
//! to install. This module reads and writes the file; what is built from it
//! lives with what it builds ([`crate::node::CoordinatorOptions::from_cluster`],
//! [`crate::client::CoordClient::connect`]).
//!
//! ```toml
//! certs = "certs"                 # ca.pem + node-N.pem/.key (relative to this file)
//! data = "data"                   # each node keeps data/nN/
//! spec = "examples/window.toml"   # optional: installed when the cluster first forms
//! mode = "raft"                   # or "file-lock" (the original's way; see filelock.rs)
//! shared = "data/shared"          # file-lock mode's shared directory (this default)
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

mod init;

pub use init::LocalInit;

use crate::config::{CoordMode, RaftTimeouts};
use factoryos_wire::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `cluster.toml` as written: paths relative to the file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterToml {
    pub certs: PathBuf,
    pub data: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PathBuf>,
    #[serde(default)]
    pub mode: CoordMode,
    /// The shared directory of `file-lock` mode (default: `<data>/shared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<PathBuf>,
    #[serde(default)]
    pub coordinators: Vec<Member>,
    #[serde(default)]
    pub raft: RaftTimeouts,
}

/// One `[[coordinators]]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: u64,
    pub addr: SocketAddr,
}

/// A loaded `cluster.toml`, paths resolved against its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFile {
    pub certs: PathBuf,
    pub data: PathBuf,
    pub spec: Option<PathBuf>,
    pub coordinators: BTreeMap<NodeId, SocketAddr>,
    pub raft: RaftTimeouts,
    pub mode: CoordMode,
    /// File-lock mode's shared directory (whatever the mode).
    pub shared: PathBuf,
}

/// Why a cluster file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl ClusterToml {
    /// The file's text.
    pub fn render(&self) -> String {
        toml::to_string(self).expect("a cluster file always serialises")
    }

    pub fn save(&self, path: &Path) -> Result<(), ClusterFileError> {
        std::fs::write(path, self.render()).map_err(|source| ClusterFileError::Write {
            path: path.to_owned(),
            source,
        })
    }
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
        let raw: ClusterToml = toml::from_str(text).map_err(|e| {
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
            if NodeId(m.id) == NodeId::OPERATOR {
                return Err(invalid(
                    "coordinator id 0 is reserved for operator tools".into(),
                ));
            }
            if coordinators.insert(NodeId(m.id), m.addr).is_some() {
                return Err(invalid(format!("coordinator id {} is listed twice", m.id)));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let data = base.join(raw.data);
        let shared = raw
            .shared
            .map(|s| base.join(s))
            .unwrap_or_else(|| data.join("shared"));
        Ok(ClusterFile {
            certs: base.join(raw.certs),
            data,
            spec: raw.spec.map(|s| base.join(s)),
            coordinators,
            raft: raw.raft,
            mode: raw.mode,
            shared,
        })
    }

    /// Where node `id` keeps its files: `<data>/nN/`.
    pub fn node_dir(&self, id: NodeId) -> PathBuf {
        self.data.join(format!("n{}", id.0))
    }
}

/// Why a coordinator or tool could not be set up from a cluster file.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("node {0} is not a coordinator of this cluster file")]
    NotAMember(NodeId),
    #[error("stage id {0} of the spec is also a coordinator's id; ids are shared by all nodes (number stages from 11, say)")]
    IdClash(NodeId),
    #[error("certificates: {0}")]
    Certs(#[from] factoryos_wire::CertError),
    #[error("{0}")]
    Spec(#[from] crate::spec::SpecErrors),
    #[error(transparent)]
    ClusterFile(#[from] ClusterFileError),
    #[error(transparent)]
    Transport(#[from] factoryos_wire::TransportError),
}

impl ClusterFile {
    /// The chain named by `spec`, if any.
    pub fn chain(&self) -> Result<Option<crate::spec::ChainSpec>, SetupError> {
        let Some(path) = &self.spec else {
            return Ok(None);
        };
        let chain = crate::spec::load(path)?;
        check_ids(&chain, self.coordinators.keys().copied())?;
        Ok(Some(chain))
    }
}

/// Stage ids must not be coordinator ids (nor the operator's 0).
fn check_ids(
    chain: &crate::spec::ChainSpec,
    coordinators: impl IntoIterator<Item = NodeId>,
) -> Result<(), SetupError> {
    let taken: std::collections::BTreeSet<NodeId> = coordinators
        .into_iter()
        .chain(std::iter::once(NodeId::OPERATOR))
        .collect();
    match chain.stages.iter().find(|s| taken.contains(&s.id)) {
        Some(s) => Err(SetupError::IdClash(s.id)),
        None => Ok(()),
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
        assert_eq!(f.mode, CoordMode::Raft);
        assert_eq!(f.shared, PathBuf::from("/x/d/shared"));
        assert_eq!(f.node_dir(NodeId(12)), PathBuf::from("/x/d/n12"));
    }

    #[test]
    fn a_shared_directory_and_mode_are_read() {
        let text = "certs = \"c\"\ndata = \"d\"\nmode = \"file-lock\"\nshared = \"/mnt/nfs/fos\"\n[[coordinators]]\nid = 1\naddr = \"127.0.0.1:7001\"\n";
        let f = ClusterFile::parse(Path::new("/x/cluster.toml"), text).unwrap();
        assert_eq!(f.mode, CoordMode::FileLock);
        assert_eq!(f.shared, PathBuf::from("/mnt/nfs/fos"));
    }

    #[test]
    fn a_written_file_reads_back_the_same() {
        let toml = ClusterToml {
            certs: "certs".into(),
            data: "data".into(),
            spec: Some("spec.toml".into()),
            mode: CoordMode::FileLock,
            shared: Some("elsewhere".into()),
            coordinators: vec![
                Member {
                    id: 1,
                    addr: "127.0.0.1:7001".parse().unwrap(),
                },
                Member {
                    id: 2,
                    addr: "127.0.0.1:7002".parse().unwrap(),
                },
            ],
            raft: RaftTimeouts {
                heartbeat_ms: 20,
                election_min_ms: 60,
                election_max_ms: 120,
            },
        };
        let text = toml.render();
        assert_eq!(
            toml::from_str::<ClusterToml>(&text).unwrap(),
            toml,
            "{text}"
        );
        let f = ClusterFile::parse(Path::new("/x/cluster.toml"), &text).unwrap();
        assert_eq!(f.shared, PathBuf::from("/x/elsewhere"));
        assert_eq!(f.raft.heartbeat_ms, 20);
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
        assert!(err(&format!("{base}mode = \"paxos\"\n")).contains("unknown variant"));
    }
}
