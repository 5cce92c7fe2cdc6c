//! `check`: the lab's networking end to end, as a matrix of what passed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use cni::CniResult;

use crate::state::{Attachment, PodState, State};
use crate::status::interfaces;
use crate::Error;

/// The port the pods' test listeners use.
pub const PORT: u16 = 7007;

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As it must be.
    Pass,
    /// Not as it must be.
    Fail,
    /// As the manifests make it, but an operator must hear of it (the unlabelled node).
    Warn,
}

/// One pod's row of the matrix.
#[derive(Debug, Clone)]
pub struct Row {
    /// The pod.
    pub pod: String,
    /// Its node.
    pub node: String,
    /// Column name -> (verdict, cell text).
    pub cells: BTreeMap<&'static str, (Verdict, String)>,
    /// Explanations of failures and warnings.
    pub notes: Vec<String>,
}

/// The columns, in order.
pub const COLUMNS: [&str; 8] = [
    "flannel-local",
    "flannel-remote",
    "net1",
    "public-v4",
    "public-v6",
    "index2ip",
    "egress",
    "v6-static",
];

/// How long `check` lets duplicate address detection run before it calls an address still tentative a failure
/// (the kernel's default is one probe, one second).
const DAD_WITHIN: Duration = Duration::from_secs(3);

/// What `check` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One row per pod.
    pub rows: Vec<Row>,
}

impl Report {
    /// How many cells failed.
    pub fn failures(&self) -> usize {
        self.rows
            .iter()
            .flat_map(|r| r.cells.values())
            .filter(|(v, _)| *v == Verdict::Fail)
            .count()
    }
}

fn cluster_address(pod: &PodState) -> Option<IpAddr> {
    let att = pod.attachments.iter().find(|a| a.default)?;
    addresses(att.result.as_ref()?)
        .into_iter()
        .find(IpAddr::is_ipv4)
}

fn addresses(result: &CniResult) -> Vec<IpAddr> {
    result.ips.iter().map(|i| i.address.addr()).collect()
}

fn ping(from: &str, to: IpAddr) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            from,
            "ping",
            "-c1",
            "-W1",
            "-q",
            &to.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs every check. `exe` is the netlab binary, which serves the TCP listeners and probes.
pub fn check(state: &State, exe: &Path, out: &mut dyn Write) -> Result<Report, Error> {
    let _ = writeln!(
        out,
        "==> checking lab {}: {} pods",
        state.name,
        state.pods.len()
    );
    let cluster: Vec<(&PodState, IpAddr)> = state
        .pods
        .iter()
        .filter_map(|p| cluster_address(p).map(|a| (p, a)))
        .collect();
    let mut listeners = start_listeners(state, exe)?;
    listeners.extend(start_wan_listeners(state, exe)?);
    wait_for_dad(state);
    // Pods on their node's network (flanneld, multus, the installer) have no pod network to check.
    let report = Report {
        rows: state
            .pods
            .iter()
            .filter(|pod| !pod.host_network)
            .map(|pod| check_pod(state, exe, pod, &cluster))
            .collect(),
    };
    stop_listeners(listeners);
    print(&report, state, out);
    Ok(report)
}

/// One pod's row of the matrix: flannel within and across nodes, net1 where asked for, the public addresses over
/// TCP and as index2ip computes them.
fn check_pod(state: &State, exe: &Path, pod: &PodState, cluster: &[(&PodState, IpAddr)]) -> Row {
    let node = state.node(&pod.node);
    let mut row = Row {
        pod: pod.name.clone(),
        node: pod.node.clone(),
        cells: BTreeMap::new(),
        notes: Vec::new(),
    };
    if pod.attachments.iter().all(|a| a.result.is_none()) {
        // The unlabelled node's pod has no network by design: a warning, with the reason and the fix.
        let verdict = if node.is_some_and(|n| n.node_type.is_none()) {
            Verdict::Warn
        } else {
            Verdict::Fail
        };
        for c in COLUMNS {
            row.cells.insert(c, (verdict, "no network".into()));
        }
        row.notes.push(
            pod.error
                .clone()
                .unwrap_or_else(|| "no network and no error recorded".into()),
        );
        return row;
    }
    if let Some(own) = cluster_address(pod) {
        flannel_cells(&mut row, pod, own, cluster);
    }
    let indexed = pod.attachments.iter().find(|a| a.index.is_some());
    net1_cell(&mut row, pod, indexed);
    if let Some(att) = indexed {
        let got = att.result.as_ref().map(addresses).unwrap_or_default();
        for (col, v4) in [("public-v4", true), ("public-v6", false)] {
            let cell = match got.iter().find(|a| a.is_ipv4() == v4) {
                None => (Verdict::Pass, "-".into()),
                Some(addr) => match probe(state, exe, *addr, &pod.name) {
                    Ok(()) => (Verdict::Pass, "tcp ok".into()),
                    Err(e) => {
                        row.notes
                            .push(format!("{col}: internet client to {addr}: {e}"));
                        (Verdict::Fail, "tcp FAIL".into())
                    }
                },
            };
            row.cells.insert(col, cell);
        }
        row.cells
            .insert("index2ip", agrees(node, att.index, &got, &mut row.notes));
    }
    egress_cell(state, exe, &mut row, pod, indexed, node);
    v6_cell(&mut row, pod);
    duplicate_cell(state, &mut row, pod);
    if let Some(e) = &pod.error {
        row.notes.push(e.clone());
        if !row.cells.values().any(|(v, _)| *v == Verdict::Fail) {
            row.cells.insert("net1", (Verdict::Fail, "conflict".into()));
        }
    }
    row
}

/// What the internet sees of the pod's own connections: a pod with a public address must leave through it (its
/// default route is net1's), any other pod through flanneld's masquerading, from its node's address. Where no
/// flanneld runs (the emulation) the second is not checked.
fn egress_cell(
    state: &State,
    exe: &Path,
    row: &mut Row,
    pod: &PodState,
    indexed: Option<&Attachment>,
    node: Option<&crate::state::NodeState>,
) {
    if state.wan_netns.is_empty() {
        return;
    }
    let public = indexed
        .and_then(|a| a.result.as_ref())
        .map(addresses)
        .unwrap_or_default();
    let real_flannel = node.is_some_and(|n| n.cni_bin.is_some());
    let mut expected: Vec<(IpAddr, IpAddr)> = Vec::new();
    for client in crate::build::WAN_CLIENT {
        match public.iter().find(|a| a.is_ipv4() == client.is_ipv4()) {
            Some(own) => expected.push((client, *own)),
            None if client.is_ipv4() && real_flannel && cluster_address(pod).is_some() => {
                if let Some(Ok(addr)) = node.map(|n| n.address.parse::<IpAddr>()) {
                    expected.push((client, addr));
                }
            }
            None => {}
        }
    }
    if expected.is_empty() {
        return;
    }
    let mut failed = Vec::new();
    for (client, want) in &expected {
        match connect(&pod.netns, exe, *client) {
            Ok(seen) if seen == want.to_string() => {}
            Ok(seen) => failed.push(format!("to {client}: the internet saw {seen}, not {want}")),
            Err(e) => failed.push(format!("to {client}: {e}")),
        }
    }
    let cell = if failed.is_empty() {
        let how = if public.is_empty() {
            "masq ok"
        } else {
            "own ok"
        };
        (Verdict::Pass, how.to_owned())
    } else {
        row.notes.push(format!("egress {}", failed.join("; ")));
        (Verdict::Fail, "FAIL".to_owned())
    };
    row.cells.insert("egress", cell);
}

/// The pod's IPv6 as the index network set it, and nothing else: no address still tentative or refused by
/// duplicate address detection, no route or address a router advertisement put there.
fn v6_cell(row: &mut Row, pod: &PodState) {
    if !interfaces(&pod.netns)
        .iter()
        .any(|(_, addrs)| addrs.iter().any(|a| a.contains(':')))
    {
        return;
    }
    let mut wrong = Vec::new();
    for (what, args) in [
        ("still tentative", &["-6", "addr", "show", "tentative"][..]),
        ("refused by DAD", &["-6", "addr", "show", "dadfailed"][..]),
        ("from an RA (SLAAC)", &["-6", "addr", "show", "dynamic"][..]),
        (
            "routes from an RA",
            &["-6", "route", "show", "proto", "ra"][..],
        ),
    ] {
        let shown = crate::sys::ip_in(&pod.netns, args).unwrap_or_default();
        let lines: Vec<&str> = shown
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("inet6") || (args[1] == "route" && !l.is_empty()))
            .collect();
        if !lines.is_empty() {
            wrong.push(format!("{what}: {}", lines.join(" | ")));
        }
    }
    let cell = if wrong.is_empty() {
        (Verdict::Pass, "ok".to_owned())
    } else {
        row.notes.push(format!("v6-static: {}", wrong.join("; ")));
        (Verdict::Fail, "FAIL".to_owned())
    };
    row.cells.insert("v6-static", cell);
}

/// Two pods on one node holding one public address (one index asked for twice): both rows fail, each naming the
/// other. Real ipvlan refuses the second; macvlan, standing in for it, does not.
fn duplicate_cell(state: &State, row: &mut Row, pod: &PodState) {
    let own = public_addresses(pod);
    let others: Vec<String> = state
        .pods
        .iter()
        .filter(|p| p.node == pod.node && !p.same_pod(pod))
        .filter(|p| public_addresses(p).iter().any(|a| own.contains(a)))
        .map(|p| p.name.clone())
        .collect();
    if !others.is_empty() {
        row.notes.push(format!(
            "holds the same public address as {} on node {}: one index asked for twice",
            others.join(", "),
            pod.node
        ));
        row.cells
            .insert("index2ip", (Verdict::Fail, "DUPLICATE".into()));
    }
}

fn public_addresses(pod: &PodState) -> Vec<IpAddr> {
    pod.attachments
        .iter()
        .filter(|a| a.index.is_some())
        .filter_map(|a| a.result.as_ref())
        .flat_map(addresses)
        .collect()
}

/// Waits, [`DAD_WITHIN`] at most, until no pod's address is tentative: a node's workload would not be reached
/// before that either.
fn wait_for_dad(state: &State) {
    let deadline = std::time::Instant::now() + crate::sys::patience(DAD_WITHIN);
    while std::time::Instant::now() < deadline {
        let tentative = state.pods.iter().filter(|p| !p.host_network).any(|p| {
            crate::sys::ip_in(&p.netns, &["-6", "addr", "show", "tentative"])
                .is_ok_and(|s| s.contains("inet6"))
        });
        if !tentative {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The internet client's listeners: each answers with the address it saw the connection come from.
fn start_wan_listeners(state: &State, exe: &Path) -> Result<Vec<Child>, Error> {
    if state.wan_netns.is_empty() {
        return Ok(Vec::new());
    }
    crate::build::WAN_CLIENT
        .iter()
        .map(|a| listener(&state.wan_netns, exe, SocketAddr::new(*a, PORT), PEER))
        .collect()
}

/// What the internet client's listeners are told to answer: the peer's address.
const PEER: &str = "=peer";

/// `__connect` from `netns` to the internet client: what it answered.
fn connect(netns: &str, exe: &Path, to: IpAddr) -> Result<String, String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", crate::sys::netns_path(netns).display()))
        .arg("--")
        .arg(exe)
        .args(["__connect", &SocketAddr::new(to, PORT).to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Flannel: the pod at `own` to every other pod with a cluster address, same node and other nodes apart.
fn flannel_cells(row: &mut Row, pod: &PodState, own: IpAddr, cluster: &[(&PodState, IpAddr)]) {
    for (local, col) in [(true, "flannel-local"), (false, "flannel-remote")] {
        let peers: Vec<&(&PodState, IpAddr)> = cluster
            .iter()
            .filter(|(p, a)| *a != own && (p.node == pod.node) == local)
            .collect();
        let failed: Vec<String> = peers
            .iter()
            .filter(|(_, a)| !ping(&pod.netns, *a))
            .map(|(p, a)| format!("{} ({a})", p.name))
            .collect();
        let cell = if peers.is_empty() {
            (Verdict::Pass, "-".to_owned())
        } else {
            let v = if failed.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Fail
            };
            (v, format!("{}/{}", peers.len() - failed.len(), peers.len()))
        };
        if !failed.is_empty() {
            row.notes
                .push(format!("{col}: no answer from {}", failed.join(", ")));
        }
        row.cells.insert(col, cell);
    }
}

/// The public interface: present exactly when the pod asked for an index network (`indexed`).
fn net1_cell(row: &mut Row, pod: &PodState, indexed: Option<&Attachment>) {
    let has_net1 = interfaces(&pod.netns).iter().any(|(n, _)| n == "net1");
    let (cell, note) = match (indexed, has_net1) {
        (Some(a), true) if a.ifname == "net1" => ((Verdict::Pass, "present"), None),
        (None, false) => ((Verdict::Pass, "absent"), None),
        (Some(_), false) => (
            (Verdict::Fail, "missing"),
            Some("asked for an index network but has no net1"),
        ),
        (_, true) => (
            (Verdict::Fail, "unexpected"),
            Some("has net1 without asking for an index network"),
        ),
    };
    row.cells.insert("net1", (cell.0, cell.1.into()));
    row.notes.extend(note.map(str::to_owned));
}

/// Whether the addresses a pod got are what index2ip computes for its node and index.
fn agrees(
    node: Option<&crate::state::NodeState>,
    index: Option<u32>,
    got: &[IpAddr],
    notes: &mut Vec<String>,
) -> (Verdict, String) {
    let (Some(node), Some(index)) = (node, index) else {
        return (Verdict::Fail, "unknown".into());
    };
    let expected = std::fs::read_to_string(node.dir.join("cmdline"))
        .map_err(|e| e.to_string())
        .and_then(|c| index2ip::NodeKeys::parse(&c).map_err(|e| e.to_string()))
        .and_then(|k| {
            let i = index2ip::Index::new(u64::from(index)).ok_or("index 0")?;
            index2ip::allocate(&k, i).map_err(|e| e.to_string())
        });
    match expected {
        Ok(a) => {
            let mut want = vec![IpAddr::V4(a.v4.addr())];
            want.extend(a.v6.map(|n| IpAddr::V6(n.addr())));
            if want.iter().all(|w| got.contains(w)) {
                (Verdict::Pass, "match".into())
            } else {
                notes.push(format!(
                    "index {index} on {} should give {want:?}, the pod got {got:?}",
                    node.name
                ));
                (Verdict::Fail, "MISMATCH".into())
            }
        }
        Err(e) => {
            notes.push(format!(
                "index2ip refuses index {index} on {}: {e}",
                node.name
            ));
            (Verdict::Fail, "refused".into())
        }
    }
}

fn start_listeners(state: &State, exe: &Path) -> Result<Vec<Child>, Error> {
    let mut children = Vec::new();
    for pod in &state.pods {
        let Some(att) = pod.attachments.iter().find(|a| a.index.is_some()) else {
            continue;
        };
        for addr in att.result.as_ref().map(addresses).unwrap_or_default() {
            children.push(listener(
                &pod.netns,
                exe,
                SocketAddr::new(addr, PORT),
                &pod.name,
            )?);
        }
    }
    Ok(children)
}

/// `__listen ADDR ANSWER` in `netns`, once it is listening.
fn listener(netns: &str, exe: &Path, addr: SocketAddr, answer: &str) -> Result<Child, Error> {
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", crate::sys::netns_path(netns).display()))
        .arg("--")
        .arg(exe)
        .args(["__listen", &addr.to_string(), answer])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| Error::Listener {
            netns: netns.to_owned(),
            source,
        })?;
    // Wait for "ready", so a probe never races the bind.
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    Ok(child)
}

fn stop_listeners(children: Vec<Child>) {
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The internet client connects to `addr` and must hear `pod`'s name back.
/// Where the internet client is: behind the router (a lab state from before it had one: the router itself).
fn client_netns(state: &State) -> &str {
    if state.wan_netns.is_empty() {
        &state.inet_netns
    } else {
        &state.wan_netns
    }
}

fn probe(state: &State, exe: &Path, addr: IpAddr, pod: &str) -> Result<(), String> {
    let out = Command::new("nsenter")
        .arg(format!(
            "--net={}",
            crate::sys::netns_path(client_netns(state)).display()
        ))
        .arg("--")
        .arg(exe)
        .args(["__connect", &SocketAddr::new(addr, PORT).to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let heard = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    if heard != pod {
        return Err(format!("answered by {heard:?}, not {pod}"));
    }
    Ok(())
}

/// `__listen ADDR NAME`: accepts connections on ADDR and answers each with NAME until its standard input closes
/// (`check` holds it open while it probes, and a crash closes it) or ten minutes have passed.
pub fn listen_main(args: &[String]) -> ExitCode {
    let (Some(addr), Some(name)) = (args.first(), args.get(1)) else {
        return ExitCode::from(2);
    };
    let listener = match addr
        .parse::<SocketAddr>()
        .map_err(|e| e.to_string())
        .and_then(|a| TcpListener::bind(a).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("netlab: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("ready");
    let _ = std::io::stdout().flush();
    // A fixed lifetime would cut off a slow check (a VM under software emulation takes minutes for a few pods).
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let _ = listener.set_nonblocking(true);
    while std::time::Instant::now() < deadline {
        match listener.accept() {
            Ok((mut s, peer)) => {
                let _ = s.set_nonblocking(false);
                if name == PEER {
                    let _ = writeln!(s, "{}", peer.ip());
                } else {
                    let _ = writeln!(s, "{name}");
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    ExitCode::SUCCESS
}

/// `__connect ADDR`: connects (3 s at most) and prints what the listener says.
pub fn connect_main(args: &[String]) -> ExitCode {
    let Some(addr) = args.first().and_then(|a| a.parse::<SocketAddr>().ok()) else {
        return ExitCode::from(2);
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("connect {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The matrix.
pub fn print(report: &Report, state: &State, out: &mut dyn Write) {
    let _ = write!(out, "{:<24} {:<6}", "POD", "NODE");
    for c in COLUMNS {
        let _ = write!(out, " {c:<14}");
    }
    let _ = writeln!(out);
    for r in &report.rows {
        let _ = write!(out, "{:<24} {:<6}", r.pod, r.node);
        for c in COLUMNS {
            let (v, text) = r
                .cells
                .get(c)
                .cloned()
                .unwrap_or((Verdict::Pass, "-".into()));
            let mark = match v {
                Verdict::Pass => text,
                Verdict::Fail => format!("FAIL {text}"),
                Verdict::Warn => format!("WARN {text}"),
            };
            let _ = write!(out, " {mark:<14}");
        }
        let _ = writeln!(out);
    }
    for r in &report.rows {
        for n in &r.notes {
            let level = if r.cells.values().any(|(v, _)| *v == Verdict::Fail) {
                "FAIL"
            } else {
                "WARN"
            };
            let _ = writeln!(out, "{level} {}: {n}", r.pod);
        }
    }
    for s in &state.substitutions {
        let _ = writeln!(out, "NOTE: {s}");
    }
    let fails = report.failures();
    let warns = report
        .rows
        .iter()
        .filter(|r| r.cells.values().any(|(v, _)| *v == Verdict::Warn))
        .count();
    let _ = writeln!(
        out,
        "==> {}: {} pods, {fails} failed checks, {warns} pods with warnings",
        if fails == 0 {
            "check passed"
        } else {
            "check FAILED"
        },
        report.rows.len()
    );
}
