//! Faults set from outside a running process: a JSON file (a node's
//! `faults.json`) that the process follows, whose rule becomes its
//! endpoint's default for everything it sends. The partition harness's
//! `delay` nemesis writes these files; without one nothing is injected.

use crate::fault::{FaultController, FaultRule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file's name in a node's directory.
pub const FILE_NAME: &str = "faults.json";

/// A [`FaultRule`] as the file holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultFile {
    /// Percent of datagrams dropped.
    pub drop_percent: u8,
    /// Percent of datagrams sent twice.
    pub duplicate_percent: u8,
    pub delay_ms: u64,
    /// Uniform random extra delay in `[0, jitter_ms)`.
    pub jitter_ms: u64,
    /// Percent of datagrams held back up to `reorder_window_ms`.
    pub reorder_percent: u8,
    pub reorder_window_ms: u64,
}

impl FaultFile {
    pub fn rule(&self) -> FaultRule {
        let p = |percent: u8| percent.min(100) as f64 / 100.0;
        FaultRule {
            drop: p(self.drop_percent),
            duplicate: p(self.duplicate_percent),
            delay: Duration::from_millis(self.delay_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            reorder: p(self.reorder_percent),
            reorder_window: Duration::from_millis(self.reorder_window_ms),
        }
    }

    /// Writes the file (atomically: a temporary file renamed over it).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
    }

    /// Removes the file: no more faults.
    pub fn clear(path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn read(path: &Path) -> Option<FaultFile> {
        let text = std::fs::read_to_string(path).ok()?;
        match serde_json::from_str(&text) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a bad fault file");
                None
            }
        }
    }
}

/// Follows `path` every `every`: its rule is `controller`'s default while
/// the file exists, none once it is gone. Runs until aborted.
pub async fn follow(path: PathBuf, controller: FaultController, every: Duration) {
    let mut current: Option<FaultFile> = None;
    loop {
        let now = FaultFile::read(&path);
        if now != current {
            tracing::info!(path = %path.display(), rule = ?now, "fault rule changed");
            controller.set_default(now.as_ref().map(FaultFile::rule));
            current = now;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_written_file_sets_the_default_rule_and_removing_it_heals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let c = FaultController::new(1);
        let task = tokio::spawn(follow(path.clone(), c.clone(), Duration::from_millis(10)));
        let file = FaultFile {
            delay_ms: 40,
            duplicate_percent: 10,
            ..FaultFile::default()
        };
        file.write(&path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while c.default_rule() != Some(file.rule()) {
            assert!(std::time::Instant::now() < deadline, "rule never set");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        FaultFile::clear(&path).unwrap();
        while c.default_rule().is_some() {
            assert!(std::time::Instant::now() < deadline, "rule never cleared");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        assert!(serde_json::from_str::<FaultFile>("{\"delay\": 3}").is_err());
    }
}
