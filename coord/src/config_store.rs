//! The configuration store behind a coordinator, as one trait with two
//! implementations: [`RaftStore`] (the Raft group) and
//! [`crate::filelock::FileLockStore`] (the original system's shared
//! directory and `flock`, kept to be measured against).
//!
//! The coordinator's client serving and leader duties are written once,
//! against this trait.

use crate::events::{EventLog, What};
use crate::raft::elect::LeaderContact;
use crate::raft::network::{self, ForwardedWrite, ReadIndex};
use crate::raft::Raft;
use crate::state::{ClusterConfig, Command, CommandResponse};
use crate::timings::Timings;
use factoryos_wire::message::RaftRpc;
use factoryos_wire::model::{ClusterStatus, CommitPhase, PhaseTiming};
use factoryos_wire::{NodeId, ServiceError, Transport};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Refused on its merits: the same request would be refused again.
    #[error("refused: {0}")]
    Rejected(String),
}

/// A replicated (or shared) cluster configuration with one leader.
pub trait ConfigStore: Clone + Send + Sync + 'static {
    /// Applies `cmd` through the store; its response once applied.
    fn propose(
        &self,
        cmd: Command,
    ) -> impl Future<Output = Result<CommandResponse, StoreError>> + Send;

    /// The newest configuration this participant has applied.
    fn config(&self) -> watch::Receiver<Arc<ClusterConfig>>;

    /// Whether this participant leads now (and must do the leader's duties).
    fn leading(&self) -> watch::Receiver<bool>;

    /// Makes the local configuration at least as new as anything committed
    /// before the call (a linearizable read).
    fn sync(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Leader, term, members, flow version, stage liveness.
    fn status(&self) -> ClusterStatus;

    /// The leader as this participant knows it (cheap: asked on every write).
    fn leader(&self) -> Option<NodeId>;

    /// Where this participant's recent commits spent their time.
    fn commit_timings(&self) -> Vec<PhaseTiming>;

    /// Adds or removes a coordinator; the voters afterwards. Changes go one
    /// at a time through the leader; a removed id can never come back.
    fn change_coordinators(
        &self,
        change: MembershipChange,
    ) -> impl Future<Output = Result<Vec<NodeId>, StoreError>> + Send;

    /// Serves a Raft RPC from a peer (only the Raft store has any).
    fn serve_raft(
        &self,
        rpc: RaftRpc,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, ServiceError>> + Send;
}

/// A change of the coordinator group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    Add {
        id: NodeId,
        addr: std::net::SocketAddr,
    },
    Remove {
        id: NodeId,
    },
}

/// The Raft group as a [`ConfigStore`].
#[derive(Clone)]
pub struct RaftStore {
    id: NodeId,
    raft: Raft,
    transport: Transport,
    config: watch::Receiver<Arc<ClusterConfig>>,
    leading: watch::Receiver<bool>,
    /// Serialises membership changes made through this node.
    membership: Arc<tokio::sync::Mutex<()>>,
    timings: Timings,
    /// When a leader was last heard from (for prompt elections).
    contact: LeaderContact,
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStore")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How long a follower waits for the leader to answer a forwarded write.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write through this node may take to commit before its
/// outcome is reported unknown.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a follower waits to apply what the leader confirmed.
const CATCH_UP: Duration = Duration::from_secs(10);

impl RaftStore {
    /// Wraps a running Raft node; spawns a task that follows its leadership.
    pub fn new(
        id: NodeId,
        raft: Raft,
        transport: Transport,
        config: watch::Receiver<Arc<ClusterConfig>>,
        log: EventLog,
        timings: Timings,
        contact: LeaderContact,
    ) -> Self {
        let (tx, leading) = watch::channel(false);
        let mut metrics = raft.metrics();
        let peers = transport.peers().clone();
        tokio::spawn(async move {
            let mut role = None;
            loop {
                let now = {
                    let m = metrics.borrow_and_update();
                    // Every member of the group may connect and be dialled.
                    for (member, node) in m.membership_config.membership().nodes() {
                        if let Ok(addr) = node.addr.parse() {
                            if peers.addr(NodeId(*member)) != Some(addr) {
                                peers.insert(NodeId(*member), addr);
                            }
                        }
                    }
                    let leading = m.state.is_leader() && m.current_leader == Some(id.0);
                    let seen = (m.current_term, m.current_leader, leading);
                    if role != Some(seen) {
                        role = Some(seen);
                        log.record(What::Role {
                            term: m.current_term,
                            leader: m.current_leader.map(NodeId),
                            leading,
                            last_applied: m.last_applied.map_or(0, |l| l.index),
                        });
                    }
                    leading
                };
                tx.send_if_modified(|v| std::mem::replace(v, now) != now);
                if metrics.changed().await.is_err() || tx.is_closed() {
                    return;
                }
            }
        });
        RaftStore {
            id,
            raft,
            transport,
            config,
            leading,
            membership: Arc::default(),
            timings,
            contact,
        }
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }
}

fn forward_target(
    e: &RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>,
) -> Option<NodeId> {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => f.leader_id.map(NodeId),
        _ => None,
    }
}

impl ConfigStore for RaftStore {
    async fn propose(&self, cmd: Command) -> Result<CommandResponse, StoreError> {
        // openraft may never answer a write its leader proposed before it
        // lost leadership; a bounded wait keeps the leader's duties (and
        // clients) from waiting for ever. The outcome is then unknown.
        let start = std::time::Instant::now();
        let written = tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(cmd.clone()))
            .await
            .map_err(|_| {
                tracing::warn!("a proposal was not committed within {PROPOSE_TIMEOUT:?}");
                StoreError::Unavailable(format!(
                    "not committed within {PROPOSE_TIMEOUT:?} (leadership may have changed)"
                ))
            })?;
        match written {
            Ok(r) => {
                self.timings.since(CommitPhase::Proposal, start);
                Ok(r.data)
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let leader = match f.leader_id {
                    Some(l) if l != self.id.0 => NodeId(l),
                    _ => return Err(StoreError::NotLeader { leader: None }),
                };
                let answer: Result<ForwardedWrite, _> = network::call(
                    &self.transport,
                    leader,
                    RaftRpc::ClientWrite,
                    &cmd,
                    FORWARD_TIMEOUT,
                )
                .await;
                match answer {
                    Ok(Ok(resp)) => Ok(resp),
                    Ok(Err(e)) => Err(StoreError::NotLeader {
                        leader: forward_target(&e),
                    }),
                    Err(e) => Err(StoreError::Unavailable(format!(
                        "leader {leader} unreachable: {e}"
                    ))),
                }
            }
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    fn config(&self) -> watch::Receiver<Arc<ClusterConfig>> {
        self.config.clone()
    }

    fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    async fn sync(&self) -> Result<(), StoreError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                let leader = match f.leader_id {
                    Some(l) if l != self.id.0 => NodeId(l),
                    _ => return Err(StoreError::NotLeader { leader: None }),
                };
                // The leader's read index, then wait until we applied it:
                // every write acknowledged before this read is then here.
                let answer: Result<ReadIndex, _> = network::call(
                    &self.transport,
                    leader,
                    RaftRpc::ReadIndex,
                    &(),
                    FORWARD_TIMEOUT,
                )
                .await;
                let index = match answer {
                    Ok(Ok(index)) => index,
                    Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                        return Err(StoreError::NotLeader {
                            leader: f.leader_id.map(NodeId),
                        })
                    }
                    Ok(Err(e)) => return Err(StoreError::Unavailable(e.to_string())),
                    Err(e) => {
                        return Err(StoreError::Unavailable(format!(
                            "leader {leader} unreachable: {e}"
                        )))
                    }
                };
                self.raft
                    .wait(Some(CATCH_UP))
                    .applied_index_at_least(Some(index), "linearizable read")
                    .await
                    .map_err(|e| {
                        StoreError::Unavailable(format!("could not catch up with the leader: {e}"))
                    })?;
                Ok(())
            }
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    fn commit_timings(&self) -> Vec<PhaseTiming> {
        self.timings.summary()
    }

    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader.map(NodeId)
    }

    fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let mut s = self.config.borrow().status();
        s.leader = metrics.current_leader.map(NodeId);
        s.term = metrics.current_term;
        let membership = metrics.membership_config.membership();
        s.members = membership.voter_ids().map(NodeId).collect();
        s.member_addrs = membership
            .nodes()
            .filter(|(id, _)| s.members.contains(&NodeId(**id)))
            .filter_map(|(id, node)| Some((NodeId(*id), node.addr.parse().ok()?)))
            .collect();
        s
    }

    async fn change_coordinators(
        &self,
        change: MembershipChange,
    ) -> Result<Vec<NodeId>, StoreError> {
        let _one_at_a_time = self.membership.lock().await;
        let leader = self.raft.current_leader().await;
        if leader != Some(self.id.0) {
            return Err(StoreError::NotLeader {
                leader: leader.map(NodeId),
            });
        }
        let voters = || -> std::collections::BTreeSet<u64> {
            self.raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect()
        };
        let raft_err = |e: RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => StoreError::NotLeader {
                leader: f.leader_id.map(NodeId),
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                StoreError::Rejected(e.to_string())
            }
            RaftError::Fatal(e) => StoreError::Unavailable(e.to_string()),
        };
        match change {
            MembershipChange::Add { id, addr } => {
                if self.config.borrow().retired_coordinators.contains(&id) {
                    return Err(StoreError::Rejected(format!(
                        "coordinator {id} was removed; ids are never reused"
                    )));
                }
                if !voters().contains(&id.0) {
                    self.transport.peers().insert(id, addr);
                    self.raft
                        .add_learner(id.0, openraft::BasicNode::new(addr.to_string()), true)
                        .await
                        .map_err(raft_err)?;
                    let mut next = voters();
                    next.insert(id.0);
                    self.raft
                        .change_membership(next, false)
                        .await
                        .map_err(raft_err)?;
                }
            }
            MembershipChange::Remove { id } => {
                let mut next = voters();
                if !next.remove(&id.0) {
                    return Err(StoreError::Rejected(format!("{id} is not a coordinator")));
                }
                if next.is_empty() {
                    return Err(StoreError::Rejected(
                        "cannot remove the last coordinator".into(),
                    ));
                }
                self.propose(Command::RetireCoordinator { id }).await?;
                self.raft
                    .change_membership(next, false)
                    .await
                    .map_err(raft_err)?;
            }
        }
        Ok(voters().into_iter().map(NodeId).collect())
    }

    async fn serve_raft(&self, rpc: RaftRpc, payload: Vec<u8>) -> Result<Vec<u8>, ServiceError> {
        network::serve(&self.raft, &self.contact, rpc, &payload).await
    }
}
