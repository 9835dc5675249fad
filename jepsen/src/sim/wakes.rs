//! Which stages a tick must tick: those that had an input since their last
//! tick, and those whose core said it is due ([`StageCore::next_tick`]).
//! Ticking only them gives the run that ticking every stage gives, at a
//! fraction of the cost: most ticks of a big chain find most stages idle.
//!
//! [`StageCore::next_tick`]: factoryos_stage::core::StageCore::next_tick

use factoryos_wire::NodeId;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

#[derive(Debug, Default)]
pub(super) struct Wakes {
    /// Stages due at the next tick (an input came; may repeat).
    soon: Vec<NodeId>,
    /// Deadlines the cores gave, earliest first; an entry counts only if it
    /// is still its stage's deadline in `at` (a later tick replaced it).
    timers: BinaryHeap<Reverse<(Duration, NodeId)>>,
    at: FxHashMap<NodeId, Duration>,
    /// `soon`'s next buffer, handed back by [`Wakes::recycle`] (a big
    /// chain's list would otherwise grow from nothing at every tick).
    spare: Vec<NodeId>,
}

impl Wakes {
    /// `stage` is due at the next tick.
    pub(super) fn soon(&mut self, stage: NodeId) {
        self.soon.push(stage);
    }

    /// `stage` is due at the first tick at or after `at` (its deadline
    /// replaces any earlier one it gave; an input still makes it due sooner).
    pub(super) fn at(&mut self, stage: NodeId, at: Duration) {
        if at == Duration::MAX {
            self.at.remove(&stage);
            return;
        }
        // The same deadline again (most inputs leave it where it was)
        // already has its entry in the heap.
        if self.at.insert(stage, at) != Some(at) {
            self.timers.push(Reverse((at, stage)));
        }
    }

    /// The stages due at a tick at `now`, in id order (the order a tick of
    /// every stage goes in), each once; their deadlines are spent (the tick
    /// gives a new one).
    pub(super) fn take_due(&mut self, now: Duration) -> Vec<NodeId> {
        let mut due = std::mem::replace(&mut self.soon, std::mem::take(&mut self.spare));
        while let Some(Reverse((at, stage))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.at.get(&stage) == Some(&at) {
                due.push(stage);
            }
        }
        due.sort_unstable();
        due.dedup();
        for stage in &due {
            self.at.remove(stage);
        }
        due
    }

    /// Takes back the list [`Wakes::take_due`] gave, to fill again.
    pub(super) fn recycle(&mut self, mut done: Vec<NodeId>) {
        done.clear();
        self.spare = done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_and_deadlines_come_due_once_in_id_order_and_a_new_deadline_replaces_the_old() {
        let ms = Duration::from_millis;
        let mut w = Wakes::default();
        w.at(NodeId(3), ms(20));
        w.at(NodeId(1), ms(50));
        w.soon(NodeId(2));
        w.soon(NodeId(3));
        assert_eq!(w.take_due(ms(10)), [NodeId(2), NodeId(3)]);
        // Stage 3 was ticked at 10 ms (its input): it said 40 ms this time.
        w.at(NodeId(3), ms(40));
        assert_eq!(w.take_due(ms(20)), Vec::<NodeId>::new(), "20 ms is stale");
        assert_eq!(w.take_due(ms(45)), [NodeId(3)]);
        w.at(NodeId(1), Duration::MAX);
        assert_eq!(w.take_due(ms(60)), Vec::<NodeId>::new(), "never due");
    }
}
