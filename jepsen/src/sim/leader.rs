//! The coordinator's side of the world: commands applied in log order, the
//! leader's turns and probes, and the answers to the stages' watches.

use super::coord::Watch;
use super::world::{By, Event, World};
use factoryos_coord::client::WATCH_WAIT;
use factoryos_coord::lead::{self, Unwell};
use factoryos_coord::state::{Command, CommandResponse};
use factoryos_wire::model::Liveness;
use factoryos_wire::NodeId;
use std::time::Duration;

/// How long the leader's probe waits for an answer, each of two tries.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

impl World {
    /// The leader's loop runs as soon as it can (once per moment).
    pub(super) fn queue_turn(&mut self) {
        if !self.turn_queued {
            self.turn_queued = true;
            self.queue.push(self.now, Event::LeaderTurn);
        }
    }

    pub(super) fn apply(&mut self, cmd: Command, by: By) {
        let response = self.coord.apply(&cmd);
        if by == By::Leader {
            self.coord.own_applied(&cmd, &response);
        }
        let applied = !matches!(response, CommandResponse::Rejected { .. });
        match (&response, by) {
            (CommandResponse::FlowCommitted { .. }, _) => self.answer_watches(),
            (_, By::Registration { id }) => self.answer_registration(id, applied),
            (_, By::Operator { start: Some(stage) }) if applied => self.restart_stage(stage),
            _ => {}
        }
        if applied && matches!(cmd, Command::MarkDead { .. }) {
            self.note_detections();
        }
        self.queue_turn();
    }

    pub(super) fn leader_turn(&mut self) {
        self.turn_queued = false;
        let turn = self.coord.turn(self.now);
        for (stage, unwell) in turn.probes {
            let reached = self
                .stages
                .get(&stage)
                .filter(|s| !self.net.is_isolated(s.host));
            let alive = reached.is_some_and(|s| s.is_up());
            // A live host answers at once for a stage of it that is down
            // (it does not run it); a dead or cut-off one never does.
            let answered = reached.is_some_and(|s| !self.live.dead_hosts.contains(&s.host));
            let took = if alive || answered {
                self.net.latency(&mut self.rng) * 2
            } else {
                PROBE_TIMEOUT * 2
            };
            let at = self.now + took;
            self.queue.push(
                at,
                Event::ProbeDone {
                    stage,
                    unwell,
                    alive,
                },
            );
        }
        // A solve takes the leader's time (modelled per edge, so that a seed
        // still fixes everything); then it proposes one after another,
        // waiting for each.
        let solving = self.cfg.solve_per_edge * turn.solved_edges.unwrap_or(0) as u32;
        for (k, cmd) in turn.proposals.into_iter().enumerate() {
            let at = self.now + solving + self.cfg.commit_latency * (k as u32 + 1);
            self.queue.push(
                at,
                Event::Apply {
                    cmd,
                    by: By::Leader,
                },
            );
        }
    }

    pub(super) fn probe_done(&mut self, stage: NodeId, unwell: Unwell, alive: bool) {
        let cmds = lead::verdict(&self.coord.cfg.flow, stage, &unwell, alive);
        for (k, cmd) in cmds.into_iter().enumerate() {
            let at = self.now + self.cfg.commit_latency * (k as u32 + 1);
            self.queue.push(at, Event::Apply { cmd, by: By::Probe });
        }
        self.coord.probe_done(stage, self.now);
    }

    /// A watch waits for a flow newer than the stage knows, or is answered now.
    pub(super) fn watch_arrives(&mut self, stage: NodeId, watch: Watch) {
        if !self.life_is(stage, watch.life) {
            return;
        }
        if self.coord.cfg.flow.version > watch.known {
            self.answer(stage, watch, false);
        } else {
            self.coord.watches.insert(stage, watch);
        }
    }

    pub(super) fn read_arrives(&mut self, stage: NodeId, life: u32) {
        if !self.life_is(stage, life) {
            return;
        }
        let watch = Watch {
            life,
            known: Default::default(),
            digest: None,
        };
        self.answer(stage, watch, true);
    }

    /// A new flow: every waiting watch is answered.
    fn answer_watches(&mut self) {
        for (stage, watch) in std::mem::take(&mut self.coord.watches) {
            self.answer(stage, watch, false);
        }
    }

    /// Sends `stage` its slice (or only the version); an answer to a stage
    /// cut off is lost, and the stage watches again when its poll times out.
    fn answer(&mut self, stage: NodeId, watch: Watch, read: bool) {
        let update = self.coord.answer(stage, watch.digest);
        let life = watch.life;
        match self.coordinator_reached_at(stage) {
            Some(at) => self.queue.push(
                at,
                Event::Slice {
                    stage,
                    life,
                    update,
                    read,
                },
            ),
            None if read => {
                if let Some(s) = self.stages.get_mut(&stage) {
                    s.fetching = false;
                }
            }
            None => {
                let at = self.now + WATCH_WAIT;
                self.queue.push(at, Event::Rewatch { stage, life });
            }
        }
    }

    /// Crashes whose every victim the store now holds dead.
    fn note_detections(&mut self) {
        let at_ms = self.now.as_millis() as u64;
        let stages = &self.coord.cfg.stages;
        let dead = |s: &NodeId| stages.get(s).is_some_and(|r| r.liveness == Liveness::Dead);
        for c in self
            .record
            .crashes
            .iter_mut()
            .filter(|c| c.detect_ms.is_none())
        {
            let down = c.victims.iter().all(|v| self.live.is_down(*v));
            if down && c.victims.iter().all(dead) {
                c.detect_ms = Some(at_ms.saturating_sub(c.at_ms));
            }
        }
    }
}
