//! Measures what the fault-injection socket does to real UDP datagrams.

use factoryos_wire::fault::{FaultController, FaultRule, FaultySocket};
use quinn::udp::Transmit;
use quinn::{AsyncUdpSocket, Runtime, TokioRuntime};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

const N: u32 = 2_000;

struct Rig {
    faulty: Arc<FaultySocket>,
    faults: FaultController,
    receiver: UdpSocket,
    dest: SocketAddr,
}

async fn rig(rule: FaultRule) -> Rig {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Room for every datagram so the kernel drops none of them.
    let dest = receiver.local_addr().unwrap();
    let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let inner = TokioRuntime.wrap_udp_socket(std_sock).unwrap();
    let faults = FaultController::new(42);
    faults.set_rule(dest, rule);
    Rig {
        faulty: Arc::new(FaultySocket::new(inner, faults.clone())),
        faults,
        receiver,
        dest,
    }
}

/// Sends `N` numbered datagrams (pacing so no socket buffer overflows) and
/// collects what arrives until the line is quiet: (seq, arrival - send time).
async fn run(rig: &Rig) -> Vec<(u32, Duration)> {
    let start = Instant::now();
    let recv = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(2), rig.receiver.recv(&mut buf)).await
        {
            assert_eq!(n, 12);
            let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
            let sent_us = u64::from_be_bytes(buf[4..12].try_into().unwrap());
            let arrived = start.elapsed();
            got.push((seq, arrived.saturating_sub(Duration::from_micros(sent_us))));
        }
        got
    };
    let send = async {
        for seq in 0..N {
            let mut payload = seq.to_be_bytes().to_vec();
            payload.extend((start.elapsed().as_micros() as u64).to_be_bytes());
            let t = Transmit {
                destination: rig.dest,
                ecn: None,
                contents: &payload,
                segment_size: None,
                src_ip: None,
            };
            // The socket buffer may be full for a moment: wait, as quinn would.
            loop {
                match rig.faulty.try_send(&t) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        tokio::time::sleep(Duration::from_millis(1)).await
                    }
                    Err(e) => panic!("send failed: {e}"),
                }
            }
            if seq % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let (got, ()) = tokio::join!(recv, send);
    got
}

#[tokio::test]
async fn without_rules_everything_arrives_in_order() {
    let rig = rig(FaultRule::default()).await;
    let got = run(&rig).await;
    let seqs: Vec<u32> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>());
    assert_eq!(rig.faults.stats().seen, 0, "no rule, fast path");
}

#[tokio::test]
async fn drop_loses_about_the_asked_fraction() {
    let rig = rig(FaultRule {
        drop: 0.25,
        ..Default::default()
    })
    .await;
    let got = run(&rig).await;
    let lost = N as usize - got.len();
    assert!((400..600).contains(&lost), "lost {lost} of {N}");
    assert_eq!(lost as u64, rig.faults.stats().dropped);
}

#[tokio::test]
async fn duplicate_delivers_copies() {
    let rig = rig(FaultRule {
        duplicate: 0.5,
        ..Default::default()
    })
    .await;
    let got = run(&rig).await;
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for (seq, _) in &got {
        *counts.entry(*seq).or_default() += 1;
    }
    assert_eq!(counts.len(), N as usize, "every datagram arrives");
    let doubled = counts.values().filter(|&&c| c == 2).count();
    assert!((850..1150).contains(&doubled), "doubled {doubled}");
    // A transmit refused by a full socket buffer is retried and drawn again,
    // so the controller may have decided a few more duplicates than arrived.
    let decided = rig.faults.stats().duplicated;
    assert!(
        decided >= doubled as u64 && decided - (doubled as u64) < 50,
        "decided {decided}, doubled {doubled}"
    );
}

#[tokio::test]
async fn delay_holds_every_datagram_back() {
    let rig = rig(FaultRule {
        delay: Duration::from_millis(40),
        ..Default::default()
    })
    .await;
    let got = run(&rig).await;
    assert_eq!(got.len(), N as usize);
    let min = got.iter().map(|g| g.1).min().unwrap();
    assert!(
        min >= Duration::from_millis(40),
        "fastest datagram took {min:?}"
    );
}

#[tokio::test]
async fn reorder_lets_later_datagrams_overtake() {
    let rig = rig(FaultRule {
        reorder: 0.2,
        reorder_window: Duration::from_millis(30),
        ..Default::default()
    })
    .await;
    let got = run(&rig).await;
    assert_eq!(got.len(), N as usize, "reordering loses nothing");
    let inversions = got.windows(2).filter(|w| w[1].0 < w[0].0).count();
    assert!(inversions > 50, "only {inversions} inversions");
}
