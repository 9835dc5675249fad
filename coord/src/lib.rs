//! # factoryos-coord — coordination: the configuration store and the leader
//!
//! | module | what lives there |
//! |---|---|
//! | [`spec`] | the supply-chain spec in TOML and its validation (every error with a position and a fix hint) |
//! | [`solver`] | the flow solver: valid, complete, balanced, stable, deterministic |
//! | [`render`] | flows as a terminal table and as Graphviz DOT |
//! | [`bench`] | the solver benchmark behind `factoryos bench flow` |
//! | [`state`] | the replicated state machine: cluster configuration, commands, flow fencing |
//! | [`raft`] | openraft types, redb storage (log, vote, state machine, snapshots), network over QUIC |
//! | [`client`] | the client stages and tools use: register, report suspect, watch/read the flow, status |
//! | [`cluster`] | `cluster.toml`: coordinators, certificates, data, Raft timeouts |
//! | [`config_store`] | the `ConfigStore` trait and its Raft implementation |
//! | [`filelock`] | the original system's shared-directory + `flock` backend of `ConfigStore` |
//! | [`node`] | a running coordinator: RPC and client serving, leader duties, peer sync |
//! | [`generate`] | generated chains in the original system's shape (types, stages per type, complexity, seed) |
//!
//! Still to come (see `docs/architecture.md` and the project's issues):
//!
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

pub mod bench;
pub mod client;
pub mod cluster;
pub mod config_store;
pub mod filelock;
pub mod generate;
pub mod node;
pub mod raft;
pub mod render;
pub mod solver;
pub mod spec;
pub mod state;
