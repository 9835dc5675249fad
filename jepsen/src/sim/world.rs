//! The simulated world and its event loop: the stages' side (ticks,
//! messages, WAL commits, registration and slice watches). The
//! coordinator's side is in `leader.rs`, the operations in `ops.rs`.

use super::coord::{SimCoord, Watch};
use super::net::Net;
use super::queue::Queue;
use super::stage::{Input, SimStage};
use super::wakes::Wakes;
use super::SimConfig;
use crate::experiment::live::Live;
use crate::experiment::record::Record;
use crate::experiment::schedule::RateSchedule;
use factoryos_coord::client::CALL_TIMEOUT;
use factoryos_coord::lead::Unwell;
use factoryos_coord::state::Command;
use factoryos_stage::core::HostLinks;
use factoryos_stage::core::Output;
use factoryos_stage::setup::{stage_config, tick_for, Tuning};
use factoryos_wire::message::Envelope;
use factoryos_wire::{FlowSlice, NodeId, SliceUpdate};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Something due at a moment of simulated time.
#[derive(Debug)]
pub(super) enum Event {
    /// Every running stage ticks; the operations due are applied.
    Tick,
    /// The leader's loop wakes on its timer (it also wakes on every commit).
    LeaderTimer,
    /// A stage (re)starts from its WAL.
    Start {
        stage: NodeId,
        life: u32,
    },
    /// A stage tries to register (with its host's other stages that try now).
    Register {
        stage: NodeId,
        life: u32,
    },
    /// A host sends the registration of the stages that joined it.
    RegisterHost {
        host: NodeId,
    },
    /// A message reaches `to`.
    Deliver {
        from: NodeId,
        to: NodeId,
        env: Envelope,
    },
    /// A stage's WAL batch is durable.
    Committed {
        stage: NodeId,
        life: u32,
    },
    /// A command is committed: the state machine applies it.
    Apply {
        cmd: Command,
        by: By,
    },
    /// A stage learns it is registered.
    Registered {
        stage: NodeId,
        life: u32,
    },
    LeaderTurn,
    ProbeDone {
        stage: NodeId,
        unwell: Unwell,
        alive: bool,
    },
    /// A stage's watch reaches the coordinator.
    Watch {
        stage: NodeId,
        watch: Watch,
    },
    /// A stage watches again (after a failed or lost watch).
    Rewatch {
        stage: NodeId,
        life: u32,
    },
    /// A stage's read of its slice reaches the coordinator.
    Read {
        stage: NodeId,
        life: u32,
    },
    /// A slice answer reaches a stage.
    Slice {
        stage: NodeId,
        life: u32,
        update: SliceUpdate,
        read: bool,
    },
}

/// Who proposed a command (who hears of it when it is applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum By {
    /// A host's registration of its stages (`registrations[id]`).
    Registration { id: u64 },
    /// A stage's report, which nobody waits for.
    Stage,
    /// The leader's loop, which waits for it.
    Leader,
    /// A probe's verdict.
    Probe,
    /// An operation; `start` is a declared stage to start once applied.
    Operator { start: Option<NodeId> },
}

pub(super) struct World {
    pub(super) now: Duration,
    pub(super) cfg: SimConfig,
    pub(super) queue: Queue<Event>,
    pub(super) rng: SmallRng,
    /// Boxed, so the map stays small enough to search in cache: a stage's
    /// state is large, and a big chain's would spread the map over memory.
    pub(super) stages: BTreeMap<NodeId, Box<SimStage>>,
    pub(super) coord: SimCoord,
    pub(super) net: Net,
    pub(super) live: Live,
    pub(super) record: Record,
    pub(super) schedule: RateSchedule,
    pub(super) partitions: super::ops::Partitions,
    pub(super) tuning: Tuning,
    pub(super) turn_queued: bool,
    /// Events handled.
    pub(super) events: u64,
    /// The chain's stages not registered yet, and when the last one was.
    pub(super) unregistered: BTreeSet<NodeId>,
    pub(super) all_registered_at: Option<Duration>,
    /// Per host: the stages that joined its next registration request.
    pub(super) registering: BTreeMap<NodeId, Vec<NodeId>>,
    /// Registration requests on their way: their stages and lives.
    pub(super) registrations: BTreeMap<u64, Vec<(NodeId, u32)>>,
    pub(super) next_registration: u64,
    /// After the run's time: stages drain.
    pub(super) draining: bool,
    /// After the final heal: no operation is applied.
    pub(super) ops_stopped: bool,
    /// Per running host: what its stages heard and sent, by host (see
    /// [`HostLinks`]); a crash forgets it with the process.
    pub(super) host_links: BTreeMap<NodeId, HostLinks>,
    /// Which stages the next tick ticks.
    wakes: Wakes,
    /// Stage ticks run, and running stages summed over every tick (what
    /// ticking all of them would run).
    pub(super) stage_ticks: u64,
    pub(super) stage_slots: u64,
    /// Stages up now.
    running: usize,
    /// What the stages of a tick said, kept between ticks (a buffer).
    said: Vec<(NodeId, Output)>,
}

impl World {
    pub(super) fn new(cfg: SimConfig) -> Self {
        let chain = cfg.chain.clone();
        let live = Live::hosted(&chain, cfg.hosts);
        let tuning = Tuning::new(cfg.cycle);
        let mut stages = BTreeMap::new();
        for decl in &chain.stages {
            if let (Some(c), Some(host)) = (
                stage_config(&chain.spec, decl, tuning),
                live.host_of(decl.id),
            ) {
                stages.insert(decl.id, Box::new(SimStage::new(c, host)));
            }
        }
        let mut coord = SimCoord::new(cfg.link_retry);
        coord.apply(&Command::SetSpec {
            spec: chain.spec.clone(),
        });
        let mut world = World {
            now: Duration::ZERO,
            queue: Queue::new(),
            rng: SmallRng::seed_from_u64(cfg.seed),
            unregistered: stages.keys().copied().collect(),
            stages,
            coord,
            net: Net::new(cfg.net),
            record: Record::new(&chain),
            schedule: RateSchedule::new(cfg.seed, cfg.rates, cfg.allow_outages)
                .crashing(cfg.crash_scope),
            partitions: super::ops::Partitions::new(
                cfg.seed,
                cfg.partition_rate,
                cfg.partition_hold,
            ),
            live,
            tuning,
            turn_queued: false,
            events: 0,
            all_registered_at: None,
            registering: BTreeMap::new(),
            registrations: BTreeMap::new(),
            next_registration: 0,
            draining: false,
            ops_stopped: false,
            host_links: BTreeMap::new(),
            wakes: Wakes::default(),
            stage_ticks: 0,
            stage_slots: 0,
            running: 0,
            said: Vec::new(),
            cfg,
        };
        // A host process starts its stages together, at its own moment.
        let mut host_starts: BTreeMap<NodeId, Duration> = BTreeMap::new();
        let starts: Vec<(NodeId, NodeId)> =
            world.stages.iter().map(|(id, s)| (*id, s.host)).collect();
        for (id, host) in starts {
            let at = *host_starts.entry(host).or_insert_with(|| {
                world
                    .rng
                    .random_range(Duration::ZERO..=world.cfg.start_spread)
            });
            world.queue.push(at, Event::Start { stage: id, life: 0 });
        }
        world.queue.push(Duration::ZERO, Event::Tick);
        world.queue.push(Duration::ZERO, Event::LeaderTimer);
        world
    }

    /// Handles every event due by `until`.
    pub(super) fn run_until(&mut self, until: Duration) {
        while let Some((at, event)) = self.queue.pop_until(until) {
            self.now = at;
            self.events += 1;
            self.handle(event);
        }
        self.now = until;
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick => self.tick(),
            Event::LeaderTimer => {
                self.queue_turn();
                let next = self.now + Duration::from_millis(500);
                self.queue.push(next, Event::LeaderTimer);
            }
            Event::Start { stage, life } => self.start(stage, life),
            Event::Register { stage, life } => {
                if self.life_is(stage, life) {
                    self.register(stage);
                }
            }
            Event::Deliver { from, to, env } => self.deliver(from, to, env),
            Event::Committed { stage, life } => self.committed(stage, life),
            Event::Apply { cmd, by } => self.apply(cmd, by),
            Event::RegisterHost { host } => self.register_host(host),
            Event::Registered { stage, life } => self.registered(stage, life),
            Event::LeaderTurn => self.leader_turn(),
            Event::ProbeDone {
                stage,
                unwell,
                alive,
            } => self.probe_done(stage, unwell, alive),
            Event::Watch { stage, watch } => self.watch_arrives(stage, watch),
            Event::Rewatch { stage, life } => {
                if self.life_is(stage, life) {
                    self.send_watch(stage);
                }
            }
            Event::Read { stage, life } => self.read_arrives(stage, life),
            Event::Slice {
                stage,
                life,
                update,
                read,
            } => self.slice_arrives(stage, life, update, read),
        }
    }

    /// Whether `stage` is up in life `life`.
    pub(super) fn life_is(&self, stage: NodeId, life: u32) -> bool {
        self.stages
            .get(&stage)
            .is_some_and(|s| s.life == life && s.is_up())
    }

    pub(super) fn host_of(&self, stage: NodeId) -> Option<NodeId> {
        self.stages.get(&stage).map(|s| s.host)
    }

    /// When a call from `stage` reaches the coordinator (`None`: it cannot).
    pub(super) fn coordinator_reached_at(&mut self, stage: NodeId) -> Option<Duration> {
        let host = self.host_of(stage)?;
        if self.net.is_isolated(host) {
            return None;
        }
        Some(self.now + self.net.latency(&mut self.rng))
    }

    fn tick(&mut self) {
        if !self.ops_stopped {
            self.apply_due_ops();
        }
        let now = self.now;
        self.stage_slots += self.running as u64;
        let mut due = self.wakes.take_due(now);
        if self.cfg.tick_every_stage {
            due = self.stages.keys().copied().collect();
        }
        // One pass over the stages due; most ticks say nothing, and those
        // that do are handled after the pass, in id order.
        let mut said = std::mem::take(&mut self.said);
        for &id in &due {
            let Some(s) = self.stages.get_mut(&id) else {
                continue;
            };
            // A stage committing is due again when its commit is durable.
            if s.committing.is_some() {
                continue;
            }
            if let Some(core) = &mut s.core {
                self.stage_ticks += 1;
                core.tick(now);
                let out = core.take_output();
                // One about to commit is due again when the commit is durable.
                if out.wal.is_empty() {
                    self.wakes.at(id, core.next_tick(now));
                }
                if !out.is_empty() {
                    said.push((id, out));
                }
            }
        }
        self.wakes.recycle(due);
        for (id, out) in said.drain(..) {
            self.handle_output(id, out);
        }
        self.said = said;
        self.note_first_lots();
        let next = now + tick_for(self.cfg.cycle);
        self.queue.push(next, Event::Tick);
    }

    fn start(&mut self, stage: NodeId, life: u32) {
        let Some(s) = self.stages.get_mut(&stage) else {
            return;
        };
        if s.life != life || s.is_up() {
            return;
        }
        let links = self.host_links.entry(s.host).or_default().clone();
        s.start(links);
        self.running += 1;
        self.wakes.soon(stage);
        if self.draining {
            if let Some(core) = &mut s.core {
                core.drain();
            }
        }
        self.register(stage);
    }

    /// The stage long-polls its slice (or tries again if it cannot reach
    /// the coordinator).
    pub(super) fn send_watch(&mut self, stage: NodeId) {
        let Some(s) = self.stages.get(&stage) else {
            return;
        };
        let watch = Watch {
            life: s.life,
            known: s.slice.as_ref().map_or(Default::default(), |x| x.version),
            digest: s.slice.as_ref().map(FlowSlice::digest),
        };
        match self.coordinator_reached_at(stage) {
            Some(at) => self.queue.push(at, Event::Watch { stage, watch }),
            None => {
                let at = self.now + CALL_TIMEOUT;
                let life = watch.life;
                self.queue.push(at, Event::Rewatch { stage, life });
            }
        }
    }

    fn slice_arrives(&mut self, stage: NodeId, life: u32, update: SliceUpdate, read: bool) {
        if !self.life_is(stage, life) {
            return;
        }
        let s = self.stages.get_mut(&stage).expect("up above");
        if read {
            s.fetching = false;
        }
        let held = s.slice.as_ref().map(|x| x.version);
        if let Some(slice) = update.resolve(s.slice.as_ref()) {
            if held.is_none_or(|v| slice.version > v) {
                s.slice = Some(slice.clone());
                if s.feed(self.now, Input::Slice(slice)) {
                    self.after_input(stage);
                }
            }
        }
        if !read {
            self.send_watch(stage);
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, env: Envelope) {
        let now = self.now;
        let Some(s) = self.stages.get_mut(&to) else {
            return;
        };
        if !s.is_up() {
            return;
        }
        s.messages.count_received(env.body.kind());
        if s.feed(now, Input::Message(from, env)) {
            self.after_input(to);
        }
    }

    /// Takes the core's output: commits its writes first (the sends wait
    /// for the commit), or sends at once when there is nothing to write.
    fn after_input(&mut self, stage: NodeId) {
        let s = self.stages.get_mut(&stage).expect("a known stage");
        let Some(core) = &mut s.core else { return };
        let out = core.take_output();
        // Due when its core says, now that the input changed what it holds
        // (or, about to commit, when the commit is durable).
        if out.wal.is_empty() {
            self.wakes.at(stage, core.next_tick(self.now));
        }
        if !out.is_empty() {
            self.handle_output(stage, out);
        }
    }

    /// Commits what `out` writes, then sends; or sends at once.
    fn handle_output(&mut self, stage: NodeId, out: Output) {
        if out.wal.is_empty() {
            return self.emit(stage, out);
        }
        let s = self.stages.get_mut(&stage).expect("a known stage");
        let life = s.life;
        s.committing = Some(out);
        let at = self.now + self.cfg.wal_latency;
        self.queue.push(at, Event::Committed { stage, life });
    }

    fn committed(&mut self, stage: NodeId, life: u32) {
        if !self.life_is(stage, life) {
            return;
        }
        let s = self.stages.get_mut(&stage).expect("up above");
        let Some(mut out) = s.committing.take() else {
            return;
        };
        s.wal.apply(std::mem::take(&mut out.wal));
        self.emit(stage, out);
        let now = self.now;
        let s = self.stages.get_mut(&stage).expect("up above");
        if s.feed_waiting(now) {
            self.after_input(stage);
        } else if let Some(core) = &s.core {
            // Ticks skipped it while it committed: due when its core says.
            self.wakes.at(stage, core.next_tick(now));
        }
    }

    /// Sends what the core said (after its writes are durable): messages,
    /// suspect reports, a read of a newer flow.
    fn emit(&mut self, stage: NodeId, out: Output) {
        let s = self.stages.get_mut(&stage).expect("a known stage");
        let Some(version) = s.core.as_ref().map(|c| c.flow_version()) else {
            return;
        };
        let host = s.host;
        for (_, msg) in &out.send {
            s.messages.count_sent(msg.kind());
        }
        for (to, msg) in out.send {
            let Some(to_host) = self.host_of(to) else {
                continue;
            };
            if self.net.passes(&mut self.rng, host, to_host) {
                let at = self.now + self.net.latency(&mut self.rng);
                let env = Envelope::new(stage, version, msg);
                self.queue.push(
                    at,
                    Event::Deliver {
                        from: stage,
                        to,
                        env,
                    },
                );
            }
        }
        for suspect in out.suspects {
            self.report_suspect(stage, suspect);
        }
        if out.flow_behind.is_some() {
            self.fetch(stage);
        }
    }

    /// A peer knows a newer flow: read the slice now (one read at a time).
    fn fetch(&mut self, stage: NodeId) {
        let Some(s) = self.stages.get_mut(&stage) else {
            return;
        };
        if s.fetching {
            return;
        }
        s.fetching = true;
        let life = s.life;
        match self.coordinator_reached_at(stage) {
            Some(at) => self.queue.push(at, Event::Read { stage, life }),
            None => self.stages.get_mut(&stage).expect("known").fetching = false,
        }
    }

    /// Starts a new stage declared by an operation.
    pub(super) fn add_stage(&mut self, decl: &factoryos_coord::spec::StageDecl) -> bool {
        let Some(c) = stage_config(&self.record.spec, decl, self.tuning) else {
            return false;
        };
        self.stages
            .insert(decl.id, Box::new(SimStage::new(c, decl.id)));
        true
    }

    /// Kills a stage: its watch is forgotten with it. A stage killed alone
    /// is reported by its live host to the leader, as the real host does.
    pub(super) fn crash_stage(&mut self, stage: NodeId, whole_host: bool) {
        if let Some(s) = self.stages.get_mut(&stage) {
            if s.is_up() {
                self.running -= 1;
            }
            s.crash();
            // A host's table of links dies with the process, not with one
            // of its stages.
            if whole_host {
                self.host_links.remove(&s.host);
            }
        }
        self.coord.watches.remove(&stage);
        if !whole_host {
            self.report_suspect(stage, stage);
        }
    }

    /// `reporter` (or, for its own stage, the host speaking for it) tells
    /// the leader `suspect` is silent: committed if the leader is reachable.
    fn report_suspect(&mut self, reporter: NodeId, suspect: NodeId) {
        if let Some(at) = self.coordinator_reached_at(reporter) {
            let cmd = Command::ReportSuspect { reporter, suspect };
            let at = at + self.cfg.commit_latency;
            self.queue.push(at, Event::Apply { cmd, by: By::Stage });
        }
    }

    /// Schedules a (re)start of `stage` now.
    pub(super) fn restart_stage(&mut self, stage: NodeId) {
        if let Some(s) = self.stages.get(&stage) {
            let life = s.life;
            self.queue.push(self.now, Event::Start { stage, life });
        }
    }
}

impl World {
    /// The run's time is up: the network heals, every stage drains (no new
    /// cycles or requests; trades in flight finish), no operation is applied.
    pub(super) fn begin_drain(&mut self) {
        self.final_heal(self.cfg.final_recovery);
        self.draining = true;
        for (id, s) in self.stages.iter_mut() {
            if let Some(core) = &mut s.core {
                core.drain();
                self.wakes.soon(*id);
            }
        }
    }

    /// No operation is applied from now on; the network heals and, with
    /// `recover`, every crashed host starts again.
    pub(super) fn final_heal(&mut self, recover: bool) {
        self.ops_stopped = true;
        self.net.heal_all();
        if recover {
            let dead: Vec<NodeId> = self.live.dead_hosts.iter().copied().collect();
            for host in dead {
                let stages = self.live.group(host).to_vec();
                self.apply_op(crate::op::Op::RecoverStages { host, stages });
            }
            let alone: Vec<NodeId> = self.live.dead_alone.iter().copied().collect();
            for stage in alone {
                if let Some(host) = self.live.host_of(stage) {
                    self.apply_op(crate::op::Op::RecoverStage { host, stage });
                }
            }
        }
    }

    /// No running stage has a lot in transit or a commit under way (and,
    /// with the final recovery, every stage is running again).
    pub(super) fn settled(&self) -> bool {
        self.stages.values().all(|s| match &s.core {
            Some(core) => s.committing.is_none() && core.in_transit_len() == 0,
            None => !self.cfg.final_recovery,
        })
    }

    /// Final products the final type's stages made so far (every life).
    pub(super) fn final_products_so_far(&self) -> u64 {
        self.stages
            .values()
            .filter(|s| s.cfg.is_final)
            .map(|s| s.report().counters.final_products)
            .sum()
    }
}

/// The address the stages of simulated host `host` register (one endpoint
/// per host, as a host process has): never dialled, but one the store
/// accepts (a real registration must name a dialable address).
pub(super) fn sim_address(host: NodeId) -> SocketAddr {
    let n = host.0;
    SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 7000))
}
