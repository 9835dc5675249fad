//! One table over a directory of per-nemesis harness runs (`--each`): for
//! each nemesis, how many runs were valid, the checkers' verdicts, faults
//! and register operations per run, and every verdict that was not valid.
//! Read back from the runs' summary `results.json`, so it can be drawn
//! again for runs made earlier (`--summarize`).

use crate::nemesis::Nemesis;
use serde_json::Value;
use std::path::Path;

/// Why a directory has no table.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a harness summary ({why})")]
    Format { path: String, why: String },
    #[error("{0} holds no per-nemesis runs (DIR/<nemesis>/results.json from --each)")]
    Empty(String),
}

/// One nemesis's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub nemesis: String,
    pub runs: usize,
    pub valid_runs: usize,
    /// Checker verdicts over all runs: valid, invalid, unknown.
    pub verdicts: (u64, u64, u64),
    pub faults_per_run: f64,
    /// Register operations per run: ok, fail, info.
    pub ops_per_run: (f64, f64, f64),
    /// `run N: checker verdict` for every verdict that was not valid.
    pub not_valid: Vec<String>,
}

/// The rows of `dir`'s subdirectories, in the order of [`Nemesis::ALL`]
/// (others after, by name).
pub fn rows(dir: &Path) -> Result<Vec<Row>, MatrixError> {
    let read_err = |path: &Path, source| MatrixError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
        let path = entry
            .map_err(|e| read_err(dir, e))?
            .path()
            .join("results.json");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
        let name = path
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        rows.push(row(&name, &text).map_err(|why| MatrixError::Format {
            path: path.display().to_string(),
            why,
        })?);
    }
    if rows.is_empty() {
        return Err(MatrixError::Empty(dir.display().to_string()));
    }
    let rank = |name: &str| {
        Nemesis::ALL
            .iter()
            .position(|n| n.name() == name)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by(|a, b| (rank(&a.nemesis), &a.nemesis).cmp(&(rank(&b.nemesis), &b.nemesis)));
    Ok(rows)
}

fn row(nemesis: &str, text: &str) -> Result<Row, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let runs = v["runs"].as_array().ok_or("no `runs`")?;
    let verdict = |k: &str| v["verdicts"][k].as_u64().ok_or(format!("no verdicts.{k}"));
    let n = runs.len().max(1) as f64;
    let per_run = |f: &dyn Fn(&Value) -> Option<u64>| -> f64 {
        runs.iter().filter_map(f).sum::<u64>() as f64 / n
    };
    let mut not_valid = Vec::new();
    for r in runs {
        for c in r["checkers"].as_array().into_iter().flatten() {
            let valid = c["valid"].as_str().unwrap_or("?");
            if valid != "valid" {
                not_valid.push(format!(
                    "run {}: {} {valid}",
                    r["run"],
                    c["checker"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    Ok(Row {
        nemesis: nemesis.to_owned(),
        runs: runs.len(),
        valid_runs: runs.iter().filter(|r| r["valid"] == "valid").count(),
        verdicts: (verdict("valid")?, verdict("invalid")?, verdict("unknown")?),
        faults_per_run: per_run(&|r| r["faults"].as_u64()),
        ops_per_run: (
            per_run(&|r| r["ops"]["ok"].as_u64()),
            per_run(&|r| r["ops"]["fail"].as_u64()),
            per_run(&|r| r["ops"]["info"].as_u64()),
        ),
        not_valid,
    })
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| nemesis | runs valid | checker verdicts (valid / invalid / unknown) | faults per run | register ops per run (ok / fail / info) | not valid |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let bad = if r.not_valid.is_empty() {
            "-".to_string()
        } else {
            r.not_valid.join("; ")
        };
        out.push_str(&format!(
            "| `{}` | {}/{} | {} / {} / {} | {:.1} | {:.0} / {:.0} / {:.0} | {bad} |\n",
            r.nemesis,
            r.valid_runs,
            r.runs,
            r.verdicts.0,
            r.verdicts.1,
            r.verdicts.2,
            r.faults_per_run,
            r.ops_per_run.0,
            r.ops_per_run.1,
            r.ops_per_run.2,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(valid: &[&str]) -> String {
        let runs: Vec<Value> = valid
            .iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::json!({
                    "run": i + 1, "valid": v, "faults": 10,
                    "ops": {"ok": 100, "fail": 10, "info": 2},
                    "checkers": [{"checker": "liveness", "valid": v}],
                })
            })
            .collect();
        let ok = valid.iter().filter(|v| **v == "valid").count();
        serde_json::json!({
            "verdicts": {"valid": ok, "invalid": valid.len() - ok, "unknown": 0},
            "runs": runs,
        })
        .to_string()
    }

    #[test]
    fn rows_come_in_nemesis_order_and_name_what_was_not_valid() {
        let dir = tempfile::tempdir().unwrap();
        for (name, valid) in [
            ("kill", vec!["valid", "invalid"]),
            ("partition-halves", vec!["valid"]),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("results.json"), summary(&valid)).unwrap();
        }
        std::fs::create_dir(dir.path().join("run-1")).unwrap(); // no summary: skipped
        let rows = rows(dir.path()).unwrap();
        assert_eq!(rows[0].nemesis, "partition-halves");
        assert_eq!(rows[1].valid_runs, 1);
        assert_eq!(
            rows[1].not_valid,
            vec!["run 2: liveness invalid".to_string()]
        );
        let table = markdown(&rows);
        assert!(
            table.contains(
                "| `kill` | 1/2 | 1 / 1 / 0 | 10.0 | 100 / 10 / 2 | run 2: liveness invalid |"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_directory_without_runs_or_with_a_bad_summary_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(rows(dir.path()), Err(MatrixError::Empty(_))));
        std::fs::create_dir(dir.path().join("kill")).unwrap();
        std::fs::write(dir.path().join("kill").join("results.json"), "{}").unwrap();
        assert!(matches!(rows(dir.path()), Err(MatrixError::Format { .. })));
    }
}
