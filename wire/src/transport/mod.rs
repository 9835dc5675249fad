//! The QUIC transport: one [`quinn::Endpoint`] per node, mutual TLS with the
//! cluster CA (see [`crate::tls`]).
//!
//! * **One-way messages** ([`Transport::send`]) to a peer travel on one
//!   long-lived unidirectional stream per direction, so they arrive in the
//!   order they were sent (the snapshot algorithm relies on it). Delivery is
//!   at most once: messages in flight when a connection dies are lost, and the
//!   protocol above retransmits.
//! * **Requests** ([`Transport::request`]) open a bidirectional stream each:
//!   one request frame, one response frame.
//! * Each node dials its own outbound connection to a peer and accepts the
//!   peer's connection for inbound traffic.
//! * A peer that cannot be reached makes calls fail fast with
//!   [`TransportError::Unreachable`]: after a failed dial the next dial waits
//!   out an exponential backoff, and calls during it fail immediately.
//! * Every received envelope's `sender` must be the id in the peer's
//!   certificate; a stream that lies is closed and counted.

mod inbound;

pub use inbound::{Inbound, Responder};

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
    /// Capacity of the inbound queue; when full, peers are slowed down by
    /// QUIC flow control rather than messages being dropped.
    pub inbound_capacity: usize,
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

/// A node's QUIC endpoint. Cheap to clone; the endpoint closes when the last
/// clone is dropped or [`Transport::shutdown`] is called.
#[derive(Clone, Debug)]
pub struct Transport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: NodeId,
    endpoint: quinn::Endpoint,
    peers: PeerBook,
    codec: FrameCodec,
    config: TransportConfig,
    counters: Arc<MessageCounters>,
    links: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<Link>>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"shutdown");
    }
}

/// The outbound side of one peer: its connection and ordered stream.
#[derive(Debug, Default)]
struct Link {
    conn: Option<quinn::Connection>,
    stream: Option<quinn::SendStream>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Where the last dial went: a backoff holds only for that address.
    dialled: Option<SocketAddr>,
}

impl Transport {
    /// Binds `addr` and starts accepting peers listed in `peers`. Inbound
    /// messages and requests arrive on the returned receiver. With `faults`,
    /// the UDP socket is wrapped in a [`FaultySocket`].
    pub fn bind(
        identity: &NodeIdentity,
        addr: SocketAddr,
        peers: PeerBook,
        config: TransportConfig,
        faults: Option<FaultController>,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
        let std_socket = std::net::UdpSocket::bind(addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        Self::bind_socket(identity, std_socket, peers, config, faults)
    }

    /// Like [`Transport::bind`], on a socket the caller bound already (so it
    /// can learn the port before starting anything).
    pub fn bind_socket(
        identity: &NodeIdentity,
        std_socket: std::net::UdpSocket,
        peers: PeerBook,
        config: TransportConfig,
        faults: Option<FaultController>,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
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

        let mut transport_config = quinn::TransportConfig::default();
        transport_config.keep_alive_interval(Some(config.keep_alive));
        transport_config.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(config.idle_timeout)
                .map_err(|e| CertError::Tls(rustls::Error::General(e.to_string())))?,
        ));
        let transport_config = Arc::new(transport_config);

        let server_tls = QuicServerConfig::try_from(identity.server_config(peers.clone())?)
            .map_err(|e| CertError::Tls(rustls::Error::General(e.to_string())))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
        server_config.transport_config(transport_config.clone());

        let client_tls = QuicClientConfig::try_from(identity.client_config()?)
            .map_err(|e| CertError::Tls(rustls::Error::General(e.to_string())))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(client_tls));
        client_config.transport_config(transport_config);

        // Stateless-reset key and connection-id hash key derived from the node's
        // key: a restarted incarnation recognises the connection ids of its
        // predecessor and resets their connections, so peers notice at once
        // instead of after the idle timeout.
        let secret = identity.reset_secret();
        let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        let cid_key = u64::from_le_bytes(secret[..8].try_into().expect("32-byte secret"));
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
        endpoint_config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server_config),
            socket,
            runtime,
        )
        .map_err(|source| TransportError::Bind { addr, source })?;
        endpoint.set_default_client_config(client_config);

        let codec = FrameCodec::new(config.max_frame);
        let counters = Arc::new(MessageCounters::default());
        let (tx, rx) = mpsc::channel(config.inbound_capacity.max(1));
        tokio::spawn(inbound::accept_loop(
            identity.id(),
            endpoint.clone(),
            peers.clone(),
            codec,
            counters.clone(),
            tx,
        ));
        let inner = Inner {
            id: identity.id(),
            endpoint,
            peers,
            codec,
            config,
            counters,
            links: Mutex::new(HashMap::new()),
        };
        Ok((
            Transport {
                inner: Arc::new(inner),
            },
            rx,
        ))
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The address the endpoint is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    pub fn peers(&self) -> &PeerBook {
        &self.inner.peers
    }

    pub fn counters(&self) -> &Arc<MessageCounters> {
        &self.inner.counters
    }

    /// Sends a one-way message to `to` on the ordered stream of this pair.
    /// `Ok` means the frame was handed to QUIC, not that it was received.
    pub async fn send(
        &self,
        to: NodeId,
        flow_version: FlowVersion,
        body: Message,
    ) -> Result<(), TransportError> {
        let env = Envelope::new(self.inner.id, flow_version, body);
        let frame = self.inner.codec.encode(&env)?;
        let result = self.send_frame(to, &frame).await;
        match &result {
            Ok(()) => self.inner.counters.record_sent(env.kind()),
            Err(_) => self.inner.counters.record_send_failure(),
        }
        result
    }

    async fn send_frame(&self, to: NodeId, frame: &[u8]) -> Result<(), TransportError> {
        let link = self.link(to);
        let mut link = link.lock().await;
        // A connection that died since the last send is replaced once.
        for attempt in 0..2 {
            let conn = self.connection(to, &mut link).await?;
            if link.stream.is_none() {
                match conn.open_uni().await {
                    Ok(s) => link.stream = Some(s),
                    Err(e) => {
                        link.conn = None;
                        if attempt == 0 {
                            continue;
                        }
                        return Err(lost(to, e));
                    }
                }
            }
            let stream = link.stream.as_mut().expect("opened above");
            match stream.write_all(frame).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    link.stream = None;
                    link.conn = None;
                    let err = after_failure(to, &conn, lost(to, e));
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
        let env = Envelope::new(self.inner.id, flow_version, body);
        let result = self.request_inner(to, &env).await;
        if result.is_err() {
            self.inner.counters.record_send_failure();
        }
        result
    }

    async fn request_inner(&self, to: NodeId, env: &Envelope) -> Result<Envelope, TransportError> {
        let frame = self.inner.codec.encode(env)?;
        let conn = {
            let link = self.link(to);
            let mut link = link.lock().await;
            self.connection(to, &mut link).await?
        };
        let timeout = self.inner.config.request_timeout;
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(to, e))?;
            send.write_all(&frame).await.map_err(|e| lost(to, e))?;
            self.inner.counters.record_sent(env.kind());
            let _ = send.finish();
            self.inner
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
            self.inner.counters.record_impersonation();
            return Err(TransportError::Impersonation {
                peer: to,
                claimed: response.sender,
            });
        }
        self.inner.counters.record_received(response.kind());
        Ok(response)
    }

    /// Closes every connection and the endpoint, waiting briefly for peers to
    /// be told.
    pub async fn shutdown(&self) {
        self.inner.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }

    /// Forgets the connection to `to` (e.g. after a peer was removed).
    pub async fn disconnect(&self, to: NodeId) {
        let link = self.link(to);
        let mut link = link.lock().await;
        if let Some(conn) = link.conn.take() {
            conn.close(0u32.into(), b"disconnect");
        }
        *link = Link::default();
    }

    fn link(&self, to: NodeId) -> Arc<tokio::sync::Mutex<Link>> {
        let mut links = self.inner.links.lock().unwrap_or_else(|e| e.into_inner());
        links.entry(to).or_default().clone()
    }

    /// The live outbound connection to `to`, dialling if needed (subject to backoff).
    async fn connection(
        &self,
        to: NodeId,
        link: &mut Link,
    ) -> Result<quinn::Connection, TransportError> {
        if let Some(conn) = &link.conn {
            // A peer that moved (restarted on another port) is dialled anew
            // rather than written to at its old address until the idle timeout.
            let moved = self
                .inner
                .peers
                .addr(to)
                .is_some_and(|addr| addr != conn.remote_address());
            if conn.close_reason().is_none() && !moved {
                return Ok(conn.clone());
            }
            if moved {
                conn.close(0u32.into(), b"peer moved");
                link.retry_at = None;
                link.failures = 0;
            }
            link.conn = None;
            link.stream = None;
        }
        let addr = self
            .inner
            .peers
            .addr(to)
            .ok_or(TransportError::UnknownPeer(to))?;
        if link.dialled != Some(addr) {
            // A new address (the peer restarted on another port and told us,
            // or connected to us from it): the backoff earned at the old one
            // does not apply.
            link.retry_at = None;
            link.failures = 0;
        }
        if let Some(at) = link.retry_at {
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
        link.dialled = Some(addr);
        let mut result = self.dial(to, addr).await;
        if let Err(TransportError::Moved { to: new, .. }) = result {
            // The peer connected to us from elsewhere while we dialled the
            // old address: dial it there (once; a peer that moves again is
            // followed on the next call).
            link.dialled = Some(new);
            result = self.dial(to, new).await;
        }
        match &result {
            Ok(conn) => {
                link.conn = Some(conn.clone());
                link.failures = 0;
                link.retry_at = None;
            }
            Err(_) => {
                let cfg = &self.inner.config;
                let backoff = cfg
                    .backoff_min
                    .saturating_mul(1u32 << link.failures.min(16))
                    .min(cfg.backoff_max);
                link.failures = link.failures.saturating_add(1);
                link.retry_at = Some(Instant::now() + backoff);
            }
        }
        result
    }

    async fn dial(
        &self,
        to: NodeId,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, TransportError> {
        let connecting = self
            .inner
            .endpoint
            .connect(addr, &tls::node_name(to))
            .map_err(|e| match e {
                quinn::ConnectError::EndpointStopping => TransportError::Closed,
                other => TransportError::Unreachable {
                    peer: to,
                    reason: other.to_string(),
                },
            })?;
        let timeout = self.inner.config.connect_timeout;
        let handshake = tokio::time::timeout(timeout, connecting);
        let outcome = tokio::select! {
            outcome = handshake => outcome,
            new = moved_from(&self.inner.peers, to, addr) => {
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
