//! The ideal twin: the same chain, recipes, cycle time and number of cycles
//! (the stages' whole wall time, start-up included) run in memory with
//! instant trades and no faults. A lot made in cycle `k`
//! can be consumed in cycle `k + 1` (by any stage that needs its type: the
//! twin ignores the flow, it is the physical limit), raw materials are made
//! every cycle, and a type's stock is capped by its stages' outbound
//! inventories. Its final-product count is the most the chain can make in
//! that time; a run's **efficiency** is its final products divided by it.

use factoryos_coord::solver::StageState;
use factoryos_wire::model::Spec;
use factoryos_wire::ItemType;
use std::collections::{BTreeMap, HashMap};

/// Final products the chain can make in `cycles` cycles.
pub fn final_products(spec: &Spec, stages: &[StageState], cycles: u64, outbound_cap: usize) -> u64 {
    // Types in dependency order (spec order is a valid one when inputs come first;
    // sort by depth to be safe).
    let mut depth: HashMap<&ItemType, usize> = HashMap::new();
    fn depth_of<'a>(
        spec: &'a Spec,
        t: &'a ItemType,
        memo: &mut HashMap<&'a ItemType, usize>,
    ) -> usize {
        if let Some(d) = memo.get(t) {
            return *d;
        }
        let d = spec
            .recipe(t)
            .map(|r| {
                r.inputs
                    .keys()
                    .map(|i| depth_of(spec, i, memo) + 1)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        memo.insert(t, d);
        d
    }
    for t in &spec.types {
        depth_of(spec, &t.name, &mut depth);
    }
    let mut order: Vec<&ItemType> = spec.types.iter().map(|t| &t.name).collect();
    order.sort_by_key(|t| (depth[t], *t));

    let mut by_type: BTreeMap<&ItemType, Vec<&StageState>> = BTreeMap::new();
    for s in stages.iter().filter(|s| s.live) {
        by_type.entry(&s.item).or_default().push(s);
    }
    // Units in stock per type, and the cap of each type's stock.
    let mut stock: HashMap<&ItemType, u64> = HashMap::new();
    let cap = |t: &ItemType| -> u64 {
        let n = by_type.get(t).map_or(0, |v| v.len()) as u64;
        let y = spec.recipe(t).map_or(1, |r| r.yield_units) as u64;
        n * outbound_cap.max(1) as u64 * y
    };
    let mut finals = 0u64;
    for _ in 0..cycles {
        let mut made: HashMap<&ItemType, u64> = HashMap::new();
        for t in &order {
            let Some(recipe) = spec.recipe(t) else {
                continue;
            };
            let is_final = *t == &spec.final_type;
            for _stage in by_type.get(t).map(Vec::as_slice).unwrap_or(&[]) {
                let room = is_final
                    || stock.get(t).copied().unwrap_or(0)
                        + made.get(t).copied().unwrap_or(0)
                        + recipe.yield_units as u64
                        <= cap(t);
                let inputs_ok = recipe
                    .inputs
                    .iter()
                    .all(|(i, u)| stock.get(i).copied().unwrap_or(0) >= *u as u64);
                if !room || !inputs_ok {
                    continue;
                }
                for (i, u) in &recipe.inputs {
                    *stock.get_mut(i).expect("checked above") -= *u as u64;
                }
                if is_final {
                    finals += 1;
                } else {
                    *made.entry(t).or_default() += recipe.yield_units as u64;
                }
            }
        }
        for (t, units) in made {
            *stock.entry(t).or_default() += units;
        }
    }
    finals
}

#[cfg(test)]
mod tests {
    use super::*;
    use factoryos_wire::NodeId;

    fn window() -> (Spec, Vec<StageState>) {
        let chain =
            factoryos_coord::spec::parse("w", include_str!("../../../examples/window.toml"))
                .unwrap();
        let stages = chain.stage_states(&Default::default());
        (chain.spec, stages)
    }

    #[test]
    fn the_window_chain_fills_its_pipeline_then_makes_two_windows_a_cycle() {
        let (spec, stages) = window();
        // Cycle 0: wood. 1: frames (2 x 5 from 6 wood). 2 onwards: both window
        // stages take 2 frames each; wood (6/cycle) feeds 2 frame stages (3 each).
        let n = final_products(&spec, &stages, 100, 8);
        assert!((190..=200).contains(&n), "{n}");
        assert_eq!(
            final_products(&spec, &stages, 2, 8),
            0,
            "the pipeline is 3 cycles deep"
        );
    }

    #[test]
    fn dead_stages_and_missing_suppliers_lower_the_limit() {
        let (spec, mut stages) = window();
        let all = final_products(&spec, &stages, 100, 8);
        stages.iter_mut().find(|s| s.id == NodeId(16)).unwrap().live = false;
        let one_window_stage = final_products(&spec, &stages, 100, 8);
        assert!(
            one_window_stage < all && one_window_stage >= all / 2 - 2,
            "{one_window_stage} vs {all}"
        );
        for s in stages.iter_mut().filter(|s| s.item.as_str() == "wood") {
            s.live = false;
        }
        assert_eq!(final_products(&spec, &stages, 100, 8), 0);
    }
}
