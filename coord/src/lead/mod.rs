//! What a leader decides, without I/O: which stages to probe, what a
//! probe's verdict commits, which avoided links get another try
//! ([`retries`]), and the flow to commit (whole, or as a change). The async
//! leader (`node/leader.rs`) and the simulator (`factoryos sim`) act on the
//! same decisions, so a rule lives here once.

pub mod retries;

use crate::flow_change::FlowChange;
use crate::solver::{solve, Churn, SolveError, SolverConfig};
use crate::state::{ClusterConfig, Command};
use factoryos_wire::model::{Flow, Liveness};
use factoryos_wire::NodeId;
use std::collections::BTreeSet;
use std::time::Duration;

/// How often the leader probes a stage it holds dead.
pub const REVIVE_EVERY: Duration = Duration::from_secs(2);

/// A whole flow is committed at least once every this many flows (and
/// whenever a change would name half the edges or more), so a log read
/// from any point reaches a whole flow soon.
pub const FULL_EVERY: u32 = 64;

/// A stage the leader must probe: one held dead (revived if it answers),
/// or a suspect (dead if it does not answer, else a broken link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwell {
    Dead,
    Suspect { reporters: BTreeSet<NodeId> },
}

/// The stages that are not alive, by id.
pub fn unwell(cfg: &ClusterConfig) -> impl Iterator<Item = (NodeId, Unwell)> + '_ {
    cfg.stages.iter().filter_map(|(id, r)| match r.liveness {
        Liveness::Alive => None,
        Liveness::Dead => Some((*id, Unwell::Dead)),
        Liveness::Suspect => Some((
            *id,
            Unwell::Suspect {
                reporters: r.suspected_by.clone(),
            },
        )),
    })
}

/// What the leader commits once its probe of `stage` answered (`alive`) or
/// not, in order: a dead stage that answers is alive again; a suspect that
/// does not is dead; a suspect that answers is alive, and every link of
/// `flow` between it and a reporter is avoided (alive first, so the flow
/// that routes around the link never shows the stage still suspect).
pub fn verdict(flow: &Flow, stage: NodeId, unwell: &Unwell, alive: bool) -> Vec<Command> {
    match (unwell, alive) {
        (Unwell::Dead, true) => vec![Command::MarkAlive { stage }],
        (Unwell::Dead, false) => vec![],
        (Unwell::Suspect { .. }, false) => vec![Command::MarkDead { stage }],
        (Unwell::Suspect { reporters }, true) => {
            let mut cmds = vec![Command::MarkAlive { stage }];
            for reporter in reporters {
                for (supplier, consumer) in [(stage, *reporter), (*reporter, stage)] {
                    if flow.serves(supplier, consumer) {
                        cmds.push(Command::AvoidLink { supplier, consumer });
                    }
                }
            }
            cmds
        }
    }
}

/// A flow the leader proposes.
#[derive(Debug, Clone)]
pub struct FlowProposal {
    /// `CommitFlow` or `CommitFlowChange`, based on the configuration solved.
    pub cmd: Command,
    /// Whether it carries the whole flow.
    pub whole: bool,
    pub churn: Churn,
    /// Edges in the new flow.
    pub edges: usize,
    /// The size of the log entry's command, encoded.
    pub entry_bytes: usize,
}

/// Solves the flow for `cfg` (a spec must be installed) and frames it: the
/// whole flow when `changes_since_full` reached [`FULL_EVERY`] or the change
/// would name half the edges, else the change against the current flow.
pub fn flow_proposal(
    cfg: &ClusterConfig,
    solver: &SolverConfig,
    changes_since_full: u32,
) -> Result<FlowProposal, SolveError> {
    let Some(spec) = &cfg.spec else {
        return Err(SolveError::NoSpec);
    };
    let stages = cfg.solver_stages();
    let plan = solve(spec, &stages, &cfg.flow.edges, &cfg.avoid, solver)?;
    let change = FlowChange::between(cfg.flow.version, &cfg.flow.edges, &plan.edges);
    let whole = changes_since_full >= FULL_EVERY || change.len() * 2 >= plan.edges.len();
    let edges = plan.edges.len();
    let cmd = if whole {
        Command::CommitFlow {
            based_on: cfg.config_version,
            edges: plan.edges,
        }
    } else {
        Command::CommitFlowChange {
            based_on: cfg.config_version,
            change,
        }
    };
    let entry_bytes = postcard::to_stdvec(&cmd).map_or(0, |b| b.len());
    Ok(FlowProposal {
        cmd,
        whole,
        churn: plan.churn,
        edges,
        entry_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use factoryos_wire::model::FlowEdge;
    use factoryos_wire::FlowVersion;

    fn flow() -> Flow {
        Flow {
            version: FlowVersion(5),
            edges: vec![FlowEdge {
                item: "wood".into(),
                supplier: NodeId(11),
                consumer: NodeId(13),
                share: 1000,
            }],
            recipes: Default::default(),
        }
    }

    #[test]
    fn a_verdict_commits_death_revival_or_a_broken_link() {
        let f = flow();
        let suspect = Unwell::Suspect {
            reporters: [NodeId(13), NodeId(14)].into(),
        };
        assert_eq!(
            verdict(&f, NodeId(11), &suspect, false),
            vec![Command::MarkDead { stage: NodeId(11) }]
        );
        // Alive: only the link the flow uses (11 -> 13) is avoided, after MarkAlive.
        assert_eq!(
            verdict(&f, NodeId(11), &suspect, true),
            vec![
                Command::MarkAlive { stage: NodeId(11) },
                Command::AvoidLink {
                    supplier: NodeId(11),
                    consumer: NodeId(13)
                }
            ]
        );
        assert_eq!(
            verdict(&f, NodeId(11), &Unwell::Dead, true),
            vec![Command::MarkAlive { stage: NodeId(11) }]
        );
        assert!(verdict(&f, NodeId(11), &Unwell::Dead, false).is_empty());
    }
}
