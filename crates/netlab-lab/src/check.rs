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
pub const COLUMNS: [&str; 6] = [
    "flannel-local",
    "flannel-remote",
    "net1",
    "public-v4",
    "public-v6",
    "index2ip",
];

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
    let listeners = start_listeners(state, exe)?;
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
    if let Some(e) = &pod.error {
        row.notes.push(e.clone());
        if !row.cells.values().any(|(v, _)| *v == Verdict::Fail) {
            row.cells.insert("net1", (Verdict::Fail, "conflict".into()));
        }
    }
    row
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
            let mut child = Command::new("nsenter")
                .arg(format!(
                    "--net={}",
                    crate::sys::netns_path(&pod.netns).display()
                ))
                .arg("--")
                .arg(exe)
                .args([
                    "__listen",
                    &SocketAddr::new(addr, PORT).to_string(),
                    &pod.name,
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|source| Error::Listener {
                    netns: pod.netns.clone(),
                    source,
                })?;
            // Wait for "ready", so a probe never races the bind.
            let mut line = String::new();
            if let Some(stdout) = child.stdout.take() {
                let _ = BufReader::new(stdout).read_line(&mut line);
            }
            children.push(child);
        }
    }
    Ok(children)
}

fn stop_listeners(children: Vec<Child>) {
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The internet client connects to `addr` and must hear `pod`'s name back.
fn probe(state: &State, exe: &Path, addr: IpAddr, pod: &str) -> Result<(), String> {
    let out = Command::new("nsenter")
        .arg(format!(
            "--net={}",
            crate::sys::netns_path(&state.inet_netns).display()
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
            Ok((mut s, _)) => {
                let _ = s.set_nonblocking(false);
                let _ = writeln!(s, "{name}");
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
