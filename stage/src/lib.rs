//! # factoryos-stage — the stage runtime
//!
//! | module | what lives there |
//! |---|---|
//! | [`core`] | the sans-IO protocol state machine: cycles, inventories, lot trading, fencing, heartbeats |
//! | [`records`] | what the WAL holds: lot records, sequence, flow version; [`records::WalOp`] |
//! | [`audit`] | the lot invariant checked across all stages' records |
//! | [`metrics`] | the original's per-stage counters |
//!
//! Still to come (see `docs/architecture.md` and the project's issues):
//! the redb WAL, the async shell wiring the core to the QUIC transport and
//! the coordination client, recovery on restart, multi-stage hosting and
//! Chandy-Lamport snapshots.
//!
//! It depends on `factoryos-coord` (the client) and `factoryos-wire`.

pub mod audit;
pub mod core;
pub mod metrics;
pub mod records;
