//! # factoryos-jepsen — the harness
//!
//! This crate will hold (see `docs/architecture.md` and the project's issues):
//!
//! * `cluster` — cluster control: local processes and network-namespace hosts
//!   (start, stop, kill -9, pause, restart), with cleanup on exit;
//! * `nemesis` — partitions, kills, pauses, packet loss and delay (through the
//!   wire crate's fault socket), membership changes, recipe updates;
//! * `workload`, `history` — operations and their JSON-lines history;
//! * `checker` — linearizability of config-store operations, the lot
//!   invariant, one leader per term, flow fencing, liveness;
//! * `report` — verdicts, timelines and plots;
//! * `experiment` — the local run (`factoryos run`), the ideal twin and the
//!   original system's experiments rerun side by side.
//!
//! It depends on `factoryos-stage`, `factoryos-coord` and `factoryos-wire`.
