//! A host process: one QUIC endpoint, one identity (a host certificate
//! listing its stages), one WAL with group commit, one registration request
//! and one fault file for every stage it runs. Killing the process kills
//! its stages together, as a machine crash would; one stage can also die
//! alone inside the live host and start again from the host's WAL
//! ([`down`]: the file that asks for it).

mod alone;
pub mod down;

pub use alone::DOWN_EVERY;

use crate::core::HostLinks;
use crate::records::Records;
use crate::shell::{self, StageError, StageHandle, StageOptions};
use crate::wal::{GroupWal, WalError};
use factoryos_coord::backoff::Backoff;
use factoryos_coord::client::CoordClient;
use factoryos_wire::model::StageDescriptor;
use factoryos_wire::{Endpoint, FaultController, NodeId, NodeIdentity, PeerBook, TransportConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Everything a host process shares among its stages.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// A node certificate for one stage, a host certificate for several.
    pub identity: NodeIdentity,
    /// Where the endpoint listens (port 0: any free port).
    pub listen: SocketAddr,
    pub coordinators: BTreeMap<NodeId, SocketAddr>,
    pub transport: TransportConfig,
    pub faults: Option<FaultController>,
    /// A fault file the endpoint follows with `faults` (see
    /// `factoryos_wire::fault_file`): the host's first stage's.
    pub faults_path: Option<PathBuf>,
    /// The host's WAL: every stage's records, one group commit per round
    /// (see [`crate::wal`]).
    pub wal_path: PathBuf,
    /// The host's down file ([`down`]), followed by [`HostHandle::serve`].
    pub down_path: Option<PathBuf>,
}

/// A running host process's stages and endpoint.
#[derive(Debug)]
pub struct HostHandle {
    endpoint: Endpoint,
    addr: SocketAddr,
    /// The stages running now.
    stages: Vec<StageHandle>,
    /// Every stage's options, to start one again inside the live host.
    options: BTreeMap<NodeId, StageOptions>,
    shared: shell::HostShared,
    /// The stages' clients, which the host's membership reads keep current.
    clients: Clients,
    wal: GroupWal,
    down_path: Option<PathBuf>,
    /// Set when the host stops: ends its fault follower and registration.
    stopping: watch::Sender<bool>,
}

/// The clients of a host's stages (a stage started again brings a new one).
type Clients = Arc<Mutex<BTreeMap<NodeId, CoordClient>>>;

/// Opens the host's WAL and binds its endpoint, then starts each stage on
/// them (every stage must be one the identity speaks for, and the WAL must
/// hold no other stage). A stage that cannot start stops the ones already
/// started.
pub async fn start(host: HostOptions, stages: Vec<StageOptions>) -> Result<HostHandle, StageError> {
    let ids: Vec<NodeId> = stages.iter().map(|s| s.core.id).collect();
    let (wal, mut records) = GroupWal::open(&host.wal_path, &ids).await?;
    let book = PeerBook::new();
    book.allow(NodeId::OPERATOR);
    for (c, addr) in &host.coordinators {
        book.insert(*c, *addr);
    }
    let endpoint = Endpoint::bind(
        &host.identity,
        host.listen,
        book,
        host.transport.clone(),
        host.faults.clone(),
    )?;
    let bound = endpoint
        .local_addr()
        .map_err(|source| factoryos_wire::TransportError::Bind {
            addr: host.listen,
            source,
        })?;
    let addr = crate::address::advertised(host.identity.id(), bound, &host.coordinators)?;
    let (stopping, stopped) = watch::channel(false);
    follow_faults(&host, stopped.clone());
    let (registered_tx, registered) = watch::channel(false);
    let mut handle = HostHandle {
        endpoint,
        addr,
        stages: Vec::with_capacity(stages.len()),
        options: stages.iter().map(|s| (s.core.id, s.clone())).collect(),
        shared: shell::HostShared {
            links: HostLinks::default(),
            epoch: std::time::Instant::now(),
        },
        clients: Clients::default(),
        wal,
        down_path: host.down_path.clone(),
        stopping,
    };
    for opts in stages {
        let id = opts.core.id;
        let recovered = records.remove(&id).unwrap_or_default();
        if let Err(e) = handle.launch(id, recovered, registered.clone()).await {
            handle.stop().await;
            return Err(e);
        }
    }
    if !handle.stages.is_empty() {
        let descriptors = handle
            .stages
            .iter()
            .map(|s| s.descriptor().clone())
            .collect();
        let client = handle.stages[0].client().clone();
        let clients = handle.clients.clone();
        tokio::spawn(async move {
            let registered = register(client, descriptors, registered_tx, stopped.clone());
            if registered.await {
                follow_members(&clients, stopped).await;
            }
        });
    }
    Ok(handle)
}

/// How often a host asks the group for its coordinators (for all its
/// stages at once), whatever their flow watches are doing. Members are replaced one at a time, each change
/// committed before the next; a host that looks every second always knows
/// some member that is still in the group. (Looking every 10 s, and only
/// between long polls, the harness's membership nemesis replaced all three
/// between two looks, and the stages it left behind never got a flow again.)
const MEMBERS_EVERY: Duration = Duration::from_secs(1);

/// Registers every stage of the host in one request, retrying (with
/// jitter: many hosts fail together after a coordinator outage, and their
/// retries must not come back together) until a coordinator takes it or
/// the host stops; then lets the stages follow the flow.
async fn register(
    client: CoordClient,
    stages: Vec<StageDescriptor>,
    registered: watch::Sender<bool>,
    mut stopped: watch::Receiver<bool>,
) -> bool {
    let ids: Vec<NodeId> = stages.iter().map(|s| s.id).collect();
    let mut backoff = Backoff::registration();
    loop {
        let attempt = tokio::select! {
            r = client.register_host(stages.clone()) => r,
            _ = stopped.wait_for(|s| *s) => return false,
        };
        match attempt {
            Ok(index) => {
                tracing::info!(stages = ?ids, index, "registered");
                let _ = registered.send(true);
                return true;
            }
            Err(e) => {
                let wait = backoff.next_wait(&mut rand::rng());
                tracing::warn!(stages = ?ids, error = %e, wait_ms = wait.as_millis() as u64, "registration failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.wait_for(|s| *s) => return false,
                }
            }
        }
    }
}

impl HostHandle {
    /// The address every stage of the host registers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stages(&self) -> &[StageHandle] {
        &self.stages
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Starts stage `id` from `records` on the host's endpoint and WAL; it
    /// follows the flow once `registered`.
    async fn launch(
        &mut self,
        id: NodeId,
        records: Records,
        registered: watch::Receiver<bool>,
    ) -> Result<(), StageError> {
        let wal = self.wal.stage(id)?;
        let Some(opts) = self.options.get(&id).cloned() else {
            return Err(WalError::NotHeld {
                path: PathBuf::new(),
                stage: id,
            }
            .into());
        };
        let shared = self.shared.clone();
        let stage = shell::start(
            &self.endpoint,
            self.addr,
            wal,
            records,
            registered,
            shared,
            opts,
        )
        .await?;
        self.clients
            .lock()
            .expect("not poisoned")
            .insert(id, stage.client().clone());
        self.stages.push(stage);
        Ok(())
    }

    /// Stops every stage at once (each drains its trades, see
    /// [`StageHandle::stop`]), then closes the endpoint and the WAL. Each
    /// stage's outcome, by id.
    pub async fn stop(self) -> Vec<(NodeId, Result<(), StageError>)> {
        let stopping: Vec<_> = self
            .stages
            .into_iter()
            .map(|stage| {
                let id = stage.id();
                (id, tokio::spawn(stage.stop()))
            })
            .collect();
        let mut outcomes = Vec::with_capacity(stopping.len());
        for (id, task) in stopping {
            let outcome = task.await.map_err(|e| StageError::Join(e.to_string()));
            outcomes.push((id, outcome.and_then(|r| r)));
        }
        self.endpoint.shutdown().await;
        self.wal.close().await;
        let _ = self.stopping.send(true);
        outcomes
    }
}

/// Follows the host's fault file until the host stops.
fn follow_faults(host: &HostOptions, mut stopped: watch::Receiver<bool>) {
    let (Some(path), Some(faults)) = (&host.faults_path, &host.faults) else {
        return;
    };
    let follow = factoryos_wire::fault_file::follow(
        path.clone(),
        faults.clone(),
        Duration::from_millis(200),
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = follow => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
    });
}

/// Follows coordinator membership changes every [`MEMBERS_EVERY`], beside
/// the flow watches (a long poll may sit on a member being removed), until
/// the host stops: one status read for the host, learned by every stage's
/// client. (One read per stage was a thousand status reads a second, each
/// listing every stage, at 1,000 stages.)
async fn follow_members(clients: &Clients, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(MEMBERS_EVERY) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now: Vec<CoordClient> = clients
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        let Some(first) = now.first() else {
            continue;
        };
        match first.status().await {
            Ok(status) => {
                for client in &now {
                    client.learn(&status);
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not refresh the coordinators"),
        }
    }
}
