//! The accepting side: the accept loop, one task per connection, one per
//! stream. Every stream opens with a [`Route`] header; a stream whose sender
//! is not in the peer's certificate (or not a member), or whose envelopes
//! claim another sender, is closed and counted; one for a stage this
//! endpoint does not host is closed. Frames that fail to decode close their
//! stream. A known peer that connects from a new address is at that address
//! from now on, with every stage its certificate speaks for.

use super::route::Route;
use crate::frame::FrameCodec;
use crate::ids::{FlowVersion, NodeId};
use crate::message::{Envelope, Message};
use crate::metrics::MessageCounters;
use crate::peers::PeerBook;
use crate::tls;
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};

/// QUIC application error code used when we close a stream for a bad frame.
const BAD_FRAME: u32 = 1;
/// ... and for an envelope claiming another sender.
const IMPERSONATION: u32 = 2;
/// ... and for a stream to a stage this endpoint does not host (any more).
pub(super) const NOT_HOSTED: u32 = 3;

/// Something a peer sent us.
#[derive(Debug)]
pub enum Inbound {
    /// A one-way message, in the order the peer sent it.
    Message { from: NodeId, env: Envelope },
    /// A request; answer it through `reply` (dropping it closes the stream
    /// without an answer, which the peer sees as `NoResponse`).
    Request {
        from: NodeId,
        /// Every id the sender's certificate speaks for (its host's stages).
        peer: Arc<[NodeId]>,
        env: Envelope,
        reply: Responder,
    },
}

/// The way back for one request.
#[derive(Debug)]
pub struct Responder {
    local: NodeId,
    tx: oneshot::Sender<Envelope>,
}

impl Responder {
    /// Sends the response. Returns `false` if the requester is gone.
    pub fn respond(self, flow_version: FlowVersion, body: Message) -> bool {
        self.tx
            .send(Envelope::new(self.local, flow_version, body))
            .is_ok()
    }
}

/// Where the endpoint delivers what arrives for one of its stages.
#[derive(Debug, Clone)]
pub(super) struct Mailbox {
    pub tx: mpsc::Sender<Inbound>,
    pub counters: Arc<MessageCounters>,
}

/// The stages an endpoint hosts, by id.
#[derive(Debug, Default)]
pub(super) struct Mailboxes {
    map: RwLock<HashMap<NodeId, Mailbox>>,
}

impl Mailboxes {
    pub fn insert(&self, id: NodeId, mailbox: Mailbox) {
        self.write().insert(id, mailbox);
    }

    pub fn remove(&self, id: NodeId) {
        self.write().remove(&id);
    }

    pub fn get(&self, id: NodeId) -> Option<Mailbox> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(&id).filter(|m| !m.tx.is_closed()).cloned()
    }

    fn is_empty(&self) -> bool {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values().all(|m| m.tx.is_closed())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<NodeId, Mailbox>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone)]
struct Ctx {
    peers: PeerBook,
    codec: FrameCodec,
    mailboxes: Arc<Mailboxes>,
}

pub(super) async fn accept_loop(
    endpoint: quinn::Endpoint,
    peers: PeerBook,
    codec: FrameCodec,
    mailboxes: Arc<Mailboxes>,
) {
    let ctx = Ctx {
        peers,
        codec,
        mailboxes,
    };
    while let Some(incoming) = endpoint.accept().await {
        if ctx.mailboxes.is_empty() {
            incoming.refuse();
            continue;
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => serve_connection(ctx, conn).await,
                Err(e) => tracing::debug!(%remote, error = %e, "refused an incoming connection"),
            }
        });
    }
}

/// Every id the peer's certificate speaks for.
pub(super) fn peer_ids(conn: &quinn::Connection) -> Option<Arc<[NodeId]>> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    tls::node_ids_of(certs.first()?).ok().map(Arc::from)
}

async fn serve_connection(ctx: Ctx, conn: quinn::Connection) {
    // The TLS verifier already checked chain and membership; this cannot fail
    // for a connection that completed the handshake, but never trust it blindly.
    let Some(peer) = peer_ids(&conn) else {
        conn.close(IMPERSONATION.into(), b"no node id in certificate");
        return;
    };
    tracing::debug!(peer = ?peer, "accepted a connection");
    follow_move(&ctx.peers, &peer, conn.remote_address());
    loop {
        tokio::select! {
            uni = conn.accept_uni() => match uni {
                Ok(recv) => { tokio::spawn(read_one_way(ctx.clone(), peer.clone(), recv)); }
                Err(e) => { tracing::debug!(peer = ?peer, error = %e, "connection ended"); break; }
            },
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => { tokio::spawn(serve_request(ctx.clone(), peer.clone(), send, recv)); }
                Err(e) => { tracing::debug!(peer = ?peer, error = %e, "connection ended"); break; }
            },
        }
    }
}

/// A member that connected, with its verified certificate, from an address
/// we do not have for it is at that address: it restarted on a new port, or
/// we have not read the stage directory since it registered. An endpoint
/// sends from the socket it listens on, so that is where it can be dialled
/// (every stage of a host: they share the endpoint); answering it at the
/// old address (or not at all, with none) would lose every message until
/// the directory is read again, and a stage that hears no answer reports
/// its supplier suspect. (Tools all share the operator id and are never
/// dialled: it is left alone.)
fn follow_move(peers: &PeerBook, ids: &[NodeId], remote: std::net::SocketAddr) {
    for &peer in ids {
        if peer == NodeId::OPERATOR || !peers.contains(peer) {
            continue;
        }
        let known = peers.addr(peer);
        if known != Some(remote) {
            tracing::debug!(%peer, from = ?known, to = %remote, "a peer is at a new address");
            peers.insert(peer, remote);
        }
    }
}

/// Why a stream's header is refused.
enum Refusal {
    /// Not one of ours (any more): the sender learns its route is stale.
    NotHosted,
    /// A sender the certificate does not speak for.
    Impersonation,
    /// A sender the certificate names but our peer book does not know
    /// (yet: at start-up a host hears from stages before it has read the
    /// directory). Refused like an impersonation, but not counted as one.
    NotMember,
}

/// Checks a stream's header: the sender is one of the certificate's ids and
/// a member, and the recipient is hosted here.
fn admit_route(ctx: &Ctx, peer: &[NodeId], route: Route) -> Result<Mailbox, Refusal> {
    let mailbox = ctx.mailboxes.get(route.to).ok_or(Refusal::NotHosted)?;
    if !peer.contains(&route.from) {
        mailbox.counters.record_impersonation();
        tracing::warn!(peer = ?peer, claimed = %route.from, "a peer opened a stream in a name it may not use; closing it");
        return Err(Refusal::Impersonation);
    }
    if !ctx.peers.contains(route.from) {
        tracing::debug!(sender = %route.from, "a stream from a node not (yet) in the peer book; closing it");
        return Err(Refusal::NotMember);
    }
    Ok(mailbox)
}

/// Checks one decoded frame against its stream's route.
fn admit(mailbox: &Mailbox, route: Route, env: &Envelope) -> bool {
    if env.sender != route.from {
        mailbox.counters.record_impersonation();
        tracing::warn!(stream = %route.from, claimed = %env.sender, "a peer sent a message in another node's name; closing the stream");
        return false;
    }
    mailbox.counters.record_received(env.kind());
    true
}

fn refusal_code(r: &Refusal) -> u32 {
    match r {
        Refusal::NotHosted => NOT_HOSTED,
        Refusal::Impersonation | Refusal::NotMember => IMPERSONATION,
    }
}

async fn read_one_way(ctx: Ctx, peer: Arc<[NodeId]>, mut recv: quinn::RecvStream) {
    let Some(route) = Route::read(&mut recv).await else {
        return;
    };
    let mailbox = match admit_route(&ctx, &peer, route) {
        Ok(m) => m,
        Err(r) => {
            let _ = recv.stop(refusal_code(&r).into());
            return;
        }
    };
    loop {
        match ctx.codec.read(&mut recv).await {
            Ok(Some(env)) => {
                if !admit(&mailbox, route, &env) {
                    let _ = recv.stop(IMPERSONATION.into());
                    return;
                }
                let from = route.from;
                if mailbox
                    .tx
                    .send(Inbound::Message { from, env })
                    .await
                    .is_err()
                {
                    // The stage stopped; its host may go on.
                    let _ = recv.stop(NOT_HOSTED.into());
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                if !is_connection_end(&e) {
                    mailbox.counters.record_decode_error();
                    tracing::warn!(peer = %route.from, error = %e, "bad frame; closing the stream");
                }
                let _ = recv.stop(BAD_FRAME.into());
                return;
            }
        }
    }
}

/// A stream cut by its connection dying is not a malformed frame.
fn is_connection_end(e: &crate::frame::DecodeError) -> bool {
    matches!(e, crate::frame::DecodeError::Io(_))
}

async fn serve_request(
    ctx: Ctx,
    peer: Arc<[NodeId]>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let Some(route) = Route::read(&mut recv).await else {
        return;
    };
    let mailbox = match admit_route(&ctx, &peer, route) {
        Ok(m) => m,
        Err(r) => {
            let code = refusal_code(&r);
            let _ = recv.stop(code.into());
            let _ = send.reset(code.into());
            return;
        }
    };
    let env = match ctx.codec.read(&mut recv).await {
        Ok(Some(env)) => env,
        Ok(None) => return,
        Err(e) => {
            if !is_connection_end(&e) {
                mailbox.counters.record_decode_error();
                tracing::warn!(peer = %route.from, error = %e, "bad request frame; closing the stream");
            }
            let _ = recv.stop(BAD_FRAME.into());
            let _ = send.reset(BAD_FRAME.into());
            return;
        }
    };
    if !admit(&mailbox, route, &env) {
        let _ = recv.stop(IMPERSONATION.into());
        let _ = send.reset(IMPERSONATION.into());
        return;
    }
    let (tx, rx) = oneshot::channel();
    let reply = Responder {
        local: route.to,
        tx,
    };
    let request = Inbound::Request {
        from: route.from,
        peer,
        env,
        reply,
    };
    if mailbox.tx.send(request).await.is_err() {
        let _ = send.reset(NOT_HOSTED.into());
        return;
    }
    let Ok(response) = rx.await else {
        let _ = send.finish();
        return;
    };
    match ctx.codec.encode(&response) {
        Ok(frame) => {
            if send.write_all(&frame).await.is_ok() {
                mailbox.counters.record_sent(response.kind());
                let _ = send.finish();
            }
        }
        Err(e) => {
            tracing::warn!(peer = %route.from, error = %e, "response could not be encoded");
            let _ = send.reset(BAD_FRAME.into());
        }
    }
}
