//! The lot invariant, checked across the WAL records of every stage:
//!
//! * every lot produced is, unit for unit, consumed, held in exactly one
//!   inventory, or in transit (or shipped, for final products);
//! * no lot is in two inventories; no unit is consumed twice (the
//!   genealogies of the lots made from it add up to what its holder used);
//! * a lot recorded as delivered is held by its consumer (none lost);
//! * after faults heal, no lot stays in transit.

use crate::records::{OutState, Records};
use factoryos_coord::cluster::ClusterFile;
use factoryos_wire::{LotId, NodeId};
use std::collections::{BTreeMap, HashMap};

/// What the audit found; [`AuditReport::is_clean`] is the verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub lots_produced: usize,
    pub units_produced: u64,
    pub units_consumed: u64,
    pub units_held: u64,
    pub units_in_transit: u64,
    pub units_shipped: u64,
    /// Final products made (lots shipped).
    pub lots_shipped: u64,
    /// Lots recorded delivered whose consumer does not hold them.
    pub lost: Vec<LotId>,
    /// Lots held by more than one stage, or held while still in the producer's queue.
    pub duplicated: Vec<LotId>,
    /// Lots whose units were used more (or less) than their holder recorded.
    pub miscounted: Vec<LotId>,
    /// Lots held somewhere that no producer recorded.
    pub orphans: Vec<LotId>,
    /// Lots still in transit (sent, not held by the consumer).
    pub in_transit: Vec<LotId>,
}

impl AuditReport {
    /// No lot lost, duplicated, miscounted or of unknown origin.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.miscounted.is_empty()
            && self.orphans.is_empty()
    }

    /// Clean, and nothing left in transit (the state after faults heal).
    pub fn is_settled(&self) -> bool {
        self.is_clean() && self.in_transit.is_empty()
    }
}

/// Audits the records of all stages of one run.
pub fn audit(stages: &[(NodeId, &Records)]) -> AuditReport {
    let mut report = AuditReport::default();
    // Who holds each lot, and how many of its units they used.
    let mut holders: HashMap<LotId, Vec<(NodeId, u32)>> = HashMap::new();
    let mut produced: HashMap<LotId, u32> = HashMap::new();
    // Units of each lot used by the genealogies of lots made from it.
    let mut used_by_products: HashMap<LotId, u64> = HashMap::new();
    for (id, records) in stages {
        for r in &records.inbound {
            holders
                .entry(r.lot.id)
                .or_default()
                .push((*id, r.lot.units - r.remaining.min(r.lot.units)));
            report.units_held += r.remaining as u64;
        }
        for r in &records.out {
            produced.insert(r.lot.id, r.lot.units);
            for (input, units) in &r.lot.genealogy {
                *used_by_products.entry(*input).or_default() += *units as u64;
            }
        }
    }
    for (_, records) in stages {
        for r in &records.out {
            report.lots_produced += 1;
            report.units_produced += r.lot.units as u64;
            let held = holders.get(&r.lot.id).map(Vec::as_slice).unwrap_or(&[]);
            if held.len() > 1 {
                report.duplicated.push(r.lot.id);
            }
            match r.state {
                OutState::InQueue => {
                    if !held.is_empty() {
                        report.duplicated.push(r.lot.id);
                    }
                    report.units_held += r.lot.units as u64;
                }
                OutState::InTransit { .. } => {
                    if held.is_empty() {
                        report.in_transit.push(r.lot.id);
                        report.units_in_transit += r.lot.units as u64;
                    }
                }
                OutState::Delivered { to } => {
                    if !held.iter().any(|(h, _)| *h == to) {
                        report.lost.push(r.lot.id);
                    }
                }
                OutState::Shipped => {
                    report.units_shipped += r.lot.units as u64;
                    report.lots_shipped += 1;
                    if !held.is_empty() {
                        report.duplicated.push(r.lot.id);
                    }
                }
            }
        }
    }
    for (lot, held) in &holders {
        if !produced.contains_key(lot) {
            report.orphans.push(*lot);
        }
        let used: u64 = held.iter().map(|(_, u)| *u as u64).sum();
        report.units_consumed += used;
        if used_by_products.get(lot).copied().unwrap_or(0) != used {
            report.miscounted.push(*lot);
        }
    }
    for (lot, used) in &used_by_products {
        if !holders.contains_key(lot) && *used > 0 {
            report.miscounted.push(*lot);
        }
    }
    for v in [
        &mut report.lost,
        &mut report.duplicated,
        &mut report.miscounted,
        &mut report.orphans,
        &mut report.in_transit,
    ] {
        v.sort();
        v.dedup();
    }
    report
}

/// Reads the records of the given stages of `cluster` from the WALs in its
/// data directory (`<data>/*/wal.redb`, one per host process, see
/// [`crate::setup::StageFiles::host_wal`]); a stage in no WAL (never
/// started) is left out, one in two is an error. The stages must be
/// stopped (redb holds a lock on an open file).
pub fn read_wals(
    cluster: &ClusterFile,
    stages: &[NodeId],
) -> Result<Vec<(NodeId, Records)>, crate::wal::WalError> {
    let wanted: std::collections::BTreeSet<NodeId> = stages.iter().copied().collect();
    let mut found: BTreeMap<NodeId, (std::path::PathBuf, Records)> = BTreeMap::new();
    for path in wal_files(cluster) {
        for (id, records) in crate::wal::Wal::read_all(&path)? {
            if !wanted.contains(&id) {
                continue;
            }
            if let Some((other, _)) = found.get(&id) {
                return Err(crate::wal::WalError::TwoHomes {
                    stage: id,
                    a: other.clone(),
                    b: path,
                });
            }
            found.insert(id, (path.clone(), records));
        }
    }
    Ok(found.into_iter().map(|(id, (_, r))| (id, r)).collect())
}

/// The host WALs of `cluster`, in path order.
fn wal_files(cluster: &ClusterFile) -> Vec<std::path::PathBuf> {
    let Ok(dirs) = std::fs::read_dir(&cluster.data) else {
        return Vec::new();
    };
    let mut files: Vec<_> = dirs
        .filter_map(Result::ok)
        .map(|d| d.path().join(crate::setup::WAL_FILE))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Audits the WALs of the given stages of `cluster` (see [`read_wals`]).
pub fn audit_wals(
    cluster: &ClusterFile,
    stages: &[NodeId],
) -> Result<AuditReport, crate::wal::WalError> {
    let all = read_wals(cluster, stages)?;
    let refs: Vec<(NodeId, &Records)> = all.iter().map(|(id, r)| (*id, r)).collect();
    Ok(audit(&refs))
}

impl std::fmt::Display for AuditReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} lots produced ({} units): {} consumed, {} held, {} in transit, {} shipped as final products",
            self.lots_produced,
            self.units_produced,
            self.units_consumed,
            self.units_held,
            self.units_in_transit,
            self.units_shipped
        )?;
        write!(
            f,
            "lost {}, duplicated {}, miscounted {}, of unknown origin {}, in transit {}: {}",
            self.lost.len(),
            self.duplicated.len(),
            self.miscounted.len(),
            self.orphans.len(),
            self.in_transit.len(),
            if self.is_settled() {
                "settled"
            } else if self.is_clean() {
                "clean"
            } else {
                "VIOLATED"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{InRecord, OutRecord};
    use factoryos_wire::model::Lot;

    fn lot(p: u64, seq: u64, units: u32, genealogy: Vec<(LotId, u32)>) -> Lot {
        Lot {
            id: LotId::new(NodeId(p), seq),
            item: "x".into(),
            units,
            genealogy,
            made_ms: 0,
        }
    }

    fn out(l: Lot, state: OutState) -> OutRecord {
        OutRecord { lot: l, state }
    }

    fn held(l: Lot, from: u64, remaining: u32) -> InRecord {
        InRecord {
            lot: l,
            from: NodeId(from),
            remaining,
        }
    }

    /// Supplier 1 made lot a (3 units) and delivered it to 2, which used 2
    /// units of it in lot b.
    fn good() -> (Records, Records) {
        let a = lot(1, 0, 3, vec![]);
        let b = lot(2, 0, 1, vec![(a.id, 2)]);
        let supplier = Records {
            out: vec![out(a.clone(), OutState::Delivered { to: NodeId(2) })],
            ..Default::default()
        };
        let consumer = Records {
            out: vec![out(b, OutState::InQueue)],
            inbound: vec![held(a, 1, 1)],
            ..Default::default()
        };
        (supplier, consumer)
    }

    #[test]
    fn a_consistent_run_is_settled_and_every_unit_is_counted() {
        let (s, c) = good();
        let r = audit(&[(NodeId(1), &s), (NodeId(2), &c)]);
        assert!(r.is_settled(), "{r:?}");
        assert_eq!(
            (r.units_produced, r.units_consumed, r.units_held),
            (4, 2, 2)
        );
    }

    #[test]
    fn each_violation_is_found() {
        let (s, mut c) = good();
        let a = s.out[0].lot.id;
        // Lost: delivered but not held.
        let mut lost = c.clone();
        lost.inbound.clear();
        let r = audit(&[(NodeId(1), &s), (NodeId(2), &lost)]);
        assert_eq!(r.lost, vec![a]);
        // Duplicated: held by two stages.
        let r = audit(&[(NodeId(1), &s), (NodeId(2), &c), (NodeId(3), &c)]);
        assert!(r.duplicated.contains(&a), "{r:?}");
        // Consumed twice: a second product claims units the holder never gave.
        c.out
            .push(out(lot(2, 1, 1, vec![(a, 1)]), OutState::InQueue));
        let r = audit(&[(NodeId(1), &s), (NodeId(2), &c)]);
        assert_eq!(r.miscounted, vec![a]);
        // In transit, not held: unsettled but clean.
        let (mut s2, c2) = good();
        s2.out.push(out(
            lot(1, 1, 3, vec![]),
            OutState::InTransit { to: NodeId(2) },
        ));
        let r = audit(&[(NodeId(1), &s2), (NodeId(2), &c2)]);
        assert!(r.is_clean() && !r.is_settled());
        // An inbound lot no producer recorded.
        let r = audit(&[(NodeId(2), &c2)]);
        assert_eq!(r.orphans, vec![a]);
    }
}
