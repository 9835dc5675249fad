//! The verdicts of one run, from what it left (the cluster is gone by the
//! time they are computed: a long search holds no namespace or process).

use crate::checker::{election, fencing, linear, liveness, lots, Verdict};
use crate::history::{Entry, Register};
use factoryos_coord::events::NodeEvent;
use factoryos_stage::records::Records;
use factoryos_wire::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long the linearizability search may take, per register.
const LINEAR_BUDGET: Duration = Duration::from_secs(60);

/// Everything the checkers read.
#[derive(Debug)]
pub struct Evidence {
    pub entries: Vec<Entry>,
    pub node_events: Vec<NodeEvent>,
    /// Every node that was a coordinator at some point.
    pub coordinators: BTreeSet<NodeId>,
    pub records: Vec<(NodeId, Records)>,
    /// The registers' states before any operation.
    pub initial: BTreeMap<String, Register>,
    pub after: liveness::AfterHeal,
    /// Processes that ended on their own.
    pub exits: Vec<String>,
}

/// Every checker's verdict.
pub fn verdicts(e: &Evidence) -> Vec<Verdict> {
    let coordinator_events: Vec<NodeEvent> = e
        .node_events
        .iter()
        .filter(|n| e.coordinators.contains(&n.node))
        .cloned()
        .collect();
    let refs: Vec<(NodeId, &Records)> = e.records.iter().map(|(id, r)| (*id, r)).collect();
    vec![
        linearizable(&e.entries, &e.initial),
        lots::check(&refs),
        election::check(&coordinator_events),
        fencing::check(&e.node_events),
        liveness::check(&e.after),
        processes(&e.exits),
    ]
}

/// No process ended unless a nemesis ended it.
fn processes(exits: &[String]) -> Verdict {
    let summary = if exits.is_empty() {
        "every process ran until a nemesis or the harness stopped it".to_string()
    } else {
        format!("{} processes ended on their own", exits.len())
    };
    Verdict::new("processes", exits.to_vec(), summary)
}

/// Every register of the history, checked.
fn linearizable(history: &[Entry], initial: &BTreeMap<String, Register>) -> Verdict {
    let by_key = linear::operations(history);
    let total: usize = by_key.values().map(Vec::len).sum();
    if total == 0 {
        return Verdict::unknown("linearizability", "no register operation completed".into());
    }
    let mut evidence = Vec::new();
    let mut unknown = Vec::new();
    for (key, ops) in &by_key {
        let Some(start) = initial.get(key) else {
            continue;
        };
        match linear::check(*start, ops, LINEAR_BUDGET) {
            linear::Outcome::Linearizable => {}
            linear::Outcome::Unknown => unknown.push(key.clone()),
            linear::Outcome::NotLinearizable { stuck } => {
                for op in stuck.iter().take(8) {
                    evidence.push(format!(
                        "{key}: op {} by client {} {:?} invoked {} ns, completed {:?}, read {:?}",
                        op.id, op.process, op.op, op.invoke_ns, op.complete_ns, op.read
                    ));
                }
            }
        }
    }
    let summary = format!("{total} operations on {} registers", by_key.len());
    if evidence.is_empty() && !unknown.is_empty() {
        return Verdict::unknown(
            "linearizability",
            format!(
                "{summary}; the search ran out of time or memory on {}",
                unknown.join(", ")
            ),
        );
    }
    Verdict::new("linearizability", evidence, summary)
}

/// Register operations completed ok, failed, indeterminate.
pub fn tally_ops(history: &[Entry]) -> (usize, usize, usize) {
    history.iter().fold((0, 0, 0), |(o, f, i), e| match e {
        Entry::Ok { .. } => (o + 1, f, i),
        Entry::Fail { .. } => (o, f + 1, i),
        Entry::Info { .. } => (o, f, i + 1),
        _ => (o, f, i),
    })
}
