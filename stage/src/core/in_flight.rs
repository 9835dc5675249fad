//! The consumer's requests in flight, kept per supplier in the order they
//! were sent: a supplier's count and oldest request are read every tick,
//! so neither scans the others' requests.

use factoryos_wire::{ItemType, NodeId, RequestId};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) req: RequestId,
    pub(super) item: ItemType,
    pub(super) sent_at: Duration,
}

/// Requests sent and not answered, per supplier, oldest first (request
/// ids grow with time, so each queue is in id order too). A supplier with
/// none has no entry.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    by_supplier: BTreeMap<NodeId, VecDeque<Pending>>,
    /// Requests in flight per input item.
    by_item: BTreeMap<ItemType, usize>,
    /// When the oldest request in flight was sent (a tick reads it instead
    /// of scanning): requests are sent in time order, so only removals
    /// move it.
    oldest: Option<Duration>,
}

impl InFlight {
    pub(super) fn insert(&mut self, supplier: NodeId, pending: Pending) {
        *self.by_item.entry(pending.item.clone()).or_default() += 1;
        self.oldest = self.oldest.or(Some(pending.sent_at));
        self.by_supplier
            .entry(supplier)
            .or_default()
            .push_back(pending);
    }

    /// Forgets request `req` if `supplier` is the one it was sent to.
    pub(super) fn answered(&mut self, req: RequestId, supplier: NodeId) {
        if let Some(queue) = self.by_supplier.get_mut(&supplier) {
            if let Some(i) = queue.iter().position(|p| p.req == req) {
                let p = queue.remove(i).expect("a valid index");
                Self::uncount(&mut self.by_item, &p.item);
                if queue.is_empty() {
                    self.by_supplier.remove(&supplier);
                }
                if self.oldest == Some(p.sent_at) {
                    self.oldest = self.find_oldest();
                }
            }
        }
    }

    fn find_oldest(&self) -> Option<Duration> {
        self.by_supplier
            .values()
            .filter_map(|q| q.front().map(|p| p.sent_at))
            .min()
    }

    fn uncount(by_item: &mut BTreeMap<ItemType, usize>, item: &ItemType) {
        if let Some(n) = by_item.get_mut(item) {
            *n -= 1;
            if *n == 0 {
                by_item.remove(item);
            }
        }
    }

    /// Requests in flight for `item`.
    pub(super) fn of_item_count(&self, item: &ItemType) -> usize {
        self.by_item.get(item).copied().unwrap_or(0)
    }

    /// Requests in flight to `supplier`.
    pub(super) fn to(&self, supplier: NodeId) -> usize {
        self.by_supplier.get(&supplier).map_or(0, VecDeque::len)
    }

    /// When the oldest request in flight to `supplier` was sent.
    pub(super) fn oldest_to(&self, supplier: NodeId) -> Option<Duration> {
        self.by_supplier
            .get(&supplier)
            .and_then(|q| q.front())
            .map(|p| p.sent_at)
    }

    /// Per supplier: its oldest request's time and the requests of `item` to it.
    pub(super) fn of_item<'a>(
        &'a self,
        item: &'a ItemType,
    ) -> impl Iterator<Item = (NodeId, Duration, usize)> + 'a {
        self.by_supplier.iter().filter_map(move |(s, q)| {
            let n = q.iter().filter(|p| &p.item == item).count();
            let oldest = q.front()?.sent_at;
            (n > 0).then_some((*s, oldest, n))
        })
    }

    /// Takes the requests due to be given up at `now`, in the order they
    /// were sent: (supplier, sent at). A request is given up after `timeout`
    /// unless `heard_since(supplier, sent_at)` (the supplier spoke since it
    /// was sent, so it is holding it for a lot), and after `hold` in any
    /// case. Each supplier's requests go oldest first: a held one keeps the
    /// younger ones behind it.
    pub(super) fn expire(
        &mut self,
        now: Duration,
        timeout: Duration,
        hold: Duration,
        heard_since: impl Fn(NodeId, Duration) -> bool,
    ) -> Vec<(NodeId, Duration)> {
        let mut expired: Vec<(RequestId, NodeId, Duration)> = Vec::new();
        let by_item = &mut self.by_item;
        self.by_supplier.retain(|s, q| {
            while q.front().is_some_and(|p| {
                let age = now.saturating_sub(p.sent_at);
                age >= hold || (age >= timeout && !heard_since(*s, p.sent_at))
            }) {
                let p = q.pop_front().expect("checked above");
                Self::uncount(by_item, &p.item);
                expired.push((p.req, *s, p.sent_at));
            }
            !q.is_empty()
        });
        self.oldest = self.find_oldest();
        expired.sort_by_key(|(req, _, _)| *req);
        expired.into_iter().map(|(_, s, at)| (s, at)).collect()
    }

    /// Each supplier with requests in flight, and when its oldest was sent.
    pub(super) fn oldest_per_supplier(&self) -> impl Iterator<Item = (NodeId, Duration)> + '_ {
        self.by_supplier
            .iter()
            .filter_map(|(s, q)| q.front().map(|p| (*s, p.sent_at)))
    }

    /// Forgets the requests for which `keep(supplier, item)` is false
    /// (answers to them, should any come, are taken as unasked lots).
    pub(super) fn retain(&mut self, keep: impl Fn(NodeId, &ItemType) -> bool) {
        let by_item = &mut self.by_item;
        self.by_supplier.retain(|s, q| {
            q.retain(|p| {
                let kept = keep(*s, &p.item);
                if !kept {
                    Self::uncount(by_item, &p.item);
                }
                kept
            });
            !q.is_empty()
        });
        self.oldest = self.find_oldest();
    }

    /// When the oldest request in flight was sent (`None`: none in flight).
    pub(super) fn oldest(&self) -> Option<Duration> {
        self.oldest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(req: u64, item: &str, ms: u64) -> Pending {
        Pending {
            req: RequestId(req),
            item: ItemType::new(item),
            sent_at: Duration::from_millis(ms),
        }
    }

    #[test]
    fn counts_oldest_and_answers_follow_each_supplier() {
        let mut f = InFlight::default();
        let (a, b) = (NodeId(1), NodeId(2));
        f.insert(a, pending(1, "steel", 10));
        f.insert(b, pending(2, "steel", 20));
        f.insert(a, pending(3, "rubber", 30));
        assert_eq!((f.to(a), f.to(b)), (2, 1));
        assert_eq!(f.oldest_to(a), Some(Duration::from_millis(10)));
        // An answer from the wrong supplier forgets nothing.
        f.answered(RequestId(1), b);
        assert_eq!(f.to(a), 2);
        f.answered(RequestId(1), a);
        assert_eq!(f.oldest_to(a), Some(Duration::from_millis(30)));
        let steel: Vec<_> = f.of_item(&ItemType::new("steel")).collect();
        assert_eq!(steel, [(b, Duration::from_millis(20), 1)]);
        f.answered(RequestId(2), b);
        assert_eq!((f.to(b), f.oldest_to(b)), (0, None));
        assert_eq!(f.of_item_count(&ItemType::new("steel")), 0);
        assert_eq!(f.of_item_count(&ItemType::new("rubber")), 1);
        assert_eq!(f.oldest(), Some(Duration::from_millis(30)));
        f.answered(RequestId(3), a);
        assert_eq!(f.oldest(), None);
    }

    #[test]
    fn expiry_takes_the_old_requests_in_the_order_sent() {
        let mut f = InFlight::default();
        let (a, b) = (NodeId(1), NodeId(2));
        f.insert(b, pending(1, "x", 0));
        f.insert(a, pending(2, "x", 5));
        f.insert(b, pending(3, "x", 50));
        let ms = Duration::from_millis;
        let expired = f.expire(ms(40), ms(30), ms(90), |_, _| false);
        assert_eq!(expired, [(b, ms(0)), (a, ms(5))]);
        assert_eq!((f.to(a), f.to(b)), (0, 1));
        assert_eq!(f.oldest(), Some(ms(50)));
        assert_eq!(f.of_item_count(&ItemType::new("x")), 1);
    }

    #[test]
    fn a_supplier_heard_since_keeps_its_requests_until_the_hold_ends() {
        let mut f = InFlight::default();
        let (a, b) = (NodeId(1), NodeId(2));
        f.insert(a, pending(1, "x", 0));
        f.insert(b, pending(2, "x", 0));
        let ms = Duration::from_millis;
        // `a` spoke after the request went out; `b` did not.
        let heard = |s: NodeId, _: Duration| s == a;
        assert_eq!(f.expire(ms(40), ms(30), ms(90), heard), [(b, ms(0))]);
        assert!(f.expire(ms(89), ms(30), ms(90), heard).is_empty());
        let fronts: Vec<_> = f.oldest_per_supplier().collect();
        assert_eq!(fronts, [(a, ms(0))]);
        assert_eq!(f.expire(ms(90), ms(30), ms(90), heard), [(a, ms(0))]);
        assert_eq!(f.oldest(), None);
    }

    #[test]
    fn retain_forgets_requests_and_their_counts() {
        let mut f = InFlight::default();
        let (a, b) = (NodeId(1), NodeId(2));
        f.insert(a, pending(1, "x", 0));
        f.insert(b, pending(2, "y", 5));
        f.retain(|s, _| s != a);
        assert_eq!((f.to(a), f.to(b)), (0, 1));
        assert_eq!(f.of_item_count(&ItemType::new("x")), 0);
        assert_eq!(f.oldest(), Some(Duration::from_millis(5)));
    }
}
