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

/// What the committer is asked to do, in the order asked.
enum Job {
    /// Make one stage's batch durable; its outcome goes to `done`.
    Commit {
        stage: NodeId,
        ops: Vec<WalOp>,
        done: oneshot::Sender<Result<Vec<WalOp>, WalError>>,
    },
    /// Read one stage's records back, after every batch asked before (a
    /// stage restarted inside its live host recovers from them).
    Read {
        stage: NodeId,
        done: oneshot::Sender<Result<Records, WalError>>,
    },
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

    /// Stage `stage`'s records as they are once every batch handed in
    /// before is committed: what a stage restarted inside its live host
    /// recovers from (its host still holds the file open).
    pub async fn records(&self, stage: NodeId) -> Result<Records, WalError> {
        self.stage(stage)?;
        let (done, outcome) = oneshot::channel();
        self.tx
            .send(Job::Read { stage, done })
            .map_err(|_| WalError::Stopped)?;
        outcome.await.map_err(|_| WalError::Stopped)?
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
        let job = Job::Commit {
            stage: self.stage,
            ops,
            done,
        };
        self.tx.send(job).map_err(|_| WalError::Stopped)?;
        outcome.await.map_err(|_| WalError::Stopped)?
    }
}

/// The committer: one transaction per round for every batch waiting, then
/// the reads that waited with them, until every sender is gone.
fn commit_rounds(wal: Wal, mut rx: mpsc::UnboundedReceiver<Job>, commits: &AtomicU64) {
    let mut failed: Option<Arc<WalError>> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut batches = Vec::new();
        let mut reads = Vec::new();
        let mut sort = |job| match job {
            Job::Commit { stage, ops, done } => batches.push((stage, ops, done)),
            Job::Read { stage, done } => reads.push((stage, done)),
        };
        sort(first);
        while let Ok(job) = rx.try_recv() {
            sort(job);
        }
        commit_round(&wal, batches, &mut failed, commits);
        for (stage, done) in reads {
            let read = match &failed {
                Some(e) => Err(WalError::Group(e.clone())),
                None => wal.records(stage),
            };
            let _ = done.send(read);
        }
    }
}

type Batch = (
    NodeId,
    Vec<WalOp>,
    oneshot::Sender<Result<Vec<WalOp>, WalError>>,
);

/// One durable transaction holding `batches` (none: nothing to do); after
/// a failure, every batch fails without a write.
fn commit_round(
    wal: &Wal,
    batches: Vec<Batch>,
    failed: &mut Option<Arc<WalError>>,
    commits: &AtomicU64,
) {
    if batches.is_empty() {
        return;
    }
    if let Some(e) = failed {
        for (_, _, done) in batches {
            let _ = done.send(Err(WalError::Group(e.clone())));
        }
        return;
    }
    let group: Vec<(NodeId, &[WalOp])> = batches
        .iter()
        .map(|(stage, ops, _)| (*stage, ops.as_slice()))
        .collect();
    match wal.commit_group(&group) {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            for (_, ops, done) in batches {
                let _ = done.send(Ok(ops));
            }
        }
        Err(e) => {
            tracing::error!(path = %wal.path().display(), error = %e, "the host's group commit failed; its stages stop");
            let e = Arc::new(e);
            for (_, _, done) in batches {
                let _ = done.send(Err(WalError::Group(e.clone())));
            }
            *failed = Some(e);
        }
    }
}
