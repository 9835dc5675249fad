//! Keeping the transport's peer book in step with the registered stages,
//! so they may connect and the leader can probe them.

use super::Shared;
use crate::config_store::ConfigStore;

pub(super) async fn sync_peers<S: ConfigStore>(shared: Shared<S>) {
    let mut config = shared.store.config();
    loop {
        {
            let cfg = config.borrow_and_update();
            let book = shared.transport.peers();
            for (id, record) in &cfg.stages {
                if book.addr(*id) != Some(record.desc.addr) {
                    book.insert(*id, record.desc.addr);
                }
            }
        }
        if config.changed().await.is_err() {
            return;
        }
    }
}
