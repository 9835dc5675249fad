//! The accepting side: the accept loop, one task per connection, one per
//! stream. Frames that fail to decode close their stream; envelopes whose
//! sender is not the certificate's id close theirs too. A known peer that
//! connects from a new address is at that address from now on.

use crate::frame::FrameCodec;
use crate::ids::{FlowVersion, NodeId};
use crate::message::{Envelope, Message};
use crate::metrics::MessageCounters;
use crate::peers::PeerBook;
use crate::tls;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// QUIC application error code used when we close a stream for a bad frame.
const BAD_FRAME: u32 = 1;
/// ... and for an envelope claiming another sender.
const IMPERSONATION: u32 = 2;

/// Something a peer sent us.
#[derive(Debug)]
pub enum Inbound {
    /// A one-way message, in the order the peer sent it.
    Message { from: NodeId, env: Envelope },
    /// A request; answer it through `reply` (dropping it closes the stream
    /// without an answer, which the peer sees as `NoResponse`).
    Request {
        from: NodeId,
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

#[derive(Clone)]
struct Ctx {
    local: NodeId,
    peers: PeerBook,
    codec: FrameCodec,
    counters: Arc<MessageCounters>,
    tx: mpsc::Sender<Inbound>,
}

pub(super) async fn accept_loop(
    local: NodeId,
    endpoint: quinn::Endpoint,
    peers: PeerBook,
    codec: FrameCodec,
    counters: Arc<MessageCounters>,
    tx: mpsc::Sender<Inbound>,
) {
    let ctx = Ctx {
        local,
        peers,
        codec,
        counters,
        tx,
    };
    while let Some(incoming) = endpoint.accept().await {
        if ctx.tx.is_closed() {
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

fn peer_id(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    tls::node_id_of(certs.first()?).ok()
}

async fn serve_connection(ctx: Ctx, conn: quinn::Connection) {
    // The TLS verifier already checked chain and membership; this cannot fail
    // for a connection that completed the handshake, but never trust it blindly.
    let Some(peer) = peer_id(&conn) else {
        conn.close(IMPERSONATION.into(), b"no node id in certificate");
        return;
    };
    tracing::debug!(%peer, "accepted a connection");
    follow_move(&ctx.peers, peer, conn.remote_address());
    loop {
        tokio::select! {
            uni = conn.accept_uni() => match uni {
                Ok(recv) => { tokio::spawn(read_one_way(ctx.clone(), peer, recv)); }
                Err(e) => { tracing::debug!(%peer, error = %e, "connection ended"); break; }
            },
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => { tokio::spawn(serve_request(ctx.clone(), peer, send, recv)); }
                Err(e) => { tracing::debug!(%peer, error = %e, "connection ended"); break; }
            },
        }
    }
}

/// A member that connected, with its verified certificate, from an address
/// we do not have for it is at that address: it restarted on a new port, or
/// we have not read the stage directory since it registered. An endpoint
/// sends from the socket it listens on, so that is where it can be dialled;
/// answering it at the old address (or not at all, with none) would lose
/// every message until the directory is read again, and a stage that hears
/// no answer reports its supplier suspect. (Tools all share the operator
/// id and are never dialled: it is left alone.)
fn follow_move(peers: &PeerBook, peer: NodeId, remote: std::net::SocketAddr) {
    if peer == NodeId::OPERATOR || !peers.contains(peer) {
        return;
    }
    let known = peers.addr(peer);
    if known != Some(remote) {
        tracing::debug!(%peer, from = ?known, to = %remote, "a peer is at a new address");
        peers.insert(peer, remote);
    }
}

/// Checks one decoded frame; `None` means the stream must be closed.
fn admit(ctx: &Ctx, peer: NodeId, env: &Envelope) -> bool {
    if env.sender != peer {
        ctx.counters.record_impersonation();
        tracing::warn!(%peer, claimed = %env.sender, "a peer sent a message in another node's name; closing the stream");
        return false;
    }
    ctx.counters.record_received(env.kind());
    true
}

async fn read_one_way(ctx: Ctx, peer: NodeId, mut recv: quinn::RecvStream) {
    loop {
        match ctx.codec.read(&mut recv).await {
            Ok(Some(env)) => {
                if !admit(&ctx, peer, &env) {
                    let _ = recv.stop(IMPERSONATION.into());
                    return;
                }
                if ctx
                    .tx
                    .send(Inbound::Message { from: peer, env })
                    .await
                    .is_err()
                {
                    return; // the node is shutting down
                }
            }
            Ok(None) => return,
            Err(e) => {
                if !is_connection_end(&e) {
                    ctx.counters.record_decode_error();
                    tracing::warn!(%peer, error = %e, "bad frame; closing the stream");
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
    peer: NodeId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let env = match ctx.codec.read(&mut recv).await {
        Ok(Some(env)) => env,
        Ok(None) => return,
        Err(e) => {
            if !is_connection_end(&e) {
                ctx.counters.record_decode_error();
                tracing::warn!(%peer, error = %e, "bad request frame; closing the stream");
            }
            let _ = recv.stop(BAD_FRAME.into());
            let _ = send.reset(BAD_FRAME.into());
            return;
        }
    };
    if !admit(&ctx, peer, &env) {
        let _ = recv.stop(IMPERSONATION.into());
        let _ = send.reset(IMPERSONATION.into());
        return;
    }
    let (tx, rx) = oneshot::channel();
    let reply = Responder {
        local: ctx.local,
        tx,
    };
    if ctx
        .tx
        .send(Inbound::Request {
            from: peer,
            env,
            reply,
        })
        .await
        .is_err()
    {
        return;
    }
    let Ok(response) = rx.await else {
        let _ = send.finish();
        return;
    };
    match ctx.codec.encode(&response) {
        Ok(frame) => {
            if send.write_all(&frame).await.is_ok() {
                ctx.counters.record_sent(response.kind());
                let _ = send.finish();
            }
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "response could not be encoded");
            let _ = send.reset(BAD_FRAME.into());
        }
    }
}
