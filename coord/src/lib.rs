//! # factoryos-coord — coordination: the configuration store and the leader
//!
//! This crate will hold (see `docs/architecture.md` and the project's issues):
//!
//! * `spec` — the supply-chain spec in TOML and its validation (cycles, missing
//!   producers, bad quantities, unknown keys, each with a position and a fix hint);
//! * `solver` — the flow solver on petgraph: valid, complete, balanced, stable,
//!   deterministic;
//! * `raft` — the openraft group: redb log/vote/state-machine storage with
//!   snapshots, Raft RPCs over the wire crate's QUIC transport;
//! * `state` — the state machine: spec, registered stages, liveness, the
//!   current flow and its version (the Raft log index that committed it);
//! * `leader` — leader duties: recompute and commit flows, confirm suspects;
//! * `filelock` — the original system's file-lock backend behind the same
//!   `ConfigStore` trait, kept to be measured against;
//! * `client` — the API stages and tools use: register, report suspect,
//!   watch the flow, linearizable reads, status.
//!
//! It depends only on `factoryos-wire`.
