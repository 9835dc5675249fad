//! # factoryos-jepsen — the harness
//!
//! | module | what lives there |
//! |---|---|
//! | [`hosts`] | where processes run: loopback, or network-namespace hosts on one bridge with nftables rules ([`hosts::netns`]) |
//! | [`local`] | a cluster of real `factoryos` processes on those hosts: start, kill -9, pause, restart, clean up |
//! | [`op`] | operations (crash, recover, kill the leader, recipe update, added stage): one value each, applied one way, whoever schedules them |
//! | [`history`] | a harness run's history: client invocations and completions, nemesis windows, node events, as JSON lines |
//! | [`checker`] | verdicts on a run: linearizable registers, lot conservation, election safety, fencing, liveness |
//! | [`names`] | comma-separated lists of named values on the command line (nemeses, faults) |
//! | [`nemesis`] | named faults (partitions, loss, kill, pause, membership, recipe update) drawn as inject/heal operations, and their schedule |
//! | [`workload`] | the config-store workload: clients reading, writing and compare-and-setting registers |
//! | [`harness`] | `factoryos jepsen`: runs on namespace hosts under a nemesis schedule, the workloads, the checkers, the report |
//! | [`sim`] | `factoryos sim`: the real stage cores, solver and state machine under a simulated network and clock, deterministic from a seed |
//! | [`experiment`] | `factoryos run`: a local cluster on a generated chain, operations at the original's rates, results vs the ideal twin |
//! | [`failover`] | the leader-failover and commit-latency measurement behind `factoryos bench failover` |
//! | [`recovery`] | the whole chain's recovery from one fault, Raft against the file lock, behind `factoryos bench recovery` |
//! | [`stage_kill`] | a supplier's SIGKILL seen from its consumers, behind `factoryos bench stage` |
//!
//! It depends on `factoryos-stage`, `factoryos-coord` and `factoryos-wire`.

pub mod checker;
pub mod experiment;
pub mod failover;
pub mod harness;
pub mod history;
pub mod hosts;
pub mod local;
pub mod names;
pub mod nemesis;
pub mod op;
pub mod recovery;
pub mod sim;
pub mod stage_kill;
pub mod workload;

/// The original paper's window chain (wood -> window frame -> window, two
/// stages per type), which the benchmarks install.
pub const WINDOW_CHAIN: &str = include_str!("../../examples/window.toml");
