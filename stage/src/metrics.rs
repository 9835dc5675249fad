//! A stage's counters, named as the original system's metric tables (the
//! `<Message>_sent/_received` counters live in the transport).

use std::collections::BTreeMap;

/// Per-stage counters kept by the sans-IO core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageMetrics {
    pub successful_manufacture_cycles: u64,
    pub skipped_manufacture_cycles: u64,
    /// Cycles that could not run because the outbound inventory was full.
    pub blocked_manufacture_cycles: u64,
    pub batches_requested: u64,
    pub batches_received: u64,
    pub batches_sent: u64,
    pub batches_delivered: u64,
    pub batch_unavailable_sent: u64,
    pub batch_unavailable_received: u64,
    pub lots_retransmitted: u64,
    pub duplicate_lots_received: u64,
    pub final_products: u64,
    pub heartbeats_sent: u64,
    pub nodes_reported_suspect: u64,
    /// Requests refused because they carried an older flow version.
    pub stale_flow_refused: u64,
    /// Requests refused because the flow does not name the requester.
    pub requests_refused_not_in_flow: u64,
    pub requests_timed_out: u64,
    pub flow_updates: u64,
    pub wal_recovered_in_queue: u64,
    pub wal_recovered_in_transit: u64,
    pub wal_recovered_inbound: u64,
    /// Recipe updates adopted from the flow.
    pub recipe_updates: u64,
    /// The version of the recipe the stage runs.
    pub recipe_version: u64,
    /// Lots taken that the current recipe does not use (sent before an update).
    pub lots_received_not_input: u64,
}

impl StageMetrics {
    pub fn total_manufacture_cycles(&self) -> u64 {
        self.successful_manufacture_cycles
            + self.skipped_manufacture_cycles
            + self.blocked_manufacture_cycles
    }

    /// Every counter by its metric name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        BTreeMap::from([
            (
                "successful_manufacture_cycles",
                self.successful_manufacture_cycles,
            ),
            (
                "skipped_manufacture_cycles",
                self.skipped_manufacture_cycles,
            ),
            (
                "blocked_manufacture_cycles",
                self.blocked_manufacture_cycles,
            ),
            ("total_manufacture_cycles", self.total_manufacture_cycles()),
            ("batches_requested", self.batches_requested),
            ("batches_received", self.batches_received),
            ("batches_sent", self.batches_sent),
            ("batches_delivered", self.batches_delivered),
            (
                "batch_unavailable_messages_sent",
                self.batch_unavailable_sent,
            ),
            (
                "batch_unavailable_messages_received",
                self.batch_unavailable_received,
            ),
            ("lots_retransmitted", self.lots_retransmitted),
            ("duplicate_lots_received", self.duplicate_lots_received),
            ("final_products", self.final_products),
            ("heartbeats_sent", self.heartbeats_sent),
            ("nodes_reported_suspect", self.nodes_reported_suspect),
            ("stale_flow_refused", self.stale_flow_refused),
            (
                "requests_refused_not_in_flow",
                self.requests_refused_not_in_flow,
            ),
            ("requests_timed_out", self.requests_timed_out),
            ("flow_updates", self.flow_updates),
            ("wal_recovered_in_queue", self.wal_recovered_in_queue),
            ("wal_recovered_in_transit", self.wal_recovered_in_transit),
            ("wal_recovered_inbound", self.wal_recovered_inbound),
            ("recipe_updates", self.recipe_updates),
            ("recipe_version", self.recipe_version),
            ("lots_received_not_input", self.lots_received_not_input),
        ])
    }
}
