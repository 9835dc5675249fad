//! The flow solver: which supplier feeds which consumer.
//!
//! Given the spec, every registered stage with its liveness and capacity, the
//! previous flow and the links to avoid, [`solve`] returns the edges of the
//! new flow. Its properties (tested as properties in `solver/tests.rs`):
//!
//! 1. **Valid** — every edge joins a live, active supplier of type `t` to a
//!    live, active consumer whose recipe needs `t`.
//! 2. **Complete** — a stage is *active* when it is live and every input type
//!    has an active stage (raw-material stages are always active); every
//!    active stage gets at least one supplier per input.
//! 3. **Balanced** — the demand for `t` is spread over its suppliers in
//!    proportion to their capacity: a consumer linked to *every* supplier of
//!    `t` splits its demand in proportion to capacity (exact balance; around
//!    a link to avoid, the other consumers shift their shares so that load /
//!    capacity stays even, `solver/link_all.rs`); where
//!    there are more suppliers than `max_suppliers` (default 8), each consumer
//!    gets `max_suppliers` of them (shares again in proportion to capacity),
//!    chosen greedily and then rebalanced so that supplier utilisations
//!    (load / capacity) differ by at most about one consumer's slot.
//! 4. **Stable** — an edge whose two ends are still live and active is kept
//!    unless balance needs it moved; [`Churn`] counts what changed.
//! 5. **Deterministic** — the same input gives the same flow (ids order every
//!    choice; no hash-map order leaks out). 10,000 stages solve in a few ms.

use factoryos_wire::model::{FlowEdge, Recipe, Spec};
use factoryos_wire::{ItemType, NodeId};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

mod balancer;
mod link_all;

use balancer::Balancer;
use link_all::link_all;

/// A registered stage as the solver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageState {
    pub id: NodeId,
    pub item: ItemType,
    /// Lots per cycle the stage can make (weighs its supply and its demand).
    pub capacity: u32,
    pub live: bool,
}

/// Solver settings.
#[derive(Debug, Clone)]
pub struct SolverConfig {
    /// Most suppliers of one input type a consumer is linked to. With fewer
    /// suppliers than this, a consumer is linked to all of them.
    pub max_suppliers: usize,
}

impl Default for SolverConfig {
    fn default() -> Self {
        SolverConfig { max_suppliers: 8 }
    }
}

/// What changed between the previous flow and the new one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Churn {
    pub kept: usize,
    pub added: usize,
    pub removed: usize,
}

/// The solver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowPlan {
    /// Sorted by (item, supplier, consumer).
    pub edges: Vec<FlowEdge>,
    /// Active stages, sorted.
    pub active: Vec<NodeId>,
    pub churn: Churn,
}

/// Why no flow could be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolveError {
    #[error("the spec's types form a cycle through `{0}`")]
    Cycle(ItemType),
    #[error("stage {stage} makes `{item}`, which the spec does not define")]
    UnknownType { stage: NodeId, item: ItemType },
    #[error("no spec is installed")]
    NoSpec,
}

/// Computes a flow. `avoid` lists (supplier, consumer) links reported broken:
/// they are used only when the consumer has no other supplier of that type.
pub fn solve(
    spec: &Spec,
    stages: &[StageState],
    previous: &[FlowEdge],
    avoid: &BTreeSet<(NodeId, NodeId)>,
    config: &SolverConfig,
) -> Result<FlowPlan, SolveError> {
    let chain = Chain::new(spec, stages)?;
    let previous_keys = chain.keyed(previous);
    let mut previous_suppliers: HashMap<(usize, NodeId), Vec<NodeId>> = HashMap::new();
    for (t, supplier, consumer) in &previous_keys {
        previous_suppliers
            .entry((*t, *consumer))
            .or_default()
            .push(*supplier);
    }
    let (live_active, consumers_of) = chain.demand(stages);
    let edges = chain.link(&consumers_of, &previous_suppliers, avoid, config);
    let before: HashSet<(usize, NodeId, NodeId)> = previous_keys.into_iter().collect();
    let after = chain.keyed(&edges);
    let kept = after.iter().filter(|k| before.contains(k)).count();
    let churn = Churn {
        kept,
        added: after.len() - kept,
        removed: before.len() - kept,
    };
    Ok(FlowPlan {
        edges,
        active: live_active.iter().map(|s| s.id).collect(),
        churn,
    })
}

/// The chain as one solve sees it: recipes, the dependency order, the live
/// stages of each type and which types are active.
struct Chain<'a> {
    recipes: HashMap<&'a ItemType, &'a Recipe>,
    order: Vec<&'a ItemType>,
    /// Live stages by type, sorted by id.
    by_type: HashMap<&'a ItemType, Vec<&'a StageState>>,
    active_types: HashSet<&'a ItemType>,
    /// Types by index, to key maps by integers rather than by names.
    type_index: HashMap<&'a ItemType, usize>,
}

/// Consumers of each input type, with their demand (units per cycle), by id.
type Demand<'a> = HashMap<&'a ItemType, Vec<(&'a StageState, u64)>>;

impl<'a> Chain<'a> {
    fn new(spec: &'a Spec, stages: &'a [StageState]) -> Result<Self, SolveError> {
        let recipes: HashMap<&ItemType, &Recipe> =
            spec.types.iter().map(|t| (&t.name, &t.recipe)).collect();
        if let Some(s) = stages.iter().find(|s| !recipes.contains_key(&s.item)) {
            return Err(SolveError::UnknownType {
                stage: s.id,
                item: s.item.clone(),
            });
        }
        let order = topological_order(spec)?;
        let mut by_type: HashMap<&ItemType, Vec<&StageState>> = HashMap::new();
        for s in stages.iter().filter(|s| s.live) {
            by_type.entry(&s.item).or_default().push(s);
        }
        for list in by_type.values_mut() {
            list.sort_by_key(|s| s.id);
        }
        // Active types, in dependency order: made by a live stage, from active inputs.
        let mut active_types: HashSet<&ItemType> = HashSet::new();
        for t in &order {
            let producible = recipes[t].inputs.keys().all(|i| active_types.contains(i));
            if producible && by_type.get(t).is_some_and(|l| !l.is_empty()) {
                active_types.insert(t);
            }
        }
        let type_index = spec
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| (&t.name, i))
            .collect();
        Ok(Chain {
            recipes,
            order,
            by_type,
            active_types,
            type_index,
        })
    }

    /// Edges as (type index, supplier, consumer).
    fn keyed(&self, edges: &[FlowEdge]) -> Vec<(usize, NodeId, NodeId)> {
        // Edges come grouped by item: look each name up once per run.
        let mut last: Option<(&ItemType, Option<usize>)> = None;
        let mut out = Vec::with_capacity(edges.len());
        for e in edges {
            let idx = match last {
                Some((item, idx)) if item == &e.item => idx,
                _ => self.type_index.get(&e.item).copied(),
            };
            last = Some((&e.item, idx));
            if let Some(i) = idx {
                out.push((i, e.supplier, e.consumer));
            }
        }
        out
    }

    /// The live, active stages (by id) and what each input type is asked for.
    fn demand(&self, stages: &'a [StageState]) -> (Vec<&'a StageState>, Demand<'a>) {
        let mut live_active: Vec<&StageState> = stages
            .iter()
            .filter(|s| s.live && self.active_types.contains(&s.item))
            .collect();
        live_active.sort_by_key(|s| s.id);
        let mut consumers_of: Demand = HashMap::new();
        for s in &live_active {
            for (input, units) in &self.recipes[&s.item].inputs {
                consumers_of
                    .entry(input)
                    .or_default()
                    .push((s, *units as u64 * s.capacity.max(1) as u64));
            }
        }
        (live_active, consumers_of)
    }

    /// Links the consumers of every active type to its suppliers; the
    /// edges sorted by (item, supplier, consumer).
    fn link(
        &self,
        consumers_of: &Demand<'a>,
        previous_suppliers: &HashMap<(usize, NodeId), Vec<NodeId>>,
        avoid: &BTreeSet<(NodeId, NodeId)>,
        config: &SolverConfig,
    ) -> Vec<FlowEdge> {
        let mut groups: Vec<(&ItemType, Vec<FlowEdge>)> = Vec::new();
        for t in &self.order {
            if !self.active_types.contains(t) {
                continue;
            }
            let Some(consumers) = consumers_of.get(t) else {
                continue;
            };
            let suppliers: &[&StageState] = &self.by_type[t];
            let yield_units = self.recipes[t].yield_units as u64;
            let k = config.max_suppliers.max(1);
            let mut group = Vec::new();
            if suppliers.len() <= k {
                link_all(t, suppliers, consumers, avoid, &mut group);
            } else {
                let ti = self.type_index[t];
                let prev = |c: NodeId| {
                    previous_suppliers
                        .get(&(ti, c))
                        .map(Vec::as_slice)
                        .unwrap_or(&[])
                };
                Balancer::new(t, suppliers, yield_units, consumers, k, avoid).run(prev, &mut group);
            }
            group.sort_unstable_by_key(|e| (e.supplier, e.consumer));
            groups.push((t, group));
        }
        groups.sort_unstable_by(|a, b| a.0.cmp(b.0));
        groups.into_iter().flat_map(|(_, g)| g).collect()
    }
}

/// Types in dependency order (inputs before the types that use them): by
/// depth (raw materials 0, a type one more than its deepest input), then by
/// name.
pub fn topological_order(spec: &Spec) -> Result<Vec<&ItemType>, SolveError> {
    let mut graph = petgraph::graph::DiGraph::<&ItemType, ()>::new();
    let index: HashMap<&ItemType, _> = spec
        .types
        .iter()
        .map(|t| (&t.name, graph.add_node(&t.name)))
        .collect();
    for t in &spec.types {
        for input in t.recipe.inputs.keys() {
            if let Some(&from) = index.get(input) {
                graph.add_edge(from, index[&t.name], ());
            }
        }
    }
    let order = petgraph::algo::toposort(&graph, None)
        .map_err(|cycle| SolveError::Cycle(graph[cycle.node_id()].clone()))?;
    // Depth (longest chain of inputs below a type), then name: one order
    // whatever petgraph's traversal, so every caller walks types alike.
    let mut depth: HashMap<&ItemType, usize> = HashMap::with_capacity(order.len());
    for n in &order {
        let t = graph[*n];
        let d = graph
            .neighbors_directed(*n, petgraph::Direction::Incoming)
            .map(|i| depth[graph[i]] + 1)
            .max()
            .unwrap_or(0);
        depth.insert(t, d);
    }
    let mut types: Vec<&ItemType> = order.into_iter().map(|n| graph[n]).collect();
    types.sort_by(|a, b| (depth[a], *a).cmp(&(depth[b], *b)));
    Ok(types)
}

/// Splits 1000 per-mille over `weights` by largest remainder (ties to the
/// earlier index), so shares always sum to exactly 1000.
fn per_mille(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum::<u64>().max(1);
    let mut shares: Vec<u32> = weights.iter().map(|w| (w * 1000 / total) as u32).collect();
    let mut rest = 1000 - shares.iter().sum::<u32>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weights[i] * 1000 % total));
    for i in order {
        if rest == 0 {
            break;
        }
        shares[i] += 1;
        rest -= 1;
    }
    shares
}

/// Per supplier, per item: utilisation as (load in units*1000, capacity in
/// units) — used by tests, `factoryos flow` and the leader's logs.
pub fn utilisation(
    spec: &Spec,
    stages: &[StageState],
    edges: &[FlowEdge],
) -> BTreeMap<(ItemType, NodeId), (u64, u64)> {
    let recipes: HashMap<&ItemType, &Recipe> =
        spec.types.iter().map(|t| (&t.name, &t.recipe)).collect();
    let by_id: HashMap<NodeId, &StageState> = stages.iter().map(|s| (s.id, s)).collect();
    let mut out: BTreeMap<(ItemType, NodeId), (u64, u64)> = BTreeMap::new();
    for e in edges {
        let (Some(sup), Some(con)) = (by_id.get(&e.supplier), by_id.get(&e.consumer)) else {
            continue;
        };
        let demand = recipes[&con.item].inputs.get(&e.item).copied().unwrap_or(0) as u64
            * con.capacity.max(1) as u64;
        let cap = sup.capacity.max(1) as u64 * recipes[&sup.item].yield_units.max(1) as u64;
        let entry = out.entry((e.item.clone(), e.supplier)).or_insert((0, cap));
        entry.0 += demand * e.share as u64;
    }
    out
}

#[cfg(test)]
mod tests;
