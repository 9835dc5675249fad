//! Per-supplier delivered shares against the flow's: of every lot of a type
//! its consumers received, the fraction each supplier delivered, beside the
//! fraction the flows in force asked of it.

use factoryos_stage::records::InRecord;
use factoryos_wire::model::Flow;
use factoryos_wire::{ItemType, NodeId};
use serde::Serialize;
use std::collections::BTreeMap;

/// The flows a run saw, each from when it was first seen (Unix ms), in order.
#[derive(Debug, Default, Clone)]
pub struct FlowLog {
    flows: Vec<(u64, Flow)>,
}

impl FlowLog {
    /// Notes `flow`, seen at `at_ms`, if it is newer than the last one.
    pub fn push(&mut self, at_ms: u64, flow: Flow) {
        if self
            .flows
            .last()
            .is_none_or(|(_, f)| f.version < flow.version)
        {
            self.flows.push((at_ms, flow));
        }
    }

    /// The newest version noted (0 before any).
    pub fn version(&self) -> u64 {
        self.flows.last().map_or(0, |(_, f)| f.version.0)
    }

    /// The flow in force at `at_ms`: the last seen by then (the first for
    /// what came before it).
    fn at(&self, at_ms: u64) -> Option<&Flow> {
        let i = self.flows.partition_point(|(t, _)| *t <= at_ms);
        self.flows.get(i.saturating_sub(1)).map(|(_, f)| f)
    }
}

/// One supplier's part of its type's deliveries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupplierShare {
    pub item: ItemType,
    pub supplier: NodeId,
    /// Lots of `item` it delivered (received by a consumer, durably).
    pub lots: u64,
    /// Its fraction of all lots of `item` delivered.
    pub delivered: f64,
    /// The fraction the flows asked of it: each lot counts the share the
    /// flow in force when it was made gave this supplier at that lot's
    /// consumer.
    pub flow: f64,
}

impl SupplierShare {
    /// `delivered` over `flow`, minus one (+0.10: 10% more than its share).
    pub fn deviation(&self) -> f64 {
        if self.flow == 0.0 {
            if self.delivered == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            self.delivered / self.flow - 1.0
        }
    }
}

/// Every supplier's share of its type, from each consumer's received lots
/// (`(consumer, record)`), ordered by type and supplier. Types with a
/// single supplier are left out: their share is 1 by construction.
pub fn supplier_shares<'a>(
    flows: &FlowLog,
    received: impl IntoIterator<Item = (NodeId, &'a InRecord)>,
) -> Vec<SupplierShare> {
    // item -> supplier -> (lots, the flow's share summed over lots)
    let mut by_item: BTreeMap<ItemType, BTreeMap<NodeId, (u64, f64)>> = BTreeMap::new();
    for (consumer, rec) in received {
        let Some(flow) = flows.at(rec.lot.made_ms) else {
            continue;
        };
        let suppliers = by_item.entry(rec.lot.item.clone()).or_default();
        suppliers.entry(rec.from).or_default().0 += 1;
        for e in flow.suppliers_of(consumer, &rec.lot.item) {
            suppliers.entry(e.supplier).or_default().1 += f64::from(e.share) / 1000.0;
        }
    }
    let mut out = Vec::new();
    for (item, suppliers) in by_item {
        if suppliers.len() < 2 {
            continue;
        }
        let lots: u64 = suppliers.values().map(|(n, _)| n).sum();
        let asked: f64 = suppliers.values().map(|(_, s)| s).sum();
        for (supplier, (n, s)) in suppliers {
            out.push(SupplierShare {
                item: item.clone(),
                supplier,
                lots: n,
                delivered: n as f64 / lots.max(1) as f64,
                flow: if asked > 0.0 { s / asked } else { 0.0 },
            });
        }
    }
    out
}

/// The supplier furthest from its flow share, if any type has two.
pub fn worst(shares: &[SupplierShare]) -> Option<&SupplierShare> {
    shares
        .iter()
        .max_by(|a, b| a.deviation().abs().total_cmp(&b.deviation().abs()))
}

/// The shares as a text table, one row per supplier.
pub fn render(shares: &[SupplierShare]) -> String {
    let mut s = format!(
        "{:<14} {:>8} {:>8} {:>10} {:>8} {:>10}\n",
        "type", "supplier", "lots", "delivered", "flow", "deviation"
    );
    for r in shares {
        s.push_str(&format!(
            "{:<14} {:>8} {:>8} {:>10.3} {:>8.3} {:>+9.1}%\n",
            r.item.to_string(),
            format!("n{}", r.supplier.0),
            r.lots,
            r.delivered,
            r.flow,
            r.deviation() * 100.0
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use factoryos_wire::model::{FlowEdge, Lot};
    use factoryos_wire::{FlowVersion, LotId};

    fn flow(version: u64, edges: &[(u64, u64, u32)]) -> Flow {
        Flow {
            version: FlowVersion(version),
            edges: edges
                .iter()
                .map(|&(supplier, consumer, share)| FlowEdge {
                    item: "steel".into(),
                    supplier: NodeId(supplier),
                    consumer: NodeId(consumer),
                    share,
                })
                .collect(),
            recipes: Default::default(),
        }
    }

    fn lot(from: u64, seq: u64, made_ms: u64) -> InRecord {
        InRecord {
            lot: Lot {
                id: LotId {
                    producer: NodeId(from),
                    seq,
                },
                item: "steel".into(),
                units: 1,
                genealogy: vec![],
                made_ms,
            },
            from: NodeId(from),
            remaining: 0,
        }
    }

    #[test]
    fn each_lot_counts_the_share_of_the_flow_in_force_when_it_was_made() {
        let mut flows = FlowLog::default();
        flows.push(100, flow(2, &[(1, 9, 500), (2, 9, 500)]));
        // Supplier 2 died: the next flow gives supplier 1 everything.
        flows.push(1000, flow(5, &[(1, 9, 1000)]));
        flows.push(1500, flow(4, &[(2, 9, 1000)])); // older: ignored
        let mut recs = Vec::new();
        for i in 0..10 {
            recs.push(lot(1 + i % 2, i, 50 + i * 50)); // 10 under flow 2, 5 each
        }
        for i in 10..20 {
            recs.push(lot(1, i, 1000 + i)); // 10 under flow 5, all from 1
        }
        let shares = supplier_shares(&flows, recs.iter().map(|r| (NodeId(9), r)));
        assert_eq!(shares.len(), 2);
        assert_eq!((shares[0].supplier, shares[0].lots), (NodeId(1), 15));
        assert!((shares[0].delivered - 0.75).abs() < 1e-9);
        assert!((shares[0].flow - 0.75).abs() < 1e-9, "{:?}", shares[0]);
        assert!((shares[1].flow - 0.25).abs() < 1e-9);
        assert!(shares[1].deviation().abs() < 1e-9);
    }

    #[test]
    fn an_imbalance_shows_as_the_worst_deviation() {
        let mut flows = FlowLog::default();
        flows.push(
            0,
            flow(2, &[(1, 9, 500), (2, 9, 500), (1, 8, 500), (2, 8, 500)]),
        );
        let mut recs = Vec::new();
        for i in 0..40 {
            // 3 of 4 lots come from supplier 1.
            recs.push(lot(if i % 4 == 0 { 2 } else { 1 }, i, 10));
        }
        let shares = supplier_shares(
            &flows,
            recs.iter()
                .enumerate()
                .map(|(i, r)| (NodeId(8 + (i % 2) as u64), r)),
        );
        let w = worst(&shares).unwrap();
        assert_eq!(w.supplier, NodeId(2));
        assert!((w.deviation() + 0.5).abs() < 1e-9, "{w:?}");
        assert!(render(&shares).contains("-50.0%"), "{}", render(&shares));
    }

    #[test]
    fn a_type_with_one_supplier_is_left_out() {
        let mut flows = FlowLog::default();
        flows.push(0, flow(2, &[(1, 9, 1000)]));
        let recs = [lot(1, 0, 5)];
        assert!(supplier_shares(&flows, recs.iter().map(|r| (NodeId(9), r))).is_empty());
    }
}
