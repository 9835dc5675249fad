//! Flows for people: a table for the terminal and Graphviz DOT for a picture.

use crate::solver::{FlowPlan, StageState};
use std::collections::HashSet;
use std::fmt::Write;

/// A table of the flow's edges, one per line, grouped by item.
pub fn table(stages: &[StageState], plan: &FlowPlan) -> String {
    let mut out = String::new();
    let dead = stages.iter().filter(|s| !s.live).count();
    let _ = writeln!(
        out,
        "{} stages ({} dead), {} active, {} edges",
        stages.len(),
        dead,
        plan.active.len(),
        plan.edges.len()
    );
    let width = plan
        .edges
        .iter()
        .map(|e| e.item.as_str().len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:>8}    {:<8}  {:>6}",
        "item", "supplier", "consumer", "share"
    );
    for e in &plan.edges {
        let _ = writeln!(
            out,
            "{:<width$}  {:>8} -> {:<8}  {:>5.1}%",
            e.item.as_str(),
            e.supplier.to_string(),
            e.consumer.to_string(),
            e.share as f64 / 10.0
        );
    }
    let active: HashSet<_> = plan.active.iter().collect();
    let idle: Vec<String> = stages
        .iter()
        .filter(|s| s.live && !active.contains(&s.id))
        .map(|s| s.id.to_string())
        .collect();
    if !idle.is_empty() {
        let _ = writeln!(
            out,
            "inactive (an input has no live supplier): {}",
            idle.join(", ")
        );
    }
    out
}

/// Graphviz DOT: stages as boxes ranked by type, dead ones grey and dashed,
/// edges labelled with item and share.
pub fn dot(stages: &[StageState], plan: &FlowPlan) -> String {
    let active: HashSet<_> = plan.active.iter().collect();
    let mut out = String::from(
        "digraph flow {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
    );
    // Items in the order their first stage appears.
    let mut items: Vec<&str> = Vec::new();
    for s in stages {
        if !items.contains(&s.item.as_str()) {
            items.push(s.item.as_str());
        }
    }
    for item in items {
        let _ = writeln!(
            out,
            "  subgraph \"cluster_{item}\" {{\n    label=\"{item}\";"
        );
        for s in stages.iter().filter(|s| s.item.as_str() == item) {
            let style = if !s.live {
                ", style=dashed, color=grey, fontcolor=grey"
            } else if !active.contains(&s.id) {
                ", color=orange"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    \"{}\" [label=\"{}\\n{}\"{}];",
                s.id, s.id, item, style
            );
        }
        out.push_str("  }\n");
    }
    for e in &plan.edges {
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [label=\"{} {:.0}%\"];",
            e.supplier,
            e.consumer,
            e.item,
            e.share as f64 / 10.0
        );
    }
    out.push_str("}\n");
    out
}
