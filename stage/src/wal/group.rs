//! Group commit for a host process: its stages hand their batches to one
//! committer, which writes everything that is waiting as one durable redb
//! transaction, so a host of many stages pays one fsync per round, not one
//! per stage.
//!
//! The committer runs on a blocking thread. While it commits, new batches
//! queue up; the next transaction takes them all. A stage waits for the
//! transaction holding its batch, so commit-then-send still holds per
//! stage. A failed commit fails every stage of the host (the transaction
//! held all of their batches), and every later one too: a WAL that could
//! not make a write durable is not written again.

use super::{Wal, WalError};
use crate::records::{Records, WalOp};
use factoryos_wire::NodeId;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// One stage's batch and where its outcome goes.
struct Job {
    stage: NodeId,
    ops: Vec<WalOp>,
    done: oneshot::Sender<Result<Vec<WalOp>, WalError>>,
}

/// A host's WAL behind its committer.
#[derive(Debug)]
pub struct GroupWal {
    tx: mpsc::UnboundedSender<Job>,
    committer: JoinHandle<()>,
    commits: Arc<AtomicU64>,
    stages: Vec<NodeId>,
    path: std::path::PathBuf,
}

/// One stage's way into its host's group commit.
#[derive(Debug, Clone)]
pub struct StageWal {
    stage: NodeId,
    tx: mpsc::UnboundedSender<Job>,
}

impl GroupWal {
    /// Opens the WAL at `path` for exactly `stages` (see [`Wal::open`]) and
    /// starts its committer; each stage's records, for its recovery. Must
    /// run inside a tokio runtime.
    pub async fn open(
        path: &Path,
        stages: &[NodeId],
    ) -> Result<(GroupWal, BTreeMap<NodeId, Records>), WalError> {
        let (p, s) = (path.to_owned(), stages.to_vec());
        let (wal, records) = tokio::task::spawn_blocking(move || Wal::open(&p, &s))
            .await
            .map_err(|_| WalError::Stopped)??;
        Ok((GroupWal::start(wal), records))
    }

    /// Starts the committer of an open WAL.
    pub fn start(wal: Wal) -> GroupWal {
        let (tx, rx) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        let stages = wal.stages().iter().copied().collect();
        let path = wal.path().to_owned();
        let counter = commits.clone();
        let committer = tokio::task::spawn_blocking(move || commit_rounds(wal, rx, &counter));
        GroupWal {
            tx,
            committer,
            commits,
            stages,
            path,
        }
    }

    /// The handle stage `stage` commits through.
    pub fn stage(&self, stage: NodeId) -> Result<StageWal, WalError> {
        if !self.stages.contains(&stage) {
            return Err(WalError::NotHeld {
                path: self.path.clone(),
                stage,
            });
        }
        Ok(StageWal {
            stage,
            tx: self.tx.clone(),
        })
    }

    /// Durable transactions so far (each holding one or more stages' batches).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Waits until every stage's handle is gone and the last commit is
    /// done, then closes the file (a restarted host may open it at once).
    pub async fn close(self) {
        drop(self.tx);
        let _ = self.committer.await;
    }
}

impl StageWal {
    pub fn stage(&self) -> NodeId {
        self.stage
    }

    /// Makes `ops` durable (with whatever else the host's stages commit
    /// now) and hands them back.
    pub async fn commit(&self, ops: Vec<WalOp>) -> Result<Vec<WalOp>, WalError> {
        if ops.is_empty() {
            return Ok(ops);
        }
        let (done, outcome) = oneshot::channel();
        let job = Job {
            stage: self.stage,
            ops,
            done,
        };
        self.tx.send(job).map_err(|_| WalError::Stopped)?;
        outcome.await.map_err(|_| WalError::Stopped)?
    }
}

/// The committer: one transaction per round for everything waiting, until
/// every sender is gone.
fn commit_rounds(wal: Wal, mut rx: mpsc::UnboundedReceiver<Job>, commits: &AtomicU64) {
    let mut failed: Option<Arc<WalError>> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while let Ok(job) = rx.try_recv() {
            jobs.push(job);
        }
        if let Some(e) = &failed {
            for job in jobs {
                let _ = job.done.send(Err(WalError::Group(e.clone())));
            }
            continue;
        }
        let batches: Vec<(NodeId, &[WalOp])> =
            jobs.iter().map(|j| (j.stage, j.ops.as_slice())).collect();
        match wal.commit_group(&batches) {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                for job in jobs {
                    let _ = job.done.send(Ok(job.ops));
                }
            }
            Err(e) => {
                tracing::error!(path = %wal.path().display(), error = %e, "the host's group commit failed; its stages stop");
                let e = Arc::new(e);
                for job in jobs {
                    let _ = job.done.send(Err(WalError::Group(e.clone())));
                }
                failed = Some(e);
            }
        }
    }
}
