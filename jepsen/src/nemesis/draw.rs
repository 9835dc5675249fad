//! Drawing a fault of each nemesis: the operations that inject it and
//! those that heal it.

use super::{Fault, Nemesis, Topology};
use crate::hosts::netns::Rules;
use crate::op::{draw, Op};
use factoryos_wire::fault_file::FaultFile;
use factoryos_wire::NodeId;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use std::collections::BTreeSet;

/// The bridge's rules back to none.
fn heal_network() -> Op {
    Op::Network {
        rules: Rules::default(),
        detail: "heal".into(),
    }
}

impl Nemesis {
    fn fault(self, detail: String, inject: Vec<Op>, heal: Vec<Op>) -> Fault {
        Fault {
            nemesis: self,
            detail,
            inject,
            heal,
        }
    }

    /// Draws one fault of this nemesis on `topo`; `None` if none fits now
    /// (no leader known, nothing to update).
    pub fn draw(self, topo: &Topology, rng: &mut SmallRng) -> Option<Fault> {
        if let Some((grudge, detail)) = self.grudge(topo, rng) {
            let drops = grudge
                .iter()
                .filter_map(|(a, b)| Some((*topo.ips.get(a)?, *topo.ips.get(b)?)))
                .collect();
            let rules = Rules {
                drops,
                loss_percent: 0,
            };
            let inject = Op::Network {
                rules,
                detail: format!("{self} {detail}"),
            };
            return Some(self.fault(detail, vec![inject], vec![heal_network()]));
        }
        match self {
            Nemesis::Loss => {
                let rules = Rules {
                    drops: BTreeSet::new(),
                    loss_percent: 20,
                };
                let inject = Op::Network {
                    rules,
                    detail: "20% loss".into(),
                };
                Some(self.fault("20% of packets".into(), vec![inject], vec![heal_network()]))
            }
            Nemesis::Delay => Some(self.delay(topo)),
            Nemesis::Kill | Nemesis::Pause => self.kill_or_pause(topo, rng),
            Nemesis::KillQuorum => self.kill_quorum(topo, rng),
            Nemesis::Membership => self.membership(topo, rng),
            Nemesis::RecipeUpdate => {
                // Healed by the recipe it replaced, so updates do not pile up
                // into a chain that can hardly make anything: the checkers see
                // both changes, and the final heal leaves the original chain.
                let spec = topo.spec.as_ref()?;
                let (item, recipe, change) = draw::draw_recipe_update(spec, &topo.made, rng)?;
                let before = spec.recipe(&item)?.clone();
                let detail = format!("{item}: {change}");
                let undo = Op::UpdateRecipe {
                    item: item.clone(),
                    change: change.undo(&before),
                    recipe: before,
                };
                let op = Op::UpdateRecipe {
                    item,
                    recipe,
                    change,
                };
                Some(self.fault(detail, vec![op], vec![undo]))
            }
            _ => None,
        }
    }

    fn delay(self, topo: &Topology) -> Fault {
        // A host process follows its first stage's fault file; every
        // stage's is written, so the rule reaches hosts of any size.
        let everyone: Vec<NodeId> = topo
            .coordinators
            .iter()
            .copied()
            .chain(topo.stage_hosts.iter().flatten().copied())
            .collect();
        let rule = FaultFile {
            delay_ms: 20,
            jitter_ms: 60,
            duplicate_percent: 10,
            reorder_percent: 10,
            reorder_window_ms: 100,
            drop_percent: 0,
        };
        let inject = Op::Faults {
            nodes: everyone.clone(),
            rule: Some(rule),
        };
        let heal = Op::Faults {
            nodes: everyone,
            rule: None,
        };
        let detail = "20-80 ms delay, 10% duplicated, 10% reordered".into();
        self.fault(detail, vec![inject], vec![heal])
    }

    /// SIGKILL (restart at the heal) or SIGSTOP (SIGCONT) of one process.
    fn kill_or_pause(self, topo: &Topology, rng: &mut SmallRng) -> Option<Fault> {
        let victim: NodeId = *topo.everyone().choose(rng)?;
        let coordinator = topo.coordinators.contains(&victim);
        let (inject, heal) = match (self, coordinator) {
            (Nemesis::Pause, _) => (Op::Pause { id: victim }, Op::Resume { id: victim }),
            (_, true) => (
                Op::KillCoordinator { id: victim },
                Op::RecoverCoordinator { id: victim },
            ),
            (_, false) => {
                let stages = topo.stages_of(victim);
                let crash = Op::Crash {
                    host: victim,
                    stages: stages.clone(),
                };
                (
                    crash,
                    Op::RecoverStages {
                        host: victim,
                        stages,
                    },
                )
            }
        };
        Some(self.fault(victim.to_string(), vec![inject], vec![heal]))
    }

    /// SIGKILL of a majority of the coordinators; all restarted at the heal.
    fn kill_quorum(self, topo: &Topology, rng: &mut SmallRng) -> Option<Fault> {
        let majority = topo.coordinators.len() / 2 + 1;
        let victims: Vec<NodeId> = topo
            .coordinators
            .choose_multiple(rng, majority)
            .copied()
            .collect();
        if victims.is_empty() {
            return None;
        }
        let names: Vec<String> = victims.iter().map(NodeId::to_string).collect();
        Some(
            self.fault(
                names.join(" "),
                victims
                    .iter()
                    .map(|&id| Op::KillCoordinator { id })
                    .collect(),
                victims
                    .iter()
                    .map(|&id| Op::RecoverCoordinator { id })
                    .collect(),
            ),
        )
    }

    /// One coordinator out; a new one in at the heal.
    fn membership(self, topo: &Topology, rng: &mut SmallRng) -> Option<Fault> {
        // Remove one only where the rest still form a group of two.
        if topo.coordinators.len() < 3 {
            return None;
        }
        let gone = *topo.coordinators.choose(rng)?;
        let new = topo.next_coordinator;
        Some(self.fault(
            format!("{gone} out, {new} in"),
            vec![Op::RemoveCoordinator { id: gone }],
            vec![Op::AddCoordinator { id: new }],
        ))
    }
}
