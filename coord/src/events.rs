//! A node's own account of what it did, as JSON lines in
//! `<node dir>/events.jsonl`, each stamped with the machine's monotonic
//! clock (one clock for every process of a machine, so the lines of all
//! nodes interleave truly): a coordinator's terms, leaders and applied
//! flows, stages marked dead or registered; a stage's adopted flows, its
//! suspect reports and the lots it made. The partition harness's checkers
//! read them after a run (election safety, monotonic terms and indexes,
//! fencing); `bench recovery` times its phases from them.

use factoryos_wire::NodeId;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The file name of a node's event log, in its node directory.
pub const FILE_NAME: &str = "events.jsonl";

/// Nanoseconds of `CLOCK_MONOTONIC`: comparable across the processes of
/// one machine (the harness's history uses the same clock).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One line of an event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// [`monotonic_ns`] when it happened.
    pub t_ns: u64,
    pub node: NodeId,
    #[serde(flatten)]
    pub what: What,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum What {
    /// The process started (a new life of the node).
    Started,
    /// A coordinator's view of its group changed: its term, the leader it
    /// knows, whether it leads (openraft's `state == Leader` and
    /// `current_leader == self`; in file-lock mode, holding the lock, the
    /// term being the lock's epoch), and its last applied log index.
    Role {
        term: u64,
        leader: Option<NodeId>,
        leading: bool,
        last_applied: u64,
    },
    /// A coordinator applied a new flow (its version is the log index);
    /// a node's applied flows only grow.
    FlowApplied { version: u64 },
    /// A coordinator committed a flow it proposed (file-lock mode, where a
    /// participant may see only the newest of several quick commits).
    FlowCommitted { version: u64 },
    /// The leader committed a flow it computed: whole or as a change, its
    /// edges, the bytes of its log entry, and the time to solve it.
    FlowProposed {
        version: u64,
        whole: bool,
        edges: usize,
        entry_bytes: usize,
        solve_us: u64,
    },
    /// A stage installed a flow and acts on it from now on.
    FlowAdopted { version: u64 },
    /// The group marked `stage` dead (the command's log index).
    MarkedDead { stage: NodeId, index: u64 },
    /// `stage` registered, or registered again after a restart (the
    /// command's log index).
    Registered { stage: NodeId, index: u64 },
    /// A stage reported neighbour `node` to the coordinators as suspect
    /// (it missed its heartbeats).
    Suspected { suspect: NodeId },
    /// A stage made its lot `seq` out of lots `inputs` (a successful
    /// cycle): the genealogy, timed, that recovery measurements follow.
    Made {
        seq: u64,
        inputs: Vec<factoryos_wire::LotId>,
    },
}

/// An append-only event log; cheap to clone. Writing never fails the
/// caller: a log that cannot be written is reported once and then skipped.
#[derive(Debug, Clone)]
pub struct EventLog {
    node: NodeId,
    file: Arc<Mutex<Option<File>>>,
}

impl EventLog {
    /// Opens (appends to) `path` for `node` and writes `Started`.
    pub fn open(path: &Path, node: NodeId) -> EventLog {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "no event log"))
            .ok();
        let log = EventLog {
            node,
            file: Arc::new(Mutex::new(file)),
        };
        log.record(What::Started);
        log
    }

    /// A log that writes nothing.
    pub fn none(node: NodeId) -> EventLog {
        EventLog {
            node,
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// The log of `node` in its node directory `dir`.
    pub fn in_dir(dir: &Path, node: NodeId) -> EventLog {
        Self::open(&dir.join(FILE_NAME), node)
    }

    pub fn record(&self, what: What) {
        let event = NodeEvent {
            t_ns: monotonic_ns(),
            node: self.node,
            what,
        };
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = file.as_mut() else { return };
        let mut line = serde_json::to_vec(&event).expect("an event always serialises");
        line.push(b'\n');
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(error = %e, "event log write failed; no more events");
            *file = None;
        }
    }
}

/// Reads an event log; a torn last line (the process was killed while
/// writing it) is left out.
pub fn read(path: &Path) -> std::io::Result<Vec<NodeEvent>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut events = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        if let Ok(event) = serde_json::from_str::<NodeEvent>(&line?) {
            events.push(event);
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_in_order_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let log = EventLog::open(&path, NodeId(2));
        log.record(What::Role {
            term: 3,
            leader: Some(NodeId(2)),
            leading: true,
            last_applied: 17,
        });
        log.record(What::FlowApplied { version: 18 });
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"t_ns\":1,\"no")
            .unwrap();
        let events = read(&path).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].what, What::Started);
        assert!(events[1].t_ns <= events[2].t_ns);
        assert_eq!(events[2].what, What::FlowApplied { version: 18 });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"event\":\"role\""), "{text}");
    }

    #[test]
    fn every_kind_of_event_reads_back_as_written() {
        // A field named like one of NodeEvent's own (`node`, `t_ns`) would
        // write a JSON key twice and read back as garbage.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let log = EventLog::open(&path, NodeId(15));
        let all = vec![
            What::FlowCommitted { version: 3 },
            What::FlowAdopted { version: 3 },
            What::MarkedDead {
                stage: NodeId(13),
                index: 4,
            },
            What::Registered {
                stage: NodeId(13),
                index: 9,
            },
            What::Suspected {
                suspect: NodeId(13),
            },
            What::Made {
                seq: 7,
                inputs: vec![factoryos_wire::LotId::new(NodeId(13), 2)],
            },
        ];
        for what in &all {
            log.record(what.clone());
        }
        let read: Vec<What> = read(&path).unwrap().into_iter().map(|e| e.what).collect();
        assert_eq!(read[1..], all[..]);
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            assert_eq!(line.matches("\"node\"").count(), 1, "{line}");
        }
    }
}
