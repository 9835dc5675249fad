//! Stages' slices of the flow, cut from one index per flow version: the
//! first watch after a flow change indexes it, every other watch reuses that.

use crate::state::ClusterConfig;
use factoryos_wire::{NodeId, SliceIndex, SliceUpdate};
use std::sync::{Arc, Mutex};

/// A configuration and the index of its flow.
type Indexed = (Arc<ClusterConfig>, Arc<SliceIndex>);

/// The index of the newest flow a watch asked about.
#[derive(Clone, Default)]
pub(super) struct SliceCache {
    latest: Arc<Mutex<Option<Indexed>>>,
}

impl SliceCache {
    /// `stage`'s slice of `config`'s flow for a holder of digest `have`.
    pub(super) fn answer(
        &self,
        config: Arc<ClusterConfig>,
        stage: NodeId,
        have: Option<u64>,
    ) -> SliceUpdate {
        let (config, index) = self.index(config);
        let item = config.stages.get(&stage).map(|r| &r.desc.item);
        let addr_of = |id: NodeId| config.stages.get(&id).map(|r| r.desc.addr);
        SliceUpdate::for_holder(index.slice(&config.flow, stage, item, addr_of), have)
    }

    /// The index of `config`'s flow, or of a newer one already indexed.
    fn index(&self, config: Arc<ClusterConfig>) -> Indexed {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        match &*latest {
            Some((c, index)) if c.flow.version >= config.flow.version => (c.clone(), index.clone()),
            _ => {
                let index = Arc::new(SliceIndex::new(&config.flow, |id| {
                    config.stages.get(&id).map(|r| &r.desc)
                }));
                *latest = Some((config.clone(), index.clone()));
                (config, index)
            }
        }
    }
}
