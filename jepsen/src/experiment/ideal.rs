//! The ideal twin: the same chain, recipes, cycle time and number of cycles
//! (the stages' whole wall time, start-up included) run in memory with
//! instant trades and no faults. A lot can be consumed in the cycle it is
//! made, by any stage that needs its type (the twin ignores the flow), as if
//! every stage's cycle came just after its suppliers': the chain has no
//! pipeline latency at all, which no arrangement of real, unsynchronised
//! cycles can beat. A stage makes up to its capacity of lots a cycle, as the
//! real ones do. Raw materials are made every cycle, and a type's stock
//! is capped by what the real stages can hold: their outbound inventories
//! and their consumers' inbound buffers.
//! Its final-product count is the most the chain can make in that time; a
//! run's **efficiency** is its final products divided by it.

use factoryos_coord::solver::{topological_order, StageState};
use factoryos_stage::setup::Tuning;
use factoryos_wire::model::{Recipe, Spec};
use factoryos_wire::ItemType;
use std::collections::{BTreeMap, HashMap};

/// A change of the chain during a run, which the twin makes at the same
/// cycle: these are not faults, they change what the chain can make.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainChange {
    /// `item` is made by `recipe` from this cycle on.
    Recipe { item: ItemType, recipe: Recipe },
    /// A new stage joins the chain.
    AddStage(StageState),
}

/// A [`ChainChange`] at a cycle (counted from the twin's start).
#[derive(Debug, Clone, PartialEq)]
pub struct ChainEvent {
    pub cycle: u64,
    pub change: ChainChange,
}

/// What the twin made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TwinRun {
    pub final_products: u64,
    /// Successful cycles of the stages that are not raw materials...
    pub successful_cycles: u64,
    /// ... out of all their cycles.
    pub cycles: u64,
}

impl TwinRun {
    /// Successful / all cycles of the stages that are not raw materials.
    pub fn successful_ratio(&self) -> f64 {
        self.successful_cycles as f64 / self.cycles.max(1) as f64
    }
}

/// Final products the chain can make in `cycles` cycles, its stages tuned as `tuning`.
pub fn final_products(spec: &Spec, stages: &[StageState], cycles: u64, tuning: &Tuning) -> u64 {
    simulate(spec, stages, cycles, tuning, &[]).final_products
}

/// Types in dependency order (inputs first, then by depth and name), by the
/// solver's own rule; a spec with a cycle (which no store accepts) is taken
/// in spec order.
fn dependency_order(spec: &Spec) -> Vec<ItemType> {
    match topological_order(spec) {
        Ok(order) => order.into_iter().cloned().collect(),
        Err(_) => spec.types.iter().map(|t| t.name.clone()).collect(),
    }
}

/// The most stock of each type the real stages can hold: its makers'
/// outbound inventories and its users' inbound buffers (the target buffer).
fn stock_caps(
    spec: &Spec,
    stages_of: &BTreeMap<ItemType, Vec<u32>>,
    tuning: &Tuning,
) -> HashMap<ItemType, u64> {
    // Lots of capacity: what the stages' outbound and inbound room scales with.
    let count = |t: &ItemType| {
        stages_of
            .get(t)
            .map_or(0, |c| c.iter().map(|c| u64::from(*c)).sum())
    };
    let mut caps: HashMap<ItemType, u64> = spec
        .types
        .iter()
        .map(|t| {
            let outbound = count(&t.name) * tuning.outbound_cap.max(1) as u64;
            (t.name.clone(), outbound * t.recipe.yield_units as u64)
        })
        .collect();
    for c in &spec.types {
        for (input, units) in &c.recipe.inputs {
            *caps.entry(input.clone()).or_default() +=
                count(&c.name) * *units as u64 * tuning.target_cycles.max(1) as u64;
        }
    }
    caps
}

/// Runs the twin for `cycles` cycles with the run's chain changes.
pub fn simulate(
    spec: &Spec,
    stages: &[StageState],
    cycles: u64,
    tuning: &Tuning,
    events: &[ChainEvent],
) -> TwinRun {
    let mut spec = spec.clone();
    let mut order = dependency_order(&spec);
    // The capacities of the live stages of each type.
    let mut stages_of: BTreeMap<ItemType, Vec<u32>> = BTreeMap::new();
    for s in stages.iter().filter(|s| s.live) {
        stages_of
            .entry(s.item.clone())
            .or_default()
            .push(s.capacity.max(1));
    }
    let mut events: Vec<&ChainEvent> = events.iter().collect();
    events.sort_by_key(|e| e.cycle);
    let mut events = events.into_iter().peekable();
    // Units in stock per type.
    let mut stock: HashMap<ItemType, u64> = HashMap::new();
    let mut run = TwinRun::default();
    let mut caps = stock_caps(&spec, &stages_of, tuning);
    for cycle in 0..cycles {
        let mut changed = false;
        while let Some(e) = events.next_if(|e| e.cycle <= cycle) {
            changed = true;
            match &e.change {
                ChainChange::Recipe { item, recipe } => {
                    if let Some(t) = spec.types.iter_mut().find(|t| &t.name == item) {
                        t.recipe = recipe.clone();
                    }
                    order = dependency_order(&spec);
                }
                ChainChange::AddStage(s) => {
                    if s.live {
                        stages_of
                            .entry(s.item.clone())
                            .or_default()
                            .push(s.capacity.max(1));
                    }
                }
            }
        }
        if changed {
            caps = stock_caps(&spec, &stages_of, tuning);
        }
        for t in &order {
            let Some(recipe) = spec.recipe(t) else {
                continue;
            };
            let capacities = stages_of.get(t).map_or(&[][..], Vec::as_slice);
            let cap = caps.get(t).copied().unwrap_or(0);
            let is_final = *t == spec.final_type;
            make_type(t, recipe, is_final, capacities, cap, &mut stock, &mut run);
        }
    }
    run
}

/// One cycle of every stage of type `t` (capacities of its live stages),
/// with `cap` the most stock of `t` there is room for.
fn make_type(
    t: &ItemType,
    recipe: &Recipe,
    is_final: bool,
    capacities: &[u32],
    cap: u64,
    stock: &mut HashMap<ItemType, u64>,
    run: &mut TwinRun,
) {
    if !recipe.is_raw() {
        run.cycles += capacities.len() as u64;
    }
    for capacity in capacities {
        let mut made = 0;
        for _lot in 0..*capacity {
            let room =
                is_final || stock.get(t).copied().unwrap_or(0) + recipe.yield_units as u64 <= cap;
            let inputs_ok = recipe
                .inputs
                .iter()
                .all(|(i, u)| stock.get(i).copied().unwrap_or(0) >= *u as u64);
            if !room || !inputs_ok {
                break;
            }
            for (i, u) in &recipe.inputs {
                *stock.get_mut(i).expect("checked above") -= *u as u64;
            }
            made += 1;
            if is_final {
                run.final_products += 1;
            } else {
                // Usable downstream in this very cycle.
                *stock.entry(t.clone()).or_default() += recipe.yield_units as u64;
            }
        }
        if made > 0 && !recipe.is_raw() {
            run.successful_cycles += 1;
        }
    }
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
    fn a_stage_of_capacity_two_makes_two_lots_a_cycle() {
        let (spec, mut stages) = window();
        let base = simulate(&spec, &stages, 100, &Tuning::default(), &[]);
        // Every stage twice as big: twice the windows, the same cycle count.
        for s in &mut stages {
            s.capacity = 2;
        }
        let double = simulate(&spec, &stages, 100, &Tuning::default(), &[]);
        assert_eq!(double.final_products, 2 * base.final_products);
        assert_eq!(double.cycles, base.cycles);
    }

    #[test]
    fn the_window_chain_makes_two_windows_a_cycle_from_the_first() {
        let (spec, stages) = window();
        // Every cycle: 6 wood -> 2 x 5 frames -> both window stages take 2
        // frames each. No pipeline latency: windows from cycle 0.
        assert_eq!(final_products(&spec, &stages, 100, &Tuning::default()), 200);
        assert_eq!(final_products(&spec, &stages, 1, &Tuning::default()), 2);
        // Windows succeed every cycle; the frame stages make 10 frames a
        // cycle for 4 used, so once their stock is full they block: in the
        // long run 4 of 10 frame cycles succeed.
        let run = simulate(&spec, &stages, 100, &Tuning::default(), &[]);
        assert_eq!(run.cycles, 400);
        assert!((290..=300).contains(&run.successful_cycles), "{run:?}");
    }

    #[test]
    fn dead_stages_and_missing_suppliers_lower_the_limit() {
        let (spec, mut stages) = window();
        let all = final_products(&spec, &stages, 100, &Tuning::default());
        stages.iter_mut().find(|s| s.id == NodeId(16)).unwrap().live = false;
        let one_window_stage = final_products(&spec, &stages, 100, &Tuning::default());
        assert!(
            one_window_stage < all && one_window_stage >= all / 2 - 2,
            "{one_window_stage} vs {all}"
        );
        for s in stages.iter_mut().filter(|s| s.item.as_str() == "wood") {
            s.live = false;
        }
        assert_eq!(final_products(&spec, &stages, 100, &Tuning::default()), 0);
    }

    #[test]
    fn chain_changes_take_effect_at_their_cycle() {
        let (spec, stages) = window();
        let base = final_products(&spec, &stages, 100, &Tuning::default());
        // From cycle 50 a window needs 8 frames instead of 2: frame stages
        // make 10 a cycle, so 1.25 windows a cycle instead of 2.
        let mut slow = spec.recipe(&"window".into()).unwrap().clone();
        slow.inputs.insert("window-frame".into(), 8);
        let recipe = ChainEvent {
            cycle: 50,
            change: ChainChange::Recipe {
                item: "window".into(),
                recipe: slow,
            },
        };
        let n = simulate(&spec, &stages, 100, &Tuning::default(), &[recipe]).final_products;
        assert!(n < base && n > base / 2, "{n} vs {base}");
        // A third window stage from cycle 0: 3 windows a cycle (6 of the 10 frames).
        let extra = ChainEvent {
            cycle: 0,
            change: ChainChange::AddStage(StageState {
                id: NodeId(99),
                item: "window".into(),
                capacity: 1,
                live: true,
            }),
        };
        let more = simulate(&spec, &stages, 100, &Tuning::default(), &[extra]).final_products;
        assert!(more > base * 14 / 10, "{more} vs {base}");
    }
}
