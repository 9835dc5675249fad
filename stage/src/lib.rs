//! # factoryos-stage — the stage runtime
//!
//! This crate will hold (see `docs/architecture.md` and the project's issues):
//!
//! * `core` — the sans-IO protocol state machine: manufacture cycles, inbound
//!   and outbound inventory, lot trading (`RequestBatch`, `BatchSent`,
//!   `BatchUnavailable`, `WaitingForBatch`, `DeliveryConfirmed`), fencing by
//!   flow version, heartbeats and suspicion;
//! * `wal` — the redb write-ahead log of every lot's state and every
//!   consumption, group-committed per cycle;
//! * `recovery` — WAL replay after a crash, re-sending in-transit lots;
//! * `shell` — the async runtime wiring the core to the QUIC transport, redb
//!   and the coordination client;
//! * `snapshot` — Chandy-Lamport snapshots over the FIFO neighbour streams;
//! * `metrics` — the original's per-stage counters.
//!
//! It depends on `factoryos-coord` (the client) and `factoryos-wire`.
