//! What a drawn operation does, as pure choices from a seeded rng (so a
//! seed replays the same schedule): here, what a recipe update of the
//! original's `update_dep` kind changes. Schedules draw *when*.

use factoryos_wire::model::{Recipe, Spec};
use factoryos_wire::ItemType;
use rand::seq::IndexedRandom;
use rand::Rng;
use std::collections::BTreeSet;

/// What a drawn recipe update does, for the run's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipeChange {
    /// `input` becomes an input (1 unit per cycle).
    AddInput(ItemType),
    /// `input` is no longer needed.
    DropInput(ItemType),
    /// `input` is needed in another quantity.
    Units { input: ItemType, units: u32 },
}

impl RecipeChange {
    /// The change that takes a recipe back to `before`, the recipe this
    /// change was made to.
    pub fn undo(&self, before: &Recipe) -> RecipeChange {
        match self {
            RecipeChange::AddInput(i) => RecipeChange::DropInput(i.clone()),
            RecipeChange::DropInput(i) | RecipeChange::Units { input: i, .. } => {
                RecipeChange::Units {
                    input: i.clone(),
                    units: before.inputs.get(i).copied().unwrap_or(1),
                }
            }
        }
    }
}

impl std::fmt::Display for RecipeChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecipeChange::AddInput(i) => write!(f, "+{i}"),
            RecipeChange::DropInput(i) => write!(f, "-{i}"),
            RecipeChange::Units { input, units } => write!(f, "{input}={units}"),
        }
    }
}

/// Whether `from` needs `to`, directly or through its inputs.
fn depends_on(spec: &Spec, from: &ItemType, to: &ItemType) -> bool {
    let mut stack = vec![from];
    let mut seen = BTreeSet::new();
    while let Some(t) = stack.pop() {
        if t == to {
            return true;
        }
        if !seen.insert(t) {
            continue;
        }
        if let Some(r) = spec.recipe(t) {
            stack.extend(r.inputs.keys());
        }
    }
    false
}

/// Draws a recipe update of the original's `update_dep` kind: a type that
/// is not a raw material gains an input, loses one (never its last) or needs
/// another quantity of one. A gained input is a type some stage makes that
/// does not need the updated type (the chain stays a DAG) and is not the
/// final product. The recipe keeps its version: the store bumps it.
/// `None` when no type can change.
pub fn draw_recipe_update(
    spec: &Spec,
    made: &BTreeSet<ItemType>,
    rng: &mut impl Rng,
) -> Option<(ItemType, Recipe, RecipeChange)> {
    let mut choices: Vec<(ItemType, RecipeChange)> = Vec::new();
    for t in spec.types.iter().filter(|t| !t.recipe.is_raw()) {
        let inputs = &t.recipe.inputs;
        for u in spec.types.iter().map(|u| &u.name) {
            let fits = u != &t.name
                && u != &spec.final_type
                && made.contains(u)
                && !inputs.contains_key(u)
                && !depends_on(spec, u, &t.name);
            if fits {
                choices.push((t.name.clone(), RecipeChange::AddInput(u.clone())));
            }
        }
        if inputs.len() > 1 {
            for i in inputs.keys() {
                choices.push((t.name.clone(), RecipeChange::DropInput(i.clone())));
            }
        }
        for (i, units) in inputs {
            let other = if *units == 1 { 2 } else { 1 };
            choices.push((
                t.name.clone(),
                RecipeChange::Units {
                    input: i.clone(),
                    units: other,
                },
            ));
        }
    }
    let (item, change) = choices.choose(rng)?.clone();
    let mut recipe = spec.recipe(&item)?.clone();
    match &change {
        RecipeChange::AddInput(i) => {
            recipe.inputs.insert(i.clone(), 1);
        }
        RecipeChange::DropInput(i) => {
            recipe.inputs.remove(i);
        }
        RecipeChange::Units { input, units } => {
            recipe.inputs.insert(input.clone(), *units);
        }
    }
    Some((item, recipe, change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use factoryos_coord::generate::{generate, ChainShape, Complexity};
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn drawn_updates_keep_the_chain_a_valid_dag_whatever_the_seed() {
        for seed in 0..40 {
            let mut shape = ChainShape::new(8, 2);
            shape.complexity = Complexity::Medium;
            shape.seed = seed;
            let chain = generate(&shape);
            let made: BTreeSet<ItemType> = chain.stages.iter().map(|s| s.item.clone()).collect();
            let mut spec = chain.spec.clone();
            let mut rng = SmallRng::seed_from_u64(seed);
            for _ in 0..30 {
                let (item, recipe, change) =
                    draw_recipe_update(&spec, &made, &mut rng).expect("a middle type can change");
                assert!(
                    !recipe.inputs.is_empty(),
                    "seed {seed}: {item} lost its last input"
                );
                assert!(
                    !recipe.inputs.contains_key(&spec.final_type),
                    "seed {seed}: {change}"
                );
                // The store's own rule accepts it (a DAG, known inputs).
                spec = factoryos_coord::state::update_recipe(&spec, &item, &recipe)
                    .unwrap_or_else(|e| panic!("seed {seed}: {change} on {item}: {e}"));
            }
        }
    }

    #[test]
    fn each_change_is_undone_by_its_undo() {
        let mut shape = ChainShape::new(8, 2);
        shape.complexity = Complexity::Medium;
        let chain = generate(&shape);
        let made: BTreeSet<ItemType> = chain.stages.iter().map(|s| s.item.clone()).collect();
        let mut rng = SmallRng::seed_from_u64(9);
        let mut kinds = BTreeSet::new();
        for _ in 0..200 {
            let (item, recipe, change) = draw_recipe_update(&chain.spec, &made, &mut rng).unwrap();
            let before = chain.spec.recipe(&item).unwrap();
            let mut back = recipe.clone();
            match change.undo(before) {
                RecipeChange::DropInput(i) => {
                    back.inputs.remove(&i);
                }
                RecipeChange::Units { input, units } => {
                    back.inputs.insert(input, units);
                }
                RecipeChange::AddInput(i) => panic!("no change is undone by adding {i}"),
            }
            assert_eq!(back.inputs, before.inputs, "{item}: {change}");
            kinds.insert(match change {
                RecipeChange::AddInput(_) => "add",
                RecipeChange::DropInput(_) => "drop",
                RecipeChange::Units { .. } => "units",
            });
        }
        assert_eq!(kinds.len(), 3, "every kind of change was drawn");
    }

    #[test]
    fn a_chain_of_raw_materials_only_has_nothing_to_update() {
        let mut shape = ChainShape::new(2, 1);
        shape.seed = 3;
        let mut spec = generate(&shape).spec;
        for t in &mut spec.types {
            t.recipe.inputs.clear();
        }
        let mut rng = SmallRng::seed_from_u64(1);
        assert!(draw_recipe_update(&spec, &BTreeSet::new(), &mut rng).is_none());
    }
}
