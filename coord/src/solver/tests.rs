//! The solver's five properties, over random chains and random sequences of
//! deaths and recoveries.

use super::*;
use factoryos_wire::model::{ItemTypeSpec, Recipe};
use proptest::prelude::*;

/// A random layered chain: type i's inputs are among types < i.
#[derive(Debug, Clone)]
struct Case {
    spec: Spec,
    stages: Vec<StageState>,
    k: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..7, 1usize..5)
        .prop_flat_map(|(types, k)| {
            let inputs = proptest::collection::vec(
                proptest::collection::btree_map(0usize..types, 1u32..4, 0..3),
                types,
            );
            let yields = proptest::collection::vec(1u32..5, types);
            let stages = proptest::collection::vec((0usize..types, 1u32..4, any::<bool>()), 1..40);
            (Just(types), Just(k), inputs, yields, stages)
        })
        .prop_map(|(types, k, inputs, yields, stages)| {
            let name = |i: usize| ItemType::new(format!("t{i}"));
            let spec = Spec {
                types: (0..types)
                    .map(|i| ItemTypeSpec {
                        name: name(i),
                        recipe: Recipe {
                            inputs: inputs[i]
                                .iter()
                                .filter(|(j, _)| **j < i)
                                .map(|(j, u)| (name(*j), *u))
                                .collect(),
                            yield_units: yields[i],
                            version: 1,
                        },
                    })
                    .collect(),
                final_type: name(types - 1),
            };
            let stages = stages
                .into_iter()
                .enumerate()
                .map(|(n, (t, capacity, dead))| StageState {
                    id: NodeId(n as u64 + 1),
                    item: name(t),
                    capacity,
                    live: !dead || n % 3 == 0,
                })
                .collect();
            Case { spec, stages, k }
        })
}

fn config(k: usize) -> SolverConfig {
    SolverConfig { max_suppliers: k }
}

fn recipe<'a>(spec: &'a Spec, t: &ItemType) -> &'a Recipe {
    spec.recipe(t).unwrap()
}

fn check_valid_and_complete(case: &Case, plan: &FlowPlan) {
    let by_id: HashMap<NodeId, &StageState> = case.stages.iter().map(|s| (s.id, s)).collect();
    let active: HashSet<NodeId> = plan.active.iter().copied().collect();
    // The active set is exactly the live stages whose inputs all have an active producer.
    let mut active_types: HashSet<ItemType> = HashSet::new();
    for t in topological_order(&case.spec).unwrap() {
        let ok = recipe(&case.spec, t)
            .inputs
            .keys()
            .all(|i| active_types.contains(i));
        if ok && case.stages.iter().any(|s| s.live && &s.item == t) {
            active_types.insert(t.clone());
        }
    }
    for s in &case.stages {
        assert_eq!(
            active.contains(&s.id),
            s.live && active_types.contains(&s.item),
            "{s:?}"
        );
    }
    // Valid.
    for e in &plan.edges {
        let (sup, con) = (by_id[&e.supplier], by_id[&e.consumer]);
        assert!(
            active.contains(&sup.id) && active.contains(&con.id),
            "{e:?}"
        );
        assert_eq!(sup.item, e.item, "{e:?}");
        assert!(
            recipe(&case.spec, &con.item).inputs.contains_key(&e.item),
            "{e:?}"
        );
    }
    // Complete, with shares summing to 1000 per (consumer, input).
    for s in case.stages.iter().filter(|s| active.contains(&s.id)) {
        for input in recipe(&case.spec, &s.item).inputs.keys() {
            let shares: Vec<u32> = plan
                .edges
                .iter()
                .filter(|e| e.consumer == s.id && &e.item == input)
                .map(|e| e.share)
                .collect();
            assert!(
                !shares.is_empty(),
                "stage {} has no supplier of {input}",
                s.id
            );
            assert_eq!(
                shares.iter().sum::<u32>(),
                1000,
                "stage {} input {input}",
                s.id
            );
            assert!(shares.len() <= case.k.max(1), "too many suppliers");
        }
    }
}

fn check_balanced(case: &Case, plan: &FlowPlan) {
    let mut util = utilisation(&case.spec, &case.stages, &plan.edges);
    // Active suppliers that serve nobody count with utilisation 0, but only
    // for items someone consumes.
    let consumed: HashSet<ItemType> = util.keys().map(|(i, _)| i.clone()).collect();
    for s in case.stages.iter().filter(|s| plan.active.contains(&s.id)) {
        if consumed.contains(&s.item) {
            let cap = s.capacity as u64 * recipe(&case.spec, &s.item).yield_units as u64;
            util.entry((s.item.clone(), s.id)).or_insert((0, cap));
        }
    }
    let mut per_item: BTreeMap<&ItemType, Vec<(u64, u64)>> = BTreeMap::new();
    for ((item, _), v) in &util {
        per_item.entry(item).or_default().push(*v);
    }
    for (item, utils) in per_item {
        let demands: Vec<u64> = case
            .stages
            .iter()
            .filter(|s| plan.active.contains(&s.id))
            .filter_map(|s| {
                recipe(&case.spec, &s.item)
                    .inputs
                    .get(item)
                    .map(|u| *u as u64 * s.capacity as u64)
            })
            .collect();
        let suppliers = case
            .stages
            .iter()
            .filter(|s| plan.active.contains(&s.id) && &s.item == item)
            .count();
        assert_eq!(utils.len(), suppliers);
        let min_cap = utils.iter().map(|u| u.1).min().unwrap() as f64;
        let u: Vec<f64> = utils.iter().map(|(l, c)| *l as f64 / *c as f64).collect();
        let spread =
            u.iter().cloned().fold(f64::MIN, f64::max) - u.iter().cloned().fold(f64::MAX, f64::min);
        // Rounding of per-mille shares: at most 1 per consumer.
        let rounding = demands.iter().sum::<u64>() as f64 / min_cap;
        let bound = if suppliers <= case.k {
            rounding
        } else {
            // One consumer's slot, plus rounding.
            let max_slot = demands.iter().max().unwrap() * 1000 / case.k as u64;
            max_slot as f64 / min_cap + rounding
        };
        assert!(
            spread <= bound + 1e-9,
            "{item}: spread {spread} > bound {bound} ({u:?})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn valid_complete_balanced_and_deterministic(case in case()) {
        let plan = solve(&case.spec, &case.stages, &[], &BTreeSet::new(), &config(case.k)).unwrap();
        check_valid_and_complete(&case, &plan);
        check_balanced(&case, &plan);
        // In edge order (item, supplier, consumer): the order a committed
        // flow change rebuilds (`flow_change`).
        prop_assert!(plan.edges.windows(2).all(|w| w[0] < w[1]));
        // Deterministic, whatever order the stages come in.
        let mut reversed = case.stages.clone();
        reversed.reverse();
        let again = solve(&case.spec, &reversed, &[], &BTreeSet::new(), &config(case.k)).unwrap();
        prop_assert_eq!(&again.edges, &plan.edges);
        // Re-solving an unchanged state changes nothing.
        let same = solve(&case.spec, &case.stages, &plan.edges, &BTreeSet::new(), &config(case.k)).unwrap();
        prop_assert_eq!(&same.edges, &plan.edges);
        prop_assert_eq!(same.churn, Churn { kept: plan.edges.len(), added: 0, removed: 0 });
    }

    #[test]
    fn deaths_and_recoveries_keep_the_properties_and_the_surviving_edges(
        case in case(),
        flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..12),
    ) {
        let mut stages = case.stages.clone();
        let mut plan = solve(&case.spec, &stages, &[], &BTreeSet::new(), &config(case.k)).unwrap();
        for flip in flips {
            let i = flip.index(stages.len());
            stages[i].live = !stages[i].live;
            let next = solve(&case.spec, &stages, &plan.edges, &BTreeSet::new(), &config(case.k)).unwrap();
            let now = Case { stages: stages.clone(), ..case.clone() };
            check_valid_and_complete(&now, &next);
            check_balanced(&now, &next);
            // Stable: where consumers take every supplier, every edge whose ends
            // are still active survives.
            for e in &plan.edges {
                let ends_active = next.active.contains(&e.supplier) && next.active.contains(&e.consumer);
                let suppliers = stages.iter().filter(|s| s.item == e.item && next.active.contains(&s.id)).count();
                if ends_active && suppliers <= case.k {
                    prop_assert!(next.edges.iter().any(|n| n.item == e.item && n.supplier == e.supplier && n.consumer == e.consumer), "edge {:?} dropped", e);
                }
            }
            let removed = plan.edges.len() - next.churn.kept;
            prop_assert_eq!(next.churn.removed, removed);
            plan = next;
        }
    }
}

fn window() -> Spec {
    crate::spec::parse("w", include_str!("../../../examples/window.toml"))
        .unwrap()
        .spec
}

fn stage(id: u64, item: &str) -> StageState {
    StageState {
        id: NodeId(id),
        item: item.into(),
        capacity: 1,
        live: true,
    }
}

#[test]
fn the_window_chain_links_every_consumer_to_both_suppliers() {
    let stages: Vec<_> = [
        (1, "wood"),
        (2, "wood"),
        (3, "window-frame"),
        (4, "window-frame"),
        (5, "window"),
        (6, "window"),
    ]
    .into_iter()
    .map(|(i, t)| stage(i, t))
    .collect();
    let plan = solve(
        &window(),
        &stages,
        &[],
        &BTreeSet::new(),
        &SolverConfig::default(),
    )
    .unwrap();
    assert_eq!(plan.edges.len(), 8);
    assert!(plan.edges.iter().all(|e| e.share == 500));
    // Both frame stages die: the window stages are no longer active.
    let mut stages = stages;
    stages[2].live = false;
    stages[3].live = false;
    let plan2 = solve(
        &window(),
        &stages,
        &plan.edges,
        &BTreeSet::new(),
        &SolverConfig::default(),
    )
    .unwrap();
    assert_eq!(plan2.active, vec![NodeId(1), NodeId(2)]);
    assert!(plan2.edges.is_empty());
    assert_eq!(
        plan2.churn,
        Churn {
            kept: 0,
            added: 0,
            removed: 8
        }
    );
}

#[test]
fn a_broken_link_is_routed_around_when_possible() {
    let stages: Vec<_> = [(1, "wood"), (2, "wood"), (3, "window-frame"), (5, "window")]
        .into_iter()
        .map(|(i, t)| stage(i, t))
        .collect();
    // With every supplier linked (the default), the broken link is left out.
    let avoid = BTreeSet::from([(NodeId(1), NodeId(3))]);
    let plan = solve(&window(), &stages, &[], &avoid, &SolverConfig::default()).unwrap();
    let wood: Vec<_> = plan
        .edges
        .iter()
        .filter(|e| e.item.as_str() == "wood")
        .collect();
    assert_eq!(wood.len(), 1);
    assert_eq!((wood[0].supplier, wood[0].share), (NodeId(2), 1000));
    // With one supplier per consumer, too.
    let config = SolverConfig { max_suppliers: 1 };
    let plan = solve(&window(), &stages, &[], &avoid, &config).unwrap();
    let wood: Vec<_> = plan
        .edges
        .iter()
        .filter(|e| e.item.as_str() == "wood")
        .collect();
    assert_eq!(wood.len(), 1);
    assert_eq!(wood[0].supplier, NodeId(2));
    // With no alternative, the avoided link is still used.
    let avoid = BTreeSet::from([(NodeId(3), NodeId(5))]);
    let plan = solve(&window(), &stages, &[], &avoid, &config).unwrap();
    assert!(plan
        .edges
        .iter()
        .any(|e| e.supplier == NodeId(3) && e.consumer == NodeId(5)));
}

#[test]
fn the_other_consumers_lean_on_the_supplier_a_broken_link_spares() {
    let ids = [
        (1, "wood"),
        (2, "wood"),
        (3, "window-frame"),
        (4, "window-frame"),
    ];
    let mut stages: Vec<_> = ids.into_iter().map(|(i, t)| stage(i, t)).collect();
    stages.push(stage(5, "window"));
    let wood = |plan: &FlowPlan| -> Vec<(u64, u64, u32)> {
        plan.edges
            .iter()
            .filter(|e| e.item.as_str() == "wood")
            .map(|e| (e.supplier.0, e.consumer.0, e.share))
            .collect()
    };
    // 3 cannot take from 1, so 2 serves 3 alone, and 4 takes from 1 alone:
    // each wood stage carries one frame stage, as with no broken link.
    let avoid = BTreeSet::from([(NodeId(1), NodeId(3))]);
    let plan = solve(&window(), &stages, &[], &avoid, &SolverConfig::default()).unwrap();
    assert_eq!(wood(&plan), vec![(1, 4, 1000), (2, 3, 1000)]);
    // Three frame stages, one of them cut from 1: the two free ones give 1
    // three quarters of their demand, so both wood stages carry 1.5.
    stages.push(stage(6, "window-frame"));
    let plan = solve(&window(), &stages, &[], &avoid, &SolverConfig::default()).unwrap();
    assert_eq!(
        wood(&plan),
        vec![
            (1, 4, 750),
            (1, 6, 750),
            (2, 3, 1000),
            (2, 4, 250),
            (2, 6, 250)
        ]
    );
    let load = utilisation(&window(), &stages, &plan.edges);
    assert_eq!(
        load[&("wood".into(), NodeId(1))].0,
        load[&("wood".into(), NodeId(2))].0
    );
}

#[test]
fn shares_follow_capacity() {
    let mut stages: Vec<_> = [(1, "wood"), (2, "wood"), (3, "window-frame"), (5, "window")]
        .into_iter()
        .map(|(i, t)| stage(i, t))
        .collect();
    stages[0].capacity = 3;
    let plan = solve(
        &window(),
        &stages,
        &[],
        &BTreeSet::new(),
        &SolverConfig::default(),
    )
    .unwrap();
    let shares: Vec<_> = plan
        .edges
        .iter()
        .filter(|e| e.item.as_str() == "wood")
        .map(|e| e.share)
        .collect();
    assert_eq!(shares, vec![750, 250]);
}

#[test]
fn per_mille_always_sums_to_1000() {
    assert_eq!(per_mille(&[1, 1, 1]), vec![334, 333, 333]);
    assert_eq!(per_mille(&[2, 1]), vec![667, 333]);
    assert_eq!(per_mille(&[5]), vec![1000]);
}

#[test]
fn unknown_types_and_cycles_are_errors() {
    let err = solve(
        &window(),
        &[stage(1, "door")],
        &[],
        &BTreeSet::new(),
        &SolverConfig::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "stage n1 makes `door`, which the spec does not define"
    );
}
