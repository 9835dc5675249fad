//! What a run saw happen, op by op: the faults and chain changes it made,
//! the crashes it follows until they are detected and routed around, the
//! recoveries it times, the windows its plot shades, and the op log.

use super::ideal::{ChainChange, ChainEvent};
use super::live::Live;
use super::results::{ChainOp, Fault, Recovery};
use super::Progress;
use crate::op::{Op, OpKind};
use factoryos_coord::solver::StageState;
use factoryos_coord::spec::ChainSpec;
use factoryos_wire::model::Spec;
use factoryos_wire::{ItemType, NodeId};
use std::collections::BTreeSet;
use std::time::Duration;

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When something happens, on the run's clock and in cycles since the stages started.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    pub elapsed: Duration,
    pub at_s: f64,
    /// Cycles since the stages started (the twin's clock).
    pub cycle: u64,
    /// Ms on the clock lots are stamped with (`Lot::made_ms`): since the
    /// Unix epoch in a run, since the start in a simulation.
    pub at_ms: u64,
}

/// A crash of a stage host, followed until the leader marks it dead.
#[derive(Debug)]
pub struct CrashWatch {
    pub at_s: f64,
    /// When, on the lots' clock ([`Moment::at_ms`]).
    pub at_ms: u64,
    /// What crashed: a host process (known by its first stage), or one
    /// stage killed alone inside its live host.
    pub node: NodeId,
    pub victims: BTreeSet<NodeId>,
    pub items: BTreeSet<ItemType>,
    pub detect_ms: Option<u64>,
}

/// A fault window of the plot: a node down from `start_s` to `end_s`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub node: NodeId,
    pub start_s: f64,
    pub end_s: Option<f64>,
}

#[derive(Debug)]
pub struct Record {
    /// The spec as the store holds it now (recipe updates applied by its rule).
    pub spec: Spec,
    /// Chain changes, for the ideal twin.
    pub events: Vec<ChainEvent>,
    pub changes: Vec<ChainOp>,
    pub faults: Vec<Fault>,
    pub crashes: Vec<CrashWatch>,
    /// Each with when it restarted, on the lots' clock.
    pub recoveries: Vec<(Recovery, u64)>,
    pub windows: Vec<Window>,
    /// `(at_s, what)` for `ops.log`.
    pub log: Vec<(f64, String)>,
    /// What the progress display shows.
    pub view: Progress,
}

impl Record {
    pub fn new(chain: &ChainSpec) -> Self {
        Record {
            spec: chain.spec.clone(),
            events: Vec::new(),
            changes: Vec::new(),
            faults: Vec::new(),
            crashes: Vec::new(),
            recoveries: Vec::new(),
            windows: Vec::new(),
            log: Vec::new(),
            view: Progress::default(),
        }
    }

    /// Notes `op`, applied at `moment`, and updates `live` to match.
    pub fn applied(&mut self, op: &Op, moment: &Moment, live: &mut Live) {
        let at_s = moment.at_s;
        let what = match op {
            Op::Crash { host, stages } => {
                live.dead_hosts.insert(*host);
                self.crash(*host, stages, live, moment);
                op.describe()
            }
            Op::KillLeader { id } => {
                live.dead_coords.insert(*id);
                self.fault(op.kind(), *id, at_s);
                op.describe()
            }
            Op::CrashStage { stage, .. } => {
                live.dead_alone.insert(*stage);
                self.crash(*stage, &[*stage], live, moment);
                op.describe()
            }
            Op::RecoverStages { host, .. } => {
                live.host_back(*host);
                self.recovered(*host, moment);
                op.describe()
            }
            Op::RecoverStage { stage, .. } => {
                live.dead_alone.remove(stage);
                self.recovered(*stage, moment);
                op.describe()
            }
            Op::RecoverCoordinator { id } => {
                live.dead_coords.remove(id);
                self.heal(*id, at_s);
                op.describe()
            }
            Op::UpdateRecipe {
                item,
                recipe,
                change,
            } => match self.update_recipe(item, recipe, moment) {
                Some(version) => {
                    let detail = format!("{item} v{version}: {change}");
                    self.change(OpKind::UpdateRecipe, at_s, detail.clone());
                    format!("recipe {detail}")
                }
                None => return,
            },
            Op::AddStage { decl } => {
                live.add(decl.id, decl.item.clone());
                let stage = StageState {
                    id: decl.id,
                    item: decl.item.clone(),
                    capacity: decl.capacity,
                    live: true,
                };
                self.events.push(ChainEvent {
                    cycle: moment.cycle,
                    change: ChainChange::AddStage(stage),
                });
                let detail = format!("{} makes {}", decl.id, decl.item);
                self.change(OpKind::AddStage, at_s, detail.clone());
                format!("add stage {detail}")
            }
            // Not in the original's schedule: logged only.
            other => other.describe(),
        };
        tracing::info!(op = %what, at_s, "operation applied");
        self.log_op(at_s, what);
    }

    /// `node` (a host process or one stage) restarted: its fault window
    /// closes, and its first lot is watched for.
    fn recovered(&mut self, node: NodeId, moment: &Moment) {
        self.heal(node, moment.at_s);
        let recovery = Recovery {
            at_s: moment.at_s,
            node: node.0,
            first_lot_ms: None,
        };
        self.recoveries.push((recovery, moment.at_ms));
    }

    fn crash(&mut self, node: NodeId, stages: &[NodeId], live: &Live, moment: &Moment) {
        self.fault(OpKind::Crash, node, moment.at_s);
        self.crashes.push(CrashWatch {
            at_s: moment.at_s,
            at_ms: moment.at_ms,
            node,
            items: stages.iter().map(|s| live.item_of(*s).clone()).collect(),
            victims: stages.iter().copied().collect(),
            detect_ms: None,
        });
    }

    fn fault(&mut self, op: OpKind, node: NodeId, at_s: f64) {
        self.windows.push(Window {
            node,
            start_s: at_s,
            end_s: None,
        });
        self.faults.push(Fault {
            at_s,
            op,
            node: node.0,
        });
    }

    /// Closes `node`'s open fault window.
    fn heal(&mut self, node: NodeId, at_s: f64) {
        if let Some(w) = self
            .windows
            .iter_mut()
            .rev()
            .find(|w| w.node == node && w.end_s.is_none())
        {
            w.end_s = Some(at_s);
        }
    }

    /// Applies a committed update to the run's copy of the spec by the
    /// store's own rule; the version the stages now run.
    fn update_recipe(
        &mut self,
        item: &ItemType,
        recipe: &factoryos_wire::model::Recipe,
        moment: &Moment,
    ) -> Option<u32> {
        let next = factoryos_coord::state::update_recipe(&self.spec, item, recipe).ok()?;
        let adopted = next.recipe(item)?.clone();
        self.spec = next;
        let version = adopted.version;
        self.events.push(ChainEvent {
            cycle: moment.cycle,
            change: ChainChange::Recipe {
                item: item.clone(),
                recipe: adopted,
            },
        });
        Some(version)
    }

    fn change(&mut self, op: OpKind, at_s: f64, detail: String) {
        self.changes.push(ChainOp { at_s, op, detail });
    }

    /// Shown as the last operation, reported once in `new_ops`, kept in the log.
    fn log_op(&mut self, at_s: f64, what: String) {
        self.view.last_op = Some(format!("{what} at {at_s:.1}s"));
        self.view.new_ops.push((at_s, what.clone()));
        self.log.push((at_s, what));
    }

    /// How many chain changes of `kind` were made.
    pub fn count(&self, kind: OpKind) -> usize {
        self.changes.iter().filter(|c| c.op == kind).count()
    }
}
