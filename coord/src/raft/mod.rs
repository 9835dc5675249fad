//! The Raft group (openraft 0.9, storage v2): type configuration, redb
//! storage of log, vote and state machine, the network over QUIC,
//! heartbeats on their own clock, and prompt elections when a leader falls
//! silent.

pub mod elect;
pub mod heartbeat;
pub mod network;
pub mod store;

use crate::state::{Command, CommandResponse};
use std::io::Cursor;

openraft::declare_raft_types!(
    /// factoryOS's Raft types: commands of the configuration store as log
    /// entries, coordinators as `BasicNode { addr }`.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// A Raft handle of this configuration.
pub type Raft = openraft::Raft<TypeConfig>;
