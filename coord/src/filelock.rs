//! The original system's way of coordinating, behind [`ConfigStore`]: a
//! shared directory, the leader being whoever holds an `flock` on
//! `leader.lock`, and the configuration in a file replaced atomically
//! (write a temporary file, fsync, rename, fsync the directory). Followers
//! re-read the file when it changes.
//!
//! It is kept to be measured against the Raft store, and its limits are
//! real: every coordinator must see **one shared filesystem** (a lock on a
//! network filesystem is only as good as that filesystem's lock service),
//! and there is **no fencing**: a leader paused (SIGSTOP, a long GC, a VM
//! freeze) keeps believing it leads, and nothing stops it from writing a
//! flow computed before the pause once it resumes, except that every write
//! re-reads the file under `config.lock` and `CommitFlow` is refused if the
//! configuration moved on. Unlike the original, writes are read-modify-write
//! under that lock, so concurrent writers cannot lose each other's updates.

use crate::config_store::{ConfigStore, MembershipChange, StoreError};
use crate::events::{EventLog, What};
use crate::state::{ClusterConfig, Command, CommandResponse};
use crate::timings::Timings;
use factoryos_wire::message::RaftRpc;
use factoryos_wire::model::{ClusterStatus, CommitPhase, PhaseTiming};
use factoryos_wire::{NodeId, ServiceError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const LEADER_LOCK: &str = "leader.lock";
const LEADER: &str = "leader";
const CONFIG_LOCK: &str = "config.lock";
const CONFIG: &str = "config.bin";

/// What `config.bin` holds: the configuration and the number of writes
/// applied to it (which plays the role of the Raft log index).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    index: u64,
    config: ClusterConfig,
}

/// One participant of a file-lock coordinated cluster.
#[derive(Clone)]
pub struct FileLockStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FileLockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLockStore")
            .field("id", &self.inner.id)
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    id: NodeId,
    dir: PathBuf,
    /// The coordinators of `cluster.toml`, with their addresses.
    members: BTreeMap<NodeId, SocketAddr>,
    config: watch::Sender<Arc<ClusterConfig>>,
    index: Mutex<u64>,
    leading: watch::Sender<bool>,
    /// Held for as long as this participant leads.
    lock: Mutex<Option<File>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    log: EventLog,
    /// The (epoch, leader, leading) last recorded in the log.
    role: Mutex<Option<(u64, Option<NodeId>, bool)>>,
    /// The newest flow version recorded in the log.
    logged_flow: Mutex<u64>,
    timings: Timings,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl FileLockStore {
    /// Joins the cluster coordinated through `dir` (created if missing).
    /// `poll` is how often the lock is tried and the file re-read.
    pub fn open(
        dir: &Path,
        id: NodeId,
        members: BTreeMap<NodeId, SocketAddr>,
        poll: Duration,
        log: EventLog,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let stored = read_stored(dir)?;
        let (config, _) = watch::channel(Arc::new(stored.config));
        let (leading, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            id,
            dir: dir.to_owned(),
            members,
            config,
            index: Mutex::new(stored.index),
            leading,
            lock: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            log,
            role: Mutex::new(None),
            logged_flow: Mutex::new(0),
            timings: Timings::default(),
        });
        let weak = Arc::downgrade(&inner);
        let tasks = vec![
            tokio::spawn(follow(weak.clone(), poll)),
            tokio::spawn(campaign(weak, poll)),
        ];
        *inner.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(FileLockStore { inner })
    }

    /// Re-reads `config.bin` and publishes it if it is newer.
    fn refresh(&self) -> Result<(), StoreError> {
        refresh(&self.inner)
    }
}

fn read_stored(dir: &Path) -> Result<Stored, StoreError> {
    match std::fs::read(dir.join(CONFIG)) {
        Ok(bytes) => postcard::from_bytes(&bytes)
            .map_err(|e| unavailable(format!("{} is corrupt: {e}", dir.join(CONFIG).display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored::default()),
        Err(e) => Err(unavailable(e)),
    }
}

fn refresh(inner: &Inner) -> Result<(), StoreError> {
    let stored = read_stored(&inner.dir)?;
    let mut index = inner.index.lock().unwrap_or_else(|e| e.into_inner());
    if stored.index > *index {
        *index = stored.index;
        record_flow(inner, stored.config.flow.version.0);
        inner.config.send_replace(Arc::new(stored.config));
    }
    Ok(())
}

/// Logs a flow this participant sees for the first time.
fn record_flow(inner: &Inner, version: u64) {
    let mut logged = inner.logged_flow.lock().unwrap_or_else(|e| e.into_inner());
    if version > *logged {
        *logged = version;
        inner.log.record(What::FlowApplied { version });
    }
}

/// Followers re-read the file when it changes (polling: portable, and the
/// original did the same).
async fn follow(inner: Weak<Inner>, poll: Duration) {
    loop {
        tokio::time::sleep(poll).await;
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = refresh(&inner) {
            tracing::warn!(error = %e, "cannot re-read the shared configuration");
        }
        record_role(&inner);
    }
}

/// Tries the leader lock until it is ours; the OS releases it when this
/// process dies, which is how leadership passes on.
async fn campaign(inner: Weak<Inner>, poll: Duration) {
    loop {
        {
            let Some(inner) = inner.upgrade() else { return };
            match try_lead(&inner) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot try the leader lock"),
            }
        }
        tokio::time::sleep(poll).await;
    }
}

fn try_lead(inner: &Inner) -> std::io::Result<bool> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(inner.dir.join(LEADER_LOCK))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    // Record who leads and in which epoch (the analogue of a Raft term).
    let epoch = read_leader(&inner.dir).map(|(_, e)| e + 1).unwrap_or(1);
    write_atomically(
        &inner.dir,
        LEADER,
        format!("{} {epoch}\n", inner.id.0).as_bytes(),
    )?;
    *inner.lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
    inner.leading.send_replace(true);
    record_role(inner);
    tracing::info!(node = %inner.id, epoch, "holding the leader lock");
    Ok(true)
}

/// Logs the leader and epoch this participant sees, when they changed.
fn record_role(inner: &Inner) {
    let Some((leader, epoch)) = read_leader(&inner.dir) else {
        return;
    };
    let leading = *inner.leading.borrow() && leader == inner.id;
    let seen = (epoch, Some(leader), leading);
    let mut role = inner.role.lock().unwrap_or_else(|e| e.into_inner());
    if *role != Some(seen) {
        *role = Some(seen);
        inner.log.record(What::Role {
            term: epoch,
            leader: Some(leader),
            leading,
            last_applied: *inner.index.lock().unwrap_or_else(|e| e.into_inner()),
        });
    }
}

fn read_leader(dir: &Path) -> Option<(NodeId, u64)> {
    let text = std::fs::read_to_string(dir.join(LEADER)).ok()?;
    let mut parts = text.split_whitespace();
    let id = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.parse().ok()?;
    Some((NodeId(id), epoch))
}

/// Write to a temporary file, fsync it, rename it over `name`, fsync the directory.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Read-modify-write of the configuration under `config.lock`.
fn apply(dir: &Path, cmd: &Command) -> Result<(Stored, CommandResponse), StoreError> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(CONFIG_LOCK))
        .map_err(unavailable)?;
    lock.lock().map_err(unavailable)?;
    let mut stored = read_stored(dir)?;
    stored.index += 1;
    let response = stored.config.apply(stored.index, cmd);
    if !matches!(response, CommandResponse::Rejected { .. }) {
        let bytes = postcard::to_allocvec(&stored).map_err(unavailable)?;
        write_atomically(dir, CONFIG, &bytes).map_err(unavailable)?;
    }
    drop(lock);
    Ok((stored, response))
}

impl ConfigStore for FileLockStore {
    async fn propose(&self, cmd: Command) -> Result<CommandResponse, StoreError> {
        let dir = self.inner.dir.clone();
        let start = Instant::now();
        let (stored, response, cmd) =
            tokio::task::spawn_blocking(move || apply(&dir, &cmd).map(|(s, r)| (s, r, cmd)))
                .await
                .map_err(unavailable)??;
        self.inner.timings.since(CommitPhase::Proposal, start);
        if let CommandResponse::FlowCommitted { version } = &response {
            let version = version.0;
            self.inner.log.record(What::FlowCommitted { version });
            record_flow(&self.inner, version);
        }
        for what in cmd.event(stored.index, &response) {
            self.inner.log.record(what);
        }
        if !matches!(response, CommandResponse::Rejected { .. }) {
            let mut index = self.inner.index.lock().unwrap_or_else(|e| e.into_inner());
            if stored.index > *index {
                *index = stored.index;
                self.inner.config.send_replace(Arc::new(stored.config));
            }
        }
        Ok(response)
    }

    fn config(&self) -> watch::Receiver<Arc<ClusterConfig>> {
        self.inner.config.subscribe()
    }

    fn commit_timings(&self) -> Vec<PhaseTiming> {
        self.inner.timings.summary()
    }

    fn leader(&self) -> Option<NodeId> {
        read_leader(&self.inner.dir).map(|(leader, _)| leader)
    }

    fn leading(&self) -> watch::Receiver<bool> {
        self.inner.leading.subscribe()
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.refresh()
    }

    fn status(&self) -> ClusterStatus {
        let mut s = self.inner.config.borrow().status();
        if let Some((leader, epoch)) = read_leader(&self.inner.dir) {
            s.leader = Some(leader);
            s.term = epoch;
        }
        s.members = self.inner.members.keys().copied().collect();
        s.member_addrs = self.inner.members.iter().map(|(i, a)| (*i, *a)).collect();
        s
    }

    async fn change_coordinators(
        &self,
        _change: MembershipChange,
    ) -> Result<Vec<NodeId>, StoreError> {
        Err(StoreError::Rejected(
            "file-lock mode has a fixed set of coordinators (those of cluster.toml)".into(),
        ))
    }

    async fn serve_raft(&self, _rpc: RaftRpc, _payload: Vec<u8>) -> Result<Vec<u8>, ServiceError> {
        Err(ServiceError::rejected(
            "this coordinator runs in file-lock mode and takes no Raft RPCs",
        ))
    }
}
