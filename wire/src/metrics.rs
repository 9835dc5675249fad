//! Per-message-type counters, named as the original system's metric tables:
//! `<Message>_sent` and `<Message>_received`, plus transport-level counters.

use crate::message::MessageKind;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
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

    /// Every counter as of now.
    pub fn totals(&self) -> MessageTotals {
        MessageTotals {
            sent: MessageKind::ALL.map(|k| self.sent(k)),
            received: MessageKind::ALL.map(|k| self.received(k)),
            decode_errors: self.decode_errors(),
            impersonations_refused: self.impersonations_refused(),
            send_failures: self.send_failures(),
        }
    }

    /// Every counter by its metric name, e.g. `BatchSent_sent`.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.totals().named()
    }
}

/// A transport's counters at one moment, as plain numbers: what a stage's
/// metrics file carries. Serialised as a flat map of the metric names
/// (`BatchSent_sent`, `frame_decode_errors`, ...); unknown names are ignored
/// when read, so it can share a map with other counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageTotals {
    sent: [u64; KINDS],
    received: [u64; KINDS],
    pub decode_errors: u64,
    pub impersonations_refused: u64,
    pub send_failures: u64,
}

const DECODE_ERRORS: &str = "frame_decode_errors";
const IMPERSONATIONS: &str = "impersonations_refused";
const SEND_FAILURES: &str = "send_failures";

impl MessageTotals {
    pub fn sent(&self, kind: MessageKind) -> u64 {
        self.sent[kind.index()]
    }

    pub fn received(&self, kind: MessageKind) -> u64 {
        self.received[kind.index()]
    }

    /// Counts one message of `kind` sent (for a transport that is not one:
    /// the simulator's network).
    pub fn count_sent(&mut self, kind: MessageKind) {
        self.sent[kind.index()] += 1;
    }

    /// Counts one message of `kind` received.
    pub fn count_received(&mut self, kind: MessageKind) {
        self.received[kind.index()] += 1;
    }

    /// Trade messages sent ([`MessageKind::TRADE`]).
    pub fn trade_sent(&self) -> u64 {
        MessageKind::TRADE.iter().map(|k| self.sent(*k)).sum()
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &MessageTotals) {
        for i in 0..KINDS {
            self.sent[i] += other.sent[i];
            self.received[i] += other.received[i];
        }
        self.decode_errors += other.decode_errors;
        self.impersonations_refused += other.impersonations_refused;
        self.send_failures += other.send_failures;
    }

    /// Every counter by its metric name.
    pub fn named(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for kind in MessageKind::ALL {
            out.insert(format!("{}_sent", kind.name()), self.sent(kind));
            out.insert(format!("{}_received", kind.name()), self.received(kind));
        }
        out.insert(DECODE_ERRORS.into(), self.decode_errors);
        out.insert(IMPERSONATIONS.into(), self.impersonations_refused);
        out.insert(SEND_FAILURES.into(), self.send_failures);
        out
    }

    /// The counter named `name`, if it is one of ours.
    fn slot(&mut self, name: &str) -> Option<&mut u64> {
        match name {
            DECODE_ERRORS => return Some(&mut self.decode_errors),
            IMPERSONATIONS => return Some(&mut self.impersonations_refused),
            SEND_FAILURES => return Some(&mut self.send_failures),
            _ => {}
        }
        if let Some(kind) = name.strip_suffix("_sent").and_then(MessageKind::from_name) {
            return Some(&mut self.sent[kind.index()]);
        }
        let kind = name
            .strip_suffix("_received")
            .and_then(MessageKind::from_name)?;
        Some(&mut self.received[kind.index()])
    }
}

impl Serialize for MessageTotals {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let named = self.named();
        let mut map = serializer.serialize_map(Some(named.len()))?;
        for (k, v) in &named {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for MessageTotals {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Totals;
        impl<'de> Visitor<'de> for Totals {
            type Value = MessageTotals;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of message counters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MessageTotals, A::Error> {
                let mut totals = MessageTotals::default();
                while let Some(name) = map.next_key::<String>()? {
                    match totals.slot(&name) {
                        Some(slot) => *slot = map.next_value()?,
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(totals)
            }
        }
        deserializer.deserialize_map(Totals)
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

    #[test]
    fn totals_read_back_from_a_map_shared_with_other_counters() {
        let c = MessageCounters::default();
        c.record_sent(MessageKind::Heartbeat);
        c.record_received(MessageKind::DeliveryConfirmed);
        c.record_send_failure();
        let totals = c.totals();
        let mut map = totals.named();
        map.insert("final_products".into(), 9);
        let text = serde_json::to_string(&map).unwrap();
        let back: MessageTotals = serde_json::from_str(&text).unwrap();
        assert_eq!(back, totals);
        assert_eq!(back.sent(MessageKind::Heartbeat), 1);
        assert_eq!(back.received(MessageKind::DeliveryConfirmed), 1);
        let mut twice = back;
        twice.add(&back);
        assert_eq!(twice.send_failures, 2);
    }
}
