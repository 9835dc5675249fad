//! Black-box tests of shared endpoints: host processes running many stages
//! on one QUIC endpoint and one connection per pair of hosts.

mod common;

use common::*;
use factoryos_wire::message::Message;
use factoryos_wire::transport::route::Route;
use factoryos_wire::{
    ClusterCa, Endpoint, FlowVersion, Inbound, MessageKind, NodeId, PeerBook, Transport,
    TransportError,
};
use tokio::sync::mpsc;

fn hb(seq: u64) -> Message {
    Message::Heartbeat { seq }
}

struct Host {
    endpoint: Endpoint,
    stages: Vec<(Transport, mpsc::Receiver<Inbound>)>,
}

/// A host process for `ids` on one endpoint, recorded in `book`.
fn host(ca: &ClusterCa, ids: &[u64], book: &PeerBook) -> Host {
    let ids: Vec<NodeId> = ids.iter().map(|i| NodeId(*i)).collect();
    host_with(&ca.issue_host(&ids).unwrap(), book)
}

/// Opens a raw stream on `conn` under `route` and writes one envelope.
async fn write_raw(conn: &quinn::Connection, route: Route, env: &factoryos_wire::Envelope) {
    let codec = factoryos_wire::FrameCodec::default();
    let mut stream = conn.open_uni().await.unwrap();
    stream.write_all(&route.encode()).await.unwrap();
    stream.write_all(&codec.encode(env).unwrap()).await.unwrap();
}

#[tokio::test]
async fn many_stages_on_two_hosts_share_one_connection_each_way_and_keep_their_order() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let a = host(&ca, &[1, 2, 3, 4], &book);
    let mut b = host(&ca, &[11, 12, 13, 14], &book);
    const N: u64 = 200;
    // Every stage of a sends N numbered messages to every stage of b.
    let mut senders = Vec::new();
    for (t, _) in &a.stages {
        let t = t.clone();
        senders.push(tokio::spawn(async move {
            for seq in 0..N {
                for to in 11..=14 {
                    t.send(NodeId(to), FlowVersion(seq), hb(seq)).await.unwrap();
                }
            }
        }));
    }
    for (t, inbox) in &mut b.stages {
        let mut next_seq = std::collections::BTreeMap::new();
        for _ in 0..(4 * N) {
            match next(inbox).await {
                Inbound::Message { from, env } => {
                    assert_eq!(env.sender, from);
                    let expected = next_seq.entry(from).or_insert(0u64);
                    assert_eq!(env.body, hb(*expected), "{from} -> {} out of order", t.id());
                    *expected += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(t.counters().received(MessageKind::Heartbeat), 4 * N);
        assert!(inbox.try_recv().is_err(), "each stage gets only its own");
    }
    for s in senders {
        s.await.unwrap();
    }
    // One connection, dialled by a, accepted by b.
    assert_eq!(a.endpoint.open_connections(), 1);
    assert_eq!(b.endpoint.open_connections(), 1);

    // Requests in both directions, answered by the stage asked.
    let (b11, mut inbox11) = b.stages.remove(0);
    let answer = tokio::spawn(async move {
        if let Inbound::Request {
            from,
            peer,
            env,
            reply,
        } = next(&mut inbox11).await
        {
            assert_eq!(from, NodeId(3));
            // The request says which ids its sender's host may speak for.
            assert!(
                peer.contains(&NodeId(1)) && peer.contains(&NodeId(3)),
                "{peer:?}"
            );
            reply.respond(FlowVersion(7), env.body);
        }
        (b11, inbox11)
    });
    let reply = a.stages[2]
        .0
        .request(NodeId(11), FlowVersion(0), hb(99))
        .await
        .unwrap();
    assert_eq!(reply.sender, NodeId(11));
    assert_eq!(reply.body, hb(99));
    let (b11, _inbox11) = answer.await.unwrap();
    b11.send(NodeId(1), FlowVersion(0), hb(1)).await.unwrap();
    assert!(matches!(
        next(&mut a.stages.into_iter().next().unwrap().1).await,
        Inbound::Message {
            from: NodeId(11),
            ..
        }
    ));
    // b dialled a back: one connection each way.
    assert_eq!(b.endpoint.open_connections(), 2);
}

#[tokio::test]
async fn a_host_may_speak_only_for_the_stages_its_certificate_lists() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let a = host(&ca, &[1, 2], &book);
    let mut b = host(&ca, &[11], &book);
    book.allow(NodeId(3));
    assert!(matches!(
        a.endpoint.attach(NodeId(3)),
        Err(TransportError::NotMine { id: NodeId(3) })
    ));
    // A raw client with a's certificate opens a stream in stage 3's name.
    let identity = ca.issue_host(&[NodeId(1), NodeId(2)]).unwrap();
    let (_endpoint, conn) =
        raw_client(&identity, b.endpoint.local_addr().unwrap(), NodeId(11)).await;
    let lie = Route {
        from: NodeId(3),
        to: NodeId(11),
    };
    let env = factoryos_wire::Envelope::new(NodeId(3), FlowVersion(0), hb(1));
    write_raw(&conn, lie, &env).await;
    let counters = b.stages[0].0.counters().clone();
    eventually("the stream in another name is refused", || {
        counters.impersonations_refused() == 1
    })
    .await;
    // A stream in its own name whose envelope claims its sibling is cut off too.
    let honest = Route {
        from: NodeId(1),
        to: NodeId(11),
    };
    let env = factoryos_wire::Envelope::new(NodeId(2), FlowVersion(0), hb(2));
    write_raw(&conn, honest, &env).await;
    eventually("the envelope in a sibling's name is refused", || {
        counters.impersonations_refused() == 2
    })
    .await;
    assert_eq!(counters.received(MessageKind::Heartbeat), 0);
    assert!(b.stages[0].1.try_recv().is_err(), "nothing was delivered");
    // The honest path works.
    a.stages[0]
        .0
        .send(NodeId(11), FlowVersion(0), hb(3))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut b.stages[0].1).await,
        Inbound::Message {
            from: NodeId(1),
            ..
        }
    ));
}

#[tokio::test]
async fn a_stage_not_yet_in_the_peer_book_is_refused_but_not_counted_an_impersonator() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let mut b = host(&ca, &[11], &book);
    // A host starting up: its certificate names stages 1 and 5, and b's
    // book knows only 1 (it has not read the directory with 5 yet).
    book.insert(NodeId(1), LOCALHOST);
    let identity = ca.issue_host(&[NodeId(1), NodeId(5)]).unwrap();
    let (_endpoint, conn) =
        raw_client(&identity, b.endpoint.local_addr().unwrap(), NodeId(11)).await;
    let codec = factoryos_wire::FrameCodec::default();
    let mut stream = conn.open_uni().await.unwrap();
    let route = Route {
        from: NodeId(5),
        to: NodeId(11),
    };
    stream.write_all(&route.encode()).await.unwrap();
    let env = factoryos_wire::Envelope::new(NodeId(5), FlowVersion(0), hb(1));
    stream
        .write_all(&codec.encode(&env).unwrap())
        .await
        .unwrap();
    let stopped = tokio::time::timeout(DEADLINE, stream.stopped())
        .await
        .expect("the stream is stopped");
    assert!(matches!(stopped, Ok(Some(_))), "{stopped:?}");
    let counters = b.stages[0].0.counters().clone();
    assert_eq!(counters.impersonations_refused(), 0);
    assert_eq!(counters.received(MessageKind::Heartbeat), 0);
    assert!(b.stages[0].1.try_recv().is_err(), "nothing was delivered");
}

#[tokio::test]
async fn a_stage_that_leaves_its_host_is_unreachable_while_its_siblings_go_on() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let a = host(&ca, &[1], &book);
    let mut b = host(&ca, &[11, 12], &book);
    let sender = &a.stages[0].0;
    sender
        .send(NodeId(11), FlowVersion(0), hb(1))
        .await
        .unwrap();
    next(&mut b.stages[0].1).await;
    let (gone, gone_inbox) = b.stages.remove(0);
    gone.shutdown().await;
    drop(gone_inbox);
    // Its stream is stopped; the next sends fail (the first may already
    // have been handed to QUIC before the stop arrived).
    eventually_async("sends to the stage that left fail", || async {
        sender
            .send(NodeId(11), FlowVersion(0), hb(2))
            .await
            .is_err()
    })
    .await;
    let err = sender
        .request(NodeId(11), FlowVersion(0), hb(3))
        .await
        .unwrap_err();
    assert!(
        !matches!(err, TransportError::Timeout { .. }),
        "a request to a stage not hosted fails at once: {err:?}"
    );
    // Its sibling on the same endpoint still gets everything.
    for seq in 0..10 {
        sender
            .send(NodeId(12), FlowVersion(0), hb(seq))
            .await
            .unwrap();
    }
    for seq in 0..10 {
        match next(&mut b.stages[0].1).await {
            Inbound::Message { env, .. } => assert_eq!(env.body, hb(seq)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_killed_host_takes_its_stages_and_a_restarted_one_is_reached_again() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let a = host(&ca, &[1], &book);
    let identity = ca
        .issue_host(&[NodeId(11), NodeId(12), NodeId(13)])
        .unwrap();
    let b = host_with(&identity, &book);
    let sender = &a.stages[0].0;
    for to in 11..=13 {
        sender
            .send(NodeId(to), FlowVersion(0), hb(0))
            .await
            .unwrap();
    }
    b.endpoint.shutdown().await;
    drop(b);
    for to in 11..=13 {
        eventually_async("sends to a killed host's stages fail", || async {
            sender
                .send(NodeId(to), FlowVersion(0), hb(1))
                .await
                .is_err()
        })
        .await;
    }
    // The same host comes back (same key, a new port): every stage is
    // reached there.
    let mut b = host_with(&identity, &book);
    for to in 11..=13u64 {
        eventually_async("the restarted host is reached", || async {
            sender.send(NodeId(to), FlowVersion(0), hb(2)).await.is_ok()
        })
        .await;
    }
    for (_, inbox) in &mut b.stages {
        assert!(matches!(
            next(inbox).await,
            Inbound::Message {
                from: NodeId(1),
                ..
            }
        ));
    }
}

fn host_with(identity: &factoryos_wire::NodeIdentity, book: &PeerBook) -> Host {
    let endpoint = Endpoint::bind(identity, LOCALHOST, book.clone(), test_config(), None).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let stages = identity
        .ids()
        .iter()
        .map(|id| {
            book.insert(*id, addr);
            endpoint.attach(*id).unwrap()
        })
        .collect();
    Host { endpoint, stages }
}

/// Polls an async condition every 50 ms until it holds or [`DEADLINE`] passes.
async fn eventually_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
