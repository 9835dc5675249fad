//! The stages' registration with the coordinators, as a host process does
//! it: the stages of a host that (re)start at one moment register in one
//! `RegisterStages` request, all or none; each learns the answer, and
//! those refused or cut off try again together after the host's backoff.

use super::world::{sim_address, By, Event, World};
use factoryos_coord::client::CALL_TIMEOUT;
use factoryos_coord::state::Command;
use factoryos_wire::model::StageDescriptor;
use factoryos_wire::NodeId;

impl World {
    /// `stage` (just started, or trying again) joins its host's next
    /// registration, which leaves once every stage due now has joined.
    pub(super) fn register(&mut self, stage: NodeId) {
        let Some(host) = self.host_of(stage) else {
            return;
        };
        let joining = self.registering.entry(host).or_default();
        if joining.is_empty() {
            // Queued after the moment's other starts, which are due first.
            self.queue.push(self.now, Event::RegisterHost { host });
        }
        if !joining.contains(&stage) {
            joining.push(stage);
        }
    }

    /// Sends `host`'s registration of the stages that joined it.
    pub(super) fn register_host(&mut self, host: NodeId) {
        let joined = self.registering.remove(&host).unwrap_or_default();
        let mut members = Vec::with_capacity(joined.len());
        let mut stages = Vec::with_capacity(joined.len());
        for stage in joined {
            if let Some((life, desc)) = self.descriptor(stage) {
                members.push((stage, life));
                stages.push(desc);
            }
        }
        let Some(&(first, _)) = members.first() else {
            return;
        };
        match self.coordinator_reached_at(first) {
            Some(at) => {
                let id = self.next_registration;
                self.next_registration += 1;
                self.registrations.insert(id, members);
                let cmd = Command::RegisterStages { stages };
                let by = By::Registration { id };
                self.queue
                    .push(at + self.cfg.commit_latency, Event::Apply { cmd, by });
            }
            None => self.register_later(&members),
        }
    }

    /// What `stage` registers, and in which life (`None`: it is down).
    fn descriptor(&self, stage: NodeId) -> Option<(u32, StageDescriptor)> {
        let s = self.stages.get(&stage)?;
        let core = s.core.as_ref()?;
        let desc = StageDescriptor {
            id: stage,
            item: s.cfg.item.clone(),
            addr: sim_address(s.host),
            recipe_version: core.config().recipe.version,
            capacity: s.cfg.capacity,
        };
        Some((s.life, desc))
    }

    /// Registration `id` was applied or refused: its stages learn it, or
    /// (refused, or the answer lost) try again together.
    pub(super) fn answer_registration(&mut self, id: u64, applied: bool) {
        let members = self.registrations.remove(&id).unwrap_or_default();
        let Some(&(first, _)) = members.first() else {
            return;
        };
        match self.coordinator_reached_at(first) {
            Some(at) if applied => {
                for (stage, life) in members {
                    self.queue.push(at, Event::Registered { stage, life });
                }
            }
            _ => self.register_later(&members),
        }
    }

    /// A registration failed (its call timed out): the host tries again
    /// after its backoff (its first stage's), all the stages together.
    pub(super) fn register_later(&mut self, members: &[(NodeId, u32)]) {
        let Some(&(first, _)) = members.first() else {
            return;
        };
        let Some(s) = self.stages.get_mut(&first) else {
            return;
        };
        let at = self.now + CALL_TIMEOUT + s.backoff.next_wait(&mut self.rng);
        for &(stage, life) in members {
            self.queue.push(at, Event::Register { stage, life });
        }
    }

    pub(super) fn registered(&mut self, stage: NodeId, life: u32) {
        if !self.life_is(stage, life) {
            return;
        }
        if let Some(s) = self.stages.get_mut(&stage) {
            s.backoff.reset();
        }
        if self.unregistered.remove(&stage) && self.unregistered.is_empty() {
            self.all_registered_at = Some(self.now);
        }
        self.send_watch(stage);
    }
}
