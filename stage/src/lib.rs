//! # factoryos-stage — the stage runtime
//!
//! | module | what lives there |
//! |---|---|
//! | [`core`] | the sans-IO protocol state machine, in named parts: flow view, supply, demand, liveness, the cycle |
//! | [`address`] | the address a stage registers: one its peers can dial |
//! | [`records`] | what the WAL holds: lot records, sequence, flow version; [`records::WalOp`] |
//! | [`audit`] | the lot invariant checked across all stages' records |
//! | [`metrics`] | the original's per-stage counters, and the typed metrics file ([`metrics::StageReport`]) |
//! | [`host`] | a host process: one endpoint and identity for all its stages, started and stopped together |
//! | [`shell`] | the async runtime: WAL commit then send, per-peer FIFO outboxes, registration, flow watching |
//! | [`setup`] | stage options from `cluster.toml` and the spec; where a stage's files are ([`setup::StageFiles`]) |
//! | [`wal`] | the redb WAL of a host process: each stage's records apart, one group commit per round for all its stages |
//!
//! Still to come (see `docs/architecture.md` and the project's issues):
//! Chandy-Lamport snapshots.
//!
//! It depends on `factoryos-coord` (the client) and `factoryos-wire`.

pub mod address;
pub mod audit;
pub mod core;
pub mod host;
pub mod metrics;
pub mod records;
pub mod setup;
pub mod shell;
pub mod wal;
