//! The loopback benchmark behind `factoryos bench wire` and
//! `cargo bench -p factoryos-wire`: two transports in one process, real QUIC
//! and mutual TLS over 127.0.0.1.
//!
//! * **throughput**: one node sends `messages` one-way `RequestBatch`
//!   messages on its ordered stream; the clock stops when the other has
//!   received the last one.
//! * **round trip**: `rtt_samples` sequential requests, each answered at once;
//!   p50/p99/max of request → response.

use crate::ids::{FlowVersion, ItemType, NodeId, RequestId};
use crate::message::Message;
use crate::peers::PeerBook;
use crate::tls::ClusterCa;
use crate::transport::{Inbound, Transport, TransportConfig, TransportError};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone)]
pub struct WireBenchConfig {
    /// One-way messages for the throughput part.
    pub messages: u64,
    /// Sequential requests for the round-trip part.
    pub rtt_samples: u64,
}

impl Default for WireBenchConfig {
    fn default() -> Self {
        WireBenchConfig {
            messages: 100_000,
            rtt_samples: 5_000,
        }
    }
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct WireBenchReport {
    pub messages: u64,
    pub frame_bytes: usize,
    pub elapsed: Duration,
    pub rtt_samples: u64,
    pub rtt_p50: Duration,
    pub rtt_p99: Duration,
    pub rtt_max: Duration,
}

impl WireBenchReport {
    pub fn messages_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for WireBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "wire benchmark (QUIC + mutual TLS 1.3 over 127.0.0.1, one ordered stream)"
        )?;
        writeln!(
            f,
            "  one-way  {:>9} messages of {} bytes in {:.2?}: {:.0} msg/s ({:.1} MiB/s)",
            self.messages,
            self.frame_bytes,
            self.elapsed,
            self.messages_per_sec(),
            self.messages_per_sec() * self.frame_bytes as f64 / (1024.0 * 1024.0)
        )?;
        write!(
            f,
            "  request  {:>9} round trips: p50 {:.1?}  p99 {:.1?}  max {:.1?}",
            self.rtt_samples, self.rtt_p50, self.rtt_p99, self.rtt_max
        )
    }
}

/// Phases reported to a progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Throughput,
    RoundTrip,
}

/// Runs the benchmark. `progress(phase, done, total)` is called now and then.
pub async fn run(
    config: &WireBenchConfig,
    mut progress: impl FnMut(Phase, u64, u64),
) -> Result<WireBenchReport, TransportError> {
    let ca = ClusterCa::generate("bench")?;
    let book = PeerBook::new();
    let any: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
    let (a, _a_inbox) = Transport::bind(
        &ca.issue(NodeId(1))?,
        any,
        book.clone(),
        TransportConfig::default(),
        None,
    )?;
    let (b, mut b_inbox) = Transport::bind(
        &ca.issue(NodeId(2))?,
        any,
        book.clone(),
        TransportConfig::default(),
        None,
    )?;
    book.insert(NodeId(1), a.local_addr().map_err(bind_err)?);
    book.insert(NodeId(2), b.local_addr().map_err(bind_err)?);

    let msg = |i: u64| Message::RequestBatch {
        req: RequestId(i),
        item: ItemType::from("wood"),
    };
    let frame_bytes = crate::frame::FrameCodec::default()
        .encode(&crate::message::Envelope::new(
            NodeId(1),
            FlowVersion(1),
            msg(1 << 20),
        ))?
        .len();

    // Throughput: a receiver task counts and answers requests; the sender streams.
    let total = config.messages;
    let receiver = tokio::spawn(async move {
        let mut received = 0u64;
        let mut done_at = None;
        while let Some(item) = b_inbox.recv().await {
            match item {
                Inbound::Message { .. } => {
                    received += 1;
                    if received == total {
                        done_at = Some(Instant::now());
                    }
                }
                Inbound::Request { env, reply, .. } => {
                    reply.respond(env.flow_version, env.body);
                }
            }
        }
        done_at
    });

    // Warm the connection up so the handshake is not timed.
    a.request(NodeId(2), FlowVersion(1), msg(0)).await?;
    let start = Instant::now();
    for i in 0..total {
        a.send(NodeId(2), FlowVersion(1), msg(i)).await?;
        if i % 4096 == 0 {
            progress(Phase::Throughput, i, total);
        }
    }
    progress(Phase::Throughput, total, total);

    // Round trips, sequential.
    let mut rtts = Vec::with_capacity(config.rtt_samples as usize);
    for i in 0..config.rtt_samples {
        let t = Instant::now();
        a.request(NodeId(2), FlowVersion(1), msg(i)).await?;
        rtts.push(t.elapsed());
        if i % 256 == 0 {
            progress(Phase::RoundTrip, i, config.rtt_samples);
        }
    }
    progress(Phase::RoundTrip, config.rtt_samples, config.rtt_samples);

    a.shutdown().await;
    b.shutdown().await;
    drop(b);
    let done_at = receiver
        .await
        .ok()
        .flatten()
        .ok_or(TransportError::Closed)?;
    rtts.sort();
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(WireBenchReport {
        messages: total,
        frame_bytes,
        elapsed: done_at - start,
        rtt_samples: config.rtt_samples,
        rtt_p50: pct(0.50),
        rtt_p99: pct(0.99),
        rtt_max: rtts.last().copied().unwrap_or_default(),
    })
}

fn bind_err(source: std::io::Error) -> TransportError {
    TransportError::Bind {
        addr: (std::net::Ipv4Addr::LOCALHOST, 0).into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_small_run_measures_something() {
        let report = run(
            &WireBenchConfig {
                messages: 500,
                rtt_samples: 20,
            },
            |_, _, _| {},
        )
        .await
        .unwrap();
        assert_eq!(report.messages, 500);
        assert!(report.rtt_p50 > Duration::ZERO && report.rtt_p50 <= report.rtt_p99);
        assert!(report.messages_per_sec() > 0.0);
        assert!(report.to_string().contains("p99"));
    }
}
