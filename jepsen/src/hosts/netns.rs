//! Network-namespace hosts: every process of a cluster on its own "machine"
//! with its own address on one private bridge, and the network rules the
//! nemeses change.
//!
//! Layout of a lab (tag `T`, subnet `10.77.S.0/24`):
//!
//! * the root namespace gets `unreachable 10.77.S.0/24` **before anything
//!   else is made**, so a stray packet for the lab fails here instead of
//!   leaving through the default route (the route also reserves the subnet:
//!   two labs never share one);
//! * `fos-T-br` holds the bridge `br0` and the `bridge fos` nftables table
//!   whose forward chain carries the partition and loss rules (loaded whole,
//!   atomically, with `nft -f`; never a sender's OUTPUT chain);
//! * each host `fos-T-NAME` has `lo` and `eth0` (a veth whose peer `vT<k>`
//!   is a port of `br0`) with the address `10.77.S.k`.
//!
//! Processes run inside their host with `ip netns exec`; the harness's own
//! clients get sockets made inside a host ([`NetnsLab::udp_socket`]), so
//! nothing of a test ever leaves the namespaces. [`NetnsLab`] removes its
//! namespaces and route when dropped (also while a panic unwinds);
//! [`cleanup_leftovers`] removes those of a run that was killed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Every lab's namespaces start with this.
const PREFIX: &str = "fos-";
/// Labs take one /24 of this /16.
const SUPERNET: [u8; 2] = [10, 77];
const BRIDGE: &str = "br0";
const TABLE: &str = "fos";

/// Why a lab could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network-namespace hosts need root (run as root, e.g. with sudo)")]
    NotRoot,
    #[error(
        "network-namespace hosts need `{0}` (bash scripts/setup.sh installs iproute2 and nftables)"
    )]
    Missing(&'static str),
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("no free /24 left in 10.77.0.0/16 for a lab (run `factoryos jepsen --cleanup`)")]
    NoSubnet,
    #[error("a lab holds at most 250 hosts")]
    Full,
    #[error("no host named {0} in this lab")]
    NoHost(String),
    #[error("entering namespace {ns}: {source}")]
    Enter { ns: String, source: std::io::Error },
}

/// Runs `program args...`, failing with its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), NetnsError> {
    run_with_input(program, args, None)
}

fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> Result<(), NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let failed = |stderr: String| NetnsError::Command {
        command: command.clone(),
        stderr,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Whether this machine can make labs: root, `ip netns` and `nft`.
pub fn check_support() -> Result<(), NetnsError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(NetnsError::NotRoot);
    }
    for (tool, args) in [("ip", ["netns", "list"]), ("nft", ["--version", ""])] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let ok = Command::new(tool)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(NetnsError::Missing(if tool == "ip" {
                "ip netns (iproute2)"
            } else {
                "nft (nftables)"
            }));
        }
    }
    Ok(())
}

/// One host of a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    pub ip: Ipv4Addr,
}

/// What the bridge lets through: pairs whose packets are dropped, and a
/// random loss on everything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// `(from, to)`: packets from `from` to `to` are dropped.
    pub drops: BTreeSet<(Ipv4Addr, Ipv4Addr)>,
    /// Percent of UDP packets dropped at random (0 = none).
    pub loss_percent: u8,
}

impl Rules {
    /// The nftables script that replaces the whole table with these rules.
    pub fn script(&self) -> String {
        let mut rules = String::new();
        for (from, to) in &self.drops {
            rules.push_str(&format!("    ip saddr {from} ip daddr {to} drop\n"));
        }
        if self.loss_percent > 0 {
            rules.push_str(&format!(
                "    ip protocol udp numgen random mod 100 < {} drop\n",
                self.loss_percent.min(100)
            ));
        }
        format!(
            "add table bridge {TABLE}\nflush table bridge {TABLE}\ntable bridge {TABLE} {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n{rules}  }}\n}}\n"
        )
    }
}

/// A lab of network-namespace hosts on one bridge.
#[derive(Debug)]
pub struct NetnsLab {
    /// From the subnet (`S` in hex): unique among live labs, since the
    /// subnet's route is taken first.
    tag: String,
    subnet: [u8; 3],
    bridge_ns: String,
    hosts: Mutex<BTreeMap<String, Host>>,
    /// The next host's last address byte.
    next: Mutex<u8>,
    rules: Mutex<Rules>,
    /// Held (flock) while the lab lives: `--cleanup` leaves a lab alone
    /// whose lock is held.
    _owner: std::fs::File,
}

/// Where labs keep their owner locks.
const LOCK_DIR: &str = "/run/factoryos-jepsen";

fn lock_path(tag: &str) -> std::path::PathBuf {
    std::path::Path::new(LOCK_DIR).join(format!("{tag}.lock"))
}

/// Takes the owner lock of lab `tag`; `None` if a live lab holds it.
fn take_lock(tag: &str) -> Result<Option<std::fs::File>, NetnsError> {
    let io = |e: std::io::Error| NetnsError::Command {
        command: format!("lock {}", lock_path(tag).display()),
        stderr: e.to_string(),
    };
    std::fs::create_dir_all(LOCK_DIR).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(tag))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

impl NetnsLab {
    /// Makes a lab: checks support, reserves a subnet (the root namespace's
    /// `unreachable` route comes first), the bridge namespace and its table.
    pub fn create() -> Result<NetnsLab, NetnsError> {
        check_support()?;
        let subnet = reserve_subnet()?;
        let tag = format!("{:02x}", subnet[2]);
        let Some(owner) = take_lock(&tag)? else {
            // The route was free, so no live lab has this tag; a lock still
            // held means something else holds it: give the subnet back.
            let _ = run("ip", &["route", "del", "unreachable", &cidr(subnet)]);
            return Err(NetnsError::NoSubnet);
        };
        // Namespaces of a killed run that had this subnet are leftovers now.
        remove_namespaces_of(&tag);
        let lab = NetnsLab {
            bridge_ns: format!("{PREFIX}{tag}-br"),
            tag,
            subnet,
            hosts: Mutex::new(BTreeMap::new()),
            next: Mutex::new(1),
            rules: Mutex::new(Rules::default()),
            _owner: owner,
        };
        // From here on, Drop removes whatever was made.
        run("ip", &["netns", "add", &lab.bridge_ns])?;
        lab.in_bridge(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
        lab.in_bridge(&["ip", "link", "set", BRIDGE, "up"])?;
        lab.set_rules(&Rules::default())?;
        tracing::info!(subnet = %lab.cidr(), tag = %lab.tag, "network-namespace lab made");
        Ok(lab)
    }

    /// The lab's subnet, e.g. `10.77.3.0/24`.
    pub fn cidr(&self) -> String {
        cidr(self.subnet)
    }

    fn in_bridge(&self, args: &[&str]) -> Result<(), NetnsError> {
        let mut all = vec!["netns", "exec", &self.bridge_ns];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Host `name`, made on first use: a namespace, a veth to the bridge and
    /// the next address of the subnet. A host that could not be made whole
    /// is removed again.
    pub fn host(&self, name: &str) -> Result<Host, NetnsError> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = hosts.get(name) {
            return Ok(h.clone());
        }
        let k = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            if *next > 250 {
                return Err(NetnsError::Full);
            }
            *next += 1;
            *next - 1
        };
        let [a, b, c] = self.subnet;
        let host = Host {
            name: name.to_owned(),
            ns: format!("{PREFIX}{}-{name}", self.tag),
            ip: Ipv4Addr::new(a, b, c, k),
        };
        run("ip", &["netns", "add", &host.ns])?;
        if let Err(e) = self.wire_up(&host, k) {
            let _ = run("ip", &["netns", "del", &host.ns]);
            return Err(e);
        }
        hosts.insert(name.to_owned(), host.clone());
        Ok(host)
    }

    /// A veth from `host` to the bridge, its address, its links up.
    fn wire_up(&self, host: &Host, k: u8) -> Result<(), NetnsError> {
        let port = format!("v{}{k}", self.tag);
        let in_host = |args: &[&str]| {
            let mut all = vec!["netns", "exec", host.ns.as_str()];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        run(
            "ip",
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &host.ns,
            ],
        )?;
        run("ip", &["link", "set", &port, "netns", &self.bridge_ns])?;
        self.in_bridge(&["ip", "link", "set", &port, "master", BRIDGE])?;
        self.in_bridge(&["ip", "link", "set", &port, "up"])?;
        let addr = format!("{}/24", host.ip);
        in_host(&["ip", "addr", "add", &addr, "dev", "eth0"])?;
        in_host(&["ip", "link", "set", "eth0", "up"])?;
        in_host(&["ip", "link", "set", "lo", "up"])
    }

    /// The host named `name`, if made.
    pub fn find(&self, name: &str) -> Option<Host> {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every host made so far, by name.
    pub fn hosts(&self) -> BTreeMap<String, Host> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A command that runs `program` inside `host`.
    pub fn command(&self, host: &Host, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host.ns]).arg(program);
        c
    }

    /// A UDP socket bound inside `host` at `port` (0: any): the harness's
    /// clients use these, so their packets start and end in the lab.
    pub fn udp_socket(&self, host: &Host, port: u16) -> Result<UdpSocket, NetnsError> {
        let ns = host.ns.clone();
        let addr = SocketAddr::from((host.ip, port));
        let enter = move || -> std::io::Result<UdpSocket> {
            let file = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
            // SAFETY: setns on a namespace file we opened, in a thread of our own
            // that does nothing else and ends right after; the socket made here
            // stays in that namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            UdpSocket::bind(addr)
        };
        std::thread::spawn(enter)
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
            .map_err(|source| NetnsError::Enter {
                ns: host.ns.clone(),
                source,
            })
    }

    /// Replaces the bridge's rules, atomically.
    pub fn set_rules(&self, rules: &Rules) -> Result<(), NetnsError> {
        run_with_input(
            "ip",
            &["netns", "exec", &self.bridge_ns, "nft", "-f", "-"],
            Some(&rules.script()),
        )?;
        *self.rules.lock().unwrap_or_else(|e| e.into_inner()) = rules.clone();
        Ok(())
    }

    /// The rules in force.
    pub fn rules(&self) -> Rules {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Removes every host, the bridge namespace and the route; says what
    /// it could not remove.
    fn remove(&self) {
        let hosts = std::mem::take(&mut *self.hosts.lock().unwrap_or_else(|e| e.into_inner()));
        let mut left = Vec::new();
        for ns in hosts
            .values()
            .map(|h| h.ns.as_str())
            .chain([self.bridge_ns.as_str()])
        {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                left.push(e.to_string());
            }
        }
        if let Err(e) = run("ip", &["route", "del", "unreachable", &self.cidr()]) {
            left.push(e.to_string());
        }
        if left.is_empty() {
            tracing::info!(subnet = %self.cidr(), "network-namespace lab removed");
        } else {
            tracing::error!(subnet = %self.cidr(), left = ?left, "the lab was not removed whole: run `factoryos jepsen --cleanup`");
        }
        let _ = std::fs::remove_file(lock_path(&self.tag));
    }
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Reserves a /24 with the root namespace's `unreachable` route: the first
/// one whose route could be added.
fn reserve_subnet() -> Result<[u8; 3], NetnsError> {
    let [a, b] = SUPERNET;
    for c in 1..=254u8 {
        let cidr = format!("{a}.{b}.{c}.0/24");
        match run("ip", &["route", "add", "unreachable", &cidr]) {
            Ok(()) => return Ok([a, b, c]),
            Err(NetnsError::Command { stderr, .. }) if stderr.contains("exists") => continue,
            Err(e) => return Err(e),
        }
    }
    Err(NetnsError::NoSubnet)
}

fn cidr([a, b, c]: [u8; 3]) -> String {
    format!("{a}.{b}.{c}.0/24")
}

/// The lab namespaces on this machine, by tag.
fn lab_namespaces() -> Result<BTreeMap<String, Vec<String>>, NetnsError> {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| NetnsError::Command {
            command: "ip netns list".into(),
            stderr: e.to_string(),
        })?;
    let mut by_tag: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = ns.strip_prefix(PREFIX) else {
            continue;
        };
        let tag = rest.split('-').next().unwrap_or_default().to_owned();
        by_tag.entry(tag).or_default().push(ns.to_owned());
    }
    Ok(by_tag)
}

/// Kills what runs in lab `tag`'s namespaces and removes them; what it removed.
fn remove_namespaces_of(tag: &str) -> Vec<String> {
    let mut removed = Vec::new();
    let namespaces = lab_namespaces().unwrap_or_default();
    for ns in namespaces.get(tag).into_iter().flatten() {
        let _ = kill_in(ns);
        if run("ip", &["netns", "del", ns]).is_ok() {
            removed.push(format!("namespace {ns}"));
        }
    }
    removed
}

/// Removes the namespaces (`fos-*`) and `unreachable 10.77.*` routes that
/// labs of killed runs left behind (processes still running inside them are
/// killed first), and says what it removed. A lab whose run is still alive
/// (its owner lock is held) is left alone.
pub fn cleanup_leftovers() -> Result<Vec<String>, NetnsError> {
    check_support()?;
    let mut removed = Vec::new();
    let mut live = BTreeSet::new();
    for tag in lab_namespaces()?.into_keys() {
        match take_lock(&tag)? {
            Some(_lock) => removed.extend(remove_namespaces_of(&tag)),
            None => {
                live.insert(tag);
            }
        }
    }
    let routes = Command::new("ip")
        .args(["route", "show", "type", "unreachable"])
        .output()
        .map_err(|e| NetnsError::Command {
            command: "ip route show type unreachable".into(),
            stderr: e.to_string(),
        })?;
    let ours = format!("{}.{}.", SUPERNET[0], SUPERNET[1]);
    for line in String::from_utf8_lossy(&routes.stdout).lines() {
        let Some(cidr) = line.split_whitespace().nth(1) else {
            continue;
        };
        let Some(c) = cidr
            .strip_prefix(&ours)
            .and_then(|r| r.split('.').next())
            .and_then(|c| c.parse::<u8>().ok())
        else {
            continue;
        };
        let tag = format!("{c:02x}");
        if live.contains(&tag) {
            continue;
        }
        let Some(_lock) = take_lock(&tag)? else {
            continue;
        };
        run("ip", &["route", "del", "unreachable", cidr])?;
        removed.push(format!("route unreachable {cidr}"));
    }
    Ok(removed)
}

/// SIGKILLs every process inside namespace `ns`.
fn kill_in(ns: &str) -> Result<(), NetnsError> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map_err(|e| NetnsError::Command {
            command: format!("ip netns pids {ns}"),
            stderr: e.to_string(),
        })?;
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<libc::pid_t>().ok())
    {
        // SAFETY: kill(2) with a pid the kernel listed in our lab's namespace.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_replace_the_whole_table_in_one_script() {
        let mut rules = Rules::default();
        rules
            .drops
            .insert((Ipv4Addr::new(10, 77, 1, 2), Ipv4Addr::new(10, 77, 1, 3)));
        rules.loss_percent = 20;
        let script = rules.script();
        assert!(
            script.starts_with("add table bridge fos\nflush table bridge fos\n"),
            "{script}"
        );
        assert!(script.contains("hook forward"), "{script}");
        assert!(
            script.contains("ip saddr 10.77.1.2 ip daddr 10.77.1.3 drop"),
            "{script}"
        );
        assert!(
            script.contains("numgen random mod 100 < 20 drop"),
            "{script}"
        );
        assert!(!Rules::default().script().contains("drop"));
    }
}
