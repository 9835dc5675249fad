//! Supply-chain specs in TOML, and their validation.
//!
//! ```toml
//! final = "window"              # the finished product
//!
//! [types.wood]                  # a raw material: no inputs
//! yield = 3                     # units per lot
//!
//! [types.window-frame]
//! inputs = { wood = 3 }         # units consumed per cycle, by input type
//! yield = 5
//!
//! [[stages]]
//! id = 1
//! type = "wood"
//! addr = "127.0.0.1:7101"       # optional: local runs assign addresses
//! capacity = 1                  # optional, default 1: lots per cycle, weighs demand
//! ```
//!
//! [`parse`] reports every problem it finds, each with its line and column
//! and a one-line hint, instead of stopping at the first. A type no stage
//! makes is refused when the chain needs it (the final type, or an input);
//! one no stage makes and no type uses may stand idle.

use factoryos_wire::model::{ItemTypeSpec, Recipe, Spec};
use factoryos_wire::{ItemType, NodeId};
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use toml::Spanned;

/// A validated chain: the spec (types and recipes) and its stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    pub spec: Spec,
    pub stages: Vec<StageDecl>,
}

/// A stage as the spec file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDecl {
    pub id: NodeId,
    pub item: ItemType,
    pub addr: Option<SocketAddr>,
    pub capacity: u32,
}

impl ChainSpec {
    /// The declared stages as the solver sees them, those in `dead` not live.
    pub fn stage_states(
        &self,
        dead: &std::collections::BTreeSet<NodeId>,
    ) -> Vec<crate::solver::StageState> {
        self.stages
            .iter()
            .map(|s| crate::solver::StageState {
                id: s.id,
                item: s.item.clone(),
                capacity: s.capacity,
                live: !dead.contains(&s.id),
            })
            .collect()
    }

    /// Raw-material types (no inputs), in spec order.
    pub fn raw_types(&self) -> Vec<&ItemType> {
        self.spec
            .types
            .iter()
            .filter(|t| t.recipe.is_raw())
            .map(|t| &t.name)
            .collect()
    }
}

/// One problem in a spec, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
}

/// Every problem found in one spec file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors {
    pub file: String,
    pub errors: Vec<SpecError>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: error: {}\n  hint: {}",
                self.file, e.line, e.column, e.message, e.hint
            )?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(rename = "final")]
    final_type: Option<Spanned<String>>,
    #[serde(default)]
    types: BTreeMap<Spanned<String>, RawType>,
    #[serde(default)]
    stages: Vec<RawStage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    #[serde(default)]
    inputs: BTreeMap<Spanned<String>, Spanned<i64>>,
    #[serde(rename = "yield")]
    yield_units: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    id: Spanned<i64>,
    #[serde(rename = "type")]
    item: Spanned<String>,
    addr: Option<Spanned<String>>,
    capacity: Option<Spanned<i64>>,
}

/// Reads and validates the spec file at `path`.
pub fn load(path: &std::path::Path) -> Result<ChainSpec, SpecErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SpecErrors {
        file: file.clone(),
        errors: vec![SpecError {
            line: 0,
            column: 0,
            message: format!("cannot read the spec: {e}"),
            hint: "check the path and that the file is readable".into(),
        }],
    })?;
    parse(&file, &text)
}

/// Validates spec text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<ChainSpec, SpecErrors> {
    let mut v = Validator {
        text,
        errors: Vec::new(),
    };
    let raw: RawSpec = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let at = e.span().map(|s| s.start).unwrap_or(0);
            let message = e.message().trim().replace('\n', " ");
            let hint = if message.contains("unknown field") {
                "remove the key or correct its spelling"
            } else if message.contains("duplicate key") {
                "every type, table and key may appear only once: merge or rename the duplicate"
            } else if message.contains("missing field") {
                "add the missing key"
            } else {
                "fix the TOML syntax at this position"
            };
            v.error(at, message, hint);
            return Err(v.finish(file));
        }
    };
    let chain = v.check(raw);
    match chain {
        Some(chain) if v.errors.is_empty() => Ok(chain),
        _ => Err(v.finish(file)),
    }
}

struct Validator<'a> {
    text: &'a str,
    errors: Vec<(usize, SpecError)>,
}

impl Validator<'_> {
    fn error(&mut self, offset: usize, message: impl Into<String>, hint: impl Into<String>) {
        let (line, column) = line_col(self.text, offset);
        self.errors.push((
            offset,
            SpecError {
                line,
                column,
                message: message.into(),
                hint: hint.into(),
            },
        ));
    }

    fn finish(mut self, file: &str) -> SpecErrors {
        self.errors.sort_by_key(|(offset, _)| *offset);
        SpecErrors {
            file: file.to_owned(),
            errors: self.errors.into_iter().map(|(_, e)| e).collect(),
        }
    }

    fn positive(&mut self, value: &Spanned<i64>, what: impl FnOnce() -> String) -> u32 {
        let v = *value.get_ref();
        if v <= 0 || v > u32::MAX as i64 {
            self.error(
                value.span().start,
                format!("{} must be a positive number of units, got {v}", what()),
                "use a whole number of at least 1",
            );
            1
        } else {
            v as u32
        }
    }

    fn check(&mut self, raw: RawSpec) -> Option<ChainSpec> {
        // Types, in file order.
        let mut types: Vec<(Spanned<String>, RawType)> = raw.types.into_iter().collect();
        types.sort_by_key(|(name, _)| name.span().start);
        let names: HashMap<&str, usize> = types
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.get_ref().as_str(), i))
            .collect();
        let type_list = || {
            let mut list: Vec<&str> = types.iter().map(|(n, _)| n.get_ref().as_str()).collect();
            list.sort();
            list.join(", ")
        };

        let mut specs = Vec::with_capacity(types.len());
        for (name, t) in &types {
            let n = name.get_ref();
            let yield_units = self.positive(&t.yield_units, || format!("type `{n}`: yield"));
            let mut inputs = BTreeMap::new();
            for (input, units) in &t.inputs {
                let i = input.get_ref();
                let units = self.positive(units, || format!("type `{n}`: input `{i}`"));
                if !names.contains_key(i.as_str()) {
                    self.error(
                        input.span().start,
                        format!("type `{n}` needs input `{i}`, which no type produces"),
                        format!("define [types.{i}] or use one of: {}", type_list()),
                    );
                }
                inputs.insert(ItemType::new(i.clone()), units);
            }
            specs.push(ItemTypeSpec {
                name: ItemType::new(n.clone()),
                recipe: Recipe {
                    inputs,
                    yield_units,
                    version: 1,
                },
            });
        }
        if types.is_empty() {
            self.error(
                0,
                "the spec defines no item types",
                "add at least one [types.NAME] table with a yield",
            );
        }
        self.check_cycles(&types, &names);

        let final_type = match &raw.final_type {
            None => {
                self.error(
                    0,
                    "the spec names no final type",
                    "add `final = \"NAME\"` naming the finished product, at the top of the file",
                );
                None
            }
            Some(f) if !names.contains_key(f.get_ref().as_str()) => {
                self.error(
                    f.span().start,
                    format!("final type `{}` is not a type of this chain", f.get_ref()),
                    format!("use one of: {}", type_list()),
                );
                None
            }
            Some(f) => Some(ItemType::new(f.get_ref().clone())),
        };

        let stages = self.check_stages(&raw.stages, &names, &type_list());
        self.check_made(&types, raw.final_type.as_ref(), &stages);
        Some(ChainSpec {
            spec: Spec {
                types: specs,
                final_type: final_type?,
            },
            stages,
        })
    }

    /// A type the chain needs (the final type, or an input) must have a
    /// stage; one it does not need may stand idle (the harness keeps its
    /// registers as such types).
    fn check_made(
        &mut self,
        types: &[(Spanned<String>, RawType)],
        final_type: Option<&Spanned<String>>,
        stages: &[StageDecl],
    ) {
        let needed: std::collections::HashSet<&str> = types
            .iter()
            .flat_map(|(_, t)| t.inputs.keys().map(|i| i.get_ref().as_str()))
            .chain(final_type.map(|f| f.get_ref().as_str()))
            .collect();
        for (name, _) in types {
            let made = stages.iter().any(|s| s.item.as_str() == name.get_ref());
            if !made && needed.contains(name.get_ref().as_str()) {
                self.error(
                    name.span().start,
                    format!("no stage makes `{}`", name.get_ref()),
                    format!("add a [[stages]] entry with type = \"{}\"", name.get_ref()),
                );
            }
        }
    }

    fn check_cycles(&mut self, types: &[(Spanned<String>, RawType)], names: &HashMap<&str, usize>) {
        let mut graph = DiGraph::<usize, ()>::new();
        let nodes: Vec<NodeIndex> = (0..types.len()).map(|i| graph.add_node(i)).collect();
        for (i, (_, t)) in types.iter().enumerate() {
            for input in t.inputs.keys() {
                if let Some(&j) = names.get(input.get_ref().as_str()) {
                    graph.add_edge(nodes[j], nodes[i], ());
                }
            }
        }
        for scc in petgraph::algo::tarjan_scc(&graph) {
            let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            // Walk the cycle from the type defined first in the file.
            let start = *scc
                .iter()
                .min_by_key(|n| graph[**n])
                .expect("non-empty scc");
            let cycle = find_cycle(&graph, start, &scc);
            let path: Vec<&str> = cycle
                .iter()
                .chain(std::iter::once(&start))
                .map(|n| types[graph[*n]].0.get_ref().as_str())
                .collect();
            self.error(
                types[graph[start]].0.span().start,
                format!("cycle in the chain: {}", path.join(" -> ")),
                "a type cannot be an input of itself, even indirectly: remove one of these inputs",
            );
        }
    }

    fn check_stages(
        &mut self,
        raw: &[RawStage],
        names: &HashMap<&str, usize>,
        type_list: &str,
    ) -> Vec<StageDecl> {
        let mut seen: HashMap<i64, usize> = HashMap::new();
        let mut stages = Vec::with_capacity(raw.len());
        for s in raw {
            let id = *s.id.get_ref();
            if id < 0 {
                self.error(
                    s.id.span().start,
                    format!("stage id {id} is negative"),
                    "use a whole number of at least 0",
                );
            } else if let Some(&first) = seen.get(&id) {
                let (line, _) = line_col(self.text, first);
                self.error(
                    s.id.span().start,
                    format!("stage id {id} is used twice (first on line {line})"),
                    "give every stage its own id",
                );
            } else {
                seen.insert(id, s.id.span().start);
            }
            let item = s.item.get_ref();
            if !names.contains_key(item.as_str()) {
                self.error(
                    s.item.span().start,
                    format!("stage {id} makes `{item}`, which is not a type of this chain"),
                    format!("use one of: {type_list}"),
                );
            }
            let addr = s.addr.as_ref().and_then(|a| match a.get_ref().parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.error(
                        a.span().start,
                        format!("stage {id}: `{}` is not a socket address", a.get_ref()),
                        "write it as IP:PORT, e.g. 127.0.0.1:7101",
                    );
                    None
                }
            });
            let capacity = match &s.capacity {
                Some(c) => self.positive(c, || format!("stage {id}: capacity")),
                None => 1,
            };
            stages.push(StageDecl {
                id: NodeId(id.max(0) as u64),
                item: ItemType::new(item.clone()),
                addr,
                capacity,
            });
        }
        stages
    }
}

/// A cycle through `start` inside its strongly connected component, as the
/// list of nodes from `start` (not repeating it at the end).
fn find_cycle(graph: &DiGraph<usize, ()>, start: NodeIndex, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    // Breadth-first search from start back to start, inside the scc, picking
    // neighbours in file order so the reported cycle is deterministic.
    let in_scc: std::collections::HashSet<_> = scc.iter().copied().collect();
    let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph.neighbors(n).filter(|m| in_scc.contains(m)).collect();
        next.sort_by_key(|m| graph[*m]);
        for m in next {
            if m == start {
                let mut path = vec![n];
                let mut cur = n;
                while cur != start {
                    cur = prev[&cur];
                    path.push(cur);
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    vec![start]
}

/// Renders a chain as spec TOML that [`parse`] reads back to the same chain.
pub fn render(chain: &ChainSpec) -> String {
    use std::fmt::Write;
    let key = |name: &str| {
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            name.to_owned()
        } else {
            toml::Value::String(name.to_owned()).to_string()
        }
    };
    let string = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut out = String::new();
    let _ = writeln!(out, "final = {}", string(chain.spec.final_type.as_str()));
    for t in &chain.spec.types {
        let _ = writeln!(out, "\n[types.{}]", key(t.name.as_str()));
        if !t.recipe.inputs.is_empty() {
            let inputs: Vec<String> = t
                .recipe
                .inputs
                .iter()
                .map(|(i, u)| format!("{} = {u}", key(i.as_str())))
                .collect();
            let _ = writeln!(out, "inputs = {{ {} }}", inputs.join(", "));
        }
        let _ = writeln!(out, "yield = {}", t.recipe.yield_units);
    }
    for s in &chain.stages {
        let _ = writeln!(
            out,
            "\n[[stages]]\nid = {}\ntype = {}",
            s.id.0,
            string(s.item.as_str())
        );
        if let Some(addr) = s.addr {
            let _ = writeln!(out, "addr = {}", string(&addr.to_string()));
        }
        if s.capacity != 1 {
            let _ = writeln!(out, "capacity = {}", s.capacity);
        }
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests;
