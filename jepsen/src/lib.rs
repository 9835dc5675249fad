//! # factoryos-jepsen — the harness
//!
//! | module | what lives there |
//! |---|---|
//! | [`local`] | a cluster of real `factoryos` processes on this machine: start, kill -9, restart, clean up |
//! | [`stage_kill`] | a supplier's SIGKILL seen from its consumers, behind `factoryos bench stage` |
//! | [`experiment`] | `factoryos run`: a local cluster on a generated chain, faults at rates, results vs the ideal twin |
//! | [`failover`] | the leader-failover and commit-latency measurement behind `factoryos bench failover` |
//!
//! Still to come (see `docs/architecture.md` and the project's issues):
//!
//! * network-namespace hosts, with cleanup on exit;
//! * `nemesis` — partitions, kills, pauses, packet loss and delay (through the
//!   wire crate's fault socket), membership changes, recipe updates;
//! * `workload`, `history` — operations and their JSON-lines history;
//! * `checker` — linearizability of config-store operations, the lot
//!   invariant, one leader per term, flow fencing, liveness;
//! * `report` — verdicts, timelines and plots;
//!
//! It depends on `factoryos-stage`, `factoryos-coord` and `factoryos-wire`.

pub mod experiment;
pub mod failover;
pub mod local;
pub mod stage_kill;
