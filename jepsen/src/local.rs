//! A cluster of real `factoryos` processes on this machine, on loopback or
//! each on its own network-namespace host ([`Hosts`]).
//!
//! [`LocalCluster`] writes a cluster directory (certificates, `cluster.toml`,
//! the spec), starts coordinators and stages as child processes with their
//! output in `logs/`, kills them with SIGKILL, pauses them with SIGSTOP,
//! stops them with SIGTERM, restarts them, and kills whatever is still
//! running when it is dropped, so a failing test or a Ctrl-C'd run leaves no
//! process behind.

use crate::hosts::netns::{NetnsError, NetnsLab};
use crate::hosts::Hosts;
use factoryos_coord::client::CoordClient;
use factoryos_coord::cluster::{ClusterFile, ClusterToml, LocalInit, Member, SetupError};
use factoryos_stage::metrics::StageReport;
use factoryos_stage::setup::StageFiles;
use factoryos_wire::{NodeId, Transport};
use rand::Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;

/// Why the cluster could not be set up or controlled.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("cluster file: {0}")]
    ClusterFile(#[from] factoryos_coord::cluster::ClusterFileError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("no {0} consecutive free UDP ports found on 127.0.0.1")]
    NoPorts(u64),
    #[error("node {0} is not part of this cluster")]
    Unknown(NodeId),
    #[error("network-namespace hosts: {0}")]
    Netns(#[from] NetnsError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalError {
    let what = what.into();
    move |source| LocalError::Io { what, source }
}

/// Coordinators and stages running as child processes of this one.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    binary: PathBuf,
    config: PathBuf,
    file: ClusterFile,
    procs: BTreeMap<NodeId, Child>,
    metrics_ms: u64,
    hosts: Hosts,
    /// Coordinators added to a running group: they always start with `--join`.
    joined: std::collections::BTreeSet<NodeId>,
}

/// The port coordinators listen on when each has a host of its own.
const COORD_PORT: u16 = 7101;

impl LocalCluster {
    /// Writes the cluster `init` describes into `dir` (which must not hold
    /// one), its coordinators on free loopback ports.
    pub fn create(dir: &Path, binary: &Path, init: &LocalInit) -> Result<Self, LocalError> {
        let base = free_ports(init.coordinators)?;
        let addrs: Vec<SocketAddr> = (0..init.coordinators)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], base + i as u16)))
            .collect();
        Self::write(dir, binary, init, &addrs, Hosts::Loopback)
    }

    /// Like [`LocalCluster::create`], every process on its own host of `lab`.
    pub fn create_in(
        dir: &Path,
        binary: &Path,
        init: &LocalInit,
        lab: Arc<NetnsLab>,
    ) -> Result<Self, LocalError> {
        let hosts = Hosts::Netns(lab);
        let mut addrs = Vec::new();
        for id in 1..=init.coordinators {
            addrs.push(SocketAddr::new(hosts.ip(NodeId(id))?, COORD_PORT));
        }
        Self::write(dir, binary, init, &addrs, hosts)
    }

    fn write(
        dir: &Path,
        binary: &Path,
        init: &LocalInit,
        addrs: &[SocketAddr],
        hosts: Hosts,
    ) -> Result<Self, LocalError> {
        std::fs::create_dir_all(dir.join("logs"))
            .map_err(io(format!("create {}", dir.display())))?;
        let config = init.write_at(dir, addrs)?;
        let file = ClusterFile::load(&config)?;
        Ok(LocalCluster {
            dir: dir.to_owned(),
            binary: binary.to_owned(),
            config,
            file,
            procs: BTreeMap::new(),
            metrics_ms: 1000,
            hosts,
            joined: Default::default(),
        })
    }

    /// Where the processes run.
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self) -> &ClusterFile {
        &self.file
    }

    pub fn coordinators(&self) -> Vec<NodeId> {
        self.file.coordinators.keys().copied().collect()
    }

    /// Starts coordinator `id` (appending to `logs/nN.log`).
    pub fn start(&mut self, id: NodeId) -> Result<(), LocalError> {
        if !self.file.coordinators.contains_key(&id) {
            return Err(LocalError::Unknown(id));
        }
        let mut args = vec!["coord".into(), "--id".into(), id.0.to_string()];
        if self.joined.contains(&id) {
            args.push("--join".into());
        }
        self.spawn(id, &args)
    }

    /// Makes coordinator `id` a place in the cluster (a certificate, a host or
    /// a free port, an entry in `cluster.toml` so processes started from now
    /// on know it) and starts it to join the running group; its address. The
    /// group admits it once an operator adds it (`coordinators add`).
    pub fn join_coordinator(&mut self, id: NodeId) -> Result<SocketAddr, LocalError> {
        let ip = self.hosts.ip(id)?;
        let port = match self.hosts {
            Hosts::Loopback => free_ports(1)?,
            Hosts::Netns(_) => COORD_PORT,
        };
        let addr = SocketAddr::new(ip, port);
        factoryos_wire::ClusterCa::load(&self.file.certs)
            .and_then(|ca| ca.issue(id))
            .and_then(|cert| cert.save(&self.file.certs))
            .map_err(SetupError::from)?;
        self.edit_file(|f| {
            f.coordinators.retain(|m| m.id != id.0);
            f.coordinators.push(Member { id: id.0, addr });
        })?;
        self.joined.insert(id);
        self.start(id)?;
        Ok(addr)
    }

    /// Drops coordinator `id` from `cluster.toml` (after the group removed it).
    pub fn forget_coordinator(&mut self, id: NodeId) -> Result<(), LocalError> {
        self.edit_file(|f| f.coordinators.retain(|m| m.id != id.0))
    }

    fn edit_file(&mut self, change: impl FnOnce(&mut ClusterToml)) -> Result<(), LocalError> {
        let text = std::fs::read_to_string(&self.config).map_err(io("read cluster.toml"))?;
        let mut toml: ClusterToml = toml::from_str(&text).map_err(|e| LocalError::Io {
            what: "parse cluster.toml".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        change(&mut toml);
        toml.save(&self.config)?;
        self.file = ClusterFile::load(&self.config)?;
        Ok(())
    }

    /// Starts several stages in one host process, known by the first id
    /// (kill or terminate that id to stop them all), issuing its host
    /// certificate the first time.
    pub fn start_stage_group(&mut self, ids: &[NodeId], cycle_ms: u64) -> Result<(), LocalError> {
        let Some(first) = ids.first() else {
            return Ok(());
        };
        self.ensure_host_certificate(ids)?;
        self.clear_down(*first)?;
        let list: Vec<String> = ids.iter().map(|i| i.0.to_string()).collect();
        self.spawn(
            *first,
            &[
                "stage".into(),
                "--ids".into(),
                list.join(","),
                "--cycle-ms".into(),
                cycle_ms.to_string(),
                "--metrics-ms".into(),
                self.metrics_ms.to_string(),
            ],
        )
    }

    /// Kills (`down`) or starts again stage `stage` alone inside its live
    /// host process `host` (known by its first stage), through the host's
    /// down file (`factoryos_stage::host::down`): the host acts within
    /// `factoryos_stage::host::DOWN_EVERY`.
    pub fn set_stage_down(
        &mut self,
        host: NodeId,
        stage: NodeId,
        down: bool,
    ) -> Result<(), LocalError> {
        if !self.is_running(host) {
            return Err(LocalError::Unknown(host));
        }
        let path = StageFiles::of(&self.file, host).down;
        let io = |source| LocalError::Io {
            what: format!("down file {}", path.display()),
            source,
        };
        let mut listed =
            factoryos_stage::host::down::read(&path).map_err(|e| io(std::io::Error::other(e)))?;
        if down {
            listed.insert(stage);
        } else {
            listed.remove(&stage);
        }
        factoryos_stage::host::down::write(&path, &listed).map_err(io)
    }

    /// A host starts every stage it runs: none is down inside it yet.
    fn clear_down(&self, first: NodeId) -> Result<(), LocalError> {
        let down = StageFiles::of(&self.file, first).down;
        factoryos_stage::host::down::write(&down, &Default::default()).map_err(|source| {
            LocalError::Io {
                what: format!("down file {}", down.display()),
                source,
            }
        })
    }

    /// Issues the host certificate of `ids` unless one is there already: a
    /// restarted host keeps its key, so its stateless resets are recognised.
    fn ensure_host_certificate(&self, ids: &[NodeId]) -> Result<(), LocalError> {
        let certs = &self.file.certs;
        if ids.len() < 2 || factoryos_wire::NodeIdentity::load_host(certs, ids).is_ok() {
            return Ok(());
        }
        factoryos_wire::ClusterCa::load(certs)
            .and_then(|ca| ca.issue_host(ids))
            .and_then(|cert| cert.save(certs))
            .map_err(SetupError::from)?;
        Ok(())
    }

    /// How often stages started from now on write their metrics file.
    pub fn set_metrics_interval(&mut self, ms: u64) {
        self.metrics_ms = ms.max(10);
    }

    /// Starts stage `id` of the spec with cycles of `cycle_ms`.
    pub fn start_stage(&mut self, id: NodeId, cycle_ms: u64) -> Result<(), LocalError> {
        self.clear_down(id)?;
        self.spawn(
            id,
            &[
                "stage".into(),
                "--id".into(),
                id.0.to_string(),
                "--cycle-ms".into(),
                cycle_ms.to_string(),
                "--metrics-ms".into(),
                self.metrics_ms.to_string(),
            ],
        )
    }

    /// The metrics stage `id` last wrote (its current life's).
    pub fn stage_metrics(&self, id: NodeId) -> Option<StageReport> {
        StageReport::read(&self.metrics_path(id))
    }

    pub fn metrics_path(&self, id: NodeId) -> PathBuf {
        StageFiles::of(&self.file, id).metrics
    }

    /// The OS process id of node `id`'s process, while it runs.
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.procs.get(&id).map(Child::id)
    }

    /// Asks process `id` to stop (SIGTERM) and waits for it.
    pub fn terminate(&mut self, id: NodeId) -> Result<(), LocalError> {
        let mut child = self.procs.remove(&id).ok_or(LocalError::Unknown(id))?;
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on a child we spawned and have not reaped;
        // SIGCONT lets a paused one take the SIGTERM.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            libc::kill(pid, libc::SIGCONT);
        }
        child.wait().map_err(io(format!("reap n{}", id.0)))?;
        Ok(())
    }

    /// Asks every process in `ids` to stop (SIGTERM) at once, then waits
    /// for them all: they stop together instead of one after the other.
    pub fn terminate_all(&mut self, ids: &[NodeId]) -> Result<(), LocalError> {
        let mut children = Vec::new();
        for id in ids {
            let child = self.procs.remove(id).ok_or(LocalError::Unknown(*id))?;
            // SAFETY: plain kill(2) on a child we spawned and have not reaped;
            // SIGCONT lets a paused one take the SIGTERM.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                libc::kill(child.id() as libc::pid_t, libc::SIGCONT);
            }
            children.push((*id, child));
        }
        for (id, mut child) in children {
            child.wait().map_err(io(format!("reap n{}", id.0)))?;
        }
        Ok(())
    }

    fn spawn(&mut self, id: NodeId, args: &[String]) -> Result<(), LocalError> {
        if let Some(mut old) = self.procs.remove(&id) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let log_path = self.dir.join("logs").join(format!("n{}.log", id.0));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("open {}", log_path.display())))?;
        let err = log.try_clone().map_err(io("clone log handle"))?;
        let mut command = self.hosts.command(id, &self.binary)?;
        orphan_proof(&mut command);
        if !self.coordinators().contains(&id) {
            yield_to_coordinators(&mut command);
        }
        let child = command
            .arg(&args[0])
            .arg("--config")
            .arg(&self.config)
            .args(&args[1..])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(format!("spawn {}", self.binary.display())))?;
        self.procs.insert(id, child);
        Ok(())
    }

    pub fn start_all(&mut self) -> Result<(), LocalError> {
        for id in self.coordinators() {
            self.start(id)?;
        }
        Ok(())
    }

    /// Kills process `id` (coordinator or stage) with SIGKILL and reaps it.
    pub fn kill(&mut self, id: NodeId) -> Result<(), LocalError> {
        let mut child = self.procs.remove(&id).ok_or(LocalError::Unknown(id))?;
        child.kill().map_err(io(format!("kill n{}", id.0)))?;
        child.wait().map_err(io(format!("reap n{}", id.0)))?;
        Ok(())
    }

    /// Stops process `id` with SIGSTOP: it holds its sockets, files and
    /// locks, and does nothing, until [`LocalCluster::resume`].
    pub fn pause(&mut self, id: NodeId) -> Result<(), LocalError> {
        self.signal(id, libc::SIGSTOP)
    }

    /// Lets a paused process `id` go on (SIGCONT).
    pub fn resume(&mut self, id: NodeId) -> Result<(), LocalError> {
        self.signal(id, libc::SIGCONT)
    }

    fn signal(&mut self, id: NodeId, signal: libc::c_int) -> Result<(), LocalError> {
        let child = self.procs.get(&id).ok_or(LocalError::Unknown(id))?;
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        if unsafe { libc::kill(child.id() as libc::pid_t, signal) } != 0 {
            return Err(io(format!("signal n{}", id.0))(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// How process `id` ended, if it has (`None` while it runs, or if it
    /// was never started or was killed by this cluster).
    pub fn exit_status(&mut self, id: NodeId) -> Option<std::process::ExitStatus> {
        self.procs.get_mut(&id)?.try_wait().ok().flatten()
    }

    /// Whether coordinator `id` is running (it may have exited on its own).
    pub fn is_running(&mut self, id: NodeId) -> bool {
        match self.procs.get_mut(&id) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// An operator client of the cluster (inside the control host on
    /// namespace hosts).
    pub fn client(&self) -> Result<(CoordClient, Transport), LocalError> {
        let socket = self.hosts.client_socket().map_err(io("a client socket"))?;
        Ok(CoordClient::connect_on(
            &self.file,
            NodeId::OPERATOR,
            socket,
        )?)
    }

    /// Kills every process still running (a paused one too).
    pub fn stop_all(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.procs) {
            let _ = child.kill();
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGCONT);
            }
            let _ = child.wait();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Makes a child outlive nothing of ours: its own process group (a
/// terminal's Ctrl-C reaches the harness alone, which stops the cluster in
/// order) and SIGKILL when the harness dies, however it dies.
fn orphan_proof(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The niceness stage hosts run at: below the coordinators.
pub const STAGE_NICE: i32 = 10;

/// Runs a stage host at [`STAGE_NICE`]. On a real deployment the
/// coordinators own their machines; on one machine a thousand stages would
/// starve them (measured at `--preset xl` on 2 cores: 45 leader elections
/// in 120 s with every process at the same priority), and a starved Raft
/// group is not what the harness means to test.
fn yield_to_coordinators(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setpriority is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            if libc::setpriority(libc::PRIO_PROCESS, 0, STAGE_NICE) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A base port with `n` consecutive free UDP ports on 127.0.0.1.
fn free_ports(n: u64) -> Result<u16, LocalError> {
    let mut rng = rand::rng();
    for _ in 0..200 {
        let base: u16 = rng.random_range(20_000..60_000);
        let sockets: Vec<_> = (0..n)
            .map_while(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i as u16)).ok())
            .collect();
        if sockets.len() == n as usize {
            return Ok(base);
        }
    }
    Err(LocalError::NoPorts(n))
}
