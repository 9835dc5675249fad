//! Which supplier of an input to ask next, and which waiting consumer to
//! serve next: stride scheduling over the flow's shares, so that over time
//! every supplier is asked in proportion to its share however fast each
//! answers, and a supplier that cannot serve everyone splits what it makes
//! between its consumers by their shares instead of by who asked first.
//! (Below, "supplier" is whoever is picked: a consumer, on the supplier side.)
//!
//! Each supplier has a *pass*; asking it adds its stride (`SCALE / share`).
//! The eligible supplier with the lowest pass is asked next (lowest id on a
//! tie). One left out for a while (unavailable, silent, at its in-flight
//! limit) keeps its pass and so is asked first when it is back, but it
//! catches up at most [`CATCH_UP`] requests' worth: a supplier that cannot
//! keep up gets less, not nothing, and never a burst. A new flow starts
//! every supplier afresh (the consumer drops its schedulers: the shares changed).

use factoryos_wire::NodeId;
use rustc_hash::FxHashMap;

/// Pass units per request at a share of one per mille.
const SCALE: u64 = 1_000_000;
/// Requests' worth a left-out supplier may catch up.
pub const CATCH_UP: u64 = 2;

#[derive(Debug, Default)]
pub struct Shares {
    pass: FxHashMap<NodeId, u64>,
    /// The pass of the last supplier asked: the scheduler's clock.
    now: u64,
}

impl Shares {
    /// Picks among `eligible` (supplier, share per mille) the one to ask,
    /// and counts the request against it.
    pub fn pick(&mut self, eligible: impl IntoIterator<Item = (NodeId, u32)>) -> Option<NodeId> {
        let (pass, supplier, stride) = eligible
            .into_iter()
            .map(|(s, share)| {
                let stride = SCALE / u64::from(share.max(1));
                let floor = self.now.saturating_sub(CATCH_UP * stride);
                let pass = self.pass.get(&s).copied().unwrap_or(self.now).max(floor);
                (pass, s, stride)
            })
            .min_by_key(|(pass, s, _)| (*pass, *s))?;
        self.now = self.now.max(pass);
        self.pass.insert(supplier, pass + stride);
        Some(supplier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(picks: &[NodeId]) -> FxHashMap<NodeId, usize> {
        let mut c = FxHashMap::default();
        for p in picks {
            *c.entry(*p).or_default() += 1;
        }
        c
    }

    #[test]
    fn equal_shares_alternate_and_unequal_ones_are_followed() {
        let mut s = Shares::default();
        let (a, b) = (NodeId(13), NodeId(14));
        let picks: Vec<NodeId> = (0..6)
            .filter_map(|_| s.pick([(a, 500), (b, 500)]))
            .collect();
        assert_eq!(picks, [a, b, a, b, a, b]);
        let mut s = Shares::default();
        let picks: Vec<NodeId> = (0..1000)
            .filter_map(|_| s.pick([(a, 750), (b, 250)]))
            .collect();
        let c = counts(&picks);
        assert_eq!((c[&a], c[&b]), (750, 250));
    }

    #[test]
    fn a_supplier_left_out_catches_up_a_little_not_in_a_burst() {
        let mut s = Shares::default();
        let (a, b) = (NodeId(1), NodeId(2));
        for _ in 0..100 {
            s.pick([(b, 500)]);
        }
        // Back after 100 requests went to b: a is asked at most CATCH_UP + 1
        // times in a row, then they alternate again.
        let picks: Vec<NodeId> = (0..10)
            .filter_map(|_| s.pick([(a, 500), (b, 500)]))
            .collect();
        let run = picks.iter().take_while(|p| **p == a).count() as u64;
        assert!(run <= CATCH_UP + 1, "{picks:?}");
        assert!(
            picks[run as usize..].windows(2).all(|w| w[0] != w[1]),
            "{picks:?}"
        );
    }

    #[test]
    fn nothing_eligible_asks_nobody() {
        assert_eq!(Shares::default().pick([]), None);
    }

    proptest! {
        /// Always eligible, every supplier is asked its share of the
        /// requests, within two requests.
        #[test]
        fn requests_follow_the_shares(shares in prop::collection::vec(1u32..1000, 1..6), n in 100usize..2000) {
            let mut s = Shares::default();
            let suppliers: Vec<(NodeId, u32)> =
                shares.iter().enumerate().map(|(i, sh)| (NodeId(i as u64 + 1), *sh)).collect();
            let picks: Vec<NodeId> = (0..n).filter_map(|_| s.pick(suppliers.iter().copied())).collect();
            let c = counts(&picks);
            let total: u32 = shares.iter().sum();
            for (id, share) in &suppliers {
                let want = n as f64 * *share as f64 / total as f64;
                let got = *c.get(id).unwrap_or(&0) as f64;
                prop_assert!((got - want).abs() <= 2.0 + want * 0.01, "{id}: {got} of {n}, want {want:.1}");
            }
        }
    }
}
