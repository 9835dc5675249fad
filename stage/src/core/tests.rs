//! The sans-IO core under unit tests and a simulated network: every message
//! in every lot state, duplicates, reordering, stale flow versions, and
//! crashes at each point of the commit-then-send cycle.

use super::*;
use crate::audit::{audit, AuditReport};
use crate::records::Records;
use crate::records::{OutRecord, OutState};
use factoryos_wire::model::Lot;
use factoryos_wire::{LotId, RequestId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

use super::fixtures::*;

const STEP: Duration = Duration::from_millis(10);

fn env(from: u64, version: u64, body: Message) -> Envelope {
    Envelope::new(NodeId(from), FlowVersion(version), body)
}

// ---------------------------------------------------------------- unit rules

#[test]
fn a_raw_stage_produces_every_cycle_until_its_outbound_is_full() {
    let mut cfg = wood(11);
    cfg.outbound_cap = 3;
    let mut core = StageCore::new(cfg, Records::default());
    for i in 0..5 {
        core.tick(Duration::from_millis(100 * i));
    }
    let m = core.metrics();
    assert_eq!(
        (
            m.successful_manufacture_cycles,
            m.blocked_manufacture_cycles
        ),
        (3, 2)
    );
    let out = core.take_output();
    let lots: Vec<&OutRecord> = out
        .wal
        .iter()
        .filter_map(|op| match op {
            WalOp::Out(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(lots.len(), 3);
    assert!(lots
        .iter()
        .all(|r| r.state == OutState::InQueue && r.lot.units == 3));
    assert_eq!(
        lots[2].lot.id,
        LotId::new(NodeId(11), 2),
        "sequence numbers count up"
    );
}

#[test]
fn a_stage_of_capacity_two_makes_two_lots_a_cycle_with_twice_the_room() {
    let mut cfg = wood(11);
    cfg.capacity = 2;
    cfg.outbound_cap = 3;
    let mut core = StageCore::new(cfg, Records::default());
    for i in 0..4 {
        core.tick(Duration::from_millis(100 * i));
    }
    let m = core.metrics();
    // 2 + 2 + 2 lots fill the room of 6; the fourth cycle is blocked.
    assert_eq!(core.outbound_len(), 6);
    assert_eq!(
        (
            m.successful_manufacture_cycles,
            m.blocked_manufacture_cycles
        ),
        (3, 1)
    );
}

#[test]
fn a_request_is_served_in_transit_first_and_confirmed_into_delivered() {
    let mut s = StageCore::new(wood(11), Records::default());
    s.set_flow(Duration::ZERO, &window_flow(5));
    s.tick(Duration::ZERO);
    s.take_output();
    s.on_message(
        STEP,
        NodeId(13),
        &env(
            13,
            5,
            Message::RequestBatch {
                req: RequestId(1),
                item: "wood".into(),
            },
        ),
    );
    let out = s.take_output();
    // The WAL write that makes it in-transit comes with (before) the send.
    assert!(matches!(
        &out.wal[..],
        [WalOp::Out(OutRecord {
            state: OutState::InTransit { to: NodeId(13) },
            ..
        })]
    ));
    let lot = match &out.send[..] {
        [(
            NodeId(13),
            Message::BatchSent {
                req: Some(RequestId(1)),
                lot,
            },
        )] => lot.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(s.in_transit_len(), 1);
    s.on_message(
        STEP * 2,
        NodeId(13),
        &env(13, 5, Message::DeliveryConfirmed { lot: lot.id }),
    );
    let out = s.take_output();
    assert!(matches!(
        &out.wal[..],
        [WalOp::Out(OutRecord {
            state: OutState::Delivered { to: NodeId(13) },
            ..
        })]
    ));
    assert_eq!(s.in_transit_len(), 0);
    // A repeated confirmation changes nothing.
    s.on_message(
        STEP * 3,
        NodeId(13),
        &env(13, 5, Message::DeliveryConfirmed { lot: lot.id }),
    );
    assert!(s.take_output().wal.is_empty());
}

#[test]
fn an_empty_supplier_parks_a_request_serves_it_from_its_next_lot_or_answers_unavailable() {
    let mut s = StageCore::new(wood(11), Records::default());
    s.set_flow(Duration::ZERO, &window_flow(5));
    s.take_output();
    s.on_message(
        STEP,
        NodeId(13),
        &env(
            13,
            5,
            Message::RequestBatch {
                req: RequestId(1),
                item: "wood".into(),
            },
        ),
    );
    assert!(s.take_output().send.is_empty(), "parked, not refused");
    s.tick(STEP * 2); // makes a lot, which goes to the parked request
    let out = s.take_output();
    assert!(out.send.iter().any(|(to, m)| *to == NodeId(13)
        && matches!(
            m,
            Message::BatchSent {
                req: Some(RequestId(1)),
                ..
            }
        )));
    assert!(out.wal.iter().any(|op| matches!(
        op,
        WalOp::Out(OutRecord {
            state: OutState::InTransit { .. },
            ..
        })
    )));

    // A supplier that makes nothing (outbound blocked) answers after park_timeout.
    let mut cfg = wood(12);
    cfg.outbound_cap = 0;
    let mut s = StageCore::new(cfg, Records::default());
    s.set_flow(Duration::ZERO, &window_flow(5));
    s.on_message(
        STEP,
        NodeId(13),
        &env(
            13,
            5,
            Message::RequestBatch {
                req: RequestId(2),
                item: "wood".into(),
            },
        ),
    );
    s.tick(STEP * 2);
    assert!(!s
        .take_output()
        .send
        .iter()
        .any(|(_, m)| matches!(m, Message::BatchUnavailable { .. })));
    s.tick(STEP + Duration::from_millis(500));
    let out = s.take_output();
    assert!(out.send.iter().any(|(to, m)| *to == NodeId(13)
        && matches!(
            m,
            Message::BatchUnavailable {
                req: RequestId(2),
                ..
            }
        )));

    let mut c = StageCore::new(frame(13), Records::default());
    c.set_flow(Duration::ZERO, &window_flow(5));
    c.tick(Duration::ZERO);
    let asked = requests_in(c.take_output());
    // Target: 3 cycles x 3 units; lots assumed 1 unit until one is seen; at
    // most 1 request in flight per supplier.
    assert_eq!(
        asked,
        vec![NodeId(11), NodeId(12)],
        "spread over both suppliers"
    );
    let req = RequestId(0);
    c.on_message(
        STEP,
        NodeId(11),
        &env(
            11,
            5,
            Message::BatchUnavailable {
                req,
                item: "wood".into(),
            },
        ),
    );
    c.tick(STEP);
    let again = requests_in(c.take_output());
    assert!(
        again.is_empty(),
        "11 said it had nothing and 12 has its one request: {again:?}"
    );
    // Left alone for one cycle, then asked again.
    c.tick(STEP + Duration::from_millis(100));
    let later = requests_in(c.take_output());
    assert_eq!(later, vec![NodeId(11)], "11 is asked again after a cycle");
}

/// The stages an output asks for lots, in order.
fn requests_in(out: Output) -> Vec<NodeId> {
    out.send
        .iter()
        .filter(|(_, m)| matches!(m, Message::RequestBatch { .. }))
        .map(|(n, _)| *n)
        .collect()
}

#[test]
fn confirmations_of_unknown_lots_change_nothing_and_waiting_delays_the_resend() {
    let mut s = StageCore::new(wood(11), Records::default());
    s.set_flow(Duration::ZERO, &window_flow(5));
    s.tick(Duration::ZERO);
    s.take_output();
    // A confirmation for a lot never sent: ignored, nothing written.
    s.on_message(
        STEP,
        NodeId(13),
        &env(
            13,
            5,
            Message::DeliveryConfirmed {
                lot: LotId::new(NodeId(99), 1),
            },
        ),
    );
    assert!(s.take_output().wal.is_empty());
    s.on_message(
        STEP,
        NodeId(13),
        &env(
            13,
            5,
            Message::RequestBatch {
                req: RequestId(1),
                item: "wood".into(),
            },
        ),
    );
    let lot = s
        .take_output()
        .send
        .iter()
        .find_map(|(_, m)| match m {
            Message::BatchSent { lot, .. } => Some(lot.id),
            _ => None,
        })
        .unwrap();
    let resent = |out: &Output| {
        out.send
            .iter()
            .any(|(_, m)| matches!(m, Message::BatchSent { req: None, .. }))
    };
    // At 400 ms the consumer says it is still committing: the re-send due at
    // 510 ms moves to 900 ms.
    s.on_message(
        Duration::from_millis(400),
        NodeId(13),
        &env(13, 5, Message::WaitingForBatch { lot }),
    );
    s.tick(Duration::from_millis(600));
    assert!(!resent(&s.take_output()));
    s.tick(Duration::from_millis(900));
    assert!(resent(&s.take_output()));
}

#[test]
fn stale_and_foreign_requests_are_refused_and_counted() {
    let mut s = StageCore::new(wood(11), Records::default());
    s.set_flow(Duration::ZERO, &window_flow(5));
    s.tick(Duration::ZERO);
    s.take_output();
    // Stamped with an older flow: refused (the answer carries the newer version).
    s.on_message(
        STEP,
        NodeId(13),
        &env(
            13,
            4,
            Message::RequestBatch {
                req: RequestId(1),
                item: "wood".into(),
            },
        ),
    );
    assert!(matches!(
        &s.take_output().send[..],
        [(NodeId(13), Message::BatchUnavailable { .. })]
    ));
    assert_eq!(s.metrics().stale_flow_refused, 1);
    assert_eq!(s.outbound_len(), 1, "a stale request gets nothing");
    // From a stage the flow does not name (15 consumes frames, not wood).
    s.on_message(
        STEP,
        NodeId(15),
        &env(
            15,
            5,
            Message::RequestBatch {
                req: RequestId(2),
                item: "wood".into(),
            },
        ),
    );
    let out = s.take_output();
    assert!(matches!(
        &out.send[..],
        [(NodeId(15), Message::BatchUnavailable { .. })]
    ));
    assert_eq!(s.metrics().requests_refused_not_in_flow, 1);
    assert_eq!(s.outbound_len(), 1, "nothing was given away");
    // A newer flow stamp tells the stage its flow is behind.
    s.on_message(STEP, NodeId(13), &env(13, 9, Message::Heartbeat { seq: 1 }));
    assert_eq!(s.take_output().flow_behind, Some(FlowVersion(9)));
}

fn lot(producer: u64, seq: u64, item: &str, units: u32) -> Lot {
    Lot {
        id: LotId::new(NodeId(producer), seq),
        item: item.into(),
        units,
        genealogy: vec![],
        made_ms: 0,
    }
}

#[test]
fn a_lot_is_taken_once_whatever_repeats_and_whenever() {
    let mut c = StageCore::new(frame(13), Records::default());
    c.set_flow(Duration::ZERO, &window_flow(5));
    c.take_output();
    let l = lot(11, 0, "wood", 3);
    c.on_message(
        STEP,
        NodeId(11),
        &env(
            11,
            5,
            Message::BatchSent {
                req: None,
                lot: l.clone(),
            },
        ),
    );
    // The same lot again before the write is committed: still waiting.
    c.on_message(
        STEP,
        NodeId(11),
        &env(
            11,
            5,
            Message::BatchSent {
                req: None,
                lot: l.clone(),
            },
        ),
    );
    let out = c.take_output();
    assert_eq!(out.wal.len(), 1, "one inbound record");
    assert_eq!(
        out.send,
        vec![
            (NodeId(11), Message::DeliveryConfirmed { lot: l.id }),
            (NodeId(11), Message::WaitingForBatch { lot: l.id }),
        ]
    );
    // After the commit, a re-send (even stamped with an old flow) is confirmed, not taken.
    c.on_message(
        STEP * 2,
        NodeId(11),
        &env(
            11,
            1,
            Message::BatchSent {
                req: None,
                lot: l.clone(),
            },
        ),
    );
    let out = c.take_output();
    assert!(out.wal.is_empty());
    assert_eq!(
        out.send,
        vec![(NodeId(11), Message::DeliveryConfirmed { lot: l.id })]
    );
    assert_eq!(c.held_units(&"wood".into()), 3);
    assert_eq!(c.metrics().duplicate_lots_received, 2);
}

#[test]
fn a_recipe_update_arrives_with_the_flow_survives_a_crash_and_strands_no_lot() {
    let mut c = StageCore::new(frame(13), Records::default());
    c.set_wall_origin(1_000_000);
    c.set_flow(Duration::ZERO, &window_flow(5));
    let mut records = Records::default();
    records.apply(&c.take_output().wal);
    // Version 2 of `frame` needs glass instead of wood.
    let mut flow = window_flow(6);
    let mut v2 = recipe(&[("glass", 1)], 4);
    v2.version = 2;
    flow.recipes.insert("frame".into(), v2.clone());
    flow.recipes.insert("wood".into(), recipe(&[], 9));
    c.set_flow(STEP, &flow);
    assert_eq!(c.config().recipe, v2);
    assert_eq!(c.metrics().recipe_updates, 1);
    assert_eq!(c.config().recipe.version, 2);
    let out = c.take_output();
    assert!(
        out.wal.contains(&WalOp::Recipe(v2.clone())),
        "{:?}",
        out.wal
    );
    records.apply(&out.wal);
    // A wood lot sent before the update is taken (not left in transit) and held.
    let l = lot(11, 0, "wood", 3);
    c.on_message(
        STEP * 2,
        NodeId(11),
        &env(
            11,
            6,
            Message::BatchSent {
                req: None,
                lot: l.clone(),
            },
        ),
    );
    let out = c.take_output();
    assert_eq!(
        out.send,
        vec![(NodeId(11), Message::DeliveryConfirmed { lot: l.id })]
    );
    assert_eq!(c.metrics().lots_received_not_input, 1);
    assert_eq!(c.held_units(&"wood".into()), 3);
    records.apply(&out.wal);
    // An older recipe in a later flow changes nothing.
    let mut stale = window_flow(7);
    stale
        .recipes
        .insert("frame".into(), recipe(&[("wood", 1)], 1));
    c.set_flow(STEP * 3, &stale);
    assert_eq!(c.config().recipe, v2);
    // Glass arrives: the cycle follows the new recipe, and stamps the lot.
    c.on_message(
        STEP * 4,
        NodeId(11),
        &env(
            11,
            7,
            Message::BatchSent {
                req: None,
                lot: lot(21, 0, "glass", 1),
            },
        ),
    );
    c.tick(Duration::from_millis(500));
    let out = c.take_output();
    let made = out
        .wal
        .iter()
        .find_map(|op| match op {
            WalOp::Out(r) => Some(r.lot.clone()),
            _ => None,
        })
        .expect("a lot was made");
    assert_eq!((made.units, made.made_ms), (4, 1_000_500));
    assert_eq!(made.genealogy, vec![(LotId::new(NodeId(21), 0), 1)]);
    assert_eq!(
        c.held_units(&"wood".into()),
        3,
        "wood is not consumed any more"
    );
    // After a crash, the WAL's recipe wins over the one the stage starts with.
    let again = StageCore::new(frame(13), records);
    assert_eq!(again.config().recipe, v2);
    assert_eq!(again.config().recipe.version, 2);
}

fn frames_made(out: &Output) -> usize {
    out.wal
        .iter()
        .filter(|op| matches!(op, WalOp::Out(r) if r.lot.item == "frame".into()))
        .count()
}

#[test]
fn next_tick_says_when_the_slot_ends_or_at_once_when_a_request_may_go() {
    let ms = Duration::from_millis;
    let mut c = StageCore::new(frame(13), Records::default());
    c.set_flow(Duration::ZERO, &window_flow(5));
    c.tick(ms(0));
    let out = c.take_output();
    let to_11 = out.send.iter().find_map(|(n, m)| match m {
        Message::RequestBatch { req, .. } if *n == NodeId(11) => Some(*req),
        _ => None,
    });
    assert_eq!(requests_in(out).len(), 2, "one request to each supplier");
    // Still short of its target, but both suppliers have their one
    // request: nothing to do before the waiting slot ends.
    assert_eq!(c.next_tick(ms(0)), ms(100));
    let answer = Message::BatchSent {
        req: to_11,
        lot: lot(11, 0, "wood", 3),
    };
    c.on_message(ms(30), NodeId(11), &env(11, 5, answer));
    assert_eq!(frames_made(&c.take_output()), 1, "the slot made its frame");
    assert_eq!(c.next_tick(ms(30)), Duration::ZERO, "11 may be asked again");
    c.tick(ms(40));
    assert_eq!(requests_in(c.take_output()), [NodeId(11)]);
    assert_eq!(c.next_tick(ms(40)), ms(130), "the next slot");
}

#[test]
fn a_cycle_short_of_inputs_runs_when_they_arrive_and_never_twice_in_one_cycle() {
    let ms = Duration::from_millis;
    let wood_lot = |seq| {
        env(
            11,
            5,
            Message::BatchSent {
                req: None,
                lot: lot(11, seq, "wood", 3),
            },
        )
    };
    let mut c = StageCore::new(frame(13), Records::default());
    c.set_flow(Duration::ZERO, &window_flow(5));
    c.tick(ms(0));
    assert_eq!(c.metrics().skipped_manufacture_cycles, 1, "no wood yet");
    c.take_output();
    // The wood comes 30 ms into the slot: the frame is made with it, in
    // the same output, and the slot counts as successful instead.
    c.on_message(ms(30), NodeId(11), &wood_lot(0));
    assert_eq!(frames_made(&c.take_output()), 1);
    let m = c.metrics();
    assert_eq!(
        (
            m.successful_manufacture_cycles,
            m.skipped_manufacture_cycles
        ),
        (1, 0)
    );
    // More wood at once: the next frame waits a whole cycle from the first.
    c.on_message(ms(40), NodeId(11), &wood_lot(1));
    for t in [40, 100, 120] {
        c.tick(ms(t));
    }
    assert_eq!(frames_made(&c.take_output()), 0, "one cycle, one lot");
    c.tick(ms(130));
    assert_eq!(
        frames_made(&c.take_output()),
        1,
        "the next slot, from 130 ms"
    );
    // Short again at 230 ms: wood a millisecond later still makes its lot.
    c.tick(ms(230));
    c.on_message(ms(231), NodeId(11), &wood_lot(2));
    assert_eq!(frames_made(&c.take_output()), 1, "the 230 ms slot's lot");
    // The slot from 331 ms gets no wood: skipped once, and the slot after
    // it (from 431 ms) skipped too.
    for t in [331, 400, 431] {
        c.tick(ms(t));
    }
    let m = c.metrics();
    assert_eq!(
        (
            m.successful_manufacture_cycles,
            m.skipped_manufacture_cycles
        ),
        (3, 2)
    );
}

#[test]
fn lots_are_consumed_oldest_first_and_partly_with_their_genealogy() {
    let mut c = StageCore::new(frame(13), Records::default());
    c.set_flow(Duration::ZERO, &window_flow(5));
    for (seq, units) in [(0, 2), (1, 2), (2, 2)] {
        c.on_message(
            STEP,
            NodeId(11),
            &env(
                11,
                5,
                Message::BatchSent {
                    req: None,
                    lot: lot(11, seq, "wood", units),
                },
            ),
        );
    }
    c.take_output();
    c.tick(STEP * 2);
    let out = c.take_output();
    let made = out.wal.iter().find_map(|op| match op {
        WalOp::Out(r) => Some(r.lot.clone()),
        _ => None,
    });
    let made = made.expect("a frame lot");
    assert_eq!(made.units, 5);
    assert_eq!(
        made.genealogy,
        vec![
            (LotId::new(NodeId(11), 0), 2),
            (LotId::new(NodeId(11), 1), 1)
        ]
    );
    assert_eq!(c.held_units(&"wood".into()), 3);
    assert_eq!(c.metrics().successful_manufacture_cycles, 1);
}

#[test]
fn only_the_watcher_gets_heartbeats_and_only_a_watched_neighbour_that_fell_silent_is_reported() {
    // In the window flow (without registrations: a need of one unit a
    // cycle) a wood link carries a lot a cycle and a frame link a fifth, so
    // frame 13 is watched by wood 11 (its busiest link, lowest id of equal
    // ones) and watches both wood stages (they are busiest to it, lowest
    // id) and both windows (their busiest links go to 13 and 14 alike).
    // Frame 14 watches nobody.
    assert_eq!(
        factoryos_wire::slice::watchers(&window_flow(5), |_| None),
        BTreeMap::from([
            (NodeId(11), NodeId(13)),
            (NodeId(12), NodeId(13)),
            (NodeId(13), NodeId(11)),
            (NodeId(14), NodeId(11)),
            (NodeId(15), NodeId(13)),
            (NodeId(16), NodeId(13)),
        ])
    );
    let mut cfg = frame(13);
    cfg.set_suspect_after(Duration::from_millis(200));
    let mut s = StageCore::new(cfg, Records::default());
    s.set_flow(Duration::ZERO, &window_flow(5));
    let mut suspects = Vec::new();
    let mut beats = Vec::new();
    for i in 0..30 {
        let now = Duration::from_millis(10 * i);
        if i < 10 {
            s.on_message(now, NodeId(11), &env(11, 5, Message::Heartbeat { seq: i }));
        }
        s.tick(now);
        let out = s.take_output();
        beats.extend(
            out.send
                .iter()
                .filter(|(_, m)| matches!(m, Message::Heartbeat { .. }))
                .map(|(to, _)| (*to, now.as_millis())),
        );
        suspects.extend(out.suspects);
    }
    assert_eq!(
        beats,
        vec![(NodeId(11), 100), (NodeId(11), 200)],
        "heartbeats only to the watcher, on a quiet link, every 100 ms"
    );
    assert_eq!(
        suspects,
        vec![NodeId(11)],
        "11 stopped at 90 ms; 12, 15 and 16 never spoke since 13 started, so their silence proves nothing"
    );
    // Heard again: it may be reported again later.
    s.on_message(
        Duration::from_millis(400),
        NodeId(11),
        &env(11, 5, Message::Heartbeat { seq: 99 }),
    );
    s.tick(Duration::from_millis(700));
    assert_eq!(s.take_output().suspects, vec![NodeId(11)]);
}

#[test]
fn a_supplier_silent_through_a_whole_request_is_reported_by_any_consumer() {
    // Frame 14 watches nobody, but it asks the wood stages for wood. Both
    // spoke once at the start; then 11 falls silent while 12 answers again
    // after the requests went out. A request to 11 times out: 11 is
    // reported; 12 is not, and neither would a supplier that never spoke
    // to 14 since it started (its answers may be going to our old port).
    let mut s = StageCore::new(frame(14), Records::default());
    s.set_flow(Duration::ZERO, &window_flow(5));
    s.on_message(STEP, NodeId(11), &env(11, 5, Message::Heartbeat { seq: 1 }));
    s.on_message(STEP, NodeId(12), &env(12, 5, Message::Heartbeat { seq: 1 }));
    let mut suspects = Vec::new();
    for i in 2..=120 {
        let now = Duration::from_millis(10 * i);
        if i == 50 {
            s.on_message(now, NodeId(12), &env(12, 5, Message::Heartbeat { seq: 2 }));
        }
        s.tick(now);
        suspects.extend(s.take_output().suspects);
    }
    assert!(s.metrics().requests_timed_out > 0);
    assert_eq!(suspects, vec![NodeId(11)], "11 fell silent; 12 did not");
    // A freshly started stage whose suppliers never answered reports nobody.
    let mut fresh = StageCore::new(frame(14), Records::default());
    fresh.set_flow(Duration::ZERO, &window_flow(5));
    for i in 0..=120 {
        fresh.tick(Duration::from_millis(10 * i));
        assert!(fresh.take_output().suspects.is_empty(), "at {} ms", 10 * i);
    }
    assert!(fresh.metrics().requests_timed_out > 0);
}

fn heartbeats_to(out: &Output) -> Vec<(NodeId, Message)> {
    out.send
        .iter()
        .filter(|(_, m)| matches!(m, Message::Heartbeat { .. }))
        .cloned()
        .collect()
}

#[test]
fn a_supplier_back_before_a_request_expires_greets_its_consumers_and_is_not_reported() {
    // Wood 11 crashes while frame 14's requests are in flight and is back
    // before they expire. A fresh stage greets nobody; a restarted one
    // greets every neighbour of its first flow, once, and frame 14, having
    // heard from 11 since its request, does not report it (the leader would
    // find 11 alive and avoid the link as broken for half a minute).
    let mut w = StageCore::new(wood(11), Records::default());
    w.set_flow(Duration::ZERO, &window_flow(5));
    let first = w.take_output();
    assert!(
        heartbeats_to(&first).is_empty(),
        "a fresh stage greets nobody"
    );
    let mut records = Records::default();
    records.apply(&first.wal);
    let mut c = StageCore::new(frame(14), Records::default());
    c.set_flow(Duration::ZERO, &window_flow(5));
    for s in [11, 12] {
        c.on_message(STEP, NodeId(s), &env(s, 5, Message::Heartbeat { seq: 1 }));
    }
    c.tick(STEP * 2);
    assert!(!requests_in(c.take_output()).is_empty());
    let mut w = StageCore::new(wood(11), records);
    w.set_flow(STEP * 5, &window_flow(6));
    let greetings = heartbeats_to(&w.take_output());
    let to: Vec<NodeId> = greetings.iter().map(|(n, _)| *n).collect();
    assert_eq!(to, vec![NodeId(13), NodeId(14)]);
    w.set_flow(STEP * 6, &window_flow(7));
    assert!(heartbeats_to(&w.take_output()).is_empty(), "only once");
    let (_, hello) = greetings
        .into_iter()
        .find(|(n, _)| *n == NodeId(14))
        .unwrap();
    c.on_message(STEP * 6, NodeId(11), &env(11, 6, hello));
    c.on_message(
        STEP * 6,
        NodeId(12),
        &env(12, 5, Message::Heartbeat { seq: 2 }),
    );
    // What 14 asked of 11 before died with 11's memory: 14 asks afresh,
    // and 11 answers (the lots go to 14, and its confirmations back).
    let mut asked_again = false;
    for i in 7..=120 {
        let now = STEP * i;
        c.tick(now);
        w.tick(now);
        let out = c.take_output();
        assert!(out.suspects.is_empty(), "at {} ms", 10 * i);
        for (_, m) in out.send.into_iter().filter(|(to, _)| *to == NodeId(11)) {
            asked_again |= matches!(m, Message::RequestBatch { .. });
            w.on_message(now, NodeId(14), &env(14, 7, m));
        }
        for (_, m) in w
            .take_output()
            .send
            .into_iter()
            .filter(|(to, _)| *to == NodeId(14))
        {
            c.on_message(now, NodeId(11), &env(11, 7, m));
        }
    }
    assert!(asked_again, "14 asks the restarted 11 again");
}

#[test]
fn a_lot_in_transit_to_a_consumer_that_left_the_flow_is_still_completed() {
    let mut s = StageCore::new(wood(11), Records::default());
    s.set_flow(Duration::ZERO, &window_flow(5));
    s.tick(Duration::ZERO);
    s.on_message(
        STEP,
        NodeId(13),
        &env(
            13,
            5,
            Message::RequestBatch {
                req: RequestId(1),
                item: "wood".into(),
            },
        ),
    );
    let sent = s.take_output();
    let lot_id = sent
        .send
        .iter()
        .find_map(|(_, m)| match m {
            Message::BatchSent { lot, .. } => Some(lot.id),
            _ => None,
        })
        .expect("the lot was sent");
    // 13 leaves the flow.
    let mut flow = window_flow(6);
    flow.edges.retain(|e| e.consumer != NodeId(13));
    s.set_flow(STEP, &flow);
    // The lot is re-sent to 13 until confirmed, and its confirmation is accepted.
    s.tick(Duration::from_millis(600));
    let out = s.take_output();
    assert!(out.send.iter().any(|(to, m)| *to == NodeId(13)
        && matches!(m, Message::BatchSent { req: None, lot } if lot.id == lot_id)));
    s.on_message(
        Duration::from_millis(610),
        NodeId(13),
        &env(13, 5, Message::DeliveryConfirmed { lot: lot_id }),
    );
    assert_eq!(s.in_transit_len(), 0);
    assert_eq!(s.metrics().batches_delivered, 1);
}

#[test]
fn recovery_rebuilds_inventories_and_resends_what_was_in_transit() {
    let mut records = Records::default();
    let mut s = StageCore::new(wood(11), Records::default());
    s.set_flow(Duration::ZERO, &window_flow(5));
    for i in 0..3 {
        s.tick(Duration::from_millis(100 * i));
    }
    s.on_message(
        STEP,
        NodeId(13),
        &env(
            13,
            5,
            Message::RequestBatch {
                req: RequestId(1),
                item: "wood".into(),
            },
        ),
    );
    records.apply(&s.take_output().wal);
    // Crash; restart from the WAL.
    let mut r = StageCore::new(wood(11), records.clone());
    assert_eq!((r.outbound_len(), r.in_transit_len()), (2, 1));
    assert_eq!(r.metrics().wal_recovered_in_transit, 1);
    assert_eq!(r.flow_version(), FlowVersion(5));
    r.set_flow(Duration::ZERO, &window_flow(5));
    r.tick(Duration::ZERO);
    let out = r.take_output();
    assert!(out
        .send
        .iter()
        .any(|(to, m)| *to == NodeId(13) && matches!(m, Message::BatchSent { req: None, .. })));
    // The next lot it makes does not reuse a sequence number.
    let made: Vec<LotId> = out
        .wal
        .iter()
        .filter_map(|op| match op {
            WalOp::Out(o) if o.state == OutState::InQueue => Some(o.lot.id),
            _ => None,
        })
        .collect();
    assert_eq!(made, vec![LotId::new(NodeId(11), 3)]);
}

// ---------------------------------------------------------- simulated network

struct SimStage {
    cfg: StageConfig,
    core: Option<StageCore>,
    wal: Records,
    restart_at: Option<Duration>,
}

/// A deterministic network of stage cores with faults.
struct Sim {
    now: Duration,
    flow: Flow,
    stages: BTreeMap<NodeId, SimStage>,
    queue: Vec<(Duration, NodeId, NodeId, Envelope)>,
    rng: SmallRng,
    drop: f64,
    dup: f64,
    jitter_steps: u32,
    crash: f64,
    sent: u64,
}

impl Sim {
    fn new(seed: u64, stages: Vec<StageConfig>) -> Sim {
        let mut sim = Sim {
            now: Duration::ZERO,
            flow: window_flow(1),
            stages: BTreeMap::new(),
            queue: Vec::new(),
            rng: SmallRng::seed_from_u64(seed),
            drop: 0.0,
            dup: 0.0,
            jitter_steps: 0,
            crash: 0.0,
            sent: 0,
        };
        for cfg in stages {
            let mut core = StageCore::new(cfg.clone(), Records::default());
            core.set_flow(Duration::ZERO, &sim.flow);
            sim.stages.insert(
                cfg.id,
                SimStage {
                    cfg,
                    core: Some(core),
                    wal: Records::default(),
                    restart_at: None,
                },
            );
        }
        sim
    }

    fn window_chain(seed: u64) -> Sim {
        Sim::new(
            seed,
            vec![
                wood(11),
                wood(12),
                frame(13),
                frame(14),
                window(15),
                window(16),
            ],
        )
    }

    fn set_flow(&mut self, flow: Flow) {
        self.flow = flow;
        let now = self.now;
        for s in self.stages.values_mut() {
            if let Some(core) = &mut s.core {
                core.set_flow(now, &self.flow);
            }
        }
    }

    fn heal(&mut self) {
        self.drop = 0.0;
        self.dup = 0.0;
        self.jitter_steps = 0;
        self.crash = 0.0;
        for s in self.stages.values_mut() {
            if s.core.is_none() {
                s.restart_at = Some(self.now);
            }
        }
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step();
        }
    }

    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        // Restarts due.
        for s in self.stages.values_mut() {
            if s.core.is_none() && s.restart_at.is_some_and(|t| t <= now) {
                let mut core = StageCore::new(s.cfg.clone(), s.wal.clone());
                core.set_flow(now, &self.flow);
                s.core = Some(core);
                s.restart_at = None;
            }
        }
        // Deliveries due, in queue order (jitter makes that a reordering).
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|(at, ..)| *at <= now);
        self.queue = later;
        for (_, from, to, env) in due {
            if let Some(core) = self.stages.get_mut(&to).and_then(|s| s.core.as_mut()) {
                core.on_message(now, from, &env);
            }
        }
        let ids: Vec<NodeId> = self.stages.keys().copied().collect();
        for id in ids {
            let Some(core) = self.stages.get_mut(&id).and_then(|s| s.core.as_mut()) else {
                continue;
            };
            core.tick(now);
            let version = core.flow_version();
            let out = core.take_output();
            self.process(id, version, out);
        }
    }

    /// Commits, then sends, crashing at a random point of that sequence.
    fn process(&mut self, id: NodeId, version: FlowVersion, out: Output) {
        let roll: f64 = self.rng.random();
        let crash_at = if roll < self.crash {
            Some(self.rng.random_range(0..4))
        } else {
            None
        };
        // Crash point 3: part-way through the sends.
        let sends_before_crash = match crash_at {
            Some(3) => self.rng.random_range(0..=out.send.len()),
            _ => usize::MAX,
        };
        if crash_at == Some(0) {
            return self.crash(id); // before the commit: the writes and sends are lost
        }
        self.stages.get_mut(&id).expect("known").wal.apply(&out.wal);
        if crash_at == Some(1) {
            return self.crash(id); // after the commit, before any send
        }
        for (n, (to, msg)) in out.send.into_iter().enumerate() {
            if n == sends_before_crash {
                return self.crash(id);
            }
            if self.rng.random_bool(self.drop) {
                continue;
            }
            let copies = if self.rng.random_bool(self.dup) { 2 } else { 1 };
            for _ in 0..copies {
                let jitter = if self.jitter_steps > 0 {
                    self.rng.random_range(0..=self.jitter_steps)
                } else {
                    0
                };
                let at = self.now + STEP * (1 + jitter);
                self.sent += 1;
                self.queue
                    .push((at, id, to, Envelope::new(id, version, msg.clone())));
            }
        }
        if crash_at.is_some_and(|c| c >= 2) {
            self.crash(id); // after the sends
        }
    }

    fn crash(&mut self, id: NodeId) {
        let s = self.stages.get_mut(&id).expect("known");
        s.core = None;
        s.restart_at = Some(self.now + STEP * self.rng.random_range(1..30));
    }

    fn audit(&self) -> AuditReport {
        let all: Vec<(NodeId, &Records)> =
            self.stages.iter().map(|(id, s)| (*id, &s.wal)).collect();
        audit(&all)
    }

    fn final_products(&self) -> u64 {
        self.stages
            .values()
            .flat_map(|s| s.wal.out.iter())
            .filter(|r| r.state == OutState::Shipped)
            .count() as u64
    }

    /// Stops new trades (an empty flow) and lets every transit finish.
    fn drain(&mut self, steps: usize) {
        let version = self.flow.version.0 + 1;
        self.set_flow(Flow {
            version: FlowVersion(version),
            edges: vec![],
            recipes: BTreeMap::new(),
        });
        self.run(steps);
    }
}

#[test]
fn the_window_chain_makes_windows_and_the_books_balance() {
    let mut sim = Sim::window_chain(1);
    sim.run(300); // 3 s of 100 ms cycles
    let report = sim.audit();
    assert!(report.is_clean(), "{report:?}");
    assert!(sim.final_products() >= 15, "made {}", sim.final_products());
    sim.drain(200);
    let report = sim.audit();
    assert!(report.is_settled(), "{report:?}");
    assert_eq!(
        report.units_produced,
        report.units_consumed + report.units_held + report.units_in_transit + report.units_shipped,
        "every unit is accounted for once"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Loss, duplication, reordering and crashes at every point of the
    /// commit-then-send cycle: once faults heal, nothing is lost, nothing
    /// duplicated, nothing consumed twice, nothing left in transit, and
    /// production went on.
    #[test]
    fn faults_never_lose_or_duplicate_a_lot(
        seed in 0u64..u64::MAX,
        drop in 0.0f64..0.3,
        dup in 0.0f64..0.3,
        jitter in 0u32..6,
        crash in 0.0f64..0.02,
    ) {
        let mut sim = Sim::window_chain(seed);
        sim.drop = drop;
        sim.dup = dup;
        sim.jitter_steps = jitter;
        sim.crash = crash;
        sim.run(400);
        let during = sim.audit();
        proptest::prop_assert!(during.is_clean(), "seed {seed}: {during:?}");
        sim.heal();
        sim.run(300);
        let made = sim.final_products();
        sim.drain(300);
        let after = sim.audit();
        proptest::prop_assert!(after.is_settled(), "seed {seed}: {after:?}");
        proptest::prop_assert!(made > 0, "seed {seed}: no window was made");
    }
}

#[test]
fn suppliers_deliver_their_flow_shares_however_fast_they_answer() {
    // Both suppliers of each type have equal shares and answer at once: the
    // one with the lower id must not get everything.
    let mut sim = Sim::window_chain(3);
    sim.run(600);
    let sent = |id: u64| {
        sim.stages[&NodeId(id)]
            .core
            .as_ref()
            .unwrap()
            .metrics()
            .batches_sent as f64
    };
    for (a, b) in [(11, 12), (13, 14)] {
        let (x, y) = (sent(a), sent(b));
        let share = x / (x + y);
        assert!(
            (0.45..=0.55).contains(&share),
            "{a} sent {x} lots, {b} sent {y}: {a}'s share {share:.2}, the flow's 0.50"
        );
    }
}

/// One wood stage for two frame stages that could each use all its wood:
/// the supplier shares what it makes between its consumers by the flow, so
/// neither frame stage (nor, downstream, its windows' share) falls behind.
#[test]
fn a_scarce_supplier_shares_its_lots_between_its_consumers() {
    let mut sim = Sim::new(
        5,
        vec![wood(11), frame(13), frame(14), window(15), window(16)],
    );
    sim.jitter_steps = 3;
    let mut edges = vec![edge("wood", 11, 13, 1000), edge("wood", 11, 14, 1000)];
    for c in [15, 16] {
        for s in [13, 14] {
            edges.push(edge("frame", s, c, 500));
        }
    }
    sim.set_flow(Flow {
        version: FlowVersion(2),
        edges,
        recipes: BTreeMap::new(),
    });
    sim.run(3000);
    let m = |id: u64| {
        sim.stages[&NodeId(id)]
            .core
            .as_ref()
            .unwrap()
            .metrics()
            .clone()
    };
    for (a, b, what) in [(13, 14, "wood received"), (15, 16, "frames received")] {
        let (x, y) = (m(a).batches_received as f64, m(b).batches_received as f64);
        let share = x / (x + y);
        assert!(
            (0.45..=0.55).contains(&share),
            "{what}: {a} {x}, {b} {y}: {a}'s share {share:.2}, the flow's 0.50"
        );
    }
    let (x, y) = (m(13).batches_sent as f64, m(14).batches_sent as f64);
    assert!(
        (0.45..=0.55).contains(&(x / (x + y))),
        "frames sent: 13 {x}, 14 {y}"
    );
}

#[test]
fn messages_per_traded_lot_stay_near_three_without_faults() {
    let mut sim = Sim::window_chain(7);
    sim.run(600);
    let traded: u64 = sim
        .stages
        .values()
        .map(|s| s.core.as_ref().unwrap().metrics().batches_received)
        .sum();
    let beats: u64 = sim
        .stages
        .values()
        .map(|s| s.core.as_ref().unwrap().metrics().heartbeats_sent)
        .sum();
    let unavailable: u64 = sim
        .stages
        .values()
        .map(|s| s.core.as_ref().unwrap().metrics().batch_unavailable_sent)
        .sum();
    let trade_msgs = sim.sent - beats;
    eprintln!("{traded} lots traded with {trade_msgs} trade messages ({unavailable} BatchUnavailable) and {beats} heartbeats");
    // Liveness rides on the trade: busy links get no explicit heartbeat.
    assert!(
        beats * 10 <= traded,
        "{beats} heartbeats for {traded} lots (at most 0.1 per lot)"
    );
    // RequestBatch + BatchSent + DeliveryConfirmed per lot, plus the requests
    // answered "unavailable" while suppliers run dry.
    assert!(
        trade_msgs - 2 * unavailable <= 3 * traded + traded / 10,
        "{trade_msgs} messages for {traded} lots"
    );
}

#[test]
fn a_draining_stage_makes_and_asks_nothing_but_finishes_its_trades() {
    let mut s = frame(13);
    s.outbound_cap = 8;
    let mut sup = StageCore::new(s, Records::default());
    let mut con = StageCore::new(window(15), Records::default());
    let flow = window_flow(3);
    sup.set_flow(Duration::ZERO, &flow);
    con.set_flow(Duration::ZERO, &flow);
    let lot = lot(11, 0, "wood", 3);
    // The frame stage got wood and made a frame it ships on request.
    sup.on_message(
        STEP,
        NodeId(11),
        &env(11, 3, Message::BatchSent { req: None, lot }),
    );
    sup.tick(STEP * 2);
    assert_eq!(sup.outbound_len(), 1);
    sup.take_output();
    sup.on_message(
        STEP * 3,
        NodeId(15),
        &env(
            15,
            3,
            Message::RequestBatch {
                req: RequestId(1),
                item: "frame".into(),
            },
        ),
    );
    assert_eq!(sup.in_transit_len(), 1);
    let sent = sup.take_output();
    sup.drain();
    con.drain();
    // No new trade: a request is refused, cycles and requests stop.
    sup.on_message(
        STEP * 4,
        NodeId(16),
        &env(
            16,
            3,
            Message::RequestBatch {
                req: RequestId(2),
                item: "frame".into(),
            },
        ),
    );
    let made = sup.metrics().successful_manufacture_cycles;
    sup.tick(STEP * 50);
    con.tick(STEP * 50);
    let out = sup.take_output();
    assert!(out
        .send
        .iter()
        .any(|(to, m)| *to == NodeId(16) && matches!(m, Message::BatchUnavailable { .. })));
    assert!(!out
        .send
        .iter()
        .any(|(_, m)| matches!(m, Message::RequestBatch { .. })));
    assert_eq!(sup.metrics().successful_manufacture_cycles, made);
    assert!(!con
        .take_output()
        .send
        .iter()
        .any(|(_, m)| matches!(m, Message::RequestBatch { .. })));
    // The lot in flight still lands and is confirmed.
    let (_, batch) = sent
        .send
        .into_iter()
        .find(|(to, _)| *to == NodeId(15))
        .unwrap();
    con.on_message(STEP * 51, NodeId(13), &env(13, 3, batch));
    let confirm = con
        .take_output()
        .send
        .into_iter()
        .find(|(to, _)| *to == NodeId(13))
        .unwrap()
        .1;
    sup.on_message(STEP * 52, NodeId(15), &env(15, 3, confirm));
    assert_eq!(sup.in_transit_len(), 0);
}

#[test]
fn stages_of_one_host_share_their_links_to_other_hosts() {
    // Frames 13 and 14 run in one host at `a`, the windows in one at `b`,
    // each wood stage alone. 13's host links are also fed by 14: what 14
    // sends to a host spares 13's heartbeat to its watcher there, and what
    // 14 hears from a host keeps the neighbours 13 watches there alive.
    let host = |n: NodeId| {
        let last = match n.0 {
            13 | 14 => 1,
            15 | 16 => 2,
            other => other as u8,
        };
        Some(std::net::SocketAddr::from(([10, 0, 0, last], 7000)))
    };
    let flow = window_flow(5);
    let slice = factoryos_wire::SliceIndex::new(&flow, |_| None).slice(
        &flow,
        NodeId(13),
        Some(&"frame".into()),
        host,
    );
    let watcher = slice.watcher.expect("13 is watched");
    let watched = *slice.watched.first().expect("13 watches someone");
    let mut cfg = frame(13);
    cfg.set_suspect_after(Duration::from_millis(200));
    let mut s = StageCore::new(cfg, Records::default());
    let links = HostLinks::default();
    s.share_host(links.clone());
    assert!(s.set_slice(Duration::ZERO, &slice));
    s.on_message(
        STEP,
        watched,
        &env(watched.0, 5, Message::Heartbeat { seq: 1 }),
    );
    let (mut beats, mut suspects) = (Vec::new(), Vec::new());
    for i in 2..=80 {
        let now = Duration::from_millis(10 * i);
        // The sibling trades with both hosts until 400 ms.
        if now <= Duration::from_millis(400) && i % 5 == 0 {
            links.sent(host(watcher).unwrap(), now);
            links.heard(host(watched).unwrap(), now);
        }
        s.tick(now);
        let out = s.take_output();
        beats.extend(
            out.send
                .iter()
                .filter(|(to, m)| *to == watcher && matches!(m, Message::Heartbeat { .. }))
                .map(|_| now.as_millis()),
        );
        suspects.extend(out.suspects.into_iter().map(|n| (n, now.as_millis())));
    }
    assert_eq!(
        beats.first(),
        Some(&500),
        "no heartbeat while the host's other stage keeps the link awake; one a period after it stops"
    );
    assert_eq!(
        suspects,
        vec![(watched, 600)],
        "kept alive by what the host heard from its host, reported a deadline after that stops"
    );
}

/// Stage `id` of the window chain on its slice of `window_flow(5)`, sharing
/// `links` with its host, every stage on a host of its own at 10.0.0.id.
fn on_hosts(cfg: StageConfig, links: &HostLinks) -> StageCore {
    let mut s = StageCore::new(cfg, Records::default());
    s.share_host(links.clone());
    assert!(s.set_slice(Duration::ZERO, &window_slice(&s, 5)));
    s.take_output();
    s
}

/// `s`'s slice of the window flow at `version`, the stages on hosts of their own.
fn window_slice(s: &StageCore, version: u64) -> factoryos_wire::FlowSlice {
    let flow = window_flow(version);
    let (id, item) = (s.config().id, s.config().item.clone());
    factoryos_wire::SliceIndex::new(&flow, |_| None).slice(&flow, id, Some(&item), host_of)
}

fn host_of(n: NodeId) -> Option<std::net::SocketAddr> {
    Some(std::net::SocketAddr::from(([10, 0, 0, n.0 as u8], 7000)))
}

/// When (ms) `s` answers `consumer`'s parked request unavailable, ticking
/// every 10 ms from `from` to 3 s.
fn refused_at(s: &mut StageCore, consumer: u64, from: Duration) -> Option<u128> {
    (1..=300)
        .map(|i| STEP * i)
        .filter(|now| *now > from)
        .find_map(|now| {
            s.tick(now);
            let out = s.take_output();
            out.send
                .iter()
                .any(|(to, m)| {
                    *to == NodeId(consumer) && matches!(m, Message::BatchUnavailable { .. })
                })
                .then_some(now.as_millis())
        })
}

fn ask_frame(from: u64, req: u64) -> Envelope {
    let item = "frame".into();
    env(
        from,
        5,
        Message::RequestBatch {
            req: RequestId(req),
            item,
        },
    )
}

#[test]
fn a_supplier_holds_a_request_past_park_timeout_only_while_the_consumer_hears_it_and_it_makes_lots_under_one_flow(
) {
    // Frame 13 has no wood, so it makes nothing and parks 15's request.
    let links = HostLinks::default();
    let mut quiet = on_hosts(frame(13), &links);
    quiet.on_message(Duration::ZERO, NodeId(15), &ask_frame(15, 1));
    let cfg = quiet.config().clone();
    assert_eq!(
        refused_at(&mut quiet, 15, Duration::ZERO),
        Some(cfg.park_timeout.as_millis()),
        "nothing went to 15: refused after park_timeout, before 15 takes the silence for a crash"
    );
    // 15 and 16 ask; 13 gets wood for one lot, which goes to 15.
    let parked_and_one_made = |links: &HostLinks| {
        let mut s = on_hosts(frame(13), links);
        s.on_message(Duration::ZERO, NodeId(15), &ask_frame(15, 1));
        s.on_message(Duration::ZERO, NodeId(16), &ask_frame(16, 2));
        let wood = Message::BatchSent {
            req: None,
            lot: lot(11, 0, "wood", 3),
        };
        s.on_message(STEP, NodeId(11), &env(11, 5, wood));
        s.take_output();
        s.tick(STEP * 2);
        let out = s.take_output();
        assert!(out.send.iter().any(|(to, m)| {
            *to == NodeId(15) && matches!(m, Message::BatchSent { req: Some(_), .. })
        }));
        s
    };
    // Another stage of 13's host sends to 16's host: 16 hears that 13 lives,
    // and 13 makes lots, so it holds 16's request for its next one.
    let links = HostLinks::default();
    links.sent(host_of(NodeId(16)).unwrap(), STEP);
    let mut heard = parked_and_one_made(&links);
    assert_eq!(
        refused_at(&mut heard, 16, STEP * 2),
        Some(cfg.park_hold.as_millis()),
        "held until just before 16 gives the request up"
    );
    assert!(cfg.park_timeout < cfg.request_timeout && cfg.park_hold < cfg.request_hold);

    // A new flow after the request: 16 may have other suppliers to ask now.
    let mut new_flow = parked_and_one_made(&links);
    assert!(new_flow.set_slice(STEP * 3, &window_slice(&new_flow, 6)));
    assert_eq!(
        refused_at(&mut new_flow, 16, STEP * 3),
        Some(cfg.park_timeout.as_millis()),
        "asked under the old flow: not held past park_timeout"
    );

    // Heard from, but making nothing since the request came: starved, so
    // refused at park_timeout and the consumer asks a supplier that makes.
    let links = HostLinks::default();
    let mut starved = on_hosts(frame(13), &links);
    starved.on_message(Duration::ZERO, NodeId(15), &ask_frame(15, 1));
    links.sent(host_of(NodeId(15)).unwrap(), STEP);
    assert_eq!(
        refused_at(&mut starved, 15, Duration::ZERO),
        Some(cfg.park_timeout.as_millis()),
        "13 makes nothing: the request goes back after park_timeout"
    );
}

#[test]
fn a_consumer_holds_requests_to_a_supplier_that_speaks_and_asks_a_restarted_one_afresh() {
    let links = HostLinks::default();
    let mut c = on_hosts(window(15), &links);
    c.tick(Duration::ZERO);
    assert_eq!(requests_in(c.take_output()), [NodeId(13), NodeId(14)]);
    // 13's host is heard from; 14's is not.
    links.heard(host_of(NodeId(13)).unwrap(), STEP * 5);
    let cfg = c.config().clone();
    let mut asked = Vec::new();
    for i in 1..=(cfg.request_hold + STEP).as_millis() / 10 {
        let now = STEP * i as u32;
        c.tick(now);
        asked.extend(
            requests_in(c.take_output())
                .into_iter()
                .map(|n| (n, now.as_millis())),
        );
    }
    let (timeout, hold) = (
        cfg.request_timeout.as_millis(),
        cfg.request_hold.as_millis(),
    );
    assert_eq!(
        asked.first(),
        Some(&(NodeId(14), timeout)),
        "the silent supplier's request is given up after request_timeout"
    );
    assert!(
        asked.contains(&(NodeId(13), hold)),
        "the one that speaks keeps it for request_hold: {asked:?}"
    );
    assert!(asked.iter().all(|(n, at)| *n == NodeId(14) || *at >= hold));

    // A supplier's greeting after its restart: what it was asked is gone.
    let mut c = on_hosts(window(15), &links);
    c.tick(Duration::ZERO);
    c.take_output();
    let greeting = env(13, 5, Message::Heartbeat { seq: GREETING });
    c.on_message(STEP, NodeId(13), &greeting);
    c.tick(STEP * 2);
    assert_eq!(
        requests_in(c.take_output()),
        [NodeId(13)],
        "asked again at once"
    );
}
