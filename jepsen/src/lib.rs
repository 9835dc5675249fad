//! # factoryos-jepsen — the harness
//!
//! | module | what lives there |
//! |---|---|
//! | [`hosts`] | where processes run: loopback, or network-namespace hosts on one bridge with nftables rules ([`hosts::netns`]) |
//! | [`local`] | a cluster of real `factoryos` processes on those hosts: start, kill -9, pause, restart, clean up |
//! | [`op`] | operations (crash, recover, kill the leader, recipe update, added stage): one value each, applied one way, whoever schedules them |
//! | [`history`] | a harness run's history: client invocations and completions, nemesis windows, node events, as JSON lines |
//! | [`checker`] | verdicts on a run: linearizable registers, lot conservation, election safety, fencing, liveness |
//! | [`experiment`] | `factoryos run`: a local cluster on a generated chain, operations at the original's rates, results vs the ideal twin |
//! | [`failover`] | the leader-failover and commit-latency measurement behind `factoryos bench failover` |
//! | [`stage_kill`] | a supplier's SIGKILL seen from its consumers, behind `factoryos bench stage` |
//!
//! Not built yet (the partition-testing issue): network-namespace hosts,
//! nemeses beyond kills, histories and checkers.
//!
//! It depends on `factoryos-stage`, `factoryos-coord` and `factoryos-wire`.

pub mod checker;
pub mod experiment;
pub mod failover;
pub mod history;
pub mod hosts;
pub mod local;
pub mod op;
pub mod stage_kill;

/// The original paper's window chain (wood -> window frame -> window, two
/// stages per type), which the benchmarks install.
pub const WINDOW_CHAIN: &str = include_str!("../../examples/window.toml");
