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
    /// Installs the supply-chain spec, once: the bootstrap. Refused when a
    /// spec is installed (a new leader that has not applied the log yet
    /// must not reset the recipes).
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
    /// A new recipe for `item`; its version becomes the old one + 1. With
    /// `if_version`, only if the current version is that one.
    UpdateRecipe {
        item: ItemType,
        recipe: Recipe,
        if_version: Option<u32>,
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
    /// Installs a flow computed from the configuration at `based_on`, as a
    /// change to the current flow (refused if the current flow is not
    /// `change.on`): what the leader commits when few edges moved.
    CommitFlowChange {
        based_on: u64,
        change: crate::flow_change::FlowChange,
    },
    /// Hands an avoided link back to the solver (the leader retries it after
    /// a while: a false report, or a partition that healed, is not forever).
    RetryLink {
        supplier: NodeId,
        consumer: NodeId,
    },
    /// A host process announces all its stages in one entry: every one is
    /// registered as by `RegisterStage`, or (if any is refused) none is.
    RegisterStages {
        stages: Vec<StageDescriptor>,
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
    /// registers again (a restart) or dies, or when the leader retries one.
    pub avoid: BTreeSet<(NodeId, NodeId)>,
    pub flow: Flow,
    /// The `config_version` the current flow was computed from.
    pub flow_based_on: u64,
    pub config_version: u64,
}

/// The rule of a recipe update, shared by the state machine and anyone who
/// mirrors it (the ideal twin): `item` gets `recipe` with the version after
/// its current one, if every input is a type of the spec, every quantity is
/// at least 1 and the chain stays a DAG. The spec as it becomes.
pub fn update_recipe(spec: &Spec, item: &ItemType, recipe: &Recipe) -> Result<Spec, String> {
    if let Some(bad) = recipe.inputs.keys().find(|i| spec.recipe(i).is_none()) {
        return Err(format!("input `{bad}` is not a type of the spec"));
    }
    if recipe.yield_units == 0 || recipe.inputs.values().any(|u| *u == 0) {
        return Err("quantities must be at least 1".into());
    }
    let mut next = spec.clone();
    let Some(t) = next.types.iter_mut().find(|t| &t.name == item) else {
        return Err(format!("`{item}` is not a type of the spec"));
    };
    t.recipe = Recipe {
        version: t.recipe.version + 1,
        ..recipe.clone()
    };
    crate::solver::topological_order(&next).map_err(|e| e.to_string())?;
    Ok(next)
}

impl Command {
    /// What a node's event log records when this command was applied at
    /// log `index` with `response`: a stage marked dead, or each stage
    /// registered (nothing when refused).
    pub fn event(&self, index: u64, response: &CommandResponse) -> Vec<crate::events::What> {
        use crate::events::What;
        if matches!(response, CommandResponse::Rejected { .. }) {
            return Vec::new();
        }
        let registered = |stage: &StageDescriptor| What::Registered {
            stage: stage.id,
            index,
        };
        match self {
            Command::MarkDead { stage } => vec![What::MarkedDead {
                stage: *stage,
                index,
            }],
            Command::RegisterStage { stage } => vec![registered(stage)],
            Command::RegisterStages { stages } => stages.iter().map(registered).collect(),
            _ => Vec::new(),
        }
    }
}

impl ClusterConfig {
    /// Applies `cmd` committed at log `index`: one method per command.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> CommandResponse {
        let outcome = match cmd {
            Command::SetSpec { spec } => {
                if self.spec.is_some() {
                    return CommandResponse::Rejected {
                        reason: "a spec is installed already".into(),
                    };
                }
                self.spec = Some(spec.clone());
                self.config_version = index;
                Ok(())
            }
            Command::RegisterStage { stage } => self.register(index, stage, false),
            Command::RegisterStages { stages } => self.register_all(index, stages),
            Command::AddStage { stage } => self.register(index, stage, true),
            Command::ReportSuspect { reporter, suspect } => self.suspect(*reporter, *suspect),
            Command::MarkDead { stage } => self.mark_dead(index, *stage),
            Command::MarkAlive { stage } => self.mark_alive(index, *stage),
            Command::UpdateRecipe {
                item,
                recipe,
                if_version,
            } => self.update_recipe(index, item, recipe, *if_version),
            Command::RemoveStage { stage } => {
                if self.stages.remove(stage).is_some() {
                    self.config_version = index;
                }
                self.retired.insert(*stage);
                Ok(())
            }
            Command::AvoidLink { supplier, consumer } => {
                self.avoid_link(index, *supplier, *consumer)
            }
            Command::CommitFlowChange { based_on, change } => {
                if change.on != self.flow.version {
                    return CommandResponse::Rejected {
                        reason: format!(
                            "flow change computed against flow {}, current is {}",
                            change.on, self.flow.version
                        ),
                    };
                }
                let edges = change.apply(&self.flow.edges);
                return match self.commit_flow(index, *based_on, &edges) {
                    Ok(version) => CommandResponse::FlowCommitted { version },
                    Err(reason) => CommandResponse::Rejected { reason },
                };
            }
            Command::RetryLink { supplier, consumer } => {
                if self.avoid.remove(&(*supplier, *consumer)) {
                    self.config_version = index;
                    Ok(())
                } else {
                    Err(format!("the link {supplier} -> {consumer} is not avoided"))
                }
            }
            Command::RetireCoordinator { id } => {
                self.retired_coordinators.insert(*id);
                Ok(())
            }
            Command::CommitFlow { based_on, edges } => {
                return match self.commit_flow(index, *based_on, edges) {
                    Ok(version) => CommandResponse::FlowCommitted { version },
                    Err(reason) => CommandResponse::Rejected { reason },
                }
            }
        };
        match outcome {
            Ok(()) => CommandResponse::Applied { index },
            Err(reason) => CommandResponse::Rejected { reason },
        }
    }

    /// `RegisterStage` (a running stage, alive) or `AddStage` (`declare`: a
    /// new id, held dead until it registers, running the current recipe).
    fn register(
        &mut self,
        index: u64,
        stage: &StageDescriptor,
        declare: bool,
    ) -> Result<(), String> {
        let record = self.registration(stage, declare)?;
        self.insert_registered(index, record);
        Ok(())
    }

    /// `RegisterStages`: all of them, or none if any is refused (every
    /// refusal is named).
    fn register_all(&mut self, index: u64, stages: &[StageDescriptor]) -> Result<(), String> {
        if stages.is_empty() {
            return Err("a host registered no stage".into());
        }
        let mut records = Vec::with_capacity(stages.len());
        let mut refused = Vec::new();
        for stage in stages {
            match self.registration(stage, false) {
                Ok(r) => records.push(r),
                Err(reason) => refused.push(reason),
            }
        }
        if !refused.is_empty() {
            return Err(refused.join("; "));
        }
        for record in records {
            self.insert_registered(index, record);
        }
        Ok(())
    }

    /// The record a registration would make, or why it is refused.
    fn registration(&self, stage: &StageDescriptor, declare: bool) -> Result<StageRecord, String> {
        if declare && self.stages.contains_key(&stage.id) {
            return Err(format!("stage {} is already known", stage.id));
        }
        if self.retired.contains(&stage.id) {
            return Err(format!(
                "stage {} was removed; ids are never reused",
                stage.id
            ));
        }
        if !declare && (stage.addr.ip().is_unspecified() || stage.addr.port() == 0) {
            return Err(format!(
                "stage {} registered {}, an address no peer can dial; it must register the address its peers reach it at",
                stage.id, stage.addr
            ));
        }
        let Some(recipe) = self.spec.as_ref().and_then(|s| s.recipe(&stage.item)) else {
            return Err(format!(
                "stage {} makes `{}`, which the spec does not define",
                stage.id, stage.item
            ));
        };
        let mut desc = stage.clone();
        if declare {
            // Not running yet: it will run the recipe its type has now,
            // whatever the operator's tool thought it was.
            desc.recipe_version = recipe.version;
        }
        let record = StageRecord {
            // Declared, not running yet: the leader's probe of the dead
            // revives it if it answers before it registers.
            liveness: if declare {
                Liveness::Dead
            } else {
                Liveness::Alive
            },
            desc,
            suspected_by: BTreeSet::new(),
        };
        Ok(record)
    }

    fn insert_registered(&mut self, index: u64, record: StageRecord) {
        let id = record.desc.id;
        // Re-registering an alive stage at the same address changes no input of the flow.
        let same = self
            .stages
            .get(&id)
            .is_some_and(|b| b.desc == record.desc && b.liveness == Liveness::Alive);
        self.stages.insert(id, record);
        if self.forget_links(id) || !same {
            self.config_version = index;
        }
    }

    fn record_mut(&mut self, stage: NodeId) -> Result<&mut StageRecord, String> {
        self.stages
            .get_mut(&stage)
            .ok_or_else(|| format!("no stage {stage} is registered"))
    }

    fn suspect(&mut self, reporter: NodeId, suspect: NodeId) -> Result<(), String> {
        let r = self.record_mut(suspect)?;
        if r.liveness != Liveness::Dead {
            r.suspected_by.insert(reporter);
            r.liveness = Liveness::Suspect;
        }
        Ok(())
    }

    fn mark_dead(&mut self, index: u64, stage: NodeId) -> Result<(), String> {
        let r = self.record_mut(stage)?;
        if r.liveness != Liveness::Dead {
            r.liveness = Liveness::Dead;
            self.config_version = index;
        }
        self.forget_links(stage);
        Ok(())
    }

    fn mark_alive(&mut self, index: u64, stage: NodeId) -> Result<(), String> {
        let r = self.record_mut(stage)?;
        r.suspected_by.clear();
        let was_dead = std::mem::replace(&mut r.liveness, Liveness::Alive) == Liveness::Dead;
        if was_dead {
            self.config_version = index;
        }
        Ok(())
    }

    fn update_recipe(
        &mut self,
        index: u64,
        item: &ItemType,
        recipe: &Recipe,
        if_version: Option<u32>,
    ) -> Result<(), String> {
        let spec = self.spec.as_ref().ok_or("no spec is installed")?;
        if let (Some(expected), Some(current)) = (if_version, spec.recipe(item)) {
            if current.version != expected {
                return Err(format!(
                    "the recipe of `{item}` is at version {}, not {expected}",
                    current.version
                ));
            }
        }
        self.spec = Some(update_recipe(spec, item, recipe)?);
        self.config_version = index;
        Ok(())
    }

    fn avoid_link(&mut self, index: u64, supplier: NodeId, consumer: NodeId) -> Result<(), String> {
        if !self.stages.contains_key(&supplier) || !self.stages.contains_key(&consumer) {
            return Err(format!(
                "no link {supplier} -> {consumer} between registered stages"
            ));
        }
        if self.avoid.insert((supplier, consumer)) {
            self.config_version = index;
        }
        Ok(())
    }

    /// Installs the flow if it was computed from the current configuration.
    fn commit_flow(
        &mut self,
        index: u64,
        based_on: u64,
        edges: &[FlowEdge],
    ) -> Result<FlowVersion, String> {
        if based_on != self.config_version {
            return Err(format!(
                "stale flow: computed from configuration {based_on}, current is {}",
                self.config_version
            ));
        }
        // The recipes the flow was computed for travel with it: this is how
        // a recipe update reaches the stages.
        let recipes = self
            .spec
            .iter()
            .flat_map(|s| &s.types)
            .map(|t| (t.name.clone(), t.recipe.clone()))
            .collect();
        self.flow = Flow {
            version: FlowVersion(index),
            edges: edges.to_vec(),
            recipes,
        };
        self.flow_based_on = based_on;
        Ok(FlowVersion(index))
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
            member_addrs: Vec::new(),
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
