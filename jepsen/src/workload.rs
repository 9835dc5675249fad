//! The config-store workload, as Jepsen runs against etcd: clients read,
//! write and compare-and-set a few registers through the coordination
//! client, and every invocation and completion goes into the history.
//!
//! A register is the recipe of a type no stage makes (`reg-0`, `reg-1`, ...;
//! raw materials, input of nothing, so production never notices): a write
//! is `UpdateRecipe` with the value as its yield, a read is a linearizable
//! `ReadRecipe` returning the yield and the version, a compare-and-set is an
//! `UpdateRecipe` that applies only if the version is still the one named.
//! Each client talks to one coordinator and never retries: an operation
//! that times out or finds no quorum is indeterminate (`info`), never
//! counted as failed.

use crate::history::{Entry, History, Register, RegisterOp};
use factoryos_coord::client::{ClientError, CoordClient};
use factoryos_coord::spec::ChainSpec;
use factoryos_wire::model::{ItemTypeSpec, Recipe};
use factoryos_wire::{ErrorKind, ItemType, NodeId, Transport};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The registers' type names.
pub fn register_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("reg-{i}")).collect()
}

/// Adds `n` register types to `chain`'s spec (raw, made by no stage).
pub fn add_registers(chain: &mut ChainSpec, n: usize) {
    for name in register_names(n) {
        chain.spec.types.push(ItemTypeSpec {
            name: ItemType::from(name.as_str()),
            recipe: Recipe {
                inputs: BTreeMap::new(),
                yield_units: 1,
                version: 1,
            },
        });
    }
}

/// Each register's state before any operation (from the spec).
pub fn initial_states(chain: &ChainSpec, n: usize) -> BTreeMap<String, Register> {
    register_names(n)
        .into_iter()
        .filter_map(|name| {
            let r = chain.spec.recipe(&ItemType::from(name.as_str()))?;
            Some((
                name,
                Register {
                    version: r.version,
                    value: r.yield_units,
                },
            ))
        })
        .collect()
}

/// How long a client waits for one operation before calling it indeterminate.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client waits after an indeterminate outcome.
const INFO_BACKOFF: Duration = Duration::from_millis(500);

/// The coordinators in the group now, with their addresses: clients pick
/// theirs from it at each operation, so they follow membership changes.
#[derive(Debug, Clone, Default)]
pub struct Members(Arc<RwLock<Vec<(NodeId, SocketAddr)>>>);

impl Members {
    pub fn new(members: impl IntoIterator<Item = (NodeId, SocketAddr)>) -> Self {
        Members(Arc::new(RwLock::new(members.into_iter().collect())))
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.read().iter().map(|(id, _)| *id).collect()
    }

    /// Replaces the list (an empty one is ignored: nothing was learnt).
    pub fn set(&self, members: &[(NodeId, SocketAddr)]) {
        if !members.is_empty() {
            *self.0.write().unwrap_or_else(|e| e.into_inner()) = members.to_vec();
        }
    }

    /// Client `k`'s coordinator now.
    fn pick(&self, k: usize) -> Option<(NodeId, SocketAddr)> {
        let list = self.read();
        (!list.is_empty()).then(|| list[k % list.len()])
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(NodeId, SocketAddr)>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the clients share.
#[derive(Clone)]
struct Shared {
    history: History,
    keys: Arc<Vec<String>>,
    next_id: Arc<AtomicU64>,
    next_value: Arc<AtomicU32>,
}

/// Starts one client per transport, client `k` on the `k`-th coordinator of
/// `members` (as it is at each operation), until `stop` turns true or is
/// dropped.
pub fn spawn(
    transports: Vec<Transport>,
    members: Members,
    keys: Vec<String>,
    history: History,
    seed: u64,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let shared = Shared {
        history,
        keys: Arc::new(keys),
        next_id: Arc::default(),
        next_value: Arc::new(AtomicU32::new(2)),
    };
    transports
        .into_iter()
        .enumerate()
        .map(|(k, transport)| {
            let rng = SmallRng::seed_from_u64(seed ^ ((k as u64 + 1) * 0x9e37));
            let me = Client {
                process: k as u32,
                transport,
                members: members.clone(),
            };
            tokio::spawn(client_loop(me, shared.clone(), rng, stop.clone()))
        })
        .collect()
}

/// One client: its endpoint and where it finds its coordinator.
struct Client {
    process: u32,
    transport: Transport,
    members: Members,
}

impl Client {
    /// A one-shot client of this client's coordinator now.
    fn coordinator(&self) -> Option<CoordClient> {
        let (id, addr) = self.members.pick(self.process as usize)?;
        let book = self.transport.peers();
        if book.addr(id) != Some(addr) {
            book.insert(id, addr);
        }
        Some(
            CoordClient::new(self.transport.clone(), vec![id])
                .with_attempts(1)
                .with_timeout(OP_TIMEOUT),
        )
    }
}

async fn client_loop(me: Client, shared: Shared, mut rng: SmallRng, stop: watch::Receiver<bool>) {
    let process = me.process;
    // The version this client last read of each register (its CAS guesses).
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut indeterminate = false;
    // Ends when told to, or when whoever could tell it is gone.
    while !*stop.borrow() && stop.has_changed().is_ok() {
        let Some(client) = me.coordinator() else {
            tokio::time::sleep(INFO_BACKOFF).await;
            continue;
        };
        let key = shared.keys[rng.random_range(0..shared.keys.len())].clone();
        let op = match rng.random_range(0..4) {
            0 | 1 => RegisterOp::Read { key },
            2 => RegisterOp::Write {
                value: shared.next_value.fetch_add(1, Ordering::Relaxed),
                key,
            },
            _ => RegisterOp::Cas {
                version: seen.get(&key).copied().unwrap_or(1),
                value: shared.next_value.fetch_add(1, Ordering::Relaxed),
                key,
            },
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        shared.history.push(Entry::Invoke {
            t_ns: History::now(),
            process,
            id,
            op: op.clone(),
        });
        let outcome = perform(&client, &op).await;
        let t_ns = History::now();
        shared.history.push(match outcome {
            Outcome::Ok(read) => {
                if let Some(r) = read {
                    seen.insert(op.key().to_owned(), r.version);
                }
                Entry::Ok {
                    t_ns,
                    process,
                    id,
                    read,
                }
            }
            Outcome::Fail(error) => Entry::Fail {
                t_ns,
                process,
                id,
                error,
            },
            Outcome::Info(error) => {
                indeterminate = true;
                Entry::Info {
                    t_ns,
                    process,
                    id,
                    error,
                }
            }
        });
        // After an indeterminate outcome (no quorum, most likely) back off:
        // each one is an operation the checker must place anywhere later.
        let pause = if std::mem::take(&mut indeterminate) {
            INFO_BACKOFF
        } else {
            Duration::from_millis(rng.random_range(10..60))
        };
        tokio::time::sleep(pause).await;
    }
}

enum Outcome {
    Ok(Option<Register>),
    /// Certainly not applied.
    Fail(String),
    /// Maybe applied.
    Info(String),
}

async fn perform(client: &CoordClient, op: &RegisterOp) -> Outcome {
    let recipe = |value: u32| Recipe {
        inputs: BTreeMap::new(),
        yield_units: value,
        version: 0,
    };
    let result = match op {
        RegisterOp::Read { key } => {
            return match client.read_recipe(ItemType::from(key.as_str()), true).await {
                Ok(r) => Outcome::Ok(Some(Register {
                    version: r.version,
                    value: r.yield_units,
                })),
                Err(e) => classify(e),
            }
        }
        RegisterOp::Write { key, value } => {
            client
                .update_recipe(ItemType::from(key.as_str()), recipe(*value), None)
                .await
        }
        RegisterOp::Cas {
            key,
            version,
            value,
        } => {
            client
                .update_recipe(ItemType::from(key.as_str()), recipe(*value), Some(*version))
                .await
        }
    };
    match result {
        Ok(_) => Outcome::Ok(None),
        Err(e) => classify(e),
    }
}

/// A refusal on the merits, or by a node that could not forward, did not
/// apply; anything else (no answer, no quorum) may have.
fn classify(e: ClientError) -> Outcome {
    match &e {
        ClientError::Refused(s) => match s.kind {
            ErrorKind::Rejected | ErrorKind::Forbidden | ErrorKind::NotLeader { .. } => {
                Outcome::Fail(e.to_string())
            }
            ErrorKind::Unavailable => Outcome::Info(e.to_string()),
        },
        ClientError::Unavailable { .. } | ClientError::Unexpected(_) => {
            Outcome::Info(e.to_string())
        }
    }
}
