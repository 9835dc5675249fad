//! Lot conservation, from every stage's WAL after the final heal: the
//! stage crate's audit (every lot's units produced = consumed + held in one
//! inventory + in transit; none in two inventories; none consumed twice; a
//! delivered lot held by its consumer) plus two rules of a settled run: no
//! lot still in transit, and units balance per item type.

use super::Verdict;
use factoryos_stage::audit::{audit, AuditReport};
use factoryos_stage::records::{OutState, Records};
use factoryos_wire::{ItemType, LotId, NodeId};
use std::collections::{BTreeMap, BTreeSet};

pub fn check(stages: &[(NodeId, &Records)]) -> Verdict {
    let report = audit(stages);
    let mut evidence = Vec::new();
    for (what, lots) in [
        ("lost", &report.lost),
        ("duplicated", &report.duplicated),
        (
            "miscounted (consumed twice or unit counts off)",
            &report.miscounted,
        ),
        ("of unknown origin", &report.orphans),
    ] {
        for lot in lots {
            evidence.push(format!("lot {lot} {what}"));
        }
    }
    let bound_for: BTreeMap<LotId, NodeId> = stages
        .iter()
        .flat_map(|(_, r)| &r.out)
        .filter_map(|o| match o.state {
            OutState::InTransit { to } => Some((o.lot.id, to)),
            _ => None,
        })
        .collect();
    for lot in &report.in_transit {
        let to = bound_for
            .get(lot)
            .map_or("?".to_string(), |n| n.to_string());
        evidence.push(format!("lot {lot} still in transit to {to} after the heal"));
    }
    for (item, (made, accounted)) in balance(stages) {
        if made != accounted {
            evidence.push(format!(
                "`{item}`: {made} units made, {accounted} consumed, held, in transit or shipped"
            ));
        }
    }
    Verdict::new("lot-conservation", evidence, summary(&report))
}

fn summary(r: &AuditReport) -> String {
    format!(
        "{} lots ({} units) produced: {} consumed, {} held, {} in transit, {} shipped",
        r.lots_produced,
        r.units_produced,
        r.units_consumed,
        r.units_held,
        r.units_in_transit,
        r.units_shipped
    )
}

/// Per item type: units made, and units consumed + held + in transit + shipped.
fn balance(stages: &[(NodeId, &Records)]) -> BTreeMap<ItemType, (u64, u64)> {
    let mut by_type: BTreeMap<ItemType, (u64, u64)> = BTreeMap::new();
    let mut item_of = BTreeMap::new();
    let held: BTreeSet<LotId> = stages
        .iter()
        .flat_map(|(_, r)| r.inbound.iter().map(|h| h.lot.id))
        .collect();
    for (_, r) in stages {
        for out in &r.out {
            item_of.insert(out.lot.id, out.lot.item.clone());
            let e = by_type.entry(out.lot.item.clone()).or_default();
            e.0 += out.lot.units as u64;
            // Still its maker's (queued, or sent and not yet taken) or shipped;
            // a lot its consumer took is counted with the consumer below.
            let unheld = match out.state {
                OutState::InQueue | OutState::Shipped => true,
                OutState::InTransit { .. } => !held.contains(&out.lot.id),
                OutState::Delivered { .. } => false,
            };
            if unheld {
                e.1 += out.lot.units as u64;
            }
        }
    }
    for (_, r) in stages {
        // Units of a delivered lot: what its holder still has plus what the
        // holder's products consumed of it.
        for held in &r.inbound {
            if let Some(item) = item_of.get(&held.lot.id) {
                by_type.entry(item.clone()).or_default().1 += held.remaining as u64;
            }
        }
        for out in &r.out {
            for (input, units) in &out.lot.genealogy {
                if let Some(item) = item_of.get(input) {
                    by_type.entry(item.clone()).or_default().1 += *units as u64;
                }
            }
        }
    }
    by_type
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use factoryos_stage::records::{InRecord, OutRecord};
    use factoryos_wire::model::Lot;

    fn lot(producer: u64, seq: u64, item: &str, units: u32, from: &[(Lot, u32)]) -> Lot {
        Lot {
            id: LotId::new(NodeId(producer), seq),
            item: item.into(),
            units,
            genealogy: from.iter().map(|(l, u)| (l.id, *u)).collect(),
            made_ms: 0,
        }
    }

    /// Wood stage 11 makes a 3-unit lot, frame stage 13 takes it and uses all of it.
    fn chain() -> (Records, Records) {
        let wood = lot(11, 0, "wood", 3, &[]);
        let frame = lot(13, 0, "frame", 5, &[(wood.clone(), 3)]);
        let mut supplier = Records::default();
        supplier.out.push(OutRecord {
            lot: wood.clone(),
            state: OutState::Delivered { to: NodeId(13) },
        });
        let mut consumer = Records::default();
        consumer.inbound.push(InRecord {
            lot: wood,
            from: NodeId(11),
            remaining: 0,
        });
        consumer.out.push(OutRecord {
            lot: frame,
            state: OutState::InQueue,
        });
        (supplier, consumer)
    }

    #[test]
    fn a_settled_run_is_valid() {
        let (s, c) = chain();
        let v = check(&[(NodeId(11), &s), (NodeId(13), &c)]);
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
    }

    #[test]
    fn a_lost_lot_is_found() {
        let (s, mut c) = chain();
        c.inbound.clear();
        let v = check(&[(NodeId(11), &s), (NodeId(13), &c)]);
        assert_eq!(v.valid, Validity::Invalid);
        assert!(v.evidence.iter().any(|e| e.contains("n11#0 lost")), "{v:?}");
    }

    #[test]
    fn a_duplicated_lot_is_found() {
        let (s, c) = chain();
        let mut twice = c.clone();
        twice.out.clear();
        twice.inbound[0].remaining = 3;
        let v = check(&[(NodeId(11), &s), (NodeId(13), &c), (NodeId(14), &twice)]);
        assert_eq!(v.valid, Validity::Invalid);
        assert!(
            v.evidence.iter().any(|e| e.contains("n11#0 duplicated")),
            "{v:?}"
        );
        assert!(v.evidence.iter().any(|e| e.contains("`wood`")), "{v:?}");
    }

    #[test]
    fn a_lot_left_in_transit_is_found() {
        let (mut s, mut c) = chain();
        s.out[0].state = OutState::InTransit { to: NodeId(13) };
        c.inbound.clear();
        c.out.clear();
        let v = check(&[(NodeId(11), &s), (NodeId(13), &c)]);
        assert!(v.evidence.iter().any(|e| e.contains("in transit")), "{v:?}");
    }
}
