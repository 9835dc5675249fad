//! The glue of each command: read arguments, call the crates, print.

pub mod bench;
pub mod certs;
pub mod chain;
pub mod coord;
pub mod ops;
pub mod run;
pub mod stage;
