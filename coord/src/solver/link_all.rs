//! Few suppliers: every consumer linked to every supplier, shares in
//! proportion to capacity, and balanced again around links to avoid.

use super::{per_mille, StageState};
use factoryos_wire::model::FlowEdge;
use factoryos_wire::{ItemType, NodeId};
use std::collections::BTreeSet;

/// Every consumer to every supplier, shares in proportion to capacity. A
/// consumer with links to avoid is served by the other suppliers alone
/// (unless none is left); the consumers without any then lean on the
/// suppliers those links spared, so that every supplier's load / capacity
/// stays as even as it can be.
pub(super) fn link_all(
    t: &ItemType,
    suppliers: &[&StageState],
    consumers: &[(&StageState, u64)],
    avoid: &BTreeSet<(NodeId, NodeId)>,
    edges: &mut Vec<FlowEdge>,
) {
    let weights: Vec<u64> = suppliers.iter().map(|s| s.capacity.max(1) as u64).collect();
    let mut edge = |s: usize, c: &StageState, share: u32| {
        if share > 0 {
            edges.push(FlowEdge {
                item: t.clone(),
                supplier: suppliers[s].id,
                consumer: c.id,
                share,
            });
        }
    };
    // Per supplier, the load (demand * per mille) of the consumers that
    // avoid a link; the others are free to go where the room is.
    let mut bound_load = vec![0u64; suppliers.len()];
    let mut free = Vec::new();
    for &(c, demand) in consumers {
        let usable: Vec<usize> = (0..suppliers.len())
            .filter(|&i| !avoid.contains(&(suppliers[i].id, c.id)))
            .collect();
        if usable.is_empty() || usable.len() == suppliers.len() {
            free.push((c, demand));
            continue;
        }
        let w: Vec<u64> = usable.iter().map(|&i| weights[i]).collect();
        for (i, share) in usable.into_iter().zip(per_mille(&w)) {
            bound_load[i] += demand * share as u64;
            edge(i, c, share);
        }
    }
    let free_demand: u64 = free.iter().map(|(_, d)| d * 1000).sum();
    let shares = if bound_load.iter().all(|&l| l == 0) {
        per_mille(&weights)
    } else {
        per_mille(&fill(&weights, &bound_load, free_demand))
    };
    for (c, _) in free {
        for (i, share) in shares.iter().enumerate() {
            edge(i, c, *share);
        }
    }
}

/// Water filling: splits `free` over suppliers of capacity `weights` that
/// already carry `load`, so that the fullest (load / capacity) is as low as
/// it can be. What each supplier gets, scaled to integers for `per_mille`.
fn fill(weights: &[u64], load: &[u64], free: u64) -> Vec<u64> {
    let level = |i: usize| load[i] as f64 / weights[i] as f64;
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| level(a).total_cmp(&level(b)).then(a.cmp(&b)));
    // The water level: the first k suppliers (least full) share `free` so
    // that they all reach it, and it is below the (k+1)-th's own level.
    let (mut w, mut l) = (0.0, 0.0);
    let mut water = 0.0;
    for (k, &i) in order.iter().enumerate() {
        w += weights[i] as f64;
        l += load[i] as f64;
        water = (free as f64 + l) / w;
        if order.get(k + 1).is_none_or(|&next| water <= level(next)) {
            break;
        }
    }
    (0..weights.len())
        .map(|i| ((water * weights[i] as f64 - load[i] as f64).max(0.0) * 1000.0).round() as u64)
        .collect()
}
