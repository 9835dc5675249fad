//! The search's tests: known-good histories accepted, known-bad ones
//! rejected, and histories a naive search could not decide in time.

use super::*;

const BUDGET: Duration = Duration::from_secs(10);
const ZERO: Register = Register {
    version: 1,
    value: 0,
};

fn op(id: u64, op: RegisterOp, t: (u64, Option<u64>), read: Option<(u32, u32)>) -> Operation {
    Operation {
        id,
        process: id as u32,
        op,
        invoke_ns: t.0,
        complete_ns: t.1,
        read: read.map(|(version, value)| Register { version, value }),
    }
}

fn read(id: u64, t: (u64, u64), seen: (u32, u32)) -> Operation {
    op(
        id,
        RegisterOp::Read { key: "r".into() },
        (t.0, Some(t.1)),
        Some(seen),
    )
}

fn write(id: u64, t: (u64, Option<u64>), value: u32) -> Operation {
    op(
        id,
        RegisterOp::Write {
            key: "r".into(),
            value,
        },
        t,
        None,
    )
}

fn cas(id: u64, t: (u64, Option<u64>), version: u32, value: u32) -> Operation {
    let cas = RegisterOp::Cas {
        key: "r".into(),
        version,
        value,
    };
    op(id, cas, t, None)
}

#[test]
fn sequential_and_overlapping_valid_histories_are_accepted() {
    let seq = [
        read(1, (0, 1), (1, 0)),
        write(2, (2, Some(3)), 5),
        read(3, (4, 5), (2, 5)),
        cas(4, (6, Some(7)), 2, 9),
        read(5, (8, 9), (3, 9)),
    ];
    assert_eq!(check(ZERO, &seq, BUDGET), Outcome::Linearizable);
    // A read overlapping a write may see either side of it.
    let overlap = [
        write(1, (0, Some(10)), 5),
        read(2, (1, 2), (1, 0)),
        read(3, (3, 4), (2, 5)),
    ];
    assert_eq!(check(ZERO, &overlap, BUDGET), Outcome::Linearizable);
}

#[test]
fn a_stale_read_after_a_completed_write_is_rejected() {
    let h = [write(1, (0, Some(1)), 5), read(2, (2, 3), (1, 0))];
    match check(ZERO, &h, BUDGET) {
        Outcome::NotLinearizable { stuck } => {
            assert_eq!(stuck[0].id, 2, "{stuck:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_may_not_go_back_in_time() {
    // Both reads overlap the write, but once one saw it, a later read may not miss it.
    let h = [
        write(1, (0, Some(100)), 5),
        read(2, (10, 20), (2, 5)),
        read(3, (30, 40), (1, 0)),
    ];
    assert!(matches!(
        check(ZERO, &h, BUDGET),
        Outcome::NotLinearizable { .. }
    ));
}

#[test]
fn an_indeterminate_write_may_take_effect_late_or_never() {
    let late = [
        write(1, (0, None), 5),
        read(2, (50, 60), (1, 0)),
        read(3, (70, 80), (2, 5)),
    ];
    assert_eq!(check(ZERO, &late, BUDGET), Outcome::Linearizable);
    let never = [write(1, (0, None), 5), read(2, (50, 60), (1, 0))];
    assert_eq!(check(ZERO, &never, BUDGET), Outcome::Linearizable);
    // But not before it was invoked.
    let early = [read(1, (0, 10), (2, 5)), write(2, (20, None), 5)];
    assert!(matches!(
        check(ZERO, &early, BUDGET),
        Outcome::NotLinearizable { .. }
    ));
}

#[test]
fn a_successful_cas_on_a_version_the_register_never_had_is_rejected() {
    let h = [cas(1, (0, Some(1)), 7, 3)];
    assert!(matches!(
        check(ZERO, &h, BUDGET),
        Outcome::NotLinearizable { .. }
    ));
    // A value no one wrote is rejected too.
    let ghost = [read(1, (0, 1), (2, 42))];
    assert!(matches!(
        check(ZERO, &ghost, BUDGET),
        Outcome::NotLinearizable { .. }
    ));
}

#[test]
fn two_writes_seen_in_both_orders_by_sequential_reads_are_rejected() {
    let h = [
        write(1, (0, Some(10)), 5),
        write(2, (0, Some(10)), 6),
        read(3, (20, 21), (3, 5)),
        read(4, (22, 23), (3, 6)),
    ];
    assert!(matches!(
        check(ZERO, &h, BUDGET),
        Outcome::NotLinearizable { .. }
    ));
}

#[test]
fn a_long_concurrent_history_is_decided_within_its_budget() {
    // 8 clients, 400 ops: writes and reads that follow them exactly.
    let mut ops = Vec::new();
    let mut state = ZERO;
    for i in 0..400u64 {
        let t = i * 10;
        if i % 3 == 0 {
            ops.push(write(i, (t, Some(t + 15)), i as u32));
            state = Register {
                version: state.version + 1,
                value: i as u32,
            };
        } else {
            ops.push(read(i, (t + 16, t + 18), (state.version, state.value)));
        }
    }
    ops.sort_by_key(|o| o.invoke_ns);
    assert_eq!(check(ZERO, &ops, BUDGET), Outcome::Linearizable);
    // A zero budget may still decide small cases, but never guesses.
    let outcome = check(ZERO, &ops, Duration::ZERO);
    assert!(
        matches!(outcome, Outcome::Linearizable | Outcome::Unknown),
        "{outcome:?}"
    );
}

#[test]
fn many_unread_indeterminate_writes_are_decided_by_how_many_took_effect() {
    // 60 writes time out during a partition; nobody reads their values.
    // Then a completed write, and a read that could only be explained if
    // the register went back in time: every count of timed-out writes
    // taking effect must be ruled out, which 2^60 subsets would not be.
    let mut h: Vec<Operation> = (0..60)
        .map(|i| write(i, (i, None), 100 + i as u32))
        .collect();
    h.push(write(60, (100, Some(110)), 5));
    h.push(read(61, (200, 210), (1, 0)));
    assert!(
        matches!(check(ZERO, &h, BUDGET), Outcome::NotLinearizable { .. }),
        "decided within the budget"
    );
    // A read that needs exactly 20 of them to have taken effect first.
    h.pop();
    h.push(read(61, (200, 210), (22, 5)));
    assert_eq!(check(ZERO, &h, BUDGET), Outcome::Linearizable);
}

#[test]
fn interchangeable_indeterminate_cas_still_need_their_version() {
    // Two timed-out CAS from version 1 (values nobody read): at most one
    // can take effect, so a read two versions past the write is impossible.
    let h = [
        cas(1, (0, None), 1, 7),
        cas(2, (1, None), 1, 8),
        write(3, (10, Some(20)), 9),
        read(4, (30, 40), (3, 9)),
    ];
    assert_eq!(check(ZERO, &h, BUDGET), Outcome::Linearizable);
    let mut two = h.clone();
    two[3] = read(4, (30, 40), (4, 9));
    assert!(matches!(
        check(ZERO, &two, BUDGET),
        Outcome::NotLinearizable { .. }
    ));
}

#[test]
fn operations_are_taken_from_a_history_by_register() {
    let h = vec![
        Entry::Invoke {
            t_ns: 1,
            process: 0,
            id: 1,
            op: RegisterOp::Write {
                key: "a".into(),
                value: 3,
            },
        },
        Entry::Invoke {
            t_ns: 2,
            process: 1,
            id: 2,
            op: RegisterOp::Read { key: "b".into() },
        },
        Entry::Info {
            t_ns: 3,
            process: 1,
            id: 2,
            error: "timeout".into(),
        },
        Entry::Ok {
            t_ns: 4,
            process: 0,
            id: 1,
            read: None,
        },
    ];
    let ops = operations(&h);
    assert_eq!(ops.len(), 1, "the indeterminate read says nothing");
    assert_eq!(ops["a"][0].complete_ns, Some(4));
}
