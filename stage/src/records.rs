//! What a stage's write-ahead log holds: one record per lot it made and one
//! per lot it received, plus its sequence counter and the newest flow
//! version it has seen, and the recipe it adopted last. The sans-IO core produces these as [`WalOp`]s; the
//! redb WAL stores them; recovery rebuilds the core from them; the audit
//! checks the lot invariant across every stage's records.

use factoryos_wire::model::{Lot, Recipe};
use factoryos_wire::{FlowVersion, LotId, NodeId};
use serde::{Deserialize, Serialize};

/// Where a lot this stage made is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutState {
    /// In the outbound inventory, ready to be sent.
    InQueue,
    /// Sent to `to` (durably recorded before sending), not yet confirmed.
    InTransit { to: NodeId },
    /// `to` confirmed it holds the lot durably.
    Delivered { to: NodeId },
    /// A final product: it left the chain (nobody consumes it).
    Shipped,
}

/// A lot this stage produced, and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutRecord {
    pub lot: Lot,
    pub state: OutState,
}

/// A lot this stage received, and how many of its units are left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InRecord {
    pub lot: Lot,
    pub from: NodeId,
    /// Units not yet consumed (0 = consumed).
    pub remaining: u32,
}

/// The stage's counters that must survive a crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The sequence number of the next lot this stage makes.
    pub next_seq: u64,
    /// The newest flow version this stage has seen.
    pub flow_version: FlowVersion,
}

/// One write to the WAL. A batch of them is committed in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalOp {
    Out(OutRecord),
    In(InRecord),
    Meta(Meta),
    /// The recipe the stage runs from now on (a recipe update it adopted).
    Recipe(Recipe),
}

/// Everything a stage's WAL holds, as recovery reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub out: Vec<OutRecord>,
    pub inbound: Vec<InRecord>,
    pub meta: Meta,
    /// The newest recipe the stage adopted, if it ever adopted one.
    pub recipe: Option<Recipe>,
}

impl Records {
    /// Applies a batch the way the WAL does (records keyed by lot id).
    pub fn apply(&mut self, ops: &[WalOp]) {
        for op in ops {
            match op {
                WalOp::Out(r) => upsert(&mut self.out, r.clone(), |x| x.lot.id),
                WalOp::In(r) => upsert(&mut self.inbound, r.clone(), |x| x.lot.id),
                WalOp::Meta(m) => self.meta = *m,
                WalOp::Recipe(r) => self.recipe = Some(r.clone()),
            }
        }
    }
}

fn upsert<T>(v: &mut Vec<T>, item: T, key: impl Fn(&T) -> LotId) {
    let k = key(&item);
    match v.iter_mut().find(|x| key(x) == k) {
        Some(slot) => *slot = item,
        None => v.push(item),
    }
}
