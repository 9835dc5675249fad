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
//! mode = "raft"                   # or "file-lock" (the original's way; see filelock.rs)
//! shared = "data/shared"          # file-lock mode's shared directory (this default)
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
    /// `raft` (default) or `file-lock`.
    mode: Option<String>,
    /// The shared directory of `file-lock` mode (default: `<data>/shared`).
    shared: Option<PathBuf>,
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
    pub mode: crate::node::CoordMode,
}

/// The poll interval of file-lock mode (lock attempts and re-reads).
pub const FILE_LOCK_POLL: Duration = Duration::from_millis(20);

/// Parses a coordination mode name (`raft` or `file-lock`); file-lock mode
/// shares `dir`.
pub fn parse_mode(name: &str, dir: PathBuf) -> Result<crate::node::CoordMode, String> {
    match name {
        "raft" => Ok(crate::node::CoordMode::Raft),
        "file-lock" | "filelock" => Ok(crate::node::CoordMode::FileLock {
            dir,
            poll: FILE_LOCK_POLL,
        }),
        other => Err(format!(
            "unknown coordination mode {other:?}: use raft or file-lock"
        )),
    }
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
        let data = base.join(raw.data);
        let shared = raw
            .shared
            .map(|s| base.join(s))
            .unwrap_or_else(|| data.join("shared"));
        let mode = parse_mode(raw.mode.as_deref().unwrap_or("raft"), shared).map_err(invalid)?;
        Ok(ClusterFile {
            certs: base.join(raw.certs),
            data,
            spec: raw.spec.map(|s| base.join(s)),
            coordinators,
            raft: raw.raft,
            mode,
        })
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

    /// Everything coordinator `id` needs to start, with the file's defaults.
    pub fn coordinator_options(
        &self,
        id: NodeId,
    ) -> Result<crate::node::CoordinatorOptions, SetupError> {
        let listen = *self
            .coordinators
            .get(&id)
            .ok_or(SetupError::NotAMember(id))?;
        let identity = factoryos_wire::NodeIdentity::load(&self.certs, id)?;
        let chain = self.chain()?;
        Ok(crate::node::CoordinatorOptions {
            identity,
            listen,
            members: self.coordinators.clone(),
            data_dir: self.data.join(format!("n{}", id.0)),
            timeouts: self.raft,
            stage_ids: chain
                .as_ref()
                .map(|c| c.stages.iter().map(|s| s.id).collect())
                .unwrap_or_default(),
            spec: chain.map(|c| c.spec),
            transport: factoryos_wire::TransportConfig::default(),
            solver: crate::solver::SolverConfig::default(),
            // Loopback and LAN answer in well under a millisecond; half a
            // second leaves room for a loaded machine.
            probe_timeout: Duration::from_millis(500),
            mode: self.mode.clone(),
            join: false,
        })
    }

    /// A client speaking as `id` (operator tools use [`crate::node::OPERATOR`]).
    pub fn client(
        &self,
        id: NodeId,
    ) -> Result<(crate::client::CoordClient, factoryos_wire::Transport), SetupError> {
        let identity = factoryos_wire::NodeIdentity::load(&self.certs, id)?;
        let book = factoryos_wire::PeerBook::new();
        for (m, addr) in &self.coordinators {
            book.insert(*m, *addr);
        }
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let bind = match self.coordinators.values().next() {
            Some(a) if a.is_ipv6() => SocketAddr::from(([0u16; 8], 0)),
            Some(a) if !a.ip().is_loopback() => SocketAddr::from(([0, 0, 0, 0], 0)),
            _ => any,
        };
        let (transport, _inbox) = factoryos_wire::Transport::bind(
            &identity,
            bind,
            book,
            factoryos_wire::TransportConfig::default(),
            None,
        )?;
        let client = crate::client::CoordClient::new(
            transport.clone(),
            self.coordinators.keys().copied().collect(),
        );
        Ok((client, transport))
    }

    /// Writes a local cluster into `dir`: a CA and certificates (coordinators
    /// `1..=n`, the operator 0, the spec's stages), a copy of the spec and
    /// `cluster.toml` with coordinators on `127.0.0.1:base_port...`.
    pub fn init_local(
        dir: &Path,
        coordinators: u64,
        base_port: u16,
        spec: Option<&Path>,
    ) -> Result<PathBuf, SetupError> {
        let certs = dir.join("certs");
        let ca = factoryos_wire::ClusterCa::generate("factoryos")?;
        ca.save(&certs, false)?;
        let mut ids: Vec<NodeId> = (0..=coordinators).map(NodeId).collect();
        let mut text = String::from("certs = \"certs\"\ndata = \"data\"\n");
        if let Some(path) = spec {
            let chain = crate::spec::load(path)?;
            check_ids(&chain, (1..=coordinators).map(NodeId))?;
            ids.extend(chain.stages.iter().map(|s| s.id));
            std::fs::copy(path, dir.join("spec.toml")).map_err(|source| {
                factoryos_wire::CertError::Io {
                    path: dir.join("spec.toml"),
                    source,
                }
            })?;
            text.push_str("spec = \"spec.toml\"\n");
        }
        for id in ids {
            ca.issue(id)?.save(&certs)?;
        }
        for i in 1..=coordinators {
            let port = base_port as u64 + i - 1;
            text.push_str(&format!(
                "\n[[coordinators]]\nid = {i}\naddr = \"127.0.0.1:{port}\"\n"
            ));
        }
        let path = dir.join("cluster.toml");
        std::fs::write(&path, text).map_err(|source| factoryos_wire::CertError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

/// Stage ids must not be coordinator ids (nor the operator's 0).
fn check_ids(
    chain: &crate::spec::ChainSpec,
    coordinators: impl IntoIterator<Item = NodeId>,
) -> Result<(), SetupError> {
    let taken: std::collections::BTreeSet<NodeId> = coordinators
        .into_iter()
        .chain(std::iter::once(crate::node::OPERATOR))
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
