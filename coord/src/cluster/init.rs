//! Writing a local cluster directory: a CA and every certificate, a copy of
//! the spec, and `cluster.toml` (through [`ClusterToml`], never by hand).

use super::{ClusterToml, Member, SetupError};
use crate::config::{CoordMode, RaftTimeouts};
use factoryos_wire::{ClusterCa, NodeId};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What `factoryos cluster init` (and the harness) writes: `coordinators`
/// coordinators on loopback, in `mode`, with `raft` timings, and the chain
/// of `spec` if given.
#[derive(Debug, Clone)]
pub struct LocalInit<'a> {
    pub coordinators: u64,
    pub spec: Option<&'a Path>,
    pub mode: CoordMode,
    pub raft: RaftTimeouts,
}

impl<'a> LocalInit<'a> {
    /// `coordinators` coordinators in Raft mode with default timings.
    pub fn new(coordinators: u64, spec: Option<&'a Path>) -> Self {
        LocalInit {
            coordinators,
            spec,
            mode: CoordMode::default(),
            raft: RaftTimeouts::default(),
        }
    }

    /// Writes the cluster into `dir`, coordinators on `127.0.0.1:base_port`
    /// and the ports after it: a CA and certificates (coordinators `1..=n`,
    /// the operator 0, the spec's stages), a copy of the spec as
    /// `spec.toml`, and `cluster.toml`, whose path it returns.
    pub fn write(&self, dir: &Path, base_port: u16) -> Result<PathBuf, SetupError> {
        let addrs: Vec<SocketAddr> = (0..self.coordinators)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], (base_port as u64 + i) as u16)))
            .collect();
        self.write_at(dir, &addrs)
    }

    /// Like [`LocalInit::write`], coordinator `i` (from 1) at `addrs[i - 1]`.
    pub fn write_at(&self, dir: &Path, addrs: &[SocketAddr]) -> Result<PathBuf, SetupError> {
        let io = |path: PathBuf| move |source| factoryos_wire::CertError::Io { path, source };
        let certs = dir.join("certs");
        let ca = ClusterCa::generate("factoryos")?;
        ca.save(&certs, false)?;
        let mut ids: Vec<NodeId> = (0..=addrs.len() as u64).map(NodeId).collect();
        let mut file = ClusterToml {
            certs: "certs".into(),
            data: "data".into(),
            spec: None,
            mode: self.mode,
            shared: None,
            coordinators: addrs
                .iter()
                .zip(1..)
                .map(|(addr, id)| Member { id, addr: *addr })
                .collect(),
            raft: self.raft,
        };
        if let Some(path) = self.spec {
            let chain = crate::spec::load(path)?;
            super::check_ids(&chain, (1..=addrs.len() as u64).map(NodeId))?;
            ids.extend(chain.stages.iter().map(|s| s.id));
            let copy = dir.join("spec.toml");
            std::fs::copy(path, &copy).map_err(io(copy.clone()))?;
            file.spec = Some("spec.toml".into());
        }
        for id in ids {
            ca.issue(id)?.save(&certs)?;
        }
        let path = dir.join("cluster.toml");
        file.save(&path)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterFile;

    #[test]
    fn a_written_cluster_loads_with_its_mode_and_timings() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/window.toml");
        let mut init = LocalInit::new(3, Some(&spec));
        init.mode = CoordMode::FileLock;
        init.raft.election_max_ms = 400;
        let path = init.write(dir.path(), 7101).unwrap();
        let f = ClusterFile::load(&path).unwrap();
        assert_eq!(f.mode, CoordMode::FileLock);
        assert_eq!(f.raft.election_max_ms, 400);
        assert_eq!(f.coordinators.len(), 3);
        assert_eq!(f.chain().unwrap().unwrap().stages.len(), 6);
        for id in [0, 1, 3, 11, 16] {
            let (cert, _) = factoryos_wire::NodeIdentity::file_names(NodeId(id));
            assert!(f.certs.join(cert).exists(), "n{id}");
        }
    }
}
