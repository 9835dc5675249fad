//! The WAL under tests: records read back after a reopen, stages kept apart
//! in one file, a foreign stage refused, group commit coalescing the
//! batches of concurrent stages, and a host crashing at every commit point
//! of its first rounds without losing or duplicating a lot.

use super::*;
use crate::audit::audit;
use crate::core::fixtures::{frame, window, window_flow, wood};
use crate::core::{Output, StageConfig, StageCore};
use crate::records::OutState;
use factoryos_wire::message::Envelope;
use factoryos_wire::model::{Flow, Recipe};
use factoryos_wire::FlowVersion;

fn normalised(mut r: Records) -> Records {
    r.out.sort_by_key(|o| o.lot.id);
    r.inbound.sort_by_key(|i| i.lot.id);
    r
}

#[test]
fn what_is_committed_is_read_back_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.redb");
    let recipe = Recipe {
        inputs: Default::default(),
        yield_units: 3,
        version: 1,
    };
    let id = NodeId(11);
    let cfg = StageConfig::new(id, "wood".into(), recipe, false);
    let mut expected = Records::default();
    {
        let (wal, records) = Wal::open(&path, &[id]).unwrap();
        assert_eq!(records[&id], Records::default());
        let mut core = StageCore::new(cfg.clone(), records[&id].clone());
        for i in 0..4 {
            core.tick(Duration::from_millis(100 * i));
            let out = core.take_output();
            wal.commit(id, &out.wal).unwrap();
            expected.apply(&out.wal);
        }
    }
    let (_, records) = Wal::open(&path, &[id]).unwrap();
    let records = &records[&id];
    assert_eq!(records.out.len(), 4);
    assert_eq!(records.out, expected.out);
    assert_eq!(records.meta.next_seq, 4);
    assert_eq!(records.meta.flow_version, FlowVersion(0));
    // Updating a record replaces it.
    let (wal, _) = Wal::open(&path, &[id]).unwrap();
    let mut r = records.out[0].clone();
    r.state = OutState::InTransit { to: NodeId(13) };
    wal.commit(id, &[WalOp::Out(r.clone())]).unwrap();
    assert_eq!(wal.records(id).unwrap().out[0], r);
}

#[test]
fn a_damaged_file_is_a_typed_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.redb");
    std::fs::write(&path, b"this is not a redb file at all").unwrap();
    let err = Wal::open(&path, &[NodeId(11)]).unwrap_err();
    assert!(err.to_string().contains("wal.redb"), "{err}");
}

#[test]
fn stages_of_one_file_keep_their_records_apart_and_a_foreign_stage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.redb");
    let (a, b) = (NodeId(11), NodeId(12));
    let mut cores: Vec<StageCore> = [wood(11), wood(12)]
        .into_iter()
        .map(|cfg| StageCore::new(cfg, Records::default()))
        .collect();
    let mut expected: BTreeMap<NodeId, Records> = BTreeMap::new();
    {
        let (wal, _) = Wal::open(&path, &[a, b]).unwrap();
        for i in 0..3 {
            let outs: Vec<(NodeId, Output)> = cores
                .iter_mut()
                .map(|c| {
                    c.tick(Duration::from_millis(100 * i));
                    (c.config().id, c.take_output())
                })
                .collect();
            let batches: Vec<(NodeId, &[WalOp])> =
                outs.iter().map(|(id, o)| (*id, o.wal.as_slice())).collect();
            wal.commit_group(&batches).unwrap();
            for (id, o) in &outs {
                expected.entry(*id).or_default().apply(&o.wal);
            }
        }
        // Both stages made lots 0..3 under their own ids.
        assert_eq!(wal.records(a).unwrap(), expected[&a]);
        assert_eq!(wal.records(b).unwrap(), expected[&b]);
        let err = wal.commit(
            NodeId(99),
            &expected[&a]
                .out
                .iter()
                .map(|r| WalOp::Out(r.clone()))
                .collect::<Vec<_>>(),
        );
        assert!(matches!(err, Err(WalError::NotHeld { stage, .. }) if stage == NodeId(99)));
    }
    // Opening the file for one of its stages only would strand the other's lots.
    let err = Wal::open(&path, &[a]).unwrap_err();
    assert!(
        matches!(&err, WalError::Foreign { stages, .. } if stages == &vec![b]),
        "{err}"
    );
    assert!(err.to_string().contains("12"), "{err}");
    // A stage may join the file; the others' records are untouched.
    let (_, records) = Wal::open(&path, &[a, b, NodeId(13)]).unwrap();
    assert_eq!(records[&a], expected[&a]);
    assert_eq!(records[&b], expected[&b]);
    assert_eq!(records[&NodeId(13)], Records::default());
    assert_eq!(Wal::read_all(&path).unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stages_share_transactions_and_each_gets_its_own_records_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.redb");
    let ids: Vec<NodeId> = (11..=30).map(NodeId).collect();
    let (group, records) = GroupWal::open(&path, &ids).await.unwrap();
    assert_eq!(records.len(), ids.len());
    assert!(matches!(
        group.stage(NodeId(99)),
        Err(WalError::NotHeld { .. })
    ));
    const ROUNDS: u64 = 10;
    let mut tasks = Vec::new();
    for id in &ids {
        let wal = group.stage(*id).unwrap();
        let mut core = StageCore::new(wood(id.0), Records::default());
        tasks.push(tokio::spawn(async move {
            let mut expected = Records::default();
            for i in 0..ROUNDS {
                core.tick(Duration::from_millis(100 * i));
                let ops = wal.commit(core.take_output().wal).await.unwrap();
                expected.apply(&ops);
            }
            expected
        }));
    }
    let mut expected = BTreeMap::new();
    for (id, task) in ids.iter().zip(tasks) {
        expected.insert(*id, task.await.unwrap());
    }
    let commits = group.commits();
    let batches = ids.len() as u64 * ROUNDS;
    assert!(commits >= ROUNDS, "{commits} commits");
    assert!(
        commits < batches,
        "{commits} transactions for {batches} batches: nothing was grouped"
    );
    // While the host holds the file, a stage restarted inside it reads its
    // own records back through the committer.
    for id in &ids[..3] {
        let read = group.records(*id).await.unwrap();
        assert_eq!(normalised(read), normalised(expected[id].clone()));
    }
    assert!(matches!(
        group.records(NodeId(99)).await,
        Err(WalError::NotHeld { .. })
    ));
    group.close().await;
    // Closed means closed: the file opens again at once.
    let read = Wal::read_all(&path).unwrap();
    for id in &ids {
        assert_eq!(
            normalised(read[id].clone()),
            normalised(expected[id].clone())
        );
        assert!(!read[id].out.is_empty(), "{id} made nothing");
    }
}

// ---------------------------------------------- a host crashing at each commit

/// Where in a round the host dies.
#[derive(Debug, Clone, Copy)]
enum CrashPoint {
    /// The round's group commit never happened: its writes and sends are lost.
    BeforeCommit,
    /// The commit is durable; none of the round's messages left.
    AfterCommit,
}

/// The six window-chain stages in one host process: each round every core
/// ticks, their outputs are one group commit, then their messages are
/// delivered (next round).
struct Host {
    path: PathBuf,
    now: Duration,
    flow: Flow,
    configs: Vec<StageConfig>,
    cores: BTreeMap<NodeId, StageCore>,
    wal: Option<Wal>,
    /// What the WAL must hold: every committed batch applied.
    expected: BTreeMap<NodeId, Records>,
    mail: Vec<(NodeId, NodeId, Envelope)>,
    commits: usize,
}

impl Host {
    fn new(path: PathBuf) -> Host {
        let configs = vec![
            wood(11),
            wood(12),
            frame(13),
            frame(14),
            window(15),
            window(16),
        ];
        let mut host = Host {
            path,
            now: Duration::ZERO,
            flow: window_flow(1),
            configs,
            cores: BTreeMap::new(),
            wal: None,
            expected: BTreeMap::new(),
            mail: Vec::new(),
            commits: 0,
        };
        host.boot();
        host
    }

    /// Opens the WAL and recovers every stage from it, checking it holds
    /// exactly what was committed.
    fn boot(&mut self) {
        let ids: Vec<NodeId> = self.configs.iter().map(|c| c.id).collect();
        let (wal, records) = Wal::open(&self.path, &ids).unwrap();
        for cfg in &self.configs {
            let got = normalised(records[&cfg.id].clone());
            let want = normalised(self.expected.get(&cfg.id).cloned().unwrap_or_default());
            assert_eq!(got, want, "stage {} after a restart", cfg.id);
            let mut core = StageCore::new(cfg.clone(), records[&cfg.id].clone());
            core.set_flow(self.now, &self.flow);
            self.cores.insert(cfg.id, core);
        }
        self.wal = Some(wal);
    }

    /// One round; with `crash`, the host dies at that point of it if the
    /// round commits anything (whether it did).
    fn round(&mut self, crash: Option<CrashPoint>) -> bool {
        self.now += Duration::from_millis(10);
        let now = self.now;
        for (from, to, env) in std::mem::take(&mut self.mail) {
            if let Some(core) = self.cores.get_mut(&to) {
                core.on_message(now, from, &env);
            }
        }
        let outs: Vec<(NodeId, FlowVersion, Output)> = self
            .cores
            .iter_mut()
            .map(|(id, core)| {
                core.tick(now);
                (*id, core.flow_version(), core.take_output())
            })
            .collect();
        let batches: Vec<(NodeId, &[WalOp])> = outs
            .iter()
            .filter(|(_, _, o)| !o.wal.is_empty())
            .map(|(id, _, o)| (*id, o.wal.as_slice()))
            .collect();
        if batches.is_empty() {
            self.deliver(outs);
            return false;
        }
        if let Some(CrashPoint::BeforeCommit) = crash {
            self.crash();
            return true;
        }
        self.wal.as_ref().unwrap().commit_group(&batches).unwrap();
        self.commits += 1;
        for (id, ops) in &batches {
            self.expected.entry(*id).or_default().apply(ops);
        }
        if let Some(CrashPoint::AfterCommit) = crash {
            self.crash();
            return true;
        }
        self.deliver(outs);
        false
    }

    fn deliver(&mut self, outs: Vec<(NodeId, FlowVersion, Output)>) {
        for (id, version, out) in outs {
            for (to, msg) in out.send {
                self.mail.push((id, to, Envelope::new(id, version, msg)));
            }
        }
    }

    /// Every stage dies with the process; the messages they had not yet
    /// delivered die with them.
    fn crash(&mut self) {
        self.cores.clear();
        self.mail.clear();
        self.wal = None;
        self.boot();
    }

    fn drain(&mut self, rounds: usize) {
        self.flow = Flow {
            version: FlowVersion(self.flow.version.0 + 1),
            edges: vec![],
            recipes: BTreeMap::new(),
        };
        for core in self.cores.values_mut() {
            core.set_flow(self.now, &self.flow);
        }
        for _ in 0..rounds {
            self.round(None);
        }
    }
}

#[test]
fn a_host_crashing_at_any_of_its_first_commits_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..20 {
        for point in [CrashPoint::BeforeCommit, CrashPoint::AfterCommit] {
            let path = dir.path().join(format!("wal-{k}-{point:?}.redb"));
            let mut host = Host::new(path);
            // Run until commit k is next, crash there, then trade on.
            while host.commits < k {
                host.round(None);
            }
            while !host.round(Some(point)) {}
            for _ in 0..150 {
                host.round(None);
            }
            host.drain(150);
            let records: Vec<(NodeId, &Records)> =
                host.expected.iter().map(|(id, r)| (*id, r)).collect();
            let report = audit(&records);
            assert!(
                report.is_settled(),
                "crash {point:?} at commit {k}: {report:?}"
            );
            assert!(
                report.units_shipped > 0,
                "crash {point:?} at commit {k}: no window was made"
            );
        }
    }
}
