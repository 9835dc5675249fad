//! The simulation's clock and agenda: events ordered by due time, ties by
//! the order they were queued, so a seed replays the same run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Events by due time; equal times come out in the order they went in.
#[derive(Debug)]
pub(super) struct Queue<E> {
    heap: BinaryHeap<Reverse<(Duration, u64, Slot<E>)>>,
    seq: u64,
}

/// An event in the heap, ordered by nothing of its own (time and sequence
/// number decide).
#[derive(Debug)]
struct Slot<E>(Box<E>);

impl<E> PartialEq for Slot<E> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<E> Eq for Slot<E> {}
impl<E> PartialOrd for Slot<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Slot<E> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<E> Queue<E> {
    pub(super) fn new() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub(super) fn push(&mut self, at: Duration, event: E) {
        self.seq += 1;
        self.heap
            .push(Reverse((at, self.seq, Slot(Box::new(event)))));
    }

    /// The next event if it is due by `until`.
    pub(super) fn pop_until(&mut self, until: Duration) -> Option<(Duration, E)> {
        if self
            .heap
            .peek()
            .is_some_and(|Reverse((at, ..))| *at <= until)
        {
            self.heap.pop().map(|Reverse((at, _, Slot(e)))| (at, *e))
        } else {
            None
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_in_the_order_queued() {
        let mut q = Queue::new();
        let ms = Duration::from_millis;
        q.push(ms(5), "c");
        q.push(ms(1), "a");
        q.push(ms(5), "d");
        q.push(ms(1), "b");
        q.push(ms(9), "e");
        let mut out = Vec::new();
        while let Some((_, e)) = q.pop_until(ms(5)) {
            out.push(e);
        }
        assert_eq!(out, ["a", "b", "c", "d"]);
        assert_eq!(q.len(), 1, "the event after the horizon waits");
    }
}
