use super::*;
use factoryos_wire::model::{ItemTypeSpec, Recipe};

fn spec() -> Spec {
    crate::spec::parse("w", include_str!("../../../examples/window.toml"))
        .unwrap()
        .spec
}

fn stage(id: u64, item: &str) -> StageDescriptor {
    StageDescriptor {
        id: NodeId(id),
        item: item.into(),
        addr: "127.0.0.1:1".parse().unwrap(),
        recipe_version: 1,
        capacity: 1,
    }
}

fn rejected(r: &CommandResponse) -> bool {
    matches!(r, CommandResponse::Rejected { .. })
}

#[test]
fn registrations_bump_the_config_version_only_when_something_changes() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    assert_eq!(c.config_version, 1);
    c.apply(
        2,
        &Command::RegisterStage {
            stage: stage(1, "wood"),
        },
    );
    assert_eq!(c.config_version, 2);
    // The same registration again (a restart at the same address) changes nothing.
    c.apply(
        3,
        &Command::RegisterStage {
            stage: stage(1, "wood"),
        },
    );
    assert_eq!(c.config_version, 2);
    // A stage of an unknown type is refused.
    assert!(rejected(&c.apply(
        4,
        &Command::RegisterStage {
            stage: stage(2, "door")
        }
    )));
    assert!(!c.stages.contains_key(&NodeId(2)));
}

#[test]
fn a_host_registers_all_its_stages_in_one_entry_or_none_of_them() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    let host = Command::RegisterStages {
        stages: vec![stage(1, "wood"), stage(2, "wood")],
    };
    assert!(!rejected(&c.apply(2, &host)));
    assert_eq!(c.config_version, 2);
    assert!(c.stages.contains_key(&NodeId(1)) && c.stages.contains_key(&NodeId(2)));
    let events = host.event(2, &CommandResponse::Applied { index: 2 });
    assert_eq!(events.len(), 2, "one registration event per stage");
    // One refused stage (an unknown type) refuses the host, and says which.
    let bad = Command::RegisterStages {
        stages: vec![stage(3, "wood"), stage(4, "door")],
    };
    let r = c.apply(3, &bad);
    assert!(
        matches!(&r, CommandResponse::Rejected { reason } if reason.contains("stage n4")),
        "{r:?}"
    );
    assert!(
        !c.stages.contains_key(&NodeId(3)),
        "none of a refused host is registered"
    );
    assert!(bad.event(3, &r).is_empty());
    assert!(rejected(
        &c.apply(4, &Command::RegisterStages { stages: vec![] })
    ));
    assert_eq!(c.config_version, 2);
}

#[test]
fn a_stale_commit_flow_is_refused_and_a_current_one_installs_the_flow() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    c.apply(
        2,
        &Command::RegisterStage {
            stage: stage(1, "wood"),
        },
    );
    assert!(c.flow_is_stale());
    let r = c.apply(
        3,
        &Command::CommitFlow {
            based_on: 1,
            edges: vec![],
        },
    );
    assert_eq!(
        r,
        CommandResponse::Rejected {
            reason: "stale flow: computed from configuration 1, current is 2".into()
        }
    );
    assert_eq!(c.flow.version, FlowVersion(0));
    let r = c.apply(
        4,
        &Command::CommitFlow {
            based_on: 2,
            edges: vec![],
        },
    );
    assert_eq!(
        r,
        CommandResponse::FlowCommitted {
            version: FlowVersion(4)
        }
    );
    assert_eq!(c.flow.version, FlowVersion(4));
    assert!(!c.flow_is_stale());
}

#[test]
fn a_flow_change_installs_the_same_flow_as_the_whole_one_on_the_flow_it_was_made_for() {
    use crate::flow_change::FlowChange;
    use factoryos_wire::model::FlowEdge;
    let edge = |s: u64, c: u64, share: u32| FlowEdge {
        item: "wood".into(),
        supplier: NodeId(s),
        consumer: NodeId(c),
        share,
    };
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    c.apply(
        2,
        &Command::RegisterStage {
            stage: stage(1, "wood"),
        },
    );
    let first = vec![edge(1, 3, 500), edge(2, 3, 500)];
    c.apply(
        3,
        &Command::CommitFlow {
            based_on: 2,
            edges: first.clone(),
        },
    );
    c.apply(
        4,
        &Command::RegisterStage {
            stage: stage(2, "wood"),
        },
    );
    let second = vec![edge(1, 3, 400), edge(2, 3, 600)];
    let change = FlowChange::between(FlowVersion(3), &first, &second);
    // Made for another flow: refused.
    let wrong = FlowChange {
        on: FlowVersion(2),
        ..change.clone()
    };
    let r = c.apply(
        5,
        &Command::CommitFlowChange {
            based_on: 4,
            change: wrong,
        },
    );
    assert_eq!(
        r,
        CommandResponse::Rejected {
            reason: "flow change computed against flow v2, current is v3".into()
        }
    );
    // From an old configuration: refused as a whole flow would be.
    let stale = Command::CommitFlowChange {
        based_on: 3,
        change: change.clone(),
    };
    assert!(rejected(&c.apply(6, &stale)));
    let r = c.apply(
        7,
        &Command::CommitFlowChange {
            based_on: 4,
            change,
        },
    );
    assert_eq!(
        r,
        CommandResponse::FlowCommitted {
            version: FlowVersion(7)
        }
    );
    assert_eq!(c.flow.edges, second);
    assert_eq!(c.flow.version, FlowVersion(7));
}

#[test]
fn suspicion_does_not_change_the_flow_but_death_and_recovery_do() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    c.apply(
        2,
        &Command::RegisterStage {
            stage: stage(1, "wood"),
        },
    );
    c.apply(
        3,
        &Command::ReportSuspect {
            reporter: NodeId(3),
            suspect: NodeId(1),
        },
    );
    assert_eq!(c.stages[&NodeId(1)].liveness, Liveness::Suspect);
    assert_eq!(c.config_version, 2);
    assert!(c.solver_stages()[0].live, "a suspect still counts as live");
    c.apply(4, &Command::MarkDead { stage: NodeId(1) });
    assert_eq!(c.config_version, 4);
    assert!(!c.solver_stages()[0].live);
    c.apply(5, &Command::MarkAlive { stage: NodeId(1) });
    assert_eq!(c.config_version, 5);
    assert!(c.stages[&NodeId(1)].suspected_by.is_empty());
}

#[test]
fn removed_ids_are_never_reused() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    c.apply(
        2,
        &Command::AddStage {
            stage: stage(7, "wood"),
        },
    );
    c.apply(3, &Command::RemoveStage { stage: NodeId(7) });
    let r = c.apply(
        4,
        &Command::RegisterStage {
            stage: stage(7, "wood"),
        },
    );
    assert_eq!(
        r,
        CommandResponse::Rejected {
            reason: "stage n7 was removed; ids are never reused".into()
        }
    );
}

#[test]
fn recipe_updates_bump_the_version_and_refuse_cycles_and_unknown_inputs() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    let recipe = |inputs: &[(&str, u32)]| Recipe {
        inputs: inputs
            .iter()
            .map(|(i, u)| (ItemType::from(*i), *u))
            .collect(),
        yield_units: 2,
        version: 0,
    };
    c.apply(
        2,
        &Command::UpdateRecipe {
            item: "window".into(),
            recipe: recipe(&[("window-frame", 4)]),
            if_version: None,
        },
    );
    let w = c.spec.as_ref().unwrap().recipe(&"window".into()).unwrap();
    assert_eq!((w.version, w.yield_units), (2, 2));
    assert_eq!(c.config_version, 2);
    let r = c.apply(
        3,
        &Command::UpdateRecipe {
            item: "wood".into(),
            recipe: recipe(&[("window", 1)]),
            if_version: None,
        },
    );
    assert!(rejected(&r), "{r:?}");
    let r = c.apply(
        4,
        &Command::UpdateRecipe {
            item: "wood".into(),
            recipe: recipe(&[("glass", 1)]),
            if_version: None,
        },
    );
    assert_eq!(
        r,
        CommandResponse::Rejected {
            reason: "input `glass` is not a type of the spec".into()
        }
    );
    assert_eq!(c.config_version, 2, "refused updates change nothing");
    let _ = ItemTypeSpec {
        name: "x".into(),
        recipe: recipe(&[]),
    };
}

#[test]
fn broken_links_are_recorded_and_forgotten_when_an_end_restarts() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    c.apply(
        2,
        &Command::RegisterStage {
            stage: stage(1, "wood"),
        },
    );
    c.apply(
        3,
        &Command::RegisterStage {
            stage: stage(3, "window-frame"),
        },
    );
    c.apply(
        4,
        &Command::AvoidLink {
            supplier: NodeId(1),
            consumer: NodeId(3),
        },
    );
    assert!(c.avoid.contains(&(NodeId(1), NodeId(3))));
    assert_eq!(c.config_version, 4);
    c.apply(
        5,
        &Command::RegisterStage {
            stage: stage(1, "wood"),
        },
    );
    assert!(c.avoid.is_empty());
    assert_eq!(
        c.config_version, 5,
        "forgetting a link changes the flow's inputs"
    );
    assert!(rejected(&c.apply(
        6,
        &Command::AvoidLink {
            supplier: NodeId(1),
            consumer: NodeId(9)
        }
    )));
}

#[test]
fn a_retried_link_leaves_the_avoided_set_and_changes_the_flow_inputs() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    c.apply(
        2,
        &Command::RegisterStage {
            stage: stage(1, "wood"),
        },
    );
    c.apply(
        3,
        &Command::RegisterStage {
            stage: stage(3, "window-frame"),
        },
    );
    let link = (NodeId(1), NodeId(3));
    c.apply(
        4,
        &Command::AvoidLink {
            supplier: link.0,
            consumer: link.1,
        },
    );
    let retry = Command::RetryLink {
        supplier: link.0,
        consumer: link.1,
    };
    assert_eq!(c.apply(5, &retry), CommandResponse::Applied { index: 5 });
    assert!(c.avoid.is_empty());
    assert_eq!(c.config_version, 5, "the flow is solved again");
    assert!(rejected(&c.apply(6, &retry)), "a link not avoided");
    assert_eq!(c.config_version, 5);
}

#[test]
fn a_committed_flow_carries_the_recipes_it_was_computed_for() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    let new = Recipe {
        inputs: [("window-frame".into(), 3)].into_iter().collect(),
        yield_units: 1,
        version: 0,
    };
    c.apply(
        2,
        &Command::UpdateRecipe {
            item: "window".into(),
            recipe: new,
            if_version: None,
        },
    );
    assert!(c.flow_is_stale(), "a recipe update is an input of the flow");
    c.apply(
        3,
        &Command::CommitFlow {
            based_on: 2,
            edges: vec![],
        },
    );
    let w = &c.flow.recipes[&ItemType::from("window")];
    assert_eq!(w.inputs[&ItemType::from("window-frame")], 3);
    assert_eq!(w.version, 2, "the version is bumped by the update");
    assert_eq!(c.flow.recipes.len(), spec().types.len());
}

#[test]
fn an_added_stage_is_held_dead_until_it_registers_and_cannot_be_added_twice() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    c.apply(
        2,
        &Command::AddStage {
            stage: stage(21, "wood"),
        },
    );
    assert_eq!(c.stages[&NodeId(21)].liveness, Liveness::Dead);
    assert!(!c.solver_stages()[0].live, "not in the flow before it runs");
    let again = c.apply(
        3,
        &Command::AddStage {
            stage: stage(21, "wood"),
        },
    );
    assert_eq!(
        again,
        CommandResponse::Rejected {
            reason: "stage n21 is already known".into()
        }
    );
    c.apply(
        4,
        &Command::RegisterStage {
            stage: stage(21, "wood"),
        },
    );
    assert_eq!(c.stages[&NodeId(21)].liveness, Liveness::Alive);
    assert_eq!(c.config_version, 4);
}

#[test]
fn an_added_stage_runs_the_current_recipe_whatever_version_its_declarer_sent() {
    // The CLI sent the spec file's version, the run sent 0: both must end
    // with the version the store holds now (here 2, after one update).
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    let mut slower = spec().recipe(&"window".into()).unwrap().clone();
    slower.inputs.insert("window-frame".into(), 3);
    let update = Command::UpdateRecipe {
        item: "window".into(),
        recipe: slower,
        if_version: None,
    };
    assert!(!rejected(&c.apply(2, &update)));
    for (index, id, sent) in [(3, 31, 0), (4, 32, 1), (5, 33, 7)] {
        let mut s = stage(id, "window");
        s.recipe_version = sent;
        assert!(!rejected(&c.apply(index, &Command::AddStage { stage: s })));
        assert_eq!(c.stages[&NodeId(id)].desc.recipe_version, 2, "sent {sent}");
    }
}

#[test]
fn the_recipe_rule_bumps_the_version_and_keeps_the_chain_a_dag() {
    let s = spec();
    let mut r = s.recipe(&"window-frame".into()).unwrap().clone();
    r.inputs.insert("wood".into(), 2);
    let next = update_recipe(&s, &"window-frame".into(), &r).unwrap();
    let before = s.recipe(&"window-frame".into()).unwrap().version;
    assert_eq!(
        next.recipe(&"window-frame".into()).unwrap().version,
        before + 1
    );
    // wood needing windows closes a cycle.
    let mut cyclic = s.recipe(&"wood".into()).unwrap().clone();
    cyclic.inputs.insert("window".into(), 1);
    assert!(update_recipe(&s, &"wood".into(), &cyclic).is_err());
    let mut unknown = r.clone();
    unknown.inputs.insert("steel".into(), 1);
    assert!(update_recipe(&s, &"window-frame".into(), &unknown)
        .unwrap_err()
        .contains("not a type"));
}

#[test]
fn a_registration_at_an_address_no_peer_can_dial_is_refused() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    for addr in ["0.0.0.0:7000", "127.0.0.1:0"] {
        let mut s = stage(11, "wood");
        s.addr = addr.parse().unwrap();
        let r = c.apply(2, &Command::RegisterStage { stage: s });
        assert!(
            matches!(&r, CommandResponse::Rejected { reason } if reason.contains("no peer can dial")),
            "{addr}: {r:?}"
        );
    }
    assert!(c.stages.is_empty());
}

#[test]
fn a_conditional_recipe_update_applies_only_at_the_version_it_names() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    let item = ItemType::from("wood");
    let version = c.spec.as_ref().unwrap().recipe(&item).unwrap().version;
    let mut r = c.spec.as_ref().unwrap().recipe(&item).unwrap().clone();
    r.yield_units = 7;
    let cas = |v: u32| Command::UpdateRecipe {
        item: item.clone(),
        recipe: r.clone(),
        if_version: Some(v),
    };
    let stale = c.apply(2, &cas(version + 5));
    assert_eq!(
        stale,
        CommandResponse::Rejected {
            reason: format!(
                "the recipe of `wood` is at version {version}, not {}",
                version + 5
            )
        }
    );
    assert!(!rejected(&c.apply(3, &cas(version))));
    let now = c.spec.as_ref().unwrap().recipe(&item).unwrap();
    assert_eq!((now.version, now.yield_units), (version + 1, 7));
    assert!(rejected(&c.apply(4, &cas(version))), "the same CAS twice");
}

#[test]
fn the_bootstrap_spec_is_installed_once() {
    let mut c = ClusterConfig::default();
    c.apply(1, &Command::SetSpec { spec: spec() });
    let mut r = spec().recipe(&"wood".into()).unwrap().clone();
    r.yield_units = 9;
    let update = Command::UpdateRecipe {
        item: "wood".into(),
        recipe: r,
        if_version: None,
    };
    assert!(!rejected(&c.apply(2, &update)));
    // A leader that has not applied the log proposes the bootstrap again.
    assert!(rejected(&c.apply(3, &Command::SetSpec { spec: spec() })));
    assert_eq!(
        c.spec
            .as_ref()
            .unwrap()
            .recipe(&"wood".into())
            .unwrap()
            .yield_units,
        9
    );
}
