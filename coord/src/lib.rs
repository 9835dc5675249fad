//! # factoryos-coord — coordination: the configuration store and the leader
//!
//! | module | what lives there |
//! |---|---|
//! | [`spec`] | the supply-chain spec in TOML and its validation (every error with a position and a fix hint) |
//! | [`solver`] | the flow solver: valid, complete, balanced, stable, deterministic |
//! | [`render`] | flows as a terminal table and as Graphviz DOT |
//! | [`backoff`] | retry waits for calls to the coordinators: doubling, capped, jittered |
//! | [`bench`] | the solver benchmark behind `factoryos bench flow` |
//! | [`state`] | the replicated state machine: cluster configuration, commands, flow fencing |
//! | [`raft`] | openraft types, redb storage (log, vote, state machine, snapshots), network over QUIC |
//! | [`client`] | the client stages and tools use: register, report suspect, watch/read the flow, status, operator changes |
//! | [`cluster`] | `cluster.toml`: read, written, and a local cluster directory made ([`cluster::LocalInit`]) |
//! | [`config`] | settings every part reads: Raft timeouts, the coordination mode |
//! | [`config_store`] | the `ConfigStore` trait and its Raft implementation |
//! | [`events`] | a node's own account of what it did (`events.jsonl`): terms, leaders, applied and adopted flows, on the machine's monotonic clock |
//! | [`filelock`] | the original system's shared-directory + `flock` backend of `ConfigStore` |
//! | [`lead`] | what a leader decides, without I/O: probes, verdicts, link retries, the flow to commit (whole or as a change); the node and the simulator act on it |
//! | [`node`] | a running coordinator: lifecycle, serving (`node::serve`), leader duties (`node::leader`), peer sync (`node::peers`) |
//! | [`operator`] | what an operator does to a running chain that needs more than one call: declaring a stage |
//! | [`timings`] | where a coordinator's commits spend their time, per phase (served to `bench failover`) |
//! | [`generate`] | generated chains in the original system's shape (types, stages per type, complexity, seed) |
//!
//! Imports point one way: `config` is a leaf; `cluster` reads files; `node`
//! and `client` build themselves from a `ClusterFile`. It depends only on
//! `factoryos-wire`.

pub mod backoff;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod config;
pub mod config_store;
pub mod events;
pub mod filelock;
pub mod flow_change;
pub mod generate;
pub mod lead;
pub mod node;
pub mod operator;
pub mod raft;
pub mod render;
pub mod solver;
pub mod spec;
pub mod state;
pub mod timings;
