//! Flow fencing, from the nodes' event logs: a stage acts only on flows
//! the store committed, and never on a flow older than one it had already
//! adopted (it may adopt the same version again after a restart, when its
//! WAL knew the version but not the edges).

use super::Verdict;
use factoryos_coord::events::{NodeEvent, What};
use factoryos_wire::NodeId;
use std::collections::{BTreeMap, BTreeSet};

pub fn check(events: &[NodeEvent]) -> Verdict {
    let committed: BTreeSet<u64> = events
        .iter()
        .filter_map(|e| match e.what {
            What::FlowApplied { version } | What::FlowCommitted { version } => Some(version),
            _ => None,
        })
        .collect();
    let mut evidence = Vec::new();
    let mut adopted: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut count = 0;
    for e in events {
        let What::FlowAdopted { version } = e.what else {
            continue;
        };
        count += 1;
        if !committed.contains(&version) {
            evidence.push(format!(
                "{} adopted flow v{version}, which no coordinator applied (t={} ns)",
                e.node, e.t_ns
            ));
        }
        let newest = adopted.entry(e.node).or_default();
        if version < *newest {
            evidence.push(format!(
                "{} adopted flow v{version} after v{newest} (t={} ns)",
                e.node, e.t_ns
            ));
        }
        *newest = (*newest).max(version);
    }
    Verdict::new(
        "fencing",
        evidence,
        format!(
            "{count} flow adoptions by {} stages, {} flows committed",
            adopted.len(),
            committed.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;

    fn ev(t: u64, node: u64, what: What) -> NodeEvent {
        NodeEvent {
            t_ns: t,
            node: NodeId(node),
            what,
        }
    }

    #[test]
    fn stages_following_committed_flows_forward_are_valid() {
        let events = [
            ev(1, 1, What::FlowApplied { version: 5 }),
            ev(2, 11, What::FlowAdopted { version: 5 }),
            ev(3, 1, What::FlowApplied { version: 9 }),
            ev(4, 11, What::FlowAdopted { version: 9 }),
            ev(5, 11, What::FlowAdopted { version: 9 }),
        ];
        assert_eq!(check(&events).valid, Validity::Valid);
    }

    #[test]
    fn an_older_or_uncommitted_flow_is_found() {
        let events = [
            ev(1, 1, What::FlowApplied { version: 5 }),
            ev(2, 1, What::FlowApplied { version: 9 }),
            ev(3, 11, What::FlowAdopted { version: 9 }),
            ev(4, 11, What::FlowAdopted { version: 5 }),
            ev(5, 12, What::FlowAdopted { version: 7 }),
        ];
        let v = check(&events);
        assert_eq!(v.valid, Validity::Invalid);
        assert!(
            v.evidence
                .iter()
                .any(|e| e.contains("n11 adopted flow v5 after v9")),
            "{v:?}"
        );
        assert!(
            v.evidence
                .iter()
                .any(|e| e.contains("v7, which no coordinator")),
            "{v:?}"
        );
    }
}
