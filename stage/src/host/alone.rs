//! One stage's crash and restart inside its live host process: the
//! host's other stages, its endpoint and its WAL go on; the stage starts
//! again from its records in the host's WAL and registers alone.

use super::{down, register, HostHandle};
use crate::shell::StageError;
use factoryos_coord::client::CoordClient;
use factoryos_wire::NodeId;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// How often a host reads its down file: a stage crash it asks for
/// happens within this (the harness times crashes from its write).
pub const DOWN_EVERY: Duration = Duration::from_millis(25);

impl HostHandle {
    /// The host's stages that are down inside it (killed, not started again).
    pub fn down(&self) -> BTreeSet<NodeId> {
        let running: BTreeSet<NodeId> = self.stages.iter().map(|s| s.id()).collect();
        self.options
            .keys()
            .filter(|id| !running.contains(id))
            .copied()
            .collect()
    }

    /// Kills stage `id` as a crash would (see
    /// [`crate::shell::StageHandle::kill`]); the host and its other stages
    /// go on. False if it was not running.
    pub async fn kill_stage(&mut self, id: NodeId) -> bool {
        let Some(at) = self.stages.iter().position(|s| s.id() == id) else {
            return false;
        };
        let stage = self.stages.remove(at);
        let client = self.clients.lock().expect("not poisoned").remove(&id);
        stage.kill().await;
        tracing::warn!(stage = %id, "stage killed inside its live host");
        if let Some(client) = client {
            tokio::spawn(report_stopped(client, id));
        }
        true
    }

    /// Starts stage `id` again (if it is down) from its records in the
    /// host's WAL, as a restarted process would from its file, and
    /// registers it alone (retrying like the host's registration).
    pub async fn restart_stage(&mut self, id: NodeId) -> Result<(), StageError> {
        if self.stages.iter().any(|s| s.id() == id) {
            return Ok(());
        }
        let records = self.wal.records(id).await?;
        let (registered_tx, registered) = watch::channel(false);
        self.launch(id, records, registered).await?;
        let stage = self.stages.last().expect("launched above");
        let (client, descriptor) = (stage.client().clone(), stage.descriptor().clone());
        let stopped = self.stopping.subscribe();
        tokio::spawn(register(client, vec![descriptor], registered_tx, stopped));
        tracing::info!(stage = %id, "stage started again inside its host");
        Ok(())
    }

    /// Runs the host until `until`, keeping the stages its down file lists
    /// down and starting the others again when the list drops them
    /// (acting on each change of the file, read every [`DOWN_EVERY`]).
    pub async fn serve(&mut self, until: impl Future<Output = ()>) {
        let Some(path) = self.down_path.clone() else {
            until.await;
            return;
        };
        tokio::pin!(until);
        let mut listed: Result<BTreeSet<NodeId>, String> = Ok(BTreeSet::new());
        loop {
            tokio::select! {
                () = &mut until => return,
                () = tokio::time::sleep(DOWN_EVERY) => {}
            }
            let now = down::read(&path).map_err(|e| e.to_string());
            if now == listed {
                continue;
            }
            match &now {
                Ok(want) => self.follow_down(want).await,
                Err(e) => tracing::warn!(error = %e, "ignoring the down file"),
            }
            listed = now;
        }
    }

    /// Kills the running stages `want` lists and starts the down ones it
    /// does not list.
    async fn follow_down(&mut self, want: &BTreeSet<NodeId>) {
        let foreign: Vec<&NodeId> = want
            .iter()
            .filter(|id| !self.options.contains_key(id))
            .collect();
        if !foreign.is_empty() {
            tracing::warn!(stages = ?foreign, "the down file lists stages this host does not run");
        }
        for id in want {
            self.kill_stage(*id).await;
        }
        for id in self.down().difference(want) {
            if let Err(e) = self.restart_stage(*id).await {
                tracing::error!(stage = %id, error = %e, "the stage could not start again; it stays down");
            }
        }
    }
}

/// How long a host tries to tell the leader that one of its stages died.
const REPORT_FOR: Duration = Duration::from_secs(5);

/// Tells the leader that `id` died while its host lives on, as a suspect
/// report about one of the host's own stages (the leader confirms it with
/// its probe, which the host answers at once: it does not run the stage).
/// Best effort: if the coordinators cannot be reached in [`REPORT_FOR`],
/// the stage's neighbours still find it silent.
async fn report_stopped(client: CoordClient, id: NodeId) {
    match tokio::time::timeout(REPORT_FOR, client.report_suspect(id)).await {
        Ok(Ok(_)) => tracing::info!(stage = %id, "reported the stage's death to the leader"),
        Ok(Err(e)) => tracing::warn!(stage = %id, error = %e, "could not report the stage's death"),
        Err(_) => {
            tracing::warn!(stage = %id, "no coordinator took the report of the stage's death")
        }
    }
}
