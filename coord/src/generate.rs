//! Generated chains in the original system's shape, so presets compare like
//! for like: type 0 is the raw material, type n-1 the final product, and the
//! types between them are joined by a random DAG whose edge budget grows
//! with the complexity. All quantities are 1, as in the original.
//!
//! The DAG always contains the spine `t0 -> t1 -> ... -> t(n-2)`, so every
//! type is reachable from the raw material; the final type takes as inputs
//! every middle type that nothing else consumes, so every type feeds the
//! final product. Same parameters and seed, same chain.

use crate::spec::{ChainSpec, StageDecl};
use factoryos_wire::model::{ItemTypeSpec, Recipe, Spec};
use factoryos_wire::{ItemType, NodeId};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet};

/// How densely the middle types depend on each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Complexity {
    /// n-2 edges: a line.
    Low,
    /// (n-2)(n-3)/4 edges.
    Medium,
    /// (n-2)(n-3)/2 edges: every earlier middle type feeds every later one.
    High,
}

impl std::str::FromStr for Complexity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Complexity::Low),
            "medium" | "med" => Ok(Complexity::Medium),
            "high" => Ok(Complexity::High),
            other => Err(format!(
                "unknown complexity {other:?}: use low, medium or high"
            )),
        }
    }
}

/// Parameters of a generated chain.
#[derive(Debug, Clone)]
pub struct ChainShape {
    /// Item types, raw and final included (at least 2).
    pub num_types: usize,
    /// Stages per middle type.
    pub nodes_per_type: usize,
    pub complexity: Complexity,
    pub seed: u64,
    /// Give the raw and final types `nodes_per_type` stages too (the original had one each).
    pub replicate_ends: bool,
    /// Id of the first stage; the others follow.
    pub first_id: u64,
}

impl ChainShape {
    pub fn new(num_types: usize, nodes_per_type: usize) -> Self {
        ChainShape {
            num_types,
            nodes_per_type,
            complexity: Complexity::Low,
            seed: 0,
            replicate_ends: false,
            first_id: 1,
        }
    }
}

fn type_name(i: usize) -> ItemType {
    ItemType::new(format!("t{i}"))
}

/// Generates the chain. `num_types` below 2 is raised to 2 and
/// `nodes_per_type` below 1 to 1.
pub fn generate(shape: &ChainShape) -> ChainSpec {
    let n = shape.num_types.max(2);
    let k = shape.nodes_per_type.max(1);
    let mut rng = SmallRng::seed_from_u64(shape.seed);

    // Edges j -> i (j < i) among types 0..n-1 (the final type excluded).
    let middle = n - 2;
    let mut edges: BTreeSet<(usize, usize)> = (1..n - 1).map(|i| (i - 1, i)).collect();
    let budget = match shape.complexity {
        Complexity::Low => middle,
        Complexity::Medium => middle * middle.saturating_sub(1) / 4,
        Complexity::High => middle * middle.saturating_sub(1) / 2,
    }
    .max(edges.len());
    let mut extra: Vec<(usize, usize)> = (1..n - 1)
        .flat_map(|i| (1..i).map(move |j| (j, i)))
        .filter(|e| !edges.contains(e))
        .collect();
    extra.shuffle(&mut rng);
    for e in extra.into_iter().take(budget - edges.len()) {
        edges.insert(e);
    }
    let mut inputs: BTreeMap<usize, BTreeMap<ItemType, u32>> = BTreeMap::new();
    for (j, i) in &edges {
        inputs.entry(*i).or_default().insert(type_name(*j), 1);
    }
    // The final type consumes every type nothing else consumes.
    let consumed: BTreeSet<usize> = edges.iter().map(|(j, _)| *j).collect();
    let finals: BTreeMap<ItemType, u32> = (0..n - 1)
        .filter(|t| !consumed.contains(t))
        .map(|t| (type_name(t), 1))
        .collect();
    inputs.insert(n - 1, finals);

    let types = (0..n)
        .map(|i| ItemTypeSpec {
            name: type_name(i),
            recipe: Recipe {
                inputs: inputs.remove(&i).unwrap_or_default(),
                yield_units: 1,
                version: 1,
            },
        })
        .collect();
    let mut stages = Vec::new();
    let mut id = shape.first_id;
    for t in 0..n {
        let count = if (t == 0 || t == n - 1) && !shape.replicate_ends {
            1
        } else {
            k
        };
        for _ in 0..count {
            stages.push(StageDecl {
                id: NodeId(id),
                item: type_name(t),
                addr: None,
                capacity: 1,
            });
            id += 1;
        }
    }
    ChainSpec {
        spec: Spec {
            types,
            final_type: type_name(n - 1),
        },
        stages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_original() {
        for (c, expected_middle_edges) in [
            (Complexity::Low, 8),
            (Complexity::Medium, 14),
            (Complexity::High, 28),
        ] {
            let mut shape = ChainShape::new(10, 2);
            shape.complexity = c;
            let chain = generate(&shape);
            assert_eq!(chain.spec.types.len(), 10);
            assert_eq!(chain.stages.len(), 1 + 8 * 2 + 1);
            let middle_edges: usize = chain.spec.types[..9]
                .iter()
                .map(|t| t.recipe.inputs.len())
                .sum();
            assert_eq!(middle_edges, expected_middle_edges, "{c:?}");
            assert!(chain.spec.types[0].recipe.is_raw());
        }
    }

    #[test]
    fn same_seed_same_chain_and_every_type_feeds_the_final() {
        let mut shape = ChainShape::new(12, 3);
        shape.complexity = Complexity::Medium;
        shape.seed = 7;
        let a = generate(&shape);
        assert_eq!(a, generate(&shape));
        shape.seed = 8;
        assert_ne!(a.spec, generate(&shape).spec);
        // Valid by the spec checker's rules: render it and parse it back.
        let text = crate::spec::render(&a);
        let parsed = crate::spec::parse("generated", &text).unwrap();
        assert_eq!(parsed, a);
    }

    #[test]
    fn replicate_ends_gives_the_ends_k_stages() {
        let mut shape = ChainShape::new(5, 2);
        shape.replicate_ends = true;
        assert_eq!(generate(&shape).stages.len(), 10);
    }
}
