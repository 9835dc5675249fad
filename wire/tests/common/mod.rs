//! Helpers shared by the transport tests: a CA, nodes on 127.0.0.1 port 0.
#![allow(dead_code)]

use factoryos_wire::fault::FaultController;
use factoryos_wire::{
    ClusterCa, Inbound, NodeId, NodeIdentity, PeerBook, Transport, TransportConfig,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const LOCALHOST: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A generous deadline for conditions on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn test_config() -> TransportConfig {
    TransportConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..TransportConfig::default()
    }
}

pub struct Node {
    pub transport: Transport,
    pub inbox: mpsc::Receiver<Inbound>,
    pub identity: NodeIdentity,
}

/// Binds node `id` on an ephemeral loopback port and records it in `book`.
pub fn node(ca: &ClusterCa, id: u64, book: &PeerBook) -> Node {
    node_with(ca.issue(NodeId(id)).unwrap(), LOCALHOST, book, None)
}

pub fn node_with(
    identity: NodeIdentity,
    addr: SocketAddr,
    book: &PeerBook,
    faults: Option<FaultController>,
) -> Node {
    let node = bind(identity, addr, book, test_config(), faults);
    book.insert(node.identity.id(), node.transport.local_addr().unwrap());
    node
}

/// Binds a node on an ephemeral loopback port with its own transport
/// settings; its address is recorded in no book (the test does that).
pub fn node_with_config(identity: NodeIdentity, book: &PeerBook, config: TransportConfig) -> Node {
    bind(identity, LOCALHOST, book, config, None)
}

fn bind(
    identity: NodeIdentity,
    addr: SocketAddr,
    book: &PeerBook,
    config: TransportConfig,
    faults: Option<FaultController>,
) -> Node {
    let (transport, inbox) =
        Transport::bind(&identity, addr, book.clone(), config, faults).unwrap();
    Node {
        transport,
        inbox,
        identity,
    }
}

/// Waits for the next inbound item, failing the test after [`DEADLINE`].
pub async fn next(inbox: &mut mpsc::Receiver<Inbound>) -> Inbound {
    tokio::time::timeout(DEADLINE, inbox.recv())
        .await
        .expect("nothing arrived before the deadline")
        .expect("inbox closed")
}

/// Polls `cond` every 10 ms until it holds or [`DEADLINE`] passes.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Answers every request on `inbox` with a heartbeat echoing nothing, forever.
pub fn spawn_echo(mut node: Node) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(item) = node.inbox.recv().await {
            if let Inbound::Request { env, reply, .. } = item {
                reply.respond(env.flow_version, env.body);
            }
        }
        drop(node.transport);
    })
}

/// A raw QUIC client with `identity`'s certificate, connected to `addr` as
/// if to node `to` (the endpoint is returned to keep it open): for tests
/// that write what a `Transport` never would.
pub async fn raw_client(
    identity: &NodeIdentity,
    addr: SocketAddr,
    to: NodeId,
) -> (quinn::Endpoint, quinn::Connection) {
    let client_tls =
        quinn::crypto::rustls::QuicClientConfig::try_from(identity.client_config().unwrap())
            .unwrap();
    let mut endpoint = quinn::Endpoint::client(LOCALHOST).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(client_tls)));
    let conn = endpoint
        .connect(addr, &factoryos_wire::tls::node_name(to))
        .unwrap()
        .await
        .unwrap();
    (endpoint, conn)
}
