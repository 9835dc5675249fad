//! The QUIC transport: one [`quinn::Endpoint`] per process ([`Endpoint`]),
//! shared by the stages it hosts (a [`Transport`] each), mutual TLS with the
//! cluster CA (see [`crate::tls`]).
//!
//! * **One connection per pair of processes**, dialled by the sender: the
//!   stages of a host share their connections to each other host, so 1,000
//!   stages on 20 hosts hold at most 20 × 19 connections, not 1,000 × links.
//! * Every stream opens with a route header ([`route`]): the sending id and
//!   the receiving one. The sender must be in the peer's certificate (a host
//!   certificate lists every stage the process speaks for) and a member; the
//!   recipient must be hosted here.
//!
//! * **One-way messages** ([`Transport::send`]) to a peer travel on one
//!   long-lived unidirectional stream per (sender, recipient) pair, so they
//!   arrive in the order they were sent (the snapshot algorithm relies on
//!   it), and a slow recipient holds back only its own stream. Delivery is
//!   at most once: messages in flight when a connection dies are lost, and the
//!   protocol above retransmits.
//! * **Requests** ([`Transport::request`]) open a bidirectional stream each:
//!   one request frame, one response frame.
//! * Each process dials its own outbound connection to a peer process and
//!   accepts the peer's connection for inbound traffic.
//! * A peer that cannot be reached makes calls fail fast with
//!   [`TransportError::Unreachable`]: after a failed dial the next dial waits
//!   out an exponential backoff, and calls during it fail immediately.
//! * Every received envelope's `sender` must be its stream's sender; a
//!   stream that lies is closed and counted.

mod inbound;
pub mod route;

pub use inbound::{Inbound, Responder};
use inbound::{Mailbox, Mailboxes};
use route::Route;

use crate::fault::{FaultController, FaultySocket};
use crate::frame::{DecodeError, EncodeError, FrameCodec, DEFAULT_MAX_FRAME};
use crate::ids::{FlowVersion, NodeId};
use crate::message::{Envelope, Message};
use crate::metrics::MessageCounters;
use crate::peers::PeerBook;
use crate::tls::{self, CertError, NodeIdentity};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Timeouts and limits of a [`Transport`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// QUIC keep-alive interval (≈ 1 s so a dead peer is noticed quickly).
    pub keep_alive: Duration,
    /// A connection silent this long is dead (quinn's 30 s default hides crashes).
    pub idle_timeout: Duration,
    /// How long one dial may take before the peer is declared unreachable.
    pub connect_timeout: Duration,
    /// How long [`Transport::request`] waits for the response.
    pub request_timeout: Duration,
    /// First backoff after a failed dial; doubles per failure.
    pub backoff_min: Duration,
    /// Cap of the dial backoff.
    pub backoff_max: Duration,
    /// Maximum frame size accepted and sent.
    pub max_frame: usize,
    /// Capacity of each hosted stage's inbound queue; when full, peers are
    /// slowed down by QUIC flow control rather than messages being dropped.
    pub inbound_capacity: usize,
    /// Most streams a peer process may hold open to us at once: one per
    /// (its stage, our stage) pair that trades, so a host of many stages
    /// needs many more than quinn's default of 100.
    pub max_streams: u32,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            max_frame: DEFAULT_MAX_FRAME,
            inbound_capacity: 4096,
            max_streams: 10_000,
        }
    }
}

/// Why a send or request failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("node {0} has no known address (not a member, or not registered yet)")]
    UnknownPeer(NodeId),
    #[error("node {peer} is unreachable: {reason}")]
    Unreachable { peer: NodeId, reason: String },
    #[error("node {peer} refused the connection: {reason}")]
    Refused { peer: NodeId, reason: String },
    #[error("connection to node {peer} lost: {reason}")]
    ConnectionLost { peer: NodeId, reason: String },
    #[error("node {peer} moved from {from} to {to} while it was being dialled")]
    Moved {
        peer: NodeId,
        from: SocketAddr,
        to: SocketAddr,
    },
    #[error("node {peer} did not answer within {timeout:?}")]
    Timeout { peer: NodeId, timeout: Duration },
    #[error("node {peer} answered as node {claimed}")]
    Impersonation { peer: NodeId, claimed: NodeId },
    #[error("node {peer} closed the request stream without answering")]
    NoResponse { peer: NodeId },
    #[error("{id} is not one of this endpoint's identities")]
    NotMine { id: NodeId },
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("bad response frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("could not bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(#[from] CertError),
    #[error("the transport is shut down")]
    Closed,
}

/// A process's QUIC endpoint, shared by every stage it hosts. Cheap to
/// clone; it closes when the last clone (and every [`Transport`] on it) is
/// dropped, or on [`Endpoint::shutdown`].
#[derive(Clone, Debug)]
pub struct Endpoint {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Every id the identity speaks for.
    ids: Vec<NodeId>,
    endpoint: quinn::Endpoint,
    peers: PeerBook,
    codec: FrameCodec,
    config: TransportConfig,
    mailboxes: Arc<Mailboxes>,
    /// Outbound connections, one per peer process (by its address).
    conns: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<Conn>>>>,
    /// Ordered one-way streams, one per (our stage, their stage).
    streams: Mutex<HashMap<Route, Arc<tokio::sync::Mutex<Stream>>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"shutdown");
    }
}

/// The outbound connection to one peer process, and its dial backoff.
#[derive(Debug, Default)]
struct Conn {
    conn: Option<quinn::Connection>,
    /// The ids the peer's certificate speaks for.
    ids: Option<Arc<[NodeId]>>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// The ordered stream of one (sender, recipient) pair, and the connection
/// it was opened on.
#[derive(Debug, Default)]
struct Stream {
    stream: Option<quinn::SendStream>,
    on: Option<usize>,
    /// The peer process said it does not host the recipient: sends fail at
    /// once until then ([`NOT_HOSTED_RETRY`]; the recipient may be started
    /// again later).
    not_hosted_until: Option<Instant>,
}

/// One stage's (or coordinator's, or tool's) side of an [`Endpoint`]: it
/// sends in its own name and receives what is addressed to it. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Transport {
    shared: Arc<Shared>,
    id: NodeId,
    counters: Arc<MessageCounters>,
    /// Made by [`Transport::bind`]: the endpoint is its alone, and its
    /// shutdown closes it.
    sole: bool,
}

impl Endpoint {
    /// Binds `addr` for `identity` (a node's or a host's) and starts
    /// accepting peers listed in `peers`. With `faults`, the UDP socket is
    /// wrapped in a [`FaultySocket`]. Stages join with [`Endpoint::attach`].
    pub fn bind(
        identity: &NodeIdentity,
        addr: SocketAddr,
        peers: PeerBook,
        config: TransportConfig,
        faults: Option<FaultController>,
    ) -> Result<Endpoint, TransportError> {
        let std_socket = std::net::UdpSocket::bind(addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        Self::bind_socket(identity, std_socket, peers, config, faults)
    }

    /// Like [`Endpoint::bind`], on a socket the caller bound already (so it
    /// can learn the port before starting anything).
    pub fn bind_socket(
        identity: &NodeIdentity,
        std_socket: std::net::UdpSocket,
        peers: PeerBook,
        config: TransportConfig,
        faults: Option<FaultController>,
    ) -> Result<Endpoint, TransportError> {
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let addr = std_socket
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
        let mut socket = runtime
            .wrap_udp_socket(std_socket)
            .map_err(|source| TransportError::Bind { addr, source })?;
        if let Some(faults) = faults {
            socket = Arc::new(FaultySocket::new(socket, faults));
        }
        let (server_config, client_config) = quic_configs(identity, &peers, &config)?;
        let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config(identity),
            Some(server_config),
            socket,
            runtime,
        )
        .map_err(|source| TransportError::Bind { addr, source })?;
        endpoint.set_default_client_config(client_config);

        let codec = FrameCodec::new(config.max_frame);
        let mailboxes = Arc::new(Mailboxes::default());
        tokio::spawn(inbound::accept_loop(
            endpoint.clone(),
            peers.clone(),
            codec,
            mailboxes.clone(),
        ));
        let shared = Shared {
            ids: identity.ids().to_vec(),
            endpoint,
            peers,
            codec,
            config,
            mailboxes,
            conns: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
        };
        Ok(Endpoint {
            shared: Arc::new(shared),
        })
    }

    /// Joins stage `id` (one of the identity's ids): its transport, and the
    /// queue where what peers address to it arrives. Attaching an id again
    /// replaces its queue.
    pub fn attach(
        &self,
        id: NodeId,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
        if !self.shared.ids.contains(&id) {
            return Err(TransportError::NotMine { id });
        }
        Ok(self.attach_as(id, false))
    }

    fn attach_as(&self, id: NodeId, sole: bool) -> (Transport, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(self.shared.config.inbound_capacity.max(1));
        let counters = Arc::new(MessageCounters::default());
        self.shared.mailboxes.insert(
            id,
            Mailbox {
                tx,
                counters: counters.clone(),
            },
        );
        let transport = Transport {
            shared: self.shared.clone(),
            id,
            counters,
            sole,
        };
        (transport, rx)
    }

    /// The address the endpoint is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    pub fn peers(&self) -> &PeerBook {
        &self.shared.peers
    }

    /// Connections open on the endpoint, dialled and accepted.
    pub fn open_connections(&self) -> usize {
        self.shared.endpoint.open_connections()
    }

    /// Every id the endpoint's certificate speaks for.
    pub fn ids(&self) -> &[NodeId] {
        &self.shared.ids
    }

    /// Closes every connection and the endpoint, waiting briefly for peers to
    /// be told.
    pub async fn shutdown(&self) {
        shutdown(&self.shared.endpoint).await;
    }
}

async fn shutdown(endpoint: &quinn::Endpoint) {
    endpoint.close(0u32.into(), b"shutdown");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

/// The QUIC server and client configs of `identity`.
fn quic_configs(
    identity: &NodeIdentity,
    peers: &PeerBook,
    config: &TransportConfig,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TransportError> {
    let tls_error =
        |e: &dyn std::fmt::Display| CertError::Tls(rustls::Error::General(e.to_string()));
    let mut transport_config = quinn::TransportConfig::default();
    transport_config.keep_alive_interval(Some(config.keep_alive));
    transport_config.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|e| tls_error(&e))?,
    ));
    transport_config.max_concurrent_uni_streams(config.max_streams.into());
    transport_config.max_concurrent_bidi_streams(config.max_streams.into());
    let transport_config = Arc::new(transport_config);

    let server_tls = QuicServerConfig::try_from(identity.server_config(peers.clone())?)
        .map_err(|e| tls_error(&e))?;
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
    server_config.transport_config(transport_config.clone());

    let client_tls =
        QuicClientConfig::try_from(identity.client_config()?).map_err(|e| tls_error(&e))?;
    let mut client_config = quinn::ClientConfig::new(Arc::new(client_tls));
    client_config.transport_config(transport_config);
    Ok((server_config, client_config))
}

/// Stateless-reset key and connection-id hash key derived from the
/// identity's key: a restarted incarnation recognises the connection ids of
/// its predecessor and resets their connections, so peers notice at once
/// instead of after the idle timeout.
fn endpoint_config(identity: &NodeIdentity) -> quinn::EndpointConfig {
    let secret = identity.reset_secret();
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    let cid_key = u64::from_le_bytes(secret[..8].try_into().expect("32-byte secret"));
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    endpoint_config
}

impl Transport {
    /// Binds an endpoint of its own for `identity` (a coordinator, a tool, a
    /// stage alone in its process) and joins it as `identity.id()`.
    pub fn bind(
        identity: &NodeIdentity,
        addr: SocketAddr,
        peers: PeerBook,
        config: TransportConfig,
        faults: Option<FaultController>,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
        let endpoint = Endpoint::bind(identity, addr, peers, config, faults)?;
        Ok(endpoint.attach_as(identity.id(), true))
    }

    /// Like [`Transport::bind`], on a socket the caller bound already.
    pub fn bind_socket(
        identity: &NodeIdentity,
        std_socket: std::net::UdpSocket,
        peers: PeerBook,
        config: TransportConfig,
        faults: Option<FaultController>,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
        let endpoint = Endpoint::bind_socket(identity, std_socket, peers, config, faults)?;
        Ok(endpoint.attach_as(identity.id(), true))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address the endpoint is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    pub fn peers(&self) -> &PeerBook {
        &self.shared.peers
    }

    /// This id's counters (the endpoint's other stages count their own).
    pub fn counters(&self) -> &Arc<MessageCounters> {
        &self.counters
    }

    /// Sends a one-way message to `to` on the ordered stream of this pair.
    /// `Ok` means the frame was handed to QUIC, not that it was received.
    pub async fn send(
        &self,
        to: NodeId,
        flow_version: FlowVersion,
        body: Message,
    ) -> Result<(), TransportError> {
        let env = Envelope::new(self.id, flow_version, body);
        let frame = self.shared.codec.encode(&env)?;
        let result = self.send_frame(to, &frame).await;
        match &result {
            Ok(()) => self.counters.record_sent(env.kind()),
            Err(_) => self.counters.record_send_failure(),
        }
        result
    }

    async fn send_frame(&self, to: NodeId, frame: &[u8]) -> Result<(), TransportError> {
        let route = Route { from: self.id, to };
        let slot = self.shared.stream(route);
        let mut slot = slot.lock().await;
        if slot.not_hosted_until.is_some_and(|t| Instant::now() < t) {
            return Err(not_hosted(to));
        }
        // A connection that died since the last send is replaced once.
        for attempt in 0..2 {
            let conn = self.shared.connection(to).await?;
            if slot.on != Some(conn.stable_id()) {
                slot.stream = None;
            }
            if slot.stream.is_none() {
                match open_uni(&conn, route).await {
                    Ok(s) => {
                        slot.stream = Some(s);
                        slot.on = Some(conn.stable_id());
                    }
                    Err(e) => {
                        self.shared.forget(&conn);
                        if attempt == 0 {
                            continue;
                        }
                        return Err(lost(to, e));
                    }
                }
            }
            let stream = slot.stream.as_mut().expect("opened above");
            match stream.write_all(frame).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    slot.stream = None;
                    if is_not_hosted(&e) {
                        slot.not_hosted_until = Some(Instant::now() + NOT_HOSTED_RETRY);
                        return Err(not_hosted(to));
                    }
                    let err = after_failure(to, &conn, lost(to, e));
                    if conn.close_reason().is_some() {
                        self.shared.forget(&conn);
                    }
                    if attempt == 1 || matches!(err, TransportError::Refused { .. }) {
                        return Err(err);
                    }
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Sends a request to `to` and waits for its response.
    pub async fn request(
        &self,
        to: NodeId,
        flow_version: FlowVersion,
        body: Message,
    ) -> Result<Envelope, TransportError> {
        let env = Envelope::new(self.id, flow_version, body);
        let result = self.request_inner(to, &env).await;
        if result.is_err() {
            self.counters.record_send_failure();
        }
        result
    }

    async fn request_inner(&self, to: NodeId, env: &Envelope) -> Result<Envelope, TransportError> {
        let frame = self.shared.codec.encode(env)?;
        let conn = self.shared.connection(to).await?;
        let timeout = self.shared.config.request_timeout;
        let route = Route { from: self.id, to };
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(to, e))?;
            send.write_all(&route.encode())
                .await
                .map_err(|e| write_error(to, e))?;
            send.write_all(&frame)
                .await
                .map_err(|e| write_error(to, e))?;
            self.counters.record_sent(env.kind());
            let _ = send.finish();
            self.shared
                .codec
                .read(&mut recv)
                .await?
                .ok_or(TransportError::NoResponse { peer: to })
        };
        let response = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout { peer: to, timeout })?
            .map_err(|e| after_failure(to, &conn, e))?;
        if response.sender != to {
            self.counters.record_impersonation();
            return Err(TransportError::Impersonation {
                peer: to,
                claimed: response.sender,
            });
        }
        self.counters.record_received(response.kind());
        Ok(response)
    }

    /// Leaves the endpoint: nothing more arrives for this id. A transport
    /// made by [`Transport::bind`] also closes its endpoint, waiting briefly
    /// for peers to be told; on a shared endpoint the host closes it.
    pub async fn shutdown(&self) {
        self.shared.mailboxes.remove(self.id);
        if self.sole {
            shutdown(&self.shared.endpoint).await;
        }
    }
}

/// Opens the ordered stream of `route` and writes its header.
async fn open_uni(
    conn: &quinn::Connection,
    route: Route,
) -> Result<quinn::SendStream, TransportError> {
    let mut stream = conn.open_uni().await.map_err(|e| lost(route.to, e))?;
    stream
        .write_all(&route.encode())
        .await
        .map_err(|e| write_error(route.to, e))?;
    Ok(stream)
}

impl Shared {
    fn stream(&self, route: Route) -> Arc<tokio::sync::Mutex<Stream>> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.entry(route).or_default().clone()
    }

    fn conn_slot(&self, addr: SocketAddr) -> Arc<tokio::sync::Mutex<Conn>> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.entry(addr).or_default().clone()
    }

    /// Drops `conn` from the pool (if it is still the pooled one), so that
    /// the next call dials anew.
    fn forget(&self, conn: &quinn::Connection) {
        let slot = self.conn_slot(conn.remote_address());
        // A slot that is locked is being dialled or checked: it finds a dead
        // connection itself.
        let Ok(mut slot) = slot.try_lock() else {
            return;
        };
        if slot.conn.as_ref().map(quinn::Connection::stable_id) == Some(conn.stable_id()) {
            slot.conn = None;
            slot.ids = None;
        }
    }

    /// The live connection to the process hosting `to`, dialling if needed
    /// (subject to the backoff of its address).
    async fn connection(&self, to: NodeId) -> Result<quinn::Connection, TransportError> {
        let mut addr = self.peers.addr(to).ok_or(TransportError::UnknownPeer(to))?;
        // A peer that moves while it is dialled is followed once; one that
        // moves again is followed on the next call.
        for follow in [true, false] {
            let slot = self.conn_slot(addr);
            let mut slot = slot.lock().await;
            if let (Some(conn), Some(ids)) = (&slot.conn, &slot.ids) {
                // Another process at that address (the host restarted with
                // other stages) is dialled anew, as is a dead connection.
                if conn.close_reason().is_none() && ids.contains(&to) {
                    return Ok(conn.clone());
                }
                slot.conn = None;
                slot.ids = None;
            }
            if let Some(at) = slot.retry_at {
                let now = Instant::now();
                if now < at {
                    return Err(TransportError::Unreachable {
                        peer: to,
                        reason: format!(
                            "last dial failed; next attempt in {:?}",
                            at.saturating_duration_since(now)
                        ),
                    });
                }
            }
            let result = self.dial(to, addr).await;
            match result {
                Ok(conn) => {
                    slot.ids = inbound::peer_ids(&conn);
                    slot.conn = Some(conn.clone());
                    slot.failures = 0;
                    slot.retry_at = None;
                    return Ok(conn);
                }
                Err(TransportError::Moved { to: new, .. }) if follow => {
                    // The peer connected to us from elsewhere while we
                    // dialled the old address: dial it there.
                    addr = new;
                }
                Err(e) => {
                    let cfg = &self.config;
                    let backoff = cfg
                        .backoff_min
                        .saturating_mul(1u32 << slot.failures.min(16))
                        .min(cfg.backoff_max);
                    slot.failures = slot.failures.saturating_add(1);
                    slot.retry_at = Some(Instant::now() + backoff);
                    return Err(e);
                }
            }
        }
        Err(TransportError::Unreachable {
            peer: to,
            reason: "it moved twice while being dialled".into(),
        })
    }

    async fn dial(
        &self,
        to: NodeId,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, TransportError> {
        let connecting = self
            .endpoint
            .connect(addr, &tls::node_name(to))
            .map_err(|e| match e {
                quinn::ConnectError::EndpointStopping => TransportError::Closed,
                other => TransportError::Unreachable {
                    peer: to,
                    reason: other.to_string(),
                },
            })?;
        let timeout = self.config.connect_timeout;
        let handshake = tokio::time::timeout(timeout, connecting);
        let outcome = tokio::select! {
            outcome = handshake => outcome,
            new = moved_from(&self.peers, to, addr) => {
                return Err(TransportError::Moved { peer: to, from: addr, to: new });
            }
        };
        match outcome {
            Err(_) => Err(TransportError::Unreachable {
                peer: to,
                reason: format!("no handshake within {timeout:?}"),
            }),
            Ok(Ok(conn)) => {
                tracing::debug!(peer = %to, %addr, "connected");
                Ok(conn)
            }
            Ok(Err(e)) => Err(match e {
                quinn::ConnectionError::TimedOut
                | quinn::ConnectionError::Reset
                | quinn::ConnectionError::LocallyClosed => TransportError::Unreachable {
                    peer: to,
                    reason: e.to_string(),
                },
                other => TransportError::Refused {
                    peer: to,
                    reason: other.to_string(),
                },
            }),
        }
    }
}

/// How long sends to a recipient its host process said it does not run
/// fail at once before one is tried again: short, as a stage killed alone
/// inside a live host may start again there at any time (its peers must
/// reach it within a cycle or two of its restart).
const NOT_HOSTED_RETRY: Duration = Duration::from_millis(200);

/// Whether a write failed because the peer process does not host its
/// recipient (any more): it stopped the stream.
fn is_not_hosted(e: &quinn::WriteError) -> bool {
    matches!(e, quinn::WriteError::Stopped(code) if code.into_inner() == u64::from(inbound::NOT_HOSTED))
}

fn not_hosted(peer: NodeId) -> TransportError {
    TransportError::Unreachable {
        peer,
        reason: "its host process does not run it".into(),
    }
}

/// A write that failed: the peer process does not host the recipient, or
/// the connection is gone.
fn write_error(peer: NodeId, e: quinn::WriteError) -> TransportError {
    if is_not_hosted(&e) {
        not_hosted(peer)
    } else {
        lost(peer, e)
    }
}

/// How often a dial in progress looks for a new address of its peer.
const MOVE_POLL: Duration = Duration::from_millis(50);

/// Resolves with the peer's new address once the book no longer has `addr`
/// for it (it connected to us from elsewhere: it restarted on another port),
/// so that a dial to the old address does not wait out `connect_timeout`.
async fn moved_from(peers: &PeerBook, to: NodeId, addr: SocketAddr) -> SocketAddr {
    loop {
        tokio::time::sleep(MOVE_POLL).await;
        if let Some(new) = peers.addr(to).filter(|a| *a != addr) {
            return new;
        }
    }
}

/// Whether a connection ended because TLS refused it (a crypto error code).
fn is_tls_refusal(e: &quinn::ConnectionError) -> bool {
    let code = match e {
        quinn::ConnectionError::ConnectionClosed(close) => close.error_code,
        quinn::ConnectionError::TransportError(err) => err.code,
        _ => return false,
    };
    (0x100..0x200).contains(&u64::from(code))
}

/// Refines the error of a failed call by why its connection closed. With TLS
/// 1.3 a client finishes its handshake before the server has checked the
/// client's certificate, so a refusal surfaces on the first stream.
fn after_failure(
    peer: NodeId,
    conn: &quinn::Connection,
    fallback: TransportError,
) -> TransportError {
    match conn.close_reason() {
        Some(reason) if is_tls_refusal(&reason) => TransportError::Refused {
            peer,
            reason: reason.to_string(),
        },
        _ => fallback,
    }
}

fn lost(peer: NodeId, e: impl std::fmt::Display) -> TransportError {
    TransportError::ConnectionLost {
        peer,
        reason: e.to_string(),
    }
}
