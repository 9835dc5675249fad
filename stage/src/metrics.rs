//! A stage's figures, named as the original system's metric tables: the
//! core's counters ([`StageMetrics`]), and the metrics file a running stage
//! writes ([`StageReport`]: counters, the transport's `<Message>_sent` /
//! `_received` counters, and gauges). Every reader (the harness, `run`'s
//! table, tests) reads these types, never a name.

use factoryos_wire::MessageTotals;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Declares the counters once: the struct (serde names = metric names) and
/// the sum of two lives' counts.
macro_rules! counters {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$field_meta:meta])* pub $field:ident,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: u64,)*
        }

        impl $name {
            /// Adds `other`'s counts to these (e.g. a restarted stage's earlier lives).
            pub fn add(&mut self, other: &Self) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

counters! {
    /// Per-stage counters kept by the sans-IO core. All are counts that only
    /// grow over a stage's life.
    pub struct StageMetrics {
        pub successful_manufacture_cycles,
        pub skipped_manufacture_cycles,
        /// Cycles that could not run because the outbound inventory was full.
        pub blocked_manufacture_cycles,
        pub batches_requested,
        pub batches_received,
        pub batches_sent,
        pub batches_delivered,
        #[serde(rename = "batch_unavailable_messages_sent")]
        pub batch_unavailable_sent,
        #[serde(rename = "batch_unavailable_messages_received")]
        pub batch_unavailable_received,
        pub lots_retransmitted,
        pub duplicate_lots_received,
        pub final_products,
        pub heartbeats_sent,
        pub nodes_reported_suspect,
        /// Requests refused because they carried an older flow version.
        pub stale_flow_refused,
        /// Requests refused because the flow does not name the requester.
        pub requests_refused_not_in_flow,
        pub requests_timed_out,
        pub flow_updates,
        pub wal_recovered_in_queue,
        pub wal_recovered_in_transit,
        pub wal_recovered_inbound,
        /// Recipe updates adopted from the flow.
        pub recipe_updates,
        /// Lots taken that the current recipe does not use (sent before an update).
        pub lots_received_not_input,
    }
}

impl StageMetrics {
    pub fn total_manufacture_cycles(&self) -> u64 {
        self.successful_manufacture_cycles
            + self.skipped_manufacture_cycles
            + self.blocked_manufacture_cycles
    }
}

/// Values of the moment, not counts: a stage's earlier lives do not add to them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageGauges {
    /// The version of the recipe the stage runs.
    pub recipe_version: u64,
    pub outbound_lots: u64,
    pub in_transit_lots: u64,
    pub uptime_ms: u64,
}

/// What a running stage writes to `metrics.json`: one flat JSON object of
/// the original's metric names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageReport {
    #[serde(flatten)]
    pub counters: StageMetrics,
    #[serde(flatten)]
    pub messages: MessageTotals,
    #[serde(flatten)]
    pub gauges: StageGauges,
}

impl StageReport {
    /// Every figure by its metric name, `total_manufacture_cycles` included:
    /// the rows of the original's table.
    pub fn named(&self) -> BTreeMap<String, u64> {
        let value = serde_json::to_value(self).expect("a report always serialises");
        let mut named: BTreeMap<String, u64> = value
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
            .collect();
        named.insert(
            "total_manufacture_cycles".into(),
            self.counters.total_manufacture_cycles(),
        );
        named
    }

    /// Adds an earlier life's counts (counters and messages; gauges stay this life's).
    pub fn add_earlier_life(&mut self, earlier: &StageReport) {
        self.counters.add(&earlier.counters);
        self.messages.add(&earlier.messages);
    }

    /// Reads a metrics file; `None` if it is missing or half written.
    pub fn read(path: &Path) -> Option<StageReport> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the file atomically (a temporary file renamed over it), with
    /// `total_manufacture_cycles` beside the counters it sums.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Written<'a> {
            #[serde(flatten)]
            report: &'a StageReport,
            total_manufacture_cycles: u64,
        }
        let written = Written {
            report: self,
            total_manufacture_cycles: self.counters.total_manufacture_cycles(),
        };
        let json = serde_json::to_vec_pretty(&written).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use factoryos_wire::{MessageCounters, MessageKind};

    fn report() -> StageReport {
        let messages = MessageCounters::default();
        messages.record_sent(MessageKind::BatchSent);
        StageReport {
            counters: StageMetrics {
                successful_manufacture_cycles: 4,
                skipped_manufacture_cycles: 1,
                batch_unavailable_sent: 2,
                ..StageMetrics::default()
            },
            messages: messages.totals(),
            gauges: StageGauges {
                recipe_version: 3,
                uptime_ms: 1_000,
                ..StageGauges::default()
            },
        }
    }

    #[test]
    fn the_file_is_flat_and_uses_the_original_names() {
        let named = report().named();
        assert_eq!(named["successful_manufacture_cycles"], 4);
        assert_eq!(named["total_manufacture_cycles"], 5);
        assert_eq!(named["batch_unavailable_messages_sent"], 2);
        assert_eq!(named["BatchSent_sent"], 1);
        assert_eq!(named["recipe_version"], 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        report().write(&path).unwrap();
        assert_eq!(StageReport::read(&path), Some(report()));
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(file["total_manufacture_cycles"], 5, "{file}");
        assert_eq!(StageReport::read(&dir.path().join("none.json")), None);
    }

    #[test]
    fn earlier_lives_add_their_counts_but_not_their_gauges() {
        let mut now = report();
        now.gauges.uptime_ms = 10;
        now.add_earlier_life(&report());
        assert_eq!(now.counters.successful_manufacture_cycles, 8);
        assert_eq!(now.messages.sent(MessageKind::BatchSent), 2);
        assert_eq!(now.gauges.uptime_ms, 10);
        assert_eq!(now.gauges.recipe_version, 3);
    }
}
