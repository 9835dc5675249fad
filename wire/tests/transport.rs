//! Black-box tests of the QUIC transport over loopback.

mod common;

use common::*;
use factoryos_wire::fault::{FaultController, FaultRule};
use factoryos_wire::message::Message;
use factoryos_wire::{
    ClusterCa, FlowVersion, Inbound, MessageKind, NodeId, PeerBook, TransportConfig, TransportError,
};
use std::time::{Duration, Instant};

fn hb(seq: u64) -> Message {
    Message::Heartbeat { seq }
}

#[tokio::test]
async fn ten_thousand_one_way_messages_arrive_in_order() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let a = node(&ca, 1, &book);
    let mut b = node(&ca, 2, &book);
    const N: u64 = 10_000;
    let sender = a.transport.clone();
    let task = tokio::spawn(async move {
        for seq in 0..N {
            sender
                .send(NodeId(2), FlowVersion(seq), hb(seq))
                .await
                .unwrap();
        }
    });
    for expected in 0..N {
        match next(&mut b.inbox).await {
            Inbound::Message { from, env } => {
                assert_eq!(from, NodeId(1));
                assert_eq!(env.sender, NodeId(1));
                assert_eq!(env.body, hb(expected), "message {expected} out of order");
                assert_eq!(env.flow_version, FlowVersion(expected));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    task.await.unwrap();
    assert_eq!(a.transport.counters().sent(MessageKind::Heartbeat), N);
    assert_eq!(b.transport.counters().received(MessageKind::Heartbeat), N);
}

#[tokio::test]
async fn request_gets_its_response_and_counters_move() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let a = node(&ca, 1, &book);
    let b = node(&ca, 2, &book);
    let b_counters = b.transport.counters().clone();
    spawn_echo(b);
    let resp = a
        .transport
        .request(NodeId(2), FlowVersion(7), hb(42))
        .await
        .unwrap();
    assert_eq!(resp.sender, NodeId(2));
    assert_eq!(resp.body, hb(42));
    assert_eq!(resp.flow_version, FlowVersion(7));
    assert_eq!(a.transport.counters().sent(MessageKind::Heartbeat), 1);
    assert_eq!(a.transport.counters().received(MessageKind::Heartbeat), 1);
    assert_eq!(b_counters.received(MessageKind::Heartbeat), 1);
    assert_eq!(b_counters.sent(MessageKind::Heartbeat), 1);
}

#[tokio::test]
async fn a_restarted_peer_is_reached_again() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let a = node(&ca, 1, &book);
    let b_faults = FaultController::new(3);
    let b_identity = ca.issue(NodeId(2)).unwrap();
    let mut b = node_with(b_identity.clone(), LOCALHOST, &book, Some(b_faults.clone()));
    let b_addr = b.transport.local_addr().unwrap();

    a.transport
        .send(NodeId(2), FlowVersion(0), hb(0))
        .await
        .unwrap();
    assert!(matches!(next(&mut b.inbox).await, Inbound::Message { .. }));

    // "Crash" b: silence it first so that its goodbye never reaches a, then
    // drop it. a's connection still looks alive.
    b_faults.set_default(Some(FaultRule::blackhole()));
    drop(b);
    // Restart it on the same address with the same identity, once the old
    // socket is released (the endpoint driver lets go of it asynchronously).
    let start = Instant::now();
    let mut b2 = loop {
        match factoryos_wire::Transport::bind(
            &b_identity,
            b_addr,
            book.clone(),
            test_config(),
            None,
        ) {
            Ok((transport, inbox)) => {
                break Node {
                    transport,
                    inbox,
                    identity: b_identity.clone(),
                }
            }
            Err(e) => {
                assert!(start.elapsed() < DEADLINE, "could not rebind: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // a keeps sending (at most once per 20 ms, bounded by the deadline) until
    // the new incarnation hears it; the first sends may die with the old connection.
    let start = Instant::now();
    let mut seq = 1;
    let mut last_error = None;
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "restarted peer never reached; last error {last_error:?}"
        );
        if let Err(e) = a.transport.send(NodeId(2), FlowVersion(0), hb(seq)).await {
            last_error = Some(e);
        }
        seq += 1;
        if let Ok(Some(Inbound::Message { env, .. })) =
            tokio::time::timeout(Duration::from_millis(20), b2.inbox.recv()).await
        {
            assert_eq!(env.sender, NodeId(1));
            break;
        }
    }
    // After reconnecting, order holds again.
    for s in 1000..1100 {
        a.transport
            .send(NodeId(2), FlowVersion(0), hb(s))
            .await
            .unwrap();
    }
    let mut expected = 1000;
    while expected < 1100 {
        if let Inbound::Message { env, .. } = next(&mut b2.inbox).await {
            if let Message::Heartbeat { seq } = env.body {
                if seq >= 1000 {
                    assert_eq!(seq, expected);
                    expected += 1;
                }
            }
        }
    }
    eprintln!("restart survived after {:?}", start.elapsed());
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_at_the_handshake() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let rogue_ca = ClusterCa::generate("rogue").unwrap();
    let book = PeerBook::new();
    let b = node(&ca, 2, &book);
    let b_counters = b.transport.counters().clone();
    spawn_echo(b);
    // Node 1 is a member, but its certificate is signed by another CA.
    let rogue = node_with(rogue_ca.issue(NodeId(1)).unwrap(), LOCALHOST, &book, None);
    let err = rogue
        .transport
        .request(NodeId(2), FlowVersion(0), hb(1))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Refused { .. }), "{err:?}");
    assert_eq!(b_counters.received(MessageKind::Heartbeat), 0);
}

#[tokio::test]
async fn a_node_not_in_the_configuration_is_refused() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let members = PeerBook::new();
    let b = node(&ca, 2, &members);
    let b_addr = b.transport.local_addr().unwrap();
    spawn_echo(b);
    // Node 9 has a valid certificate but b's peer book does not list it.
    let outsider_book = PeerBook::from_iter([(NodeId(2), b_addr)]);
    let outsider = node_with(
        ca.issue(NodeId(9)).unwrap(),
        LOCALHOST,
        &outsider_book,
        None,
    );
    let err = outsider
        .transport
        .request(NodeId(2), FlowVersion(0), hb(1))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Refused { .. }), "{err:?}");
}

#[tokio::test]
async fn a_node_answering_with_another_id_is_refused() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let a = node(&ca, 1, &book);
    let c = node(&ca, 3, &book);
    // The book says node 2 is where node 3 listens.
    book.insert(NodeId(2), c.transport.local_addr().unwrap());
    spawn_echo(c);
    let err = a
        .transport
        .request(NodeId(2), FlowVersion(0), hb(1))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Refused { .. }), "{err:?}");
}

#[tokio::test]
async fn a_node_sending_in_another_nodes_name_is_cut_off() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let mut b = node(&ca, 2, &book);
    // Node 3's certificate, but envelopes claim to come from node 1.
    let liar = node_with(
        ca.issue(NodeId(3)).unwrap().claiming(NodeId(1)),
        LOCALHOST,
        &book,
        None,
    );
    // Node 3 is a member, so its handshake succeeds.
    book.insert(NodeId(3), liar.transport.local_addr().unwrap());
    liar.transport
        .send(NodeId(2), FlowVersion(0), hb(1))
        .await
        .unwrap();
    let counters = b.transport.counters().clone();
    eventually("the impersonation is counted", || {
        counters.impersonations_refused() == 1
    })
    .await;
    assert_eq!(counters.received(MessageKind::Heartbeat), 0);
    assert!(b.inbox.try_recv().is_err(), "nothing was delivered");
}

#[tokio::test]
async fn an_unreachable_peer_fails_fast() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let a = node(&ca, 1, &book);
    // Reserve a port, then free it: nobody listens there.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    book.insert(NodeId(2), dead.local_addr().unwrap());
    drop(dead);

    let start = Instant::now();
    let err = a
        .transport
        .send(NodeId(2), FlowVersion(0), hb(1))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // While the backoff runs, calls fail at once.
    let start = Instant::now();
    let err = a
        .transport
        .send(NodeId(2), FlowVersion(0), hb(2))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    // An id nobody knows is a distinct error.
    let err = a
        .transport
        .send(NodeId(77), FlowVersion(0), hb(3))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::UnknownPeer(NodeId(77))),
        "{err:?}"
    );
    assert_eq!(a.transport.counters().send_failures(), 3);
}

#[tokio::test]
async fn a_malformed_frame_closes_only_its_stream_and_is_counted() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let mut b = node(&ca, 2, &book);
    let b_addr = b.transport.local_addr().unwrap();
    let raw_identity = ca.issue(NodeId(1)).unwrap();
    book.insert(NodeId(1), "127.0.0.1:9".parse().unwrap());

    // A raw quinn client with node 1's credentials writes garbage.
    let (_endpoint, conn) = raw_client(&raw_identity, b_addr, NodeId(2)).await;
    let route = factoryos_wire::transport::route::Route {
        from: NodeId(1),
        to: NodeId(2),
    };
    let mut bad = conn.open_uni().await.unwrap();
    bad.write_all(&route.encode()).await.unwrap();
    bad.write_all(&[0, 0, 0, 3, 99, 1, 2]).await.unwrap(); // format version 99
    bad.finish().unwrap();
    let counters = b.transport.counters().clone();
    eventually("the bad frame is counted", || counters.decode_errors() == 1).await;

    // The connection still carries good streams.
    let codec = factoryos_wire::FrameCodec::default();
    let mut good = conn.open_uni().await.unwrap();
    good.write_all(&route.encode()).await.unwrap();
    let env = factoryos_wire::Envelope::new(NodeId(1), FlowVersion(0), hb(5));
    good.write_all(&codec.encode(&env).unwrap()).await.unwrap();
    good.finish().unwrap();
    match next(&mut b.inbox).await {
        Inbound::Message { env: got, .. } => assert_eq!(got, env),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn the_fault_socket_delays_and_blackholes_real_traffic() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let faults = FaultController::new(11);
    let a = node_with(
        ca.issue(NodeId(1)).unwrap(),
        LOCALHOST,
        &book,
        Some(faults.clone()),
    );
    let b = node(&ca, 2, &book);
    let b_addr = b.transport.local_addr().unwrap();
    spawn_echo(b);

    let rtt = |a: factoryos_wire::Transport| async move {
        let start = Instant::now();
        a.request(NodeId(2), FlowVersion(0), hb(1))
            .await
            .map(|_| start.elapsed())
    };
    rtt(a.transport.clone()).await.unwrap(); // warm up the connection
    let base = rtt(a.transport.clone()).await.unwrap();

    faults.set_rule(
        b_addr,
        FaultRule {
            delay: Duration::from_millis(150),
            ..Default::default()
        },
    );
    let delayed = rtt(a.transport.clone()).await.unwrap();
    assert!(
        delayed >= Duration::from_millis(150),
        "delayed rtt {delayed:?}"
    );
    assert!(faults.stats().delayed > 0);

    faults.set_rule(b_addr, FaultRule::blackhole());
    let err = rtt(a.transport.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Timeout { .. } | TransportError::ConnectionLost { .. }
        ),
        "{err:?}"
    );
    assert!(faults.stats().dropped > 0);

    faults.clear_all();
    // After healing the link works again (possibly on a new connection).
    let start = Instant::now();
    loop {
        if rtt(a.transport.clone()).await.is_ok() {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "link never healed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("base rtt {base:?}, with 150 ms one-way delay {delayed:?}");
}

#[tokio::test]
async fn a_peer_that_moves_to_another_address_is_dialled_there() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let book = PeerBook::new();
    let a = node(&ca, 1, &book);
    let mut b = node(&ca, 2, &book);
    a.transport
        .send(NodeId(2), FlowVersion(0), hb(1))
        .await
        .unwrap();
    assert!(matches!(next(&mut b.inbox).await, Inbound::Message { .. }));
    // b restarts elsewhere (its old endpoint silently gone), and the book learns the new address.
    let identity = b.identity.clone();
    drop(b);
    let mut b2 = node_with(identity, LOCALHOST, &book, None);
    let start = Instant::now();
    a.transport
        .send(NodeId(2), FlowVersion(0), hb(2))
        .await
        .unwrap();
    match next(&mut b2.inbox).await {
        Inbound::Message { env, .. } => assert_eq!(env.body, hb(2)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "no idle-timeout wait: {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_member_that_connects_from_an_address_we_lack_is_answered_there() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    // B knows A as a member but has no address for it (A registered after B
    // last read the directory), or an old one (A restarted on a new port).
    for stale in [None, Some("127.0.0.1:9".parse().unwrap())] {
        let a_book = PeerBook::new();
        let b_book = PeerBook::new();
        let mut a = node(&ca, 1, &a_book);
        // A backoff long enough that only the new address can end it.
        let patient = TransportConfig {
            backoff_min: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60),
            ..test_config()
        };
        let mut b = node_with_config(ca.issue(NodeId(2)).unwrap(), &b_book, patient);
        a_book.insert(NodeId(2), b.transport.local_addr().unwrap());
        match stale {
            None => b_book.allow(NodeId(1)),
            Some(addr) => {
                b_book.insert(NodeId(1), addr);
                // B's dial to the old address fails and earns a backoff...
                assert!(b
                    .transport
                    .send(NodeId(1), FlowVersion(1), hb(0))
                    .await
                    .is_err());
            }
        }
        a.transport
            .send(NodeId(2), FlowVersion(1), hb(1))
            .await
            .unwrap();
        assert!(matches!(next(&mut b.inbox).await, Inbound::Message { .. }));
        assert_eq!(
            b_book.addr(NodeId(1)),
            Some(a.transport.local_addr().unwrap()),
            "B follows A to where it connected from ({stale:?} before)"
        );
        // ... which does not hold for the new address: B sends at once.
        b.transport
            .send(NodeId(1), FlowVersion(1), hb(2))
            .await
            .unwrap();
        match next(&mut a.inbox).await {
            Inbound::Message { env, .. } => assert_eq!(env.body, hb(2)),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_dial_to_an_old_address_gives_way_when_the_peer_connects_from_a_new_one() {
    init_tracing();
    let ca = ClusterCa::generate("t").unwrap();
    let a_book = PeerBook::new();
    let b_book = PeerBook::new();
    let mut a = node(&ca, 1, &a_book);
    // A handshake that never ends on its own within the test's deadline.
    let patient = TransportConfig {
        connect_timeout: Duration::from_secs(120),
        ..test_config()
    };
    let mut b = node_with_config(ca.issue(NodeId(2)).unwrap(), &b_book, patient);
    a_book.insert(NodeId(2), b.transport.local_addr().unwrap());
    // B has A's old address: a socket that swallows every packet.
    let old = std::net::UdpSocket::bind(LOCALHOST).unwrap();
    b_book.insert(NodeId(1), old.local_addr().unwrap());
    let sender = b.transport.clone();
    let send = tokio::spawn(async move { sender.send(NodeId(1), FlowVersion(1), hb(7)).await });
    // A connects to B from its real address while B's dial hangs.
    a.transport
        .send(NodeId(2), FlowVersion(1), hb(1))
        .await
        .unwrap();
    assert!(matches!(next(&mut b.inbox).await, Inbound::Message { .. }));
    // B's dial follows A there instead of waiting out its handshake timeout.
    match next(&mut a.inbox).await {
        Inbound::Message { env, .. } => assert_eq!(env.body, hb(7)),
        other => panic!("{other:?}"),
    }
    send.await.unwrap().unwrap();
    drop(old);
}
