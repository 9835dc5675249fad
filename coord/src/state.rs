//! The replicated state machine: the cluster configuration.
//!
//! Every change is a [`Command`] committed through Raft; [`ClusterConfig::apply`]
//! is deterministic and is the only way the configuration changes. Two
//! numbers order everything:
//!
//! * `config_version` — the log index of the last command that changed an
//!   input of the flow (spec, recipes, stages, liveness);
//! * the **flow version** — the log index of the `CommitFlow` that installed
//!   the current flow. A `CommitFlow { based_on }` applies only if `based_on`
//!   is still the `config_version`, so a flow computed from stale inputs
//!   (e.g. by a deposed leader) can never be installed.

use crate::solver::StageState;
use factoryos_wire::model::{
    ClusterStatus, Flow, FlowEdge, Liveness, Recipe, Spec, StageDescriptor,
};
use factoryos_wire::{FlowVersion, ItemType, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A command of the configuration store (the Raft log's application data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Installs the supply-chain spec (bootstrap; replaces recipes wholesale).
    SetSpec {
        spec: Spec,
    },
    /// A stage announces itself, at start and after every restart: it is alive.
    RegisterStage {
        stage: StageDescriptor,
    },
    /// `reporter` missed `suspect`'s heartbeats; the leader confirms before `MarkDead`.
    ReportSuspect {
        reporter: NodeId,
        suspect: NodeId,
    },
    MarkDead {
        stage: NodeId,
    },
    MarkAlive {
        stage: NodeId,
    },
    /// A new recipe for `item`; its version becomes the old one + 1.
    UpdateRecipe {
        item: ItemType,
        recipe: Recipe,
    },
    /// Declares a new stage: its certificate's id may connect from now on,
    /// and the flow uses it once it registers (until then it is held dead).
    AddStage {
        stage: StageDescriptor,
    },
    /// Retires a stage for good: its id is never accepted again.
    RemoveStage {
        stage: NodeId,
    },
    /// The link `supplier -> consumer` is broken although both ends are alive
    /// (the leader probed the suspect): route around it if possible.
    AvoidLink {
        supplier: NodeId,
        consumer: NodeId,
    },
    /// A coordinator leaves the Raft group for good: its id is never reused.
    RetireCoordinator {
        id: NodeId,
    },
    /// Installs a flow computed from the configuration at `based_on`.
    CommitFlow {
        based_on: u64,
        edges: Vec<FlowEdge>,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Applied at this log index.
    Applied { index: u64 },
    /// The flow is installed; its version is the index.
    FlowCommitted { version: FlowVersion },
    /// Refused (the state is unchanged), with the reason.
    Rejected { reason: String },
}

/// One registered stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    pub desc: StageDescriptor,
    pub liveness: Liveness,
    /// Stages that reported it suspect since it was last confirmed alive.
    pub suspected_by: BTreeSet<NodeId>,
}

/// The whole replicated configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub spec: Option<Spec>,
    pub stages: BTreeMap<NodeId, StageRecord>,
    /// Stage ids removed for good.
    pub retired: BTreeSet<NodeId>,
    /// Coordinator ids removed for good.
    pub retired_coordinators: BTreeSet<NodeId>,
    /// Links reported broken between live stages; cleared when either end
    /// registers again (a restart) or dies.
    pub avoid: BTreeSet<(NodeId, NodeId)>,
    pub flow: Flow,
    /// The `config_version` the current flow was computed from.
    pub flow_based_on: u64,
    pub config_version: u64,
}

impl ClusterConfig {
    /// Applies `cmd` committed at log `index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> CommandResponse {
        let applied = CommandResponse::Applied { index };
        let reject = |reason: String| CommandResponse::Rejected { reason };
        match cmd {
            Command::SetSpec { spec } => {
                self.spec = Some(spec.clone());
                self.config_version = index;
                applied
            }
            Command::RegisterStage { stage } | Command::AddStage { stage } => {
                let declare = matches!(cmd, Command::AddStage { .. });
                if declare && self.stages.contains_key(&stage.id) {
                    return reject(format!("stage {} is already known", stage.id));
                }
                if self.retired.contains(&stage.id) {
                    return reject(format!(
                        "stage {} was removed; ids are never reused",
                        stage.id
                    ));
                }
                let known = self
                    .spec
                    .as_ref()
                    .is_some_and(|s| s.recipe(&stage.item).is_some());
                if !known {
                    return reject(format!(
                        "stage {} makes `{}`, which the spec does not define",
                        stage.id, stage.item
                    ));
                }
                let record = StageRecord {
                    desc: stage.clone(),
                    // Declared, not running yet: the leader's probe of the dead
                    // revives it if it answers before it registers.
                    liveness: if declare {
                        Liveness::Dead
                    } else {
                        Liveness::Alive
                    },
                    suspected_by: BTreeSet::new(),
                };
                let before = self.stages.insert(stage.id, record);
                if self.forget_links(stage.id) {
                    self.config_version = index;
                }
                // Re-registering an alive stage at the same address changes no input of the flow.
                let same = before
                    .as_ref()
                    .is_some_and(|b| b.desc == *stage && b.liveness == Liveness::Alive);
                if !same {
                    self.config_version = index;
                }
                applied
            }
            Command::ReportSuspect { reporter, suspect } => match self.stages.get_mut(suspect) {
                Some(r) if r.liveness != Liveness::Dead => {
                    r.suspected_by.insert(*reporter);
                    r.liveness = Liveness::Suspect;
                    applied
                }
                Some(_) => applied,
                None => reject(format!("no stage {suspect} is registered")),
            },
            Command::MarkDead { stage } => match self.stages.get_mut(stage) {
                Some(r) => {
                    if r.liveness != Liveness::Dead {
                        r.liveness = Liveness::Dead;
                        self.config_version = index;
                    }
                    self.forget_links(*stage);
                    applied
                }
                None => reject(format!("no stage {stage} is registered")),
            },
            Command::MarkAlive { stage } => match self.stages.get_mut(stage) {
                Some(r) => {
                    r.suspected_by.clear();
                    if r.liveness == Liveness::Dead {
                        self.config_version = index;
                    }
                    r.liveness = Liveness::Alive;
                    applied
                }
                None => reject(format!("no stage {stage} is registered")),
            },
            Command::UpdateRecipe { item, recipe } => {
                let Some(spec) = self.spec.as_ref() else {
                    return reject("no spec is installed".into());
                };
                if let Some(bad) = recipe.inputs.keys().find(|i| spec.recipe(i).is_none()) {
                    return reject(format!("input `{bad}` is not a type of the spec"));
                }
                if recipe.yield_units == 0 || recipe.inputs.values().any(|u| *u == 0) {
                    return reject("quantities must be at least 1".into());
                }
                let mut next = spec.clone();
                let Some(t) = next.types.iter_mut().find(|t| &t.name == item) else {
                    return reject(format!("`{item}` is not a type of the spec"));
                };
                t.recipe = Recipe {
                    version: t.recipe.version + 1,
                    ..recipe.clone()
                };
                if let Err(e) = crate::solver::topological_order(&next) {
                    return reject(e.to_string());
                }
                self.spec = Some(next);
                self.config_version = index;
                applied
            }
            Command::RemoveStage { stage } => {
                if self.stages.remove(stage).is_some() {
                    self.config_version = index;
                }
                self.retired.insert(*stage);
                applied
            }
            Command::AvoidLink { supplier, consumer } => {
                if !self.stages.contains_key(supplier) || !self.stages.contains_key(consumer) {
                    return reject(format!(
                        "no link {supplier} -> {consumer} between registered stages"
                    ));
                }
                if self.avoid.insert((*supplier, *consumer)) {
                    self.config_version = index;
                }
                applied
            }
            Command::RetireCoordinator { id } => {
                self.retired_coordinators.insert(*id);
                applied
            }
            Command::CommitFlow { based_on, edges } => {
                if *based_on != self.config_version {
                    return reject(format!(
                        "stale flow: computed from configuration {based_on}, current is {}",
                        self.config_version
                    ));
                }
                // The recipes the flow was computed for travel with it: this
                // is how a recipe update reaches the stages.
                let recipes = self
                    .spec
                    .iter()
                    .flat_map(|s| &s.types)
                    .map(|t| (t.name.clone(), t.recipe.clone()))
                    .collect();
                self.flow = Flow {
                    version: FlowVersion(index),
                    edges: edges.clone(),
                    recipes,
                };
                self.flow_based_on = *based_on;
                CommandResponse::FlowCommitted {
                    version: FlowVersion(index),
                }
            }
        }
    }

    /// Drops the broken links touching `stage`; whether any was dropped.
    fn forget_links(&mut self, stage: NodeId) -> bool {
        let before = self.avoid.len();
        self.avoid.retain(|(s, c)| *s != stage && *c != stage);
        self.avoid.len() != before
    }

    /// Whether the flow is older than the configuration it should reflect.
    pub fn flow_is_stale(&self) -> bool {
        self.spec.is_some() && self.flow_based_on != self.config_version
    }

    /// The stages as the solver sees them (suspects count as live until confirmed dead).
    pub fn solver_stages(&self) -> Vec<StageState> {
        self.stages
            .values()
            .map(|r| StageState {
                id: r.desc.id,
                item: r.desc.item.clone(),
                capacity: r.desc.capacity,
                live: r.liveness != Liveness::Dead,
            })
            .collect()
    }

    /// The status summary (leader, term and members are filled in by the node).
    pub fn status(&self) -> ClusterStatus {
        ClusterStatus {
            leader: None,
            term: 0,
            members: Vec::new(),
            flow_version: self.flow.version,
            stages: self
                .stages
                .iter()
                .map(|(id, r)| (*id, r.liveness))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
