//! Election safety and monotonic progress, from the coordinators' own event
//! logs: at most one node leads in any term (openraft runs with
//! `single-term-leader`, standard Raft's rule; a leader is `state == Leader`
//! and `current_leader == self`; in file-lock mode the lock's epoch is the
//! term), and on every node the term never goes backwards, across its
//! restarts too (the vote is durable), and within each life (between two
//! `Started` events) the last applied log index (as its role changes report
//! it) and the applied flow versions never go backwards. A restart may
//! begin below where the last life ended: the applied state is written
//! without an fsync and rebuilt from the durable log, as etcd does.

use super::Verdict;
use factoryos_coord::events::{NodeEvent, What};
use factoryos_wire::NodeId;
use std::collections::{BTreeMap, BTreeSet};

pub fn check(events: &[NodeEvent]) -> Verdict {
    let mut evidence = Vec::new();
    let mut leaders: BTreeMap<u64, BTreeSet<NodeId>> = BTreeMap::new();
    let mut by_node: BTreeMap<NodeId, Vec<&NodeEvent>> = BTreeMap::new();
    for e in events {
        by_node.entry(e.node).or_default().push(e);
        if let What::Role {
            term,
            leading: true,
            ..
        } = e.what
        {
            leaders.entry(term).or_default().insert(e.node);
        }
    }
    for (term, nodes) in &leaders {
        if nodes.len() > 1 {
            let list: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
            evidence.push(format!(
                "term {term} has {} leaders: {}",
                nodes.len(),
                list.join(", ")
            ));
        }
    }
    for (node, events) in &by_node {
        monotonic(*node, events, &mut evidence);
    }
    let roles = events
        .iter()
        .filter(|e| matches!(e.what, What::Role { .. }))
        .count();
    Verdict::new(
        "election-safety",
        evidence,
        format!(
            "{} role changes on {} nodes, {} terms with a leader",
            roles,
            by_node.len(),
            leaders.len()
        ),
    )
}

/// Term (always) and last applied index and flow version (within a life)
/// only grow on `node`.
fn monotonic(node: NodeId, events: &[&NodeEvent], evidence: &mut Vec<String>) {
    let (mut term, mut applied, mut flow) = (0u64, 0u64, 0u64);
    for e in events {
        match e.what {
            What::Role {
                term: t,
                last_applied,
                ..
            } => {
                if t < term {
                    evidence.push(format!(
                        "{node}: term went back from {term} to {t} (t={} ns)",
                        e.t_ns
                    ));
                }
                if last_applied < applied {
                    evidence.push(format!(
                        "{node}: last applied index went back from {applied} to {last_applied} (t={} ns)",
                        e.t_ns
                    ));
                }
                term = term.max(t);
                applied = applied.max(last_applied);
            }
            What::FlowApplied { version } => {
                if version < flow {
                    evidence.push(format!(
                        "{node}: applied flow v{version} after v{flow} (t={} ns)",
                        e.t_ns
                    ));
                }
                // Not compared with `last_applied`: the metrics a role change
                // reports lag the state machine a little.
                flow = flow.max(version);
            }
            What::Started => (applied, flow) = (0, 0),
            What::FlowAdopted { .. }
            | What::FlowCommitted { .. }
            | What::FlowProposed { .. }
            | What::MarkedDead { .. }
            | What::Registered { .. }
            | What::Suspected { .. }
            | What::Made { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;

    fn role(t: u64, node: u64, term: u64, leading: bool, applied: u64) -> NodeEvent {
        NodeEvent {
            t_ns: t,
            node: NodeId(node),
            what: What::Role {
                term,
                leader: leading.then_some(NodeId(node)),
                leading,
                last_applied: applied,
            },
        }
    }

    #[test]
    fn one_leader_per_term_and_growing_terms_are_valid() {
        let events = [
            role(1, 1, 1, true, 3),
            role(2, 2, 1, false, 3),
            role(3, 2, 2, true, 5),
            role(4, 1, 2, false, 5),
        ];
        assert_eq!(check(&events).valid, Validity::Valid);
    }

    #[test]
    fn two_leaders_in_one_term_are_found() {
        let events = [role(1, 1, 4, true, 3), role(2, 2, 4, true, 3)];
        let v = check(&events);
        assert_eq!(v.valid, Validity::Invalid);
        assert!(
            v.evidence[0].contains("term 4 has 2 leaders: n1, n2"),
            "{v:?}"
        );
    }

    #[test]
    fn a_term_or_index_going_back_is_found() {
        let events = [
            role(1, 3, 5, false, 10),
            role(2, 3, 4, false, 12),
            role(3, 3, 5, false, 9),
        ];
        let v = check(&events);
        assert!(
            v.evidence
                .iter()
                .any(|e| e.contains("term went back from 5 to 4")),
            "{v:?}"
        );
        assert!(
            v.evidence
                .iter()
                .any(|e| e.contains("index went back from 12 to 9")),
            "{v:?}"
        );
        let flows = [
            NodeEvent {
                t_ns: 1,
                node: NodeId(1),
                what: What::FlowApplied { version: 8 },
            },
            NodeEvent {
                t_ns: 2,
                node: NodeId(1),
                what: What::FlowApplied { version: 6 },
            },
        ];
        assert!(check(&flows).evidence[0].contains("applied flow v6 after v8"));
    }

    #[test]
    fn a_restart_may_begin_below_the_last_life_but_never_in_an_older_term() {
        let started = |t| NodeEvent {
            t_ns: t,
            node: NodeId(3),
            what: What::Started,
        };
        let events = [
            role(1, 3, 5, false, 12),
            started(2),
            role(3, 3, 5, false, 9),
        ];
        assert_eq!(check(&events).valid, Validity::Valid);
        let events = [
            role(1, 3, 5, false, 12),
            started(2),
            role(3, 3, 4, false, 12),
        ];
        assert!(check(&events).evidence[0].contains("term went back from 5 to 4"));
        let events = [
            role(1, 3, 5, false, 12),
            started(2),
            role(3, 3, 5, false, 9),
            role(4, 3, 5, false, 8),
        ];
        assert!(check(&events).evidence[0].contains("index went back from 9 to 8"));
    }
}
