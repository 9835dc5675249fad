//! Per-message-type counters, named as the original system's metric tables:
//! `<Message>_sent` and `<Message>_received`, plus transport-level counters.

use crate::message::MessageKind;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

const KINDS: usize = MessageKind::ALL.len();

/// Lock-free counters shared by a transport and everyone who reads it.
#[derive(Debug, Default)]
pub struct MessageCounters {
    sent: [AtomicU64; KINDS],
    received: [AtomicU64; KINDS],
    decode_errors: AtomicU64,
    impersonations_refused: AtomicU64,
    send_failures: AtomicU64,
}

impl MessageCounters {
    pub fn record_sent(&self, kind: MessageKind) {
        self.sent[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_received(&self, kind: MessageKind) {
        self.received[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A frame that failed to decode (its stream was closed).
    pub fn record_decode_error(&self) {
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A message whose `sender` differs from the id in the peer's certificate.
    pub fn record_impersonation(&self) {
        self.impersonations_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A send or request that failed (peer unreachable, stream reset, ...).
    pub fn record_send_failure(&self) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sent(&self, kind: MessageKind) -> u64 {
        self.sent[kind.index()].load(Ordering::Relaxed)
    }

    pub fn received(&self, kind: MessageKind) -> u64 {
        self.received[kind.index()].load(Ordering::Relaxed)
    }

    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    pub fn impersonations_refused(&self) -> u64 {
        self.impersonations_refused.load(Ordering::Relaxed)
    }

    pub fn send_failures(&self) -> u64 {
        self.send_failures.load(Ordering::Relaxed)
    }

    /// Every counter by its metric name, e.g. `BatchSent_sent`.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for kind in MessageKind::ALL {
            out.insert(format!("{}_sent", kind.name()), self.sent(kind));
            out.insert(format!("{}_received", kind.name()), self.received(kind));
        }
        out.insert("frame_decode_errors".into(), self.decode_errors());
        out.insert(
            "impersonations_refused".into(),
            self.impersonations_refused(),
        );
        out.insert("send_failures".into(), self.send_failures());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_uses_the_original_metric_names() {
        let c = MessageCounters::default();
        c.record_sent(MessageKind::BatchSent);
        c.record_sent(MessageKind::BatchSent);
        c.record_received(MessageKind::RequestBatch);
        let snap = c.snapshot();
        assert_eq!(snap["BatchSent_sent"], 2);
        assert_eq!(snap["RequestBatch_received"], 1);
        assert_eq!(snap["RequestBatch_sent"], 0);
        assert_eq!(snap.len(), 2 * MessageKind::ALL.len() + 3);
    }
}
