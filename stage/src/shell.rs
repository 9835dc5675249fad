//! The async shell around the sans-IO core: one task owns the core and the
//! WAL and runs the loop
//!
//! ```text
//! inputs (messages, flows, ticks) -> core -> commit WAL batch -> send -> ...
//! ```
//!
//! Messages that are ready together are fed to the core before one
//! `take_output`, so their writes share one batch; the host's stages'
//! batches share one transaction (see [`crate::wal::group`]).
//! Sends go through one FIFO queue per peer, drained by its own task, so a
//! dead peer (whose dial takes the connect timeout) never stalls the loop.
//! A WAL error stops the stage: it must never act on a transition it could
//! not make durable. The stage runs on an endpoint its host process shares
//! with its other stages (see [`crate::host`]).

use crate::core::{HostLinks, Output, StageConfig, StageCore};
use crate::metrics::{StageGauges, StageMetrics, StageReport};
use crate::records::{OutRecord, OutState, Records, WalOp};
use crate::wal::{StageWal, WalError};
use factoryos_coord::backoff::Backoff;
use factoryos_coord::client::CoordClient;
use factoryos_coord::events::{EventLog, What};
use factoryos_wire::message::Message;
use factoryos_wire::model::StageDescriptor;
use factoryos_wire::{Endpoint, FlowSlice, FlowVersion, Inbound, NodeId, SliceUpdate, Transport};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Everything one stage needs to run beside its host's endpoint.
#[derive(Debug, Clone)]
pub struct StageOptions {
    pub core: StageConfig,
    /// Where metrics are written (JSON, replaced atomically every `metrics_every`).
    pub metrics_path: Option<PathBuf>,
    pub metrics_every: Duration,
    /// Where the stage records the flows it adopts (none: not recorded).
    pub events_path: Option<PathBuf>,
    pub coordinators: BTreeMap<NodeId, SocketAddr>,
    /// How often the core's clock advances.
    pub tick: Duration,
    /// Relative capacity announced at registration.
    pub capacity: u32,
}

/// Why a stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Address(#[from] crate::address::AddressError),
    #[error(transparent)]
    Transport(#[from] factoryos_wire::TransportError),
    #[error("the WAL task failed: {0}")]
    Join(String),
}

/// A running stage.
#[derive(Debug)]
pub struct StageHandle {
    id: NodeId,
    addr: SocketAddr,
    descriptor: StageDescriptor,
    client: CoordClient,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), StageError>>,
    metrics: watch::Receiver<StageMetrics>,
}

impl StageHandle {
    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the stage registers.
    pub fn descriptor(&self) -> &StageDescriptor {
        &self.descriptor
    }

    /// The stage's client of the coordinators (requests go out as this stage).
    pub fn client(&self) -> &CoordClient {
        &self.client
    }

    /// The core's counters, refreshed every `metrics_every` (with the
    /// metrics file: a host of many stages must not pay for them every tick).
    pub fn metrics(&self) -> watch::Receiver<StageMetrics> {
        self.metrics.clone()
    }

    /// Kills the stage as a crash would, inside its live host: its loop
    /// stops where it is, with no drain and no last metrics. A batch it
    /// already handed to the host's WAL may still commit (a crash after the
    /// write, before the answer); the sends it queued after its last commit
    /// still go out, as a socket's buffers do after its process dies. What
    /// is addressed to it is refused, as not hosted, until it starts again.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Stops the stage: it makes and asks for no more lots, finishes the
    /// trades in flight (lots it sent get confirmed; at most [`DRAIN_MAX`],
    /// as a consumer may be gone), then stops. Everything committed stays
    /// committed.
    pub async fn stop(self) -> Result<(), StageError> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| StageError::Join(e.to_string()))?
    }
}

/// What the stages of one host share beside its endpoint and WAL: the
/// clock origin of their cores and what they heard from and sent to other
/// hosts (see [`HostLinks`]).
#[derive(Debug, Clone)]
pub struct HostShared {
    pub links: HostLinks,
    pub epoch: Instant,
}

/// Recovers the stage from its `records`, joins the host's `endpoint`
/// (which registers at `addr`) and WAL, and starts the stage's loop; it
/// follows the flow once `registered` (its host registers all its stages
/// in one request, see [`crate::host`]).
pub async fn start(
    endpoint: &Endpoint,
    addr: SocketAddr,
    wal: StageWal,
    records: Records,
    registered: watch::Receiver<bool>,
    shared: HostShared,
    opts: StageOptions,
) -> Result<StageHandle, StageError> {
    let id = opts.core.id;
    let mut core = StageCore::new(opts.core.clone(), records);
    core.share_host(shared.links);
    tracing::info!(
        stage = %id,
        in_queue = core.metrics().wal_recovered_in_queue,
        in_transit = core.metrics().wal_recovered_in_transit,
        inbound = core.metrics().wal_recovered_inbound,
        "WAL replayed"
    );
    let (transport, inbox) = endpoint.attach(id)?;
    let client = CoordClient::new(
        transport.clone(),
        opts.coordinators.keys().copied().collect(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let (metrics_tx, metrics_rx) = watch::channel(core.metrics().clone());
    let descriptor = StageDescriptor {
        id,
        item: opts.core.item.clone(),
        addr,
        recipe_version: core.config().recipe.version,
        capacity: opts.capacity,
    };
    core.set_wall_origin(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    );
    let handle_client = client.clone();
    let runner = Runner {
        flow_tx: None,
        fetching: Arc::default(),
        events: match &opts.events_path {
            Some(path) => EventLog::open(path, id),
            None => EventLog::none(id),
        },
        core,
        wal,
        transport,
        client,
        outboxes: HashMap::new(),
        metrics: metrics_tx,
        metrics_path: opts.metrics_path.clone(),
        metrics_every: opts.metrics_every,
        epoch: shared.epoch,
        started: Instant::now(),
    };
    let task = tokio::spawn(runner.run(registered, inbox, stop_rx, opts.tick));
    Ok(StageHandle {
        id,
        addr,
        descriptor,
        client: handle_client,
        stop: stop_tx,
        task,
        metrics: metrics_rx,
    })
}

struct Runner {
    events: EventLog,
    /// Where flows read out of turn go (set once the loop runs).
    flow_tx: Option<mpsc::Sender<FlowSlice>>,
    /// Whether such a read is under way.
    fetching: Arc<std::sync::atomic::AtomicBool>,
    core: StageCore,
    wal: StageWal,
    transport: Transport,
    client: CoordClient,
    outboxes: HashMap<NodeId, mpsc::UnboundedSender<(FlowVersion, Message)>>,
    metrics: watch::Sender<StageMetrics>,
    metrics_path: Option<PathBuf>,
    metrics_every: Duration,
    /// The host's clock origin: the core's `now` (one for all its stages).
    epoch: Instant,
    started: Instant,
}

impl Runner {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(
        mut self,
        registered: watch::Receiver<bool>,
        mut inbox: mpsc::Receiver<Inbound>,
        mut stop: watch::Receiver<bool>,
        tick: Duration,
    ) -> Result<(), StageError> {
        // Once the host has registered its stages, follow the flow.
        let (flow_tx, mut flow_rx) = mpsc::channel::<FlowSlice>(4);
        self.flow_tx = Some(flow_tx.clone());
        let me = self.core.config().id;
        tokio::spawn(follow_flow(self.client.clone(), me, registered, flow_tx));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_metrics_file = Instant::now();
        let mut draining: Option<Instant> = None;
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                r = stop.changed() => {
                    if r.is_err() || draining.is_some() {
                        break;
                    }
                    draining = Some(Instant::now());
                    self.core.drain();
                }
                item = inbox.recv() => {
                    let Some(item) = item else { break };
                    last_heard = Instant::now();
                    self.handle(item);
                    // Group commit: take everything else that is ready.
                    while let Ok(item) = inbox.try_recv() {
                        self.handle(item);
                    }
                }
                slice = flow_rx.recv() => {
                    if let Some(slice) = slice {
                        self.learn_addresses(&slice).await;
                        let now = self.now();
                        if self.core.set_slice(now, &slice) {
                            let version = slice.version.0;
                            self.events.record(What::FlowAdopted { version });
                        }
                    }
                }
                _ = ticker.tick() => {
                    let now = self.now();
                    self.core.tick(now);
                    if last_metrics_file.elapsed() >= self.metrics_every {
                        last_metrics_file = Instant::now();
                        self.metrics.send_replace(self.core.metrics().clone());
                        self.write_metrics();
                    }
                }
            }
            let out = self.core.take_output();
            self.execute(out).await?;
            if let Some(since) = draining {
                let settled =
                    self.core.in_transit_len() == 0 && last_heard.elapsed() >= DRAIN_QUIET;
                if settled || since.elapsed() >= DRAIN_MAX {
                    break;
                }
            }
        }
        self.write_metrics();
        self.transport.shutdown().await;
        Ok(())
    }

    fn handle(&mut self, item: Inbound) {
        let now = self.now();
        match item {
            Inbound::Message { from, env } => self.core.on_message(now, from, &env),
            // The leader's probe of a suspect: answer at once.
            Inbound::Request { env, reply, .. } => {
                reply.respond(self.core.flow_version(), env.body);
            }
        }
    }

    /// Commit, then send: the one ordering rule of the core.
    async fn execute(&mut self, out: Output) -> Result<(), StageError> {
        if out.is_empty() {
            return Ok(());
        }
        if !out.wal.is_empty() {
            let ops = self.wal.commit(out.wal).await?;
            record_made(&self.events, &ops);
        }
        let version = self.core.flow_version();
        for (to, msg) in out.send {
            self.outbox(to).send((version, msg)).ok();
        }
        for suspect in out.suspects {
            self.events.record(What::Suspected { suspect });
            let client = self.client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.report_suspect(suspect).await {
                    tracing::warn!(%suspect, error = %e, "could not report a suspect");
                }
            });
        }
        if let Some(v) = out.flow_behind {
            self.fetch_flow(v);
        }
        Ok(())
    }

    /// A peer knows flow `newer`: read the flow now rather than wait for
    /// the long poll (one read at a time).
    fn fetch_flow(&self, newer: FlowVersion) {
        let Some(tx) = self.flow_tx.clone() else {
            return;
        };
        if self
            .fetching
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let (client, fetching) = (self.client.clone(), self.fetching.clone());
        let me = self.core.config().id;
        tokio::spawn(async move {
            tracing::debug!(%newer, "a peer knows a newer flow: reading it");
            if let Ok(SliceUpdate::Changed(slice)) = client.read_slice(me, None).await {
                let _ = tx.send(*slice).await;
            }
            fetching.store(false, std::sync::atomic::Ordering::Release);
        });
    }

    /// The FIFO queue to `to`, with its sender task.
    fn outbox(&mut self, to: NodeId) -> &mpsc::UnboundedSender<(FlowVersion, Message)> {
        self.outboxes.entry(to).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(FlowVersion, Message)>();
            let transport = self.transport.clone();
            tokio::spawn(async move {
                let mut failing = false;
                while let Some((version, msg)) = rx.recv().await {
                    // At most once: a failed send is counted by the transport and
                    // repaired by the protocol (retransmits, request timeouts).
                    // Said once when a peer becomes unreachable, once when it is back.
                    match transport.send(to, version, msg).await {
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(peer = %to, error = %e, "cannot send to a peer");
                        }
                        Ok(()) if failing => {
                            failing = false;
                            tracing::info!(peer = %to, "sending to the peer again");
                        }
                        _ => {}
                    }
                }
            });
            tx
        })
    }

    /// Takes the neighbours' addresses the slice carries, as they last
    /// registered (a new flow may follow a restart on another port). Only a
    /// neighbour the slice gives no address for, and the book lacks, sends
    /// us to the directory before the flow is installed.
    async fn learn_addresses(&mut self, slice: &FlowSlice) {
        let me = self.core.config().id;
        let book = self.transport.peers().clone();
        for (id, addr) in &slice.addresses {
            if *id != me && book.addr(*id) != Some(*addr) {
                book.insert(*id, *addr);
            }
        }
        let unknown = slice
            .edges
            .iter()
            .flat_map(|e| [e.supplier, e.consumer])
            .any(|n| n != me && book.addr(n).is_none());
        if unknown {
            match self.client.directory().await {
                Ok(dir) => {
                    for (id, addr) in dir {
                        if book.addr(id) != Some(addr) {
                            book.insert(id, addr);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read the stage directory"),
            }
        }
    }

    /// Everything the metrics file holds, as of now.
    fn report(&self) -> StageReport {
        StageReport {
            counters: self.core.metrics().clone(),
            messages: self.transport.counters().totals(),
            gauges: StageGauges {
                recipe_version: self.core.config().recipe.version as u64,
                outbound_lots: self.core.outbound_len() as u64,
                in_transit_lots: self.core.in_transit_len() as u64,
                uptime_ms: self.started.elapsed().as_millis() as u64,
            },
        }
    }

    fn write_metrics(&self) {
        let Some(path) = &self.metrics_path else {
            return;
        };
        if let Err(e) = self.report().write(path) {
            tracing::debug!(path = %path.display(), error = %e, "could not write metrics");
        }
    }
}

/// Records every lot a committed batch made (only a manufacture cycle
/// writes a lot in the outbound inventory or shipped).
fn record_made(events: &EventLog, ops: &[WalOp]) {
    for op in ops {
        if let WalOp::Out(OutRecord {
            lot,
            state: OutState::InQueue | OutState::Shipped,
        }) = op
        {
            events.record(What::Made {
                seq: lot.id.seq,
                inputs: lot.genealogy.iter().map(|(id, _)| *id).collect(),
            });
        }
    }
}

/// The longest a stopping stage waits for its trades in flight to finish.
pub const DRAIN_MAX: Duration = Duration::from_secs(2);
/// A stopping stage whose lots are all confirmed waits until it heard
/// nothing for this long (a consumer may still be sending it confirmations
/// or a supplier a lot), then stops.
const DRAIN_QUIET: Duration = Duration::from_millis(300);

/// Waits until the stage is registered, then long-polls the flow forever,
/// forwarding every newer version, until the stage is gone.
async fn follow_flow(
    client: CoordClient,
    id: NodeId,
    mut registered: watch::Receiver<bool>,
    tx: mpsc::Sender<FlowSlice>,
) {
    tokio::select! {
        r = registered.wait_for(|r| *r) => if r.is_err() { return },
        _ = tx.closed() => return,
    }
    // The last slice received: the coordinator answers only the version
    // while our copy (named by its digest) still holds.
    let mut last: Option<FlowSlice> = None;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let known = last.as_ref().map_or(FlowVersion(0), |s| s.version);
        let digest = last.as_ref().map(FlowSlice::digest);
        let answer = client.watch_slice(id, known, digest).await;
        if answer.is_ok() {
            backoff.reset();
        }
        match answer {
            Ok(update) if update.version() > known => {
                let Some(slice) = update.resolve(last.as_ref()) else {
                    continue;
                };
                last = Some(slice.clone());
                if tx.send(slice).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(stage = %id, error = %e, "flow watch failed; retrying");
                let wait = backoff.next_wait(&mut rand::rng());
                tokio::time::sleep(wait).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}
