//! What the coordinators did during a run, from their event logs and
//! their processes: leader elections, the flows the leaders committed (how
//! big each log entry was, how long each took to solve), and their CPU.

use super::rig::Rig;
use super::RunError;
use factoryos_coord::events::{self, What};
use serde::Serialize;
use std::collections::BTreeSet;

/// The flows the leaders committed during a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FlowFigures {
    pub committed: usize,
    /// Of those, how many carried the whole flow (the rest were changes).
    pub whole: usize,
    /// Edges of the last flow committed.
    pub edges: usize,
    pub entry_bytes_mean: f64,
    pub entry_bytes_max: usize,
    pub solve_ms_mean: f64,
    pub solve_ms_max: f64,
}

impl FlowFigures {
    /// The figures of the `FlowProposed` events in `events` (of every leader).
    pub fn of<'a>(events: impl IntoIterator<Item = &'a What>) -> FlowFigures {
        let mut f = FlowFigures::default();
        let (mut bytes, mut solve_us, mut last) = (0usize, 0u64, 0u64);
        for e in events {
            let What::FlowProposed {
                version,
                whole,
                edges,
                entry_bytes,
                solve_us: us,
            } = e
            else {
                continue;
            };
            f.committed += 1;
            f.whole += usize::from(*whole);
            if *version >= last {
                last = *version;
                f.edges = *edges;
            }
            bytes += entry_bytes;
            f.entry_bytes_max = f.entry_bytes_max.max(*entry_bytes);
            solve_us += us;
            f.solve_ms_max = f.solve_ms_max.max(*us as f64 / 1000.0);
        }
        if f.committed > 0 {
            f.entry_bytes_mean = bytes as f64 / f.committed as f64;
            f.solve_ms_mean = solve_us as f64 / 1000.0 / f.committed as f64;
        }
        f
    }
}

/// Everything the coordinators' event logs say about the run.
#[derive(Debug, Clone, Default)]
pub struct CoordFigures {
    /// Terms (file-lock epochs) in which some coordinator led: 1 for a run
    /// whose leader never changed.
    pub leader_elections: usize,
    pub flows: FlowFigures,
}

/// Reads every coordinator's event log.
pub fn read(rig: &Rig) -> Result<CoordFigures, RunError> {
    let mut terms = BTreeSet::new();
    let mut all = Vec::new();
    for id in rig.cluster.coordinators() {
        let path = rig.cluster.file().node_dir(id).join(events::FILE_NAME);
        if !path.exists() {
            continue;
        }
        for e in events::read(&path)? {
            if let What::Role {
                term,
                leading: true,
                ..
            } = e.what
            {
                terms.insert(term);
            }
            all.push(e.what);
        }
    }
    Ok(CoordFigures {
        leader_elections: terms.len(),
        flows: FlowFigures::of(&all),
    })
}

/// CPU seconds (user and system) process `pid` has used so far, from
/// `/proc/PID/stat`; `None` where that cannot be read.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_figures_sum_the_leaders_commits() {
        let flow = |version, whole, edges, entry_bytes, solve_us| What::FlowProposed {
            version,
            whole,
            edges,
            entry_bytes,
            solve_us,
        };
        let events = [
            flow(3, true, 10, 1000, 2000),
            What::Started,
            flow(9, false, 12, 100, 1000),
            flow(7, true, 11, 1300, 500),
        ];
        let f = FlowFigures::of(&events);
        assert_eq!(f.committed, 3);
        assert_eq!(f.whole, 2);
        assert_eq!(f.edges, 12, "the newest version's");
        assert_eq!(f.entry_bytes_max, 1300);
        assert!((f.entry_bytes_mean - 800.0).abs() < 1e-9);
        assert!((f.solve_ms_max - 2.0).abs() < 1e-9);
        assert_eq!(FlowFigures::of(&[]), FlowFigures::default());
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        // The kernel counts CPU in clock ticks: work until at least one
        // has been counted (bounded, so a broken reader fails, not hangs).
        let started = std::time::Instant::now();
        let mut x = 0u64;
        loop {
            for i in 0..5_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            let cpu = cpu_seconds(std::process::id()).expect("/proc is readable");
            if cpu > 0.0 {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "no CPU time counted after 30 s of work ({x})"
            );
        }
    }
}
