//! The phases of one recovery, read from the nodes' event logs: each a
//! time from the fault, or `None` when the trial ended before it happened.
//! A pure function of the events, so every definition is tested here.

use super::RecoveryFault;
use factoryos_coord::events::{NodeEvent, What};
use factoryos_wire::{LotId, NodeId};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A recovery's phases, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The first sign of the fault: a survivor coordinator loses the leader
    /// (leader faults), a neighbour reports the victim suspect (stage
    /// faults), or the restarted victim registers again.
    Detection,
    /// The group's verdict on the victim: marked dead, or (restart-stage)
    /// registered again.
    Verdict,
    /// A survivor coordinator leads (leader faults only).
    NewLeader,
    /// The first flow committed after the verdict: the new route.
    NewFlow,
    /// The first successful cycle of a consumer of the victim.
    ConsumerCycle,
    /// The first final product made from a lot of the victim's type that
    /// a surviving sibling made after the fault: production going on
    /// through the survivors, whatever the coordinators have decided yet
    /// (consumers stop asking a silent supplier and ask another of the flow).
    Survivors,
    /// The first final product made through the new route: made after the
    /// new flow, with no lot of the victim in its genealogy (or, after a
    /// restart, with a lot the restarted victim made): time to resumed
    /// production.
    Resumed,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Detection,
        Phase::Verdict,
        Phase::NewLeader,
        Phase::NewFlow,
        Phase::ConsumerCycle,
        Phase::Survivors,
        Phase::Resumed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Detection => "detection",
            Phase::Verdict => "verdict",
            Phase::NewLeader => "new-leader",
            Phase::NewFlow => "new-flow",
            Phase::ConsumerCycle => "consumer-cycle",
            Phase::Survivors => "survivors",
            Phase::Resumed => "resumed",
        }
    }

    /// Whether `fault` has this phase at all.
    pub fn applies(self, fault: RecoveryFault) -> bool {
        self != Phase::NewLeader || fault.hits_leader()
    }
}

/// Who plays which part in a trial, and when it was hit.
#[derive(Debug, Clone)]
pub struct Scene {
    pub fault: RecoveryFault,
    /// [`factoryos_coord::events::monotonic_ns`] just before the fault.
    pub t0_ns: u64,
    /// When the victim was started again (restart-stage).
    pub restarted_ns: Option<u64>,
    pub victim: NodeId,
    /// The leader before the fault.
    pub leader: Option<NodeId>,
    pub coordinators: BTreeSet<NodeId>,
    pub consumers: BTreeSet<NodeId>,
    /// The other stages of the victim's type.
    pub siblings: BTreeSet<NodeId>,
    pub finals: BTreeSet<NodeId>,
}

/// Each phase's time from the fault, when it was seen.
pub type Phases = BTreeMap<Phase, Duration>;

/// The phases `events` (every node's, any order) show for `scene`.
pub fn phases(scene: &Scene, events: &[NodeEvent]) -> Phases {
    let mut events: Vec<&NodeEvent> = events.iter().filter(|e| e.t_ns > scene.t0_ns).collect();
    events.sort_by_key(|e| e.t_ns);
    let since = |t_ns: u64| Duration::from_nanos(t_ns - scene.t0_ns);
    let mut out = Phases::new();
    let first = |pred: &dyn Fn(&NodeEvent) -> bool| events.iter().find(|e| pred(e)).copied();

    let survivor =
        |e: &NodeEvent| scene.coordinators.contains(&e.node) && Some(e.node) != scene.leader;
    let restarted = scene.restarted_ns.unwrap_or(u64::MAX);
    let detection = if scene.fault.hits_leader() {
        first(&|e| {
            survivor(e) && matches!(e.what, What::Role { leader, .. } if leader != scene.leader)
        })
    } else {
        first(&|e| match e.what {
            What::Suspected { suspect } => suspect == scene.victim,
            What::Registered { stage, .. } => stage == scene.victim && e.t_ns > restarted,
            _ => false,
        })
    };
    if let Some(e) = detection {
        out.insert(Phase::Detection, since(e.t_ns));
    }
    if scene.fault.hits_leader() {
        if let Some(e) =
            first(&|e| survivor(e) && matches!(e.what, What::Role { leading: true, .. }))
        {
            out.insert(Phase::NewLeader, since(e.t_ns));
        }
    }
    let verdict = first(&|e| match e.what {
        What::MarkedDead { stage, .. } => stage == scene.victim && scene.restarted_ns.is_none(),
        What::Registered { stage, .. } => stage == scene.victim && e.t_ns > restarted,
        _ => false,
    });
    consumer_cycle(scene, &events, &mut out);
    let genealogy = Genealogy::of(&events);
    if let Some(t) = genealogy.first_final(scene, &events, scene.t0_ns, |ancestry| {
        ancestry
            .iter()
            .any(|(lot, t)| scene.siblings.contains(&lot.producer) && *t > scene.t0_ns)
    }) {
        out.insert(Phase::Survivors, since(t));
    }
    let Some(verdict) = verdict else {
        return out;
    };
    out.insert(Phase::Verdict, since(verdict.t_ns));
    let index = match verdict.what {
        What::MarkedDead { index, .. } | What::Registered { index, .. } => index,
        _ => unreachable!("the verdict is a mark or a registration"),
    };
    let new_flow = first(
        &|e| matches!(e.what, What::FlowApplied { version } | What::FlowCommitted { version } if version > index),
    );
    let Some(new_flow) = new_flow else {
        return out;
    };
    out.insert(Phase::NewFlow, since(new_flow.t_ns));
    // Through the new route: nothing of the victim's, or after a restart
    // something the restarted victim made.
    let resumed = genealogy.first_final(scene, &events, new_flow.t_ns, |ancestry| {
        let victim = |(lot, _): &&(LotId, u64)| lot.producer == scene.victim;
        match scene.restarted_ns {
            Some(r) => ancestry.iter().filter(victim).any(|(_, t)| *t > r),
            None => !ancestry.iter().any(|a| victim(&a)),
        }
    });
    if let Some(t) = resumed {
        out.insert(Phase::Resumed, since(t));
    }
    out
}

fn consumer_cycle(scene: &Scene, events: &[&NodeEvent], out: &mut Phases) {
    let cycle = events
        .iter()
        .find(|e| scene.consumers.contains(&e.node) && matches!(e.what, What::Made { .. }));
    if let Some(e) = cycle {
        out.insert(
            Phase::ConsumerCycle,
            Duration::from_nanos(e.t_ns - scene.t0_ns),
        );
    }
}

/// Every lot made after the fault: when, and from which lots.
struct Genealogy<'a> {
    made: BTreeMap<LotId, (u64, &'a [LotId])>,
}

impl<'a> Genealogy<'a> {
    fn of(events: &[&'a NodeEvent]) -> Self {
        let made = events
            .iter()
            .filter_map(|e| match &e.what {
                What::Made { seq, inputs } => {
                    Some((LotId::new(e.node, *seq), (e.t_ns, inputs.as_slice())))
                }
                _ => None,
            })
            .collect();
        Genealogy { made }
    }

    /// `lot` and its ancestors, as far as the logs go, each with when it
    /// was made (0 when made before the fault).
    fn ancestry(&self, lot: LotId) -> Vec<(LotId, u64)> {
        let mut out = Vec::new();
        let mut todo = vec![lot];
        let mut seen = BTreeSet::new();
        while let Some(l) = todo.pop() {
            if !seen.insert(l) {
                continue;
            }
            let made = self.made.get(&l);
            out.push((l, made.map_or(0, |(t, _)| *t)));
            if let Some((_, inputs)) = made {
                todo.extend(inputs.iter().copied());
            }
        }
        out
    }

    /// When the first final product made after `after_ns` whose ancestry
    /// passes `test` was made.
    fn first_final(
        &self,
        scene: &Scene,
        events: &[&NodeEvent],
        after_ns: u64,
        test: impl Fn(&[(LotId, u64)]) -> bool,
    ) -> Option<u64> {
        events
            .iter()
            .filter(|e| e.t_ns > after_ns && scene.finals.contains(&e.node))
            .find(|e| match e.what {
                What::Made { seq, .. } => test(&self.ancestry(LotId::new(e.node, seq))),
                _ => false,
            })
            .map(|e| e.t_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ev(t_ms: u64, node: u64, what: What) -> NodeEvent {
        NodeEvent {
            t_ns: 1_000 * MS + t_ms * MS,
            node: NodeId(node),
            what,
        }
    }

    fn made(t_ms: u64, node: u64, seq: u64, inputs: &[(u64, u64)]) -> NodeEvent {
        let inputs = inputs
            .iter()
            .map(|(p, s)| LotId::new(NodeId(*p), *s))
            .collect();
        ev(t_ms, node, What::Made { seq, inputs })
    }

    /// The window chain: frames 13 (victim) and 14 feed windows 15 and 16.
    fn scene(fault: RecoveryFault) -> Scene {
        Scene {
            fault,
            t0_ns: 1_000 * MS,
            restarted_ns: None,
            victim: NodeId(13),
            leader: Some(NodeId(1)),
            coordinators: [1, 2, 3].map(NodeId).into(),
            consumers: [15, 16].map(NodeId).into(),
            siblings: [14].map(NodeId).into(),
            finals: [15, 16].map(NodeId).into(),
        }
    }

    fn ms(p: &Phases, phase: Phase) -> Option<u64> {
        p.get(&phase).map(|d| d.as_millis() as u64)
    }

    #[test]
    fn a_killed_stage_is_detected_judged_and_routed_around() {
        let events = vec![
            made(5, 15, 1, &[(13, 1)]),
            // A frame lot made before the fault does not show the survivors.
            made(20, 16, 1, &[(14, 2)]),
            made(200, 14, 3, &[]),
            ev(
                300,
                15,
                What::Suspected {
                    suspect: NodeId(13),
                },
            ),
            // Through the survivor before any verdict.
            made(600, 15, 9, &[(14, 3)]),
            ev(
                1300,
                1,
                What::MarkedDead {
                    stage: NodeId(13),
                    index: 40,
                },
            ),
            // A flow of the verdict's own index is not the new route.
            ev(1301, 1, What::FlowApplied { version: 40 }),
            ev(1302, 2, What::FlowApplied { version: 41 }),
            // After the new flow, but still made of a victim's lot.
            made(1350, 16, 2, &[(13, 2), (14, 3)]),
            made(1400, 15, 2, &[(14, 4)]),
        ];
        let p = phases(&scene(RecoveryFault::KillStage), &events);
        assert_eq!(ms(&p, Phase::Detection), Some(300));
        assert_eq!(ms(&p, Phase::Verdict), Some(1300));
        assert_eq!(ms(&p, Phase::NewLeader), None);
        assert_eq!(ms(&p, Phase::NewFlow), Some(1302));
        assert_eq!(ms(&p, Phase::ConsumerCycle), Some(5));
        assert_eq!(ms(&p, Phase::Survivors), Some(600));
        assert_eq!(ms(&p, Phase::Resumed), Some(1400));
    }

    #[test]
    fn a_victim_lot_deep_in_the_genealogy_is_not_the_new_route() {
        // Wood 11 -> frame 13 (victim) -> frame lot used by 20 (a middle
        // stage) -> final 15: the product still came through the victim.
        let mut s = scene(RecoveryFault::KillStage);
        s.finals = [15].map(NodeId).into();
        let events = vec![
            ev(
                100,
                1,
                What::MarkedDead {
                    stage: NodeId(13),
                    index: 7,
                },
            ),
            ev(101, 1, What::FlowApplied { version: 8 }),
            made(50, 20, 1, &[(13, 9)]),
            made(150, 15, 1, &[(20, 1)]),
            made(160, 20, 2, &[(14, 1)]),
            made(250, 15, 2, &[(20, 2)]),
        ];
        assert_eq!(ms(&phases(&s, &events), Phase::Resumed), Some(250));
    }

    #[test]
    fn a_leader_fault_counts_from_the_survivors_and_its_new_leader() {
        let events = vec![
            // The dead leader's own lines do not count.
            ev(
                1,
                1,
                What::Role {
                    term: 3,
                    leader: None,
                    leading: false,
                    last_applied: 9,
                },
            ),
            ev(
                180,
                2,
                What::Role {
                    term: 4,
                    leader: None,
                    leading: false,
                    last_applied: 9,
                },
            ),
            ev(
                190,
                3,
                What::Role {
                    term: 4,
                    leader: Some(NodeId(2)),
                    leading: false,
                    last_applied: 9,
                },
            ),
            ev(
                200,
                2,
                What::Role {
                    term: 4,
                    leader: Some(NodeId(2)),
                    leading: true,
                    last_applied: 9,
                },
            ),
        ];
        let p = phases(&scene(RecoveryFault::KillLeader), &events);
        assert_eq!(ms(&p, Phase::Detection), Some(180));
        assert_eq!(ms(&p, Phase::NewLeader), Some(200));
        assert_eq!(ms(&p, Phase::Verdict), None);
        assert!(!Phase::NewLeader.applies(RecoveryFault::KillStage));
        assert!(Phase::NewLeader.applies(RecoveryFault::PauseLeader));
    }

    #[test]
    fn a_restart_resumes_with_a_lot_the_restarted_victim_made() {
        let mut s = scene(RecoveryFault::RestartStage);
        s.restarted_ns = Some(s.t0_ns + 10 * MS);
        let events = vec![
            // Registered before the restart: the old life, not the verdict.
            ev(
                5,
                1,
                What::Registered {
                    stage: NodeId(13),
                    index: 3,
                },
            ),
            ev(
                60,
                1,
                What::Registered {
                    stage: NodeId(13),
                    index: 50,
                },
            ),
            ev(62, 1, What::FlowApplied { version: 51 }),
            made(80, 13, 30, &[(11, 5)]),
            // Made from a lot of the victim's earlier life: not yet.
            made(90, 15, 7, &[(13, 29)]),
            made(200, 16, 8, &[(13, 30)]),
        ];
        let p = phases(&s, &events);
        assert_eq!(ms(&p, Phase::Detection), Some(60));
        assert_eq!(ms(&p, Phase::Verdict), Some(60));
        assert_eq!(ms(&p, Phase::NewFlow), Some(62));
        assert_eq!(ms(&p, Phase::Resumed), Some(200));
    }

    #[test]
    fn events_before_the_fault_and_missing_phases_are_left_out() {
        let mut events = vec![ev(
            0,
            15,
            What::Suspected {
                suspect: NodeId(13),
            },
        )];
        events[0].t_ns -= MS;
        let p = phases(&scene(RecoveryFault::KillStage), &events);
        assert!(p.is_empty(), "{p:?}");
    }
}
