//! A host's down file: which of its stages must be down while the host
//! process lives on (one stage's crash inside a live host, as a nemesis or
//! an operator asks for it). One stage id per line; no file, or an empty
//! one: every stage runs. The host follows it (see
//! [`super::HostHandle::serve`]); writers replace it whole.

use factoryos_wire::NodeId;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The down file's name, in the node directory of the host's first stage.
pub const FILE_NAME: &str = "down";

/// Why a down file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DownFileError {
    #[error("reading the down file {path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the down file {path}, line {line}: `{text}` is not a stage id", path = .path.display())]
    Bad {
        path: PathBuf,
        line: usize,
        text: String,
    },
}

/// The stages the file at `path` says must be down (none without the file).
pub fn read(path: &Path) -> Result<BTreeSet<NodeId>, DownFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(source) => {
            return Err(DownFileError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(line, l)| {
            l.parse::<u64>()
                .ok()
                .filter(|id| *id > 0)
                .map(NodeId)
                .ok_or_else(|| DownFileError::Bad {
                    path: path.to_owned(),
                    line,
                    text: l.to_owned(),
                })
        })
        .collect()
}

/// Replaces the file at `path` with `stages` (none: removes it), whole:
/// written aside and renamed, so the host never reads half of it.
pub fn write(path: &Path, stages: &BTreeSet<NodeId>) -> std::io::Result<()> {
    if stages.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let text: String = stages.iter().map(|s| format!("{}\n", s.0)).collect();
    let aside = path.with_extension("new");
    std::fs::write(&aside, text)?;
    std::fs::rename(&aside, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_no_file_means_every_stage_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(read(&path).unwrap().is_empty());
        let down: BTreeSet<NodeId> = [NodeId(12), NodeId(40)].into();
        write(&path, &down).unwrap();
        assert_eq!(read(&path).unwrap(), down);
        write(&path, &BTreeSet::new()).unwrap();
        assert!(!path.exists());
        write(&path, &BTreeSet::new()).unwrap();
    }

    #[test]
    fn a_line_that_is_no_stage_id_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "12\n\n  13 \nn14\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("`n14`"), "{e}");
        std::fs::write(&path, "0\n").unwrap();
        assert!(read(&path).is_err());
    }
}
