//! The history of a harness run, as JSON lines (`history.jsonl`): every
//! client invocation and its completion (`invoke`, then `ok`, `fail` or
//! `info` when the outcome is unknown), every nemesis start and stop, and,
//! merged from the nodes' own event logs after the run, every role change
//! and flow seen. Every entry is stamped with the machine's monotonic clock
//! (`t_ns`), the clock the nodes stamp their events with.

use factoryos_coord::events::{monotonic_ns, NodeEvent};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A register operation of the config-store workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum RegisterOp {
    Read {
        key: String,
    },
    Write {
        key: String,
        value: u32,
    },
    /// Write `value` only if the register's version is still `version`.
    Cas {
        key: String,
        version: u32,
        value: u32,
    },
}

impl RegisterOp {
    pub fn key(&self) -> &str {
        match self {
            RegisterOp::Read { key }
            | RegisterOp::Write { key, .. }
            | RegisterOp::Cas { key, .. } => key,
        }
    }
}

/// A register's state as a read returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Register {
    pub version: u32,
    pub value: u32,
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Entry {
    /// A client `process` invokes operation `id`.
    Invoke {
        t_ns: u64,
        process: u32,
        id: u64,
        #[serde(flatten)]
        op: RegisterOp,
    },
    /// Operation `id` took effect; a read's result.
    Ok {
        t_ns: u64,
        process: u32,
        id: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        read: Option<Register>,
    },
    /// Operation `id` certainly did not take effect.
    Fail {
        t_ns: u64,
        process: u32,
        id: u64,
        error: String,
    },
    /// Whether operation `id` took effect is unknown (a timeout, no quorum).
    Info {
        t_ns: u64,
        process: u32,
        id: u64,
        error: String,
    },
    /// A nemesis fault begins.
    NemesisStart {
        t_ns: u64,
        nemesis: String,
        detail: String,
    },
    /// It is healed.
    NemesisStop { t_ns: u64, nemesis: String },
    /// What a node recorded about itself (role changes, flows).
    Node(NodeEvent),
    /// Final products made so far, sampled by the harness.
    Production { t_ns: u64, final_products: u64 },
}

impl Entry {
    pub fn t_ns(&self) -> u64 {
        match self {
            Entry::Invoke { t_ns, .. }
            | Entry::Ok { t_ns, .. }
            | Entry::Fail { t_ns, .. }
            | Entry::Info { t_ns, .. }
            | Entry::NemesisStart { t_ns, .. }
            | Entry::NemesisStop { t_ns, .. }
            | Entry::Production { t_ns, .. } => *t_ns,
            Entry::Node(e) => e.t_ns,
        }
    }
}

/// The history being written, shared by the clients, the nemesis and the
/// observer of a run. Entries are kept in memory and written to the file as
/// they come, so a run that dies leaves what it saw.
#[derive(Debug, Clone)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    entries: Vec<Entry>,
    file: Option<std::fs::File>,
}

impl History {
    /// A history written to `path` (created or truncated).
    pub fn create(path: &Path) -> std::io::Result<History> {
        let file = std::fs::File::create(path)?;
        Ok(History {
            inner: Arc::new(Mutex::new(Inner {
                entries: Vec::new(),
                file: Some(file),
            })),
        })
    }

    /// A history kept in memory only.
    pub fn in_memory() -> History {
        History {
            inner: Arc::new(Mutex::new(Inner {
                entries: Vec::new(),
                file: None,
            })),
        }
    }

    /// The machine's monotonic clock, as entries are stamped.
    pub fn now() -> u64 {
        monotonic_ns()
    }

    pub fn push(&self, entry: Entry) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = inner.file.as_mut() {
            let mut line = serde_json::to_vec(&entry).expect("an entry always serialises");
            line.push(b'\n');
            if let Err(e) = f.write_all(&line) {
                tracing::warn!(error = %e, "history file write failed; keeping it in memory only");
                inner.file = None;
            }
        }
        inner.entries.push(entry);
    }

    /// Every entry so far, in the order pushed.
    pub fn entries(&self) -> Vec<Entry> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .clone()
    }
}

/// Reads a `history.jsonl`.
pub fn read(path: &Path) -> std::io::Result<Vec<Entry>> {
    let file = std::fs::File::open(path)?;
    let mut entries = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        let entry = serde_json::from_str(&line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{}: {e}", path.display(), n + 1),
            )
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_from_their_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let h = History::create(&path).unwrap();
        let cas = RegisterOp::Cas {
            key: "reg-1".into(),
            version: 3,
            value: 9,
        };
        h.push(Entry::Invoke {
            t_ns: 1,
            process: 0,
            id: 7,
            op: cas.clone(),
        });
        h.push(Entry::Info {
            t_ns: 2,
            process: 0,
            id: 7,
            error: "timeout".into(),
        });
        h.push(Entry::Ok {
            t_ns: 3,
            process: 1,
            id: 8,
            read: Some(Register {
                version: 4,
                value: 9,
            }),
        });
        let back = read(&path).unwrap();
        assert_eq!(back, h.entries());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().next().unwrap().contains("\"type\":\"invoke\""),
            "{text}"
        );
        assert!(text.contains("\"f\":\"cas\""), "{text}");
    }
}
