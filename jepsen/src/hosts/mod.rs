//! Where a cluster's processes run: all on this machine's loopback, or each
//! on its own network-namespace host ([`netns`]). [`LocalCluster`] starts,
//! kills and pauses processes the same way on either; only the network
//! rules (partitions, loss) need namespace hosts.
//!
//! [`LocalCluster`]: crate::local::LocalCluster

pub mod netns;

use factoryos_wire::NodeId;
use netns::{Host, NetnsError, NetnsLab};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// The host name of the harness's own clients, probes and tools.
pub const CONTROL: &str = "ctl";

/// The hosts of a cluster.
#[derive(Debug, Clone)]
pub enum Hosts {
    /// Every process on 127.0.0.1.
    Loopback,
    /// Every process in its own namespace of `lab`.
    Netns(Arc<NetnsLab>),
}

/// The host name of the process known by `id` (a coordinator, or a stage
/// host process by its first stage).
pub fn host_name(id: NodeId) -> String {
    format!("n{}", id.0)
}

impl Hosts {
    /// The address process `id` listens on (its host is made if needed).
    pub fn ip(&self, id: NodeId) -> Result<IpAddr, NetnsError> {
        match self {
            Hosts::Loopback => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Hosts::Netns(lab) => Ok(IpAddr::V4(lab.host(&host_name(id))?.ip)),
        }
    }

    /// The host of process `id`, on namespace hosts.
    pub fn host(&self, id: NodeId) -> Result<Option<Host>, NetnsError> {
        match self {
            Hosts::Loopback => Ok(None),
            Hosts::Netns(lab) => lab.host(&host_name(id)).map(Some),
        }
    }

    /// A command running `binary` as process `id`.
    pub fn command(&self, id: NodeId, binary: &Path) -> Result<Command, NetnsError> {
        match self {
            Hosts::Loopback => Ok(Command::new(binary)),
            Hosts::Netns(lab) => Ok(lab.command(&lab.host(&host_name(id))?, binary)),
        }
    }

    /// A UDP socket for one of the harness's clients: on loopback, or
    /// inside the control host.
    pub fn client_socket(&self) -> Result<UdpSocket, std::io::Error> {
        match self {
            Hosts::Loopback => UdpSocket::bind("127.0.0.1:0"),
            Hosts::Netns(lab) => {
                let ctl = lab.host(CONTROL).map_err(std::io::Error::other)?;
                lab.udp_socket(&ctl, 0).map_err(std::io::Error::other)
            }
        }
    }

    /// Every process's host address, by node id (namespace hosts; empty on
    /// loopback, where no rule can tell processes apart).
    pub fn node_ips(&self) -> BTreeMap<NodeId, Ipv4Addr> {
        let Hosts::Netns(lab) = self else {
            return BTreeMap::new();
        };
        lab.hosts()
            .into_values()
            .filter_map(|h| Some((NodeId(h.name.strip_prefix('n')?.parse().ok()?), h.ip)))
            .collect()
    }

    /// The lab, on namespace hosts.
    pub fn lab(&self) -> Option<&Arc<NetnsLab>> {
        match self {
            Hosts::Loopback => None,
            Hosts::Netns(lab) => Some(lab),
        }
    }
}
