//! The address a stage registers: one its peers can dial. A stage bound to
//! the unspecified address (`0.0.0.0`) registers the address its host uses
//! to reach the coordinators (the kernel's route to them, read without
//! sending a packet); a loopback address in a cluster whose coordinators are
//! on other hosts is refused, naming the fix.

use factoryos_wire::NodeId;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Why a stage has no address its peers can dial.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("stage {stage} is bound to {bound} and has no route to coordinator {coordinator} ({source}); declare an address its peers can reach (`addr = \"<ip>:<port>\"` under its [[stages]] in the spec)")]
    NoRoute {
        stage: NodeId,
        bound: SocketAddr,
        coordinator: SocketAddr,
        source: std::io::Error,
    },
    #[error("stage {stage} would register {addr}, which peers on other hosts cannot dial (the coordinators are at {coordinator}); declare the host's own address under its [[stages]] in the spec (`addr = \"<ip>:<port>\"`), or leave `addr` out to bind all addresses and register the one that reaches the coordinators")]
    Loopback {
        stage: NodeId,
        addr: SocketAddr,
        coordinator: SocketAddr,
    },
}

/// The address stage `stage`, bound at `bound`, registers.
pub fn advertised(
    stage: NodeId,
    bound: SocketAddr,
    coordinators: &BTreeMap<NodeId, SocketAddr>,
) -> Result<SocketAddr, AddressError> {
    let Some(&coordinator) = coordinators.values().next() else {
        return Ok(bound);
    };
    let ip = if bound.ip().is_unspecified() {
        route_source(coordinator).map_err(|source| AddressError::NoRoute {
            stage,
            bound,
            coordinator,
            source,
        })?
    } else {
        bound.ip()
    };
    let addr = SocketAddr::new(ip, bound.port());
    let remote = coordinators.values().find(|c| !c.ip().is_loopback());
    match remote {
        Some(&coordinator) if ip.is_loopback() => Err(AddressError::Loopback {
            stage,
            addr,
            coordinator,
        }),
        _ => Ok(addr),
    }
}

/// The source address this host uses to reach `to`. A UDP `connect` only
/// asks the routing table; it sends nothing.
fn route_source(to: SocketAddr) -> std::io::Result<IpAddr> {
    let any: IpAddr = match to {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let probe = UdpSocket::bind(SocketAddr::new(any, 0))?;
    probe.connect(to)?;
    Ok(probe.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinators(addr: &str) -> BTreeMap<NodeId, SocketAddr> {
        BTreeMap::from([(NodeId(1), addr.parse().unwrap())])
    }

    #[test]
    fn an_unspecified_bind_registers_the_route_to_the_coordinators() {
        let bound: SocketAddr = "0.0.0.0:7000".parse().unwrap();
        let addr = advertised(NodeId(11), bound, &coordinators("127.0.0.1:7101")).unwrap();
        assert_eq!(addr, "127.0.0.1:7000".parse().unwrap());
        assert!(!addr.ip().is_unspecified());
    }

    #[test]
    fn a_declared_address_is_kept() {
        let bound: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let addr = advertised(NodeId(11), bound, &coordinators("127.0.0.1:7101")).unwrap();
        assert_eq!(addr, bound);
    }

    #[test]
    fn loopback_is_refused_when_the_coordinators_are_elsewhere_and_the_message_names_the_fix() {
        let bound: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let err = advertised(NodeId(11), bound, &coordinators("10.1.2.3:7101")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cannot dial") && text.contains("addr = "),
            "{text}"
        );
    }
}
