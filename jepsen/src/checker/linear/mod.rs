//! Linearizability of registers: is there one order of the operations,
//! consistent with real time (an operation that completed before another
//! was invoked comes first), in which every operation behaves as on a
//! single register? The search is Wing & Gong's, with Lowe's memo of
//! (operations linearized, register state) as Porcupine does it, one
//! register at a time (registers are independent, so the history is
//! linearizable if each register's is).
//!
//! The register holds `(version, value)`. A write sets the value and bumps
//! the version; a compare-and-set does so only if the version is the one it
//! names; a read returns both. A failed operation did nothing and is left
//! out; an indeterminate one (`info`) may have taken effect at any time
//! after its invocation, or never; an indeterminate read says nothing and is
//! left out. A search that runs out of its time budget (or of memory for
//! its memo) answers `unknown`, never a guess.
//!
//! Two reductions keep histories with many indeterminate operations (a
//! partition leaves dozens) tractable. A value no read ever returned is the
//! same as any other such value (only reads look at values), so states are
//! remembered with it blanked. And indeterminate operations with the same
//! effect (writes of unread values; compare-and-sets of one version to an
//! unread value) are interchangeable: the search only places the earliest
//! invoked of them not placed yet, so it tries how many took effect, not
//! which subset did.

use crate::history::{Entry, Register, RegisterOp};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// An operation on one register, with its real-time interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: u64,
    pub process: u32,
    pub op: RegisterOp,
    pub invoke_ns: u64,
    /// `None`: indeterminate (it may complete at any later time, or never).
    pub complete_ns: Option<u64>,
    /// A completed read's result.
    pub read: Option<Register>,
}

/// The verdict on one register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    /// No order fits; `stuck` are the operations the deepest attempt could
    /// not place (the one whose completion it could not pass, first).
    NotLinearizable {
        stuck: Vec<Operation>,
    },
    /// The time budget ran out.
    Unknown,
}

/// The operations of each register, from a history: completed and
/// indeterminate ones; failed ones and indeterminate reads left out.
pub fn operations(history: &[Entry]) -> BTreeMap<String, Vec<Operation>> {
    let mut invoked: HashMap<u64, (u32, RegisterOp, u64)> = HashMap::new();
    let mut done: Vec<Operation> = Vec::new();
    for e in history {
        match e {
            Entry::Invoke {
                t_ns,
                process,
                id,
                op,
            } => {
                invoked.insert(*id, (*process, op.clone(), *t_ns));
            }
            Entry::Ok { t_ns, id, read, .. } => {
                if let Some((process, op, invoke_ns)) = invoked.remove(id) {
                    done.push(Operation {
                        id: *id,
                        process,
                        op,
                        invoke_ns,
                        complete_ns: Some(*t_ns),
                        read: *read,
                    });
                }
            }
            Entry::Fail { id, .. } => {
                invoked.remove(id);
            }
            Entry::Info { id, .. } => {
                if let Some((process, op, invoke_ns)) = invoked.remove(id) {
                    if !matches!(op, RegisterOp::Read { .. }) {
                        done.push(Operation {
                            id: *id,
                            process,
                            op,
                            invoke_ns,
                            complete_ns: None,
                            read: None,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    // Invoked and never completed (the run ended): indeterminate.
    for (id, (process, op, invoke_ns)) in invoked {
        if !matches!(op, RegisterOp::Read { .. }) {
            done.push(Operation {
                id,
                process,
                op,
                invoke_ns,
                complete_ns: None,
                read: None,
            });
        }
    }
    let mut by_key: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    for op in done {
        by_key.entry(op.op.key().to_owned()).or_default().push(op);
    }
    for ops in by_key.values_mut() {
        ops.sort_by_key(|o| (o.invoke_ns, o.id));
    }
    by_key
}

/// What `op` does to `state`: the state after it, or `None` if it cannot
/// happen there (a read that sees something else, a CAS on another
/// version: for an indeterminate one that is the same as never happening).
fn step(state: Register, op: &Operation) -> Option<Register> {
    let next = |value| Register {
        version: state.version + 1,
        value,
    };
    match &op.op {
        RegisterOp::Read { .. } => (op.read == Some(state)).then_some(state),
        RegisterOp::Write { value, .. } => Some(next(*value)),
        RegisterOp::Cas { version, value, .. } => (*version == state.version).then(|| next(*value)),
    }
}

/// The states a search tells apart: values no read returned are all one
/// (`blank`), since only a read can see a value.
#[derive(Debug, Clone)]
struct Values {
    read: HashSet<u32>,
    blank: u32,
}

impl Values {
    fn of(ops: &[Operation]) -> Self {
        let read: HashSet<u32> = ops.iter().filter_map(|o| o.read.map(|r| r.value)).collect();
        let blank = (0..=u32::MAX)
            .rev()
            .find(|v| !read.contains(v))
            .expect("fewer reads than values");
        Values { read, blank }
    }

    fn canon(&self, r: Register) -> Register {
        if self.read.contains(&r.value) {
            r
        } else {
            Register {
                version: r.version,
                value: self.blank,
            }
        }
    }

    /// For each indeterminate operation, the previous indeterminate one
    /// (in invocation order) with the same effect, if any.
    fn twins(&self, ops: &[Operation]) -> Vec<Option<usize>> {
        // Keyed by the version a compare-and-set needs (`None`: a write).
        let mut last: HashMap<Option<u32>, usize> = HashMap::new();
        ops.iter()
            .enumerate()
            .map(|(i, o)| {
                if o.complete_ns.is_some() {
                    return None;
                }
                let (needs, value) = match &o.op {
                    RegisterOp::Read { .. } => return None,
                    RegisterOp::Write { value, .. } => (None, *value),
                    RegisterOp::Cas { version, value, .. } => (Some(*version), *value),
                };
                if self.read.contains(&value) {
                    return None;
                }
                last.insert(needs, i)
            })
            .collect()
    }
}

/// Which operations are placed so far.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Placed(Vec<u64>);

impl Placed {
    fn new(n: usize) -> Self {
        Placed(vec![0; n.div_ceil(64)])
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize, on: bool) {
        if on {
            self.0[i / 64] |= 1 << (i % 64);
        } else {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }
}

/// The search over one register's operations, sorted by invocation.
struct Search<'a> {
    ops: &'a [Operation],
    placed: Placed,
    /// Completions of the definite operations not placed yet: (time, index).
    open: std::collections::BTreeSet<(u64, usize)>,
    state: Register,
    /// An indeterminate operation is only tried once its twin is placed.
    twins: Vec<Option<usize>>,
}

impl Search<'_> {
    /// Operations that may come next: not placed, invoked before the first
    /// completion among the definite ones not placed. Definite ones first
    /// (most histories are linearizable without the indeterminate ones
    /// taking effect, so trying those last finds an order soonest).
    fn candidates(&self) -> Vec<usize> {
        let horizon = self.open.first().map_or(u64::MAX, |(t, _)| *t);
        let mut definite = Vec::new();
        let mut maybe = Vec::new();
        for (i, op) in self.ops.iter().enumerate() {
            if op.invoke_ns > horizon {
                break;
            }
            if self.placed.has(i) {
                continue;
            }
            if op.complete_ns.is_some() {
                definite.push(i);
            } else if self.twins[i].is_none_or(|t| self.placed.has(t)) {
                maybe.push(i);
            }
        }
        definite.extend(maybe);
        definite
    }

    fn place(&mut self, i: usize, next: Register) {
        self.placed.set(i, true);
        if let Some(t) = self.ops[i].complete_ns {
            self.open.remove(&(t, i));
        }
        self.state = next;
    }

    fn unplace(&mut self, i: usize, before: Register) {
        self.placed.set(i, false);
        if let Some(t) = self.ops[i].complete_ns {
            self.open.insert((t, i));
        }
        self.state = before;
    }
}

/// The most (placed set, state) pairs remembered before the search gives
/// up (`unknown`): about a gigabyte for long histories.
const MAX_MEMO: usize = 2_000_000;

/// A depth of the search: the candidates there, the next one to try, and
/// the operation whose placing led there with the state before it.
type Frame = (Vec<usize>, usize, Option<(usize, Register)>);

/// Checks one register's operations, from `initial`, within `budget`.
pub fn check(initial: Register, ops: &[Operation], budget: Duration) -> Outcome {
    let started = Instant::now();
    let mut ops = ops.to_vec();
    ops.sort_by_key(|o| (o.invoke_ns, o.id));
    let values = Values::of(&ops);
    let mut search = Search {
        twins: values.twins(&ops),
        placed: Placed::new(ops.len()),
        open: ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| Some((o.complete_ns?, i)))
            .collect(),
        ops: &ops,
        state: values.canon(initial),
    };
    let mut frames: Vec<Frame> = vec![(search.candidates(), 0, None)];
    let mut seen: HashSet<(Placed, Register)> = HashSet::new();
    let mut deepest = (0usize, None::<usize>);
    let mut steps: u64 = 0;
    loop {
        if search.open.is_empty() {
            return Outcome::Linearizable;
        }
        steps += 1;
        let spent = started.elapsed() > budget || seen.len() > MAX_MEMO;
        if steps.is_multiple_of(4096) && spent {
            return Outcome::Unknown;
        }
        let depth = frames.len();
        let frame = frames.last_mut().expect("the root frame stays");
        let Some(&i) = frame.0.get(frame.1) else {
            // Nothing fits here: the first open completion cannot be passed.
            if depth >= deepest.0 {
                deepest = (depth, search.open.first().map(|(_, i)| *i));
            }
            let (_, _, placed) = frames.pop().expect("a frame to leave");
            match placed {
                Some((op, before)) => search.unplace(op, before),
                None => {
                    let at = deepest.1.unwrap_or(0);
                    return Outcome::NotLinearizable {
                        stuck: stuck(&ops, at),
                    };
                }
            }
            continue;
        };
        frame.1 += 1;
        let Some(next) = step(search.state, &ops[i]).map(|r| values.canon(r)) else {
            continue;
        };
        let before = search.state;
        search.place(i, next);
        if seen.insert((search.placed.clone(), next)) {
            frames.push((search.candidates(), 0, Some((i, before))));
        } else {
            search.unplace(i, before);
        }
    }
}

/// The operation the deepest attempt could not pass, then every operation
/// concurrent with it.
fn stuck(ops: &[Operation], at: usize) -> Vec<Operation> {
    let Some(op) = ops.get(at) else {
        return Vec::new();
    };
    let end = op.complete_ns.unwrap_or(u64::MAX);
    let mut out = vec![op.clone()];
    out.extend(
        ops.iter()
            .filter(|o| o.id != op.id)
            .filter(|o| o.invoke_ns <= end && o.complete_ns.is_none_or(|c| c >= op.invoke_ns))
            .cloned(),
    );
    out
}

#[cfg(test)]
mod tests;
