//! The solver benchmark behind `factoryos bench flow`: solve times for
//! generated chains of growing size, fresh and after one stage's death.

use crate::generate::{generate, ChainShape, Complexity};
use crate::solver::{solve, SolverConfig};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// One measured shape.
#[derive(Debug, Clone)]
pub struct FlowBenchRow {
    pub stages: usize,
    pub types: usize,
    pub per_type: usize,
    pub complexity: Complexity,
    pub edges: usize,
    pub fresh_p50: Duration,
    pub fresh_max: Duration,
    pub recompute_p50: Duration,
    pub recompute_max: Duration,
}

/// The shapes measured: (types, stages per type, complexity).
pub const SHAPES: &[(usize, usize, Complexity)] = &[
    (10, 10, Complexity::Medium),
    (100, 10, Complexity::Medium),
    (20, 50, Complexity::Low),
    (1_000, 10, Complexity::Low),
    (200, 50, Complexity::Low),
    (100, 100, Complexity::Low),
];

/// Measures one shape over `runs` repetitions.
pub fn measure(types: usize, per_type: usize, complexity: Complexity, runs: usize) -> FlowBenchRow {
    let mut shape = ChainShape::new(types, per_type);
    shape.complexity = complexity;
    shape.replicate_ends = true;
    let chain = generate(&shape);
    let mut stages = chain.stage_states(&BTreeSet::new());
    let none = BTreeSet::new();
    let config = SolverConfig::default();
    let mut fresh = Vec::new();
    let mut recompute = Vec::new();
    let mut edges = 0;
    for run in 0..runs.max(1) {
        let t = Instant::now();
        let plan =
            solve(&chain.spec, &stages, &[], &none, &config).expect("generated chains are valid");
        fresh.push(t.elapsed());
        edges = plan.edges.len();
        // Kill one middle stage, recompute from the previous flow, revive it.
        let victim = stages.len() / 2 + run % per_type.max(1);
        let victim = victim.min(stages.len() - 1);
        stages[victim].live = false;
        let t = Instant::now();
        let next = solve(&chain.spec, &stages, &plan.edges, &none, &config).expect("valid");
        recompute.push(t.elapsed());
        std::hint::black_box(next);
        stages[victim].live = true;
    }
    fresh.sort();
    recompute.sort();
    FlowBenchRow {
        stages: stages.len(),
        types,
        per_type,
        complexity,
        edges,
        fresh_p50: fresh[fresh.len() / 2],
        fresh_max: *fresh.last().expect("runs >= 1"),
        recompute_p50: recompute[recompute.len() / 2],
        recompute_max: *recompute.last().expect("runs >= 1"),
    }
}

impl std::fmt::Display for FlowBenchRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6} stages ({:>4} types x {:>3}, {:<6}) {:>7} edges   fresh p50 {:>9.2?} max {:>9.2?}   after a death p50 {:>9.2?} max {:>9.2?}",
            self.stages,
            self.types,
            self.per_type,
            format!("{:?}", self.complexity).to_lowercase(),
            self.edges,
            self.fresh_p50,
            self.fresh_max,
            self.recompute_p50,
            self.recompute_max
        )
    }
}
