//! Operations: the events a schedule injects into a running cluster, each
//! one value of [`Op`] with one way to apply it ([`Op::apply`]) and one name
//! and description for the run's records. `factoryos run` schedules them at
//! the original's rates (see `experiment::schedule`); the partition harness
//! and the benches are to schedule the same values.

pub mod draw;

use crate::hosts::netns::Rules;
use crate::local::{LocalCluster, LocalError};
use draw::RecipeChange;
use factoryos_coord::client::{ClientError, CoordClient};
use factoryos_coord::operator::{declare_stage, OperatorError};
use factoryos_coord::spec::StageDecl;
use factoryos_wire::fault_file::FaultFile;
use factoryos_wire::model::Recipe;
use factoryos_wire::{ItemType, NodeId};
use serde::{Deserialize, Serialize};

/// What kind of operation, as records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// SIGKILL of a stage host process (all its stages), or one stage
    /// killed alone inside its live host.
    Crash,
    /// A killed process, or a stage killed alone, started again (stages
    /// replay their WALs).
    Recover,
    /// SIGKILL of the coordinators' leader.
    KillLeader,
    /// A type's recipe changes (the original's `update_dep`).
    UpdateRecipe,
    /// A new stage joins the chain.
    AddStage,
    /// The bridge's rules change (a partition, packet loss, or their heal).
    Network,
    /// SIGSTOP of a process.
    Pause,
    /// SIGCONT of a paused process.
    Resume,
    /// SIGKILL of a coordinator that need not lead.
    KillCoordinator,
    /// A coordinator leaves the group for good.
    RemoveCoordinator,
    /// A new coordinator joins the group.
    AddCoordinator,
    /// Every process's endpoint delays, duplicates or reorders what it sends (or stops).
    Faults,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Crash => "crash",
            OpKind::Recover => "recover",
            OpKind::KillLeader => "kill-leader",
            OpKind::UpdateRecipe => "update-recipe",
            OpKind::AddStage => "add-stage",
            OpKind::Network => "network",
            OpKind::Pause => "pause",
            OpKind::Resume => "resume",
            OpKind::KillCoordinator => "kill-coordinator",
            OpKind::RemoveCoordinator => "remove-coordinator",
            OpKind::AddCoordinator => "add-coordinator",
            OpKind::Faults => "faults",
        }
    }

    /// Faults break something until they are healed; the others change
    /// what the chain is.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            OpKind::Crash | OpKind::KillLeader | OpKind::KillCoordinator | OpKind::Pause
        )
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One operation on a running cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// SIGKILL of the process hosting `stages` (known by `host`, its first).
    Crash { host: NodeId, stages: Vec<NodeId> },
    /// Starts the process hosting `stages` again.
    RecoverStages { host: NodeId, stages: Vec<NodeId> },
    /// Kills stage `stage` alone inside its live host process `host` (the
    /// host's other stages go on), through the host's down file.
    CrashStage { host: NodeId, stage: NodeId },
    /// Host `host` starts its stage `stage` again from the host's WAL.
    RecoverStage { host: NodeId, stage: NodeId },
    /// SIGKILL of coordinator `id`, the leader when drawn.
    KillLeader { id: NodeId },
    /// Starts coordinator `id` again.
    RecoverCoordinator { id: NodeId },
    /// `item` gets `recipe` (the store bumps its version).
    UpdateRecipe {
        item: ItemType,
        recipe: Recipe,
        change: RecipeChange,
    },
    /// Declares `decl` to the cluster and starts it in its own process.
    AddStage { decl: StageDecl },
    /// Replaces the bridge's rules (namespace hosts only); `detail` says
    /// what they do, for the history.
    Network { rules: Rules, detail: String },
    /// SIGSTOP of process `id` (a coordinator or a stage host).
    Pause { id: NodeId },
    /// SIGCONT of process `id`.
    Resume { id: NodeId },
    /// SIGKILL of coordinator `id`.
    KillCoordinator { id: NodeId },
    /// The group removes coordinator `id` for good; its process is killed.
    RemoveCoordinator { id: NodeId },
    /// Coordinator `id` (a new id) is started and added to the group.
    AddCoordinator { id: NodeId },
    /// Processes `nodes` apply `rule` to everything they send (`None`:
    /// nothing), through their fault files.
    Faults {
        nodes: Vec<NodeId>,
        rule: Option<FaultFile>,
    },
}

/// Why an operation could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("the coordinators refused or were unavailable: {0}")]
    Client(#[from] ClientError),
    #[error("declaring a stage: {0}")]
    Declare(#[from] OperatorError),
    #[error("{0} needs network-namespace hosts")]
    NeedsNetns(String),
    #[error("network rules: {0}")]
    Netns(#[from] crate::hosts::netns::NetnsError),
}

/// The group removes coordinator `id` (if it has it still: a removal whose
/// answer was lost is done), then its process is killed and forgotten.
async fn remove_coordinator(target: &mut Target<'_>, id: NodeId) -> Result<(), OpError> {
    let member = |s: &factoryos_wire::model::ClusterStatus| s.members.contains(&id);
    let status = target.client.status().await?;
    if member(&status) {
        if let Err(e) = target.client.remove_coordinator(id).await {
            let now = target.client.status().await?;
            if member(&now) {
                return Err(e.into());
            }
        }
    }
    target.client.refresh_members().await?;
    if target.cluster.is_running(id) {
        target.cluster.kill(id)?;
    }
    target.cluster.forget_coordinator(id)?;
    Ok(())
}

/// Writes `rule` into (or, `None`, removes) the fault file of every node of
/// `nodes`; every node is tried, the first error returned.
fn set_faults(
    cluster: &LocalCluster,
    nodes: &[NodeId],
    rule: Option<&FaultFile>,
) -> Result<(), OpError> {
    let mut first = None;
    for node in nodes {
        let dir = cluster.file().node_dir(*node);
        let path = dir.join(factoryos_wire::fault_file::FILE_NAME);
        let written = match rule {
            Some(r) => std::fs::create_dir_all(&dir).and_then(|()| r.write(&path)),
            None => FaultFile::clear(&path),
        };
        if let Err(source) = written {
            first.get_or_insert(LocalError::Io {
                what: format!("fault file {}", path.display()),
                source,
            });
        }
    }
    first.map_or(Ok(()), |e| Err(e.into()))
}

/// What operations act on: the processes, an operator client, and how the
/// harness starts stages.
pub struct Target<'a> {
    pub cluster: &'a mut LocalCluster,
    pub client: &'a CoordClient,
    pub cycle_ms: u64,
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Crash { .. } | Op::CrashStage { .. } => OpKind::Crash,
            Op::RecoverStages { .. } | Op::RecoverStage { .. } | Op::RecoverCoordinator { .. } => {
                OpKind::Recover
            }
            Op::KillLeader { .. } => OpKind::KillLeader,
            Op::UpdateRecipe { .. } => OpKind::UpdateRecipe,
            Op::AddStage { .. } => OpKind::AddStage,
            Op::Network { .. } => OpKind::Network,
            Op::Pause { .. } => OpKind::Pause,
            Op::Resume { .. } => OpKind::Resume,
            Op::KillCoordinator { .. } => OpKind::KillCoordinator,
            Op::RemoveCoordinator { .. } => OpKind::RemoveCoordinator,
            Op::AddCoordinator { .. } => OpKind::AddCoordinator,
            Op::Faults { .. } => OpKind::Faults,
        }
    }

    /// The node a fault or recovery is about (a stage host, a stage killed
    /// alone, or a coordinator).
    pub fn node(&self) -> Option<NodeId> {
        match self {
            Op::Crash { host, .. } | Op::RecoverStages { host, .. } => Some(*host),
            Op::CrashStage { stage, .. } | Op::RecoverStage { stage, .. } => Some(*stage),
            Op::KillLeader { id } | Op::RecoverCoordinator { id } => Some(*id),
            Op::AddStage { decl } => Some(decl.id),
            Op::Pause { id }
            | Op::Resume { id }
            | Op::KillCoordinator { id }
            | Op::RemoveCoordinator { id }
            | Op::AddCoordinator { id } => Some(*id),
            Op::UpdateRecipe { .. } | Op::Network { .. } | Op::Faults { .. } => None,
        }
    }

    /// One line for logs and the run's `ops.log`.
    pub fn describe(&self) -> String {
        match self {
            Op::Crash { host, .. } => format!("crash {host}"),
            Op::RecoverStages { host, .. } => format!("recover {host}"),
            Op::CrashStage { host, stage } => format!("crash stage {stage} in host {host}"),
            Op::RecoverStage { host, stage } => format!("recover stage {stage} in host {host}"),
            Op::KillLeader { id } => format!("kill-leader {id}"),
            Op::RecoverCoordinator { id } => format!("recover {id}"),
            Op::UpdateRecipe { item, change, .. } => format!("recipe {item}: {change}"),
            Op::AddStage { decl } => format!("add stage {} makes {}", decl.id, decl.item),
            Op::Network { detail, .. } => format!("network: {detail}"),
            Op::Pause { id } => format!("pause {id}"),
            Op::Resume { id } => format!("resume {id}"),
            Op::KillCoordinator { id } => format!("kill {id}"),
            Op::RemoveCoordinator { id } => format!("remove coordinator {id}"),
            Op::AddCoordinator { id } => format!("add coordinator {id}"),
            Op::Faults { rule: Some(r), .. } => format!("faults {r:?}"),
            Op::Faults { rule: None, .. } => "faults healed".into(),
        }
    }

    /// Applies the operation to `target`.
    pub async fn apply(&self, target: &mut Target<'_>) -> Result<(), OpError> {
        match self {
            Op::Crash { host, .. } | Op::KillLeader { id: host } => target.cluster.kill(*host)?,
            Op::RecoverStages { stages, .. } => {
                target.cluster.start_stage_group(stages, target.cycle_ms)?
            }
            Op::CrashStage { host, stage } => target.cluster.set_stage_down(*host, *stage, true)?,
            Op::RecoverStage { host, stage } => {
                target.cluster.set_stage_down(*host, *stage, false)?
            }
            Op::RecoverCoordinator { id } => target.cluster.start(*id)?,
            Op::UpdateRecipe { item, recipe, .. } => {
                target
                    .client
                    .update_recipe(item.clone(), recipe.clone(), None)
                    .await?;
            }
            Op::AddStage { decl } => {
                declare_stage(target.cluster.file(), target.client, decl).await?;
                target
                    .cluster
                    .start_stage_group(&[decl.id], target.cycle_ms)?;
            }
            Op::Network { rules, .. } => {
                let lab = target
                    .cluster
                    .hosts()
                    .lab()
                    .ok_or_else(|| OpError::NeedsNetns(self.describe()))?;
                lab.set_rules(rules)?;
            }
            Op::Pause { id } => target.cluster.pause(*id)?,
            Op::Resume { id } => target.cluster.resume(*id)?,
            Op::KillCoordinator { id } => target.cluster.kill(*id)?,
            Op::RemoveCoordinator { id } => remove_coordinator(target, *id).await?,
            Op::AddCoordinator { id } => {
                let addr = target.cluster.join_coordinator(*id)?;
                let status = target.client.add_coordinator(*id, addr).await?;
                target.client.learn(&status);
            }
            Op::Faults { nodes, rule } => set_faults(target.cluster, nodes, rule.as_ref())?,
        }
        Ok(())
    }
}
