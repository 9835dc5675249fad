//! After a crash, how long until a final product is made *through the new
//! route*: the first final product whose genealogy holds a lot of the dead
//! stages' type made after the crash by a surviving stage. This is the
//! original's "first product through the new route" (47 s there), read
//! from every lot's genealogy and `made_ms` in the WALs after the run.
//!
//! The same search from a moment with no crash, counting any producer,
//! gives the chain's own latency from a lot to a final product: the part
//! of the figure that is pipeline depth, not recovery.

use factoryos_stage::records::{OutState, Records};
use factoryos_wire::model::Lot;
use factoryos_wire::{ItemType, LotId, NodeId};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Every lot of a run by id, and its final products oldest first.
#[derive(Debug, Default)]
pub struct Genealogy<'a> {
    lots: HashMap<LotId, &'a Lot>,
    finals: Vec<&'a Lot>,
}

impl<'a> Genealogy<'a> {
    /// Indexes the lots in every stage's WAL records.
    pub fn new(records: impl IntoIterator<Item = &'a Records>) -> Self {
        let mut g = Genealogy::default();
        for r in records {
            for out in &r.out {
                g.lots.insert(out.lot.id, &out.lot);
                if out.state == OutState::Shipped {
                    g.finals.push(&out.lot);
                }
            }
        }
        g.finals.sort_by_key(|l| (l.made_ms, l.id));
        g
    }

    /// Final products made at or before `until_ms`.
    pub fn finals_made_by(&self, until_ms: u64) -> u64 {
        self.finals.partition_point(|l| l.made_ms <= until_ms) as u64
    }

    /// Ms from `since_ms` to the first final product made after it whose
    /// genealogy (itself included) holds a lot of one of `items` made after
    /// `since_ms` by a stage not in `excluded`.
    pub fn first_product_through(
        &self,
        since_ms: u64,
        items: &BTreeSet<ItemType>,
        excluded: &BTreeSet<NodeId>,
    ) -> Option<u64> {
        let start = self.finals.partition_point(|l| l.made_ms <= since_ms);
        self.finals[start..]
            .iter()
            .find(|p| self.holds(p, since_ms, items, excluded))
            .map(|p| p.made_ms - since_ms)
    }

    /// Whether `product`'s genealogy holds a qualifying lot. Lots made
    /// before `since_ms` are not followed: their inputs are older still.
    fn holds(
        &self,
        product: &Lot,
        since_ms: u64,
        items: &BTreeSet<ItemType>,
        excluded: &BTreeSet<NodeId>,
    ) -> bool {
        let mut stack = vec![product];
        let mut seen: HashSet<LotId> = HashSet::new();
        while let Some(lot) = stack.pop() {
            if lot.made_ms <= since_ms || !seen.insert(lot.id) {
                continue;
            }
            if items.contains(&lot.item) && !excluded.contains(&lot.id.producer) {
                return true;
            }
            stack.extend(lot.genealogy.iter().filter_map(|(id, _)| self.lots.get(id)));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use factoryos_stage::records::OutRecord;

    fn lot(producer: u64, seq: u64, item: &str, made_ms: u64, from: &[(u64, u64)]) -> OutRecord {
        OutRecord {
            lot: Lot {
                id: LotId::new(NodeId(producer), seq),
                item: item.into(),
                units: 1,
                genealogy: from
                    .iter()
                    .map(|(p, s)| (LotId::new(NodeId(*p), *s), 1))
                    .collect(),
                made_ms,
            },
            state: if item == "window" {
                OutState::Shipped
            } else {
                OutState::Delivered { to: NodeId(99) }
            },
        }
    }

    #[test]
    fn the_first_product_through_the_survivors_is_found_in_the_genealogy() {
        // Frames from 13 (dies at t=1000) and 14; windows made from them.
        let records = Records {
            out: vec![
                lot(13, 0, "frame", 900, &[]),
                lot(14, 0, "frame", 950, &[]),
                lot(14, 1, "frame", 1300, &[]),
                // Made after the crash, but from 13's old frame: not the new route.
                lot(15, 0, "window", 1100, &[(13, 0)]),
                // From 14's frame made before the crash: not yet either.
                lot(15, 1, "window", 1200, &[(14, 0)]),
                // Through 14's frame made after the crash.
                lot(15, 2, "window", 1400, &[(14, 1)]),
            ],
            ..Records::default()
        };
        let g = Genealogy::new([&records]);
        let frame: BTreeSet<ItemType> = ["frame".into()].into();
        let dead: BTreeSet<NodeId> = [NodeId(13)].into();
        assert_eq!(g.first_product_through(1000, &frame, &dead), Some(400));
        // Nothing after 1400.
        assert_eq!(g.first_product_through(1400, &frame, &dead), None);
        assert_eq!(g.finals_made_by(1200), 2);
        assert_eq!(g.finals_made_by(u64::MAX), 3);
        // Without a crash, from t=0 any producer counts: 15/0 holds 13/0.
        assert_eq!(
            g.first_product_through(0, &frame, &BTreeSet::new()),
            Some(1100)
        );
        // A crash of the final type's stage: the product itself counts.
        let window: BTreeSet<ItemType> = ["window".into()].into();
        assert_eq!(
            g.first_product_through(1000, &window, &[NodeId(16)].into()),
            Some(100)
        );
    }
}
