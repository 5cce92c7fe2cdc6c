//! `up` on the real control plane: the parts of [`crate::build::up`] that differ from the emulation.
//!
//! The control plane ([`crate::control_plane`]) runs in a namespace of its own behind the site's router, at
//! [`API_ADDRESS`], as a remote control plane is reached from a site. Each node gets what its operating system and
//! kubelet would give it: the reference plugins in its `/opt/cni/bin`, its kubelet's kubeconfig at
//! `/etc/kubernetes/kubelet.conf`. Then the manifests are applied with the documented sequence, the lab's
//! substitutions are made in the API's objects (announced), the lab's own pods are created, and the lab's kubelet
//! ([`crate::kubelet`]) is started: from there on the DaemonSets' pods install flannel, multus, index2ip and
//! cni-shim on the nodes and every other pod gets its network through them.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::control_plane::{self, ControlPlane};
use crate::images::Sources;
use crate::kube::Kubectl;
use crate::kubelet::{Config, NodeConfig};
use crate::state::{NodeState, Resource, State};
use crate::{sys, Error};
use netlab_model::topology::Topology;

/// The control plane's address: in 198.18.0.0/15, the range set aside for network tests, so it is nobody's.
pub const API_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The site router's address on the control plane's link.
pub const ROUTER_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// How long `up` waits for a control plane outside (running before this lab started) to answer through the relay.
const REMOTE_WITHIN: Duration = Duration::from_secs(60);
/// How long `up` waits for every pod to run.
const PODS_WITHIN: Duration = Duration::from_secs(180);

/// The upstream peers the control plane runs.
pub const CONTROL_PLANE_PEERS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The upstream peers the nodes run (kubectl: the lab's kubelet speaks to the API through it).
pub const NODE_PEERS: [&str; 6] = [
    "kubectl",
    "flanneld",
    "install-conf",
    "flannel",
    "multus",
    "thin_entrypoint",
];

/// `dir`, when it holds every peer the lab runs here (the nodes' only when the control plane is elsewhere);
/// else an error naming what is missing and how to build it.
pub fn peers_ready(dir: &Path, control_plane_here: bool) -> Result<PathBuf, Error> {
    let wanted = NODE_PEERS.iter().chain(
        control_plane_here
            .then_some(&CONTROL_PLANE_PEERS)
            .into_iter()
            .flatten(),
    );
    let missing: Vec<String> = wanted
        .filter(|p| !dir.join(p).is_file())
        .map(|p| (*p).to_owned())
        .collect();
    if missing.is_empty() {
        Ok(dir.to_owned())
    } else {
        Err(Error::PeersNotBuilt {
            dir: dir.to_owned(),
            missing,
        })
    }
}

/// What `up` needs for the real control plane.
#[derive(Debug, Clone)]
pub struct RealOptions {
    /// The upstream peers.
    pub peers: PathBuf,
    /// cni-shim, which the installer image carries beside index2ip.
    pub shim: PathBuf,
    /// A control plane running outside this machine (a VM's lab, whose control plane runs on the machine that
    /// started the VM): the directory of its credentials and [`UPSTREAM_FILE`]. `None`: the lab starts its own.
    pub remote: Option<PathBuf>,
}

/// The file, in a remote control plane's directory, that holds the address its API server is reached at from
/// here.
pub const UPSTREAM_FILE: &str = "upstream";

/// A control plane started for a lab, with what the nodes need of it.
pub struct Plane {
    cp: ControlPlane,
    /// The namespace it runs in.
    pub netns: String,
}

impl Plane {
    /// Node `node`'s kubelet kubeconfig.
    pub fn node_kubeconfig(&self, node: &str) -> PathBuf {
        self.cp.node_kubeconfig(node)
    }
}

/// Makes the control plane's namespace (recorded first) behind the site's router and starts etcd,
/// kube-apiserver, the controller manager and the scheduler there, each process recorded for `down`.
pub fn start_control_plane(
    state: &mut State,
    opts: &RealOptions,
    topology: &Topology,
    out: &mut dyn Write,
) -> Result<Plane, Error> {
    let netns = format!("{}-cp", state.name);
    state.record(Resource::Netns {
        name: netns.clone(),
    })?;
    sys::add_netns(std::slice::from_ref(&netns), &[])?;
    // The router (the internet client's namespace) forwards between the site and the control plane.
    let router = &state.inet_netns;
    sys::ip_in(
        router,
        &[
            "link", "add", "cp0", "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ],
    )?;
    sys::ip_in(
        router,
        &["addr", "add", &format!("{ROUTER_ADDRESS}/30"), "dev", "cp0"],
    )?;
    sys::ip_in(router, &["link", "set", "cp0", "up"])?;
    sys::ip_in(
        &netns,
        &["addr", "add", &format!("{API_ADDRESS}/30"), "dev", "eth0"],
    )?;
    sys::ip_in(&netns, &["link", "set", "eth0", "up"])?;
    sys::ip_in(
        &netns,
        &[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_ADDRESS.to_string(),
        ],
    )?;
    let started = Instant::now();
    if let Some(dir) = &opts.remote {
        let upstream = start_relay(state, &netns, dir)?;
        let cp = ControlPlane::remote(&opts.peers, dir, &netns, API_ADDRESS);
        // Already running outside: this waits only for the way there.
        cp.wait_reachable(REMOTE_WITHIN).map_err(|e| {
            let log = std::fs::read_to_string(state.dir.join("relay.log")).unwrap_or_default();
            let mut last: Vec<&str> = log.lines().rev().take(3).collect();
            last.dedup();
            match last.is_empty() {
                true => e,
                false => Error::Command {
                    command: format!("the relay to {upstream}"),
                    reason: format!("{e}; its last lines: {}", last.join(" | ")),
                },
            }
        })?;
        let _ = writeln!(
            out,
            "    control plane: outside, at {upstream}, relayed to {} in {netns} ({:.1} s to answer)",
            cp.server(),
            started.elapsed().as_secs_f64()
        );
        return Ok(Plane { cp, netns });
    }
    let cp = ControlPlane::start_in(
        &opts.peers,
        &state.dir.join("cp"),
        &netns,
        &control_plane::Options {
            controllers: true,
            address: Some(API_ADDRESS),
            nodes: topology.nodes.iter().map(|n| n.name.clone()).collect(),
            slow_nodes: 1,
        },
    )?;
    let _ = writeln!(
        out,
        "    control plane: etcd, kube-apiserver {}, controller manager, scheduler in {netns} ({:.1} s)",
        cp.server(),
        started.elapsed().as_secs_f64()
    );
    Ok(Plane { cp, netns })
}

/// Starts the relay (`netlab internal relay`, recorded for `down`) that puts the remote control plane of `dir` at
/// [`API_ADDRESS`] in namespace `netns`, where the nodes reach it through the site's router as they would a local
/// one. Returns the address relayed to.
fn start_relay(state: &mut State, netns: &str, dir: &Path) -> Result<String, Error> {
    let path = dir.join(UPSTREAM_FILE);
    let upstream = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let upstream = upstream.trim().to_owned();
    let listen = format!("{API_ADDRESS}:{}", control_plane::API_PORT);
    let (pid, comm) = start_own(
        state,
        &[
            "internal", "relay", "--netns", netns, "--listen", &listen, "--to", &upstream,
        ],
        "relay.log",
    )?;
    state.record(Resource::Process { pid, comm })?;
    Ok(upstream)
}

/// A node's files as its operating system and kubelet leave them: the reference plugins in `/opt/cni/bin` (as
/// the containernetworking-plugins package installs them), the kubelet's kubeconfig.
pub fn node_files(plane: &Plane, node: &mut NodeState, reference: &Path) -> Result<(), Error> {
    let bin = node.dir.join("opt-cni-bin");
    let entries = std::fs::read_dir(reference).map_err(|e| Error::io(reference, e))?;
    for e in entries.flatten() {
        let link = bin.join(e.file_name());
        std::os::unix::fs::symlink(e.path(), &link).map_err(|err| Error::io(&link, err))?;
    }
    let kubeconfig = node.dir.join("kubernetes").join("kubelet.conf");
    std::fs::copy(plane.node_kubeconfig(&node.name), &kubeconfig)
        .map_err(|e| Error::io(&kubeconfig, e))?;
    node.cni_bin = Some(bin);
    Ok(())
}

/// The rest of `up`: the control plane's processes recorded, the manifests applied, the substitutions, the lab's
/// own pods, the kubelet started, and every pod waited for.
pub fn finish(
    mut state: State,
    up: &crate::build::UpOptions,
    plane: Plane,
    topology: &Topology,
    has_ipvlan: bool,
    out: &mut dyn Write,
) -> Result<State, Error> {
    let Some(opts) = &up.control_plane else {
        return Ok(state);
    };
    let manifests = Path::new(&up.manifests);
    let index2ip = up.index2ip.as_path();
    let admin = Kubectl::new(
        &opts.peers.join("kubectl"),
        &plane.cp.kubeconfig(),
        &state.dir.join("cp/kube-cache"),
    )
    .in_netns(&plane.netns);
    let server = plane.cp.server().to_owned();
    let kubeconfig = plane.cp.kubeconfig();
    let ca = plane.cp.ca();
    let node_kubeconfigs: Vec<PathBuf> = topology
        .nodes
        .iter()
        .map(|n| plane.node_kubeconfig(&n.name))
        .collect();
    let netns = plane.netns.clone();
    for (name, pid) in plane.cp.detach() {
        // comm is cut to 15 bytes.
        let comm: String = name.chars().take(15).collect();
        state.created.push(Resource::Process { pid, comm });
    }
    state.save()?;
    let in_cp = |args: &[&str]| admin.run(args, None);
    let started = Instant::now();
    apply(manifests, &in_cp)?;
    let _ = writeln!(
        out,
        "    applied {} (CRDs first, then the rest) in {:.1} s",
        manifests.display(),
        started.elapsed().as_secs_f64()
    );
    let mut notes = substitute(&in_cp, has_ipvlan)?;
    state.substitutions.append(&mut notes);
    lab_pods(&in_cp, topology, &state.dir)?;

    let sources = Sources {
        peers: opts.peers.clone(),
        project: vec![
            ("index2ip".into(), index2ip.to_owned()),
            ("cni-shim".into(), opts.shim.clone()),
            (
                "cni-shim-passthrough".into(),
                opts.shim.with_file_name("cni-shim-passthrough"),
            ),
        ],
        install_script: state.dir.join("install.sh"),
    };
    std::fs::write(&sources.install_script, crate::images::INSTALL_SCRIPT)
        .map_err(|e| Error::io(&sources.install_script, e))?;
    let config = Config {
        kubectl: opts.peers.join("kubectl"),
        admin_kubeconfig: kubeconfig.clone(),
        ca: ca.clone(),
        kube_cache: state.dir.join("cp/kube-cache"),
        api_netns: netns,
        api_host: API_ADDRESS.to_string(),
        api_port: control_plane::API_PORT,
        nodes: topology
            .nodes
            .iter()
            .zip(node_kubeconfigs)
            .map(|(n, kubeconfig)| NodeConfig {
                name: n.name.clone(),
                labels: n
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .chain([
                        ("kubernetes.io/hostname".into(), n.name.clone()),
                        ("kubernetes.io/os".into(), "linux".into()),
                    ])
                    .collect(),
                addresses: std::iter::once(topology.node_address(n).to_string())
                    .chain(topology.node_address6(n).map(|a| a.to_string()))
                    .collect(),
                kubeconfig,
            })
            .collect(),
        sources,
    };
    let path = Config::path(&state.dir);
    let text = serde_json::to_vec_pretty(&config).map_err(|e| Error::State {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    state.complete = true;
    state.save()?;
    start_kubelet(&state)?;
    let _ = writeln!(
        out,
        "    the lab's kubelet runs every node (log: {})",
        state.dir.join("kubelet.log").display()
    );
    let host = state.dir.join(crate::forward::HOST_KUBECONFIG);
    let deadline = Instant::now() + sys::patience(Duration::from_secs(10));
    while !host.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = writeln!(
        out,
        "    API server {server}; from this machine: kubectl --kubeconfig {} (netlab kubeconfig --name {})",
        host.display(),
        state.name
    );
    wait_for_pods(&in_cp, topology, &state.dir, out)?;
    let state = State::load(&state.name)?.unwrap_or(state);
    Ok(state)
}

/// The documented sequence (scripts/apply.sh): the CRDs, established, then the rest.
fn apply(
    manifests: &Path,
    kubectl: &dyn Fn(&[&str]) -> Result<String, Error>,
) -> Result<(), Error> {
    let crds = manifests.join("crds");
    let dir = manifests.to_str().unwrap_or_default();
    kubectl(&["apply", "-k", crds.to_str().unwrap_or_default()])?;
    kubectl(&[
        "wait",
        "--for=condition=Established",
        &format!(
            "--timeout={}s",
            sys::patience(Duration::from_secs(60)).as_secs()
        ),
        "crd/network-attachment-definitions.k8s.cni.cncf.io",
    ])?;
    kubectl(&["apply", "-k", dir])?;
    Ok(())
}

/// What the lab must change in the applied objects to run here, each said: flannel's CNI plugin is v0.9.1 (the
/// module proxy refuses flannel-io/cni-plugin), which speaks CNI up to 0.4.0, so the flannel configurations run at
/// 0.4.0; without ipvlan in the kernel, the index networks run macvlan on the same master.
fn substitute(
    kubectl: &dyn Fn(&[&str]) -> Result<String, Error>,
    has_ipvlan: bool,
) -> Result<Vec<String>, Error> {
    let mut notes = Vec::new();
    let nads: Value = serde_json::from_str(&kubectl(&[
        "get",
        "network-attachment-definitions",
        "-A",
        "-o",
        "json",
    ])?)
    .map_err(|e| Error::Command {
        command: "kubectl get network-attachment-definitions".into(),
        reason: e.to_string(),
    })?;
    let mut flannel = Vec::new();
    let mut macvlan = Vec::new();
    for nad in nads["items"].as_array().into_iter().flatten() {
        let (Some(name), Some(ns), Some(config)) = (
            nad["metadata"]["name"].as_str(),
            nad["metadata"]["namespace"].as_str(),
            nad["spec"]["config"].as_str(),
        ) else {
            continue;
        };
        let Ok(mut conf) = serde_json::from_str::<Value>(config) else {
            continue;
        };
        let changed_flannel = flannel_at_040(&mut conf);
        let changed_ipvlan = !has_ipvlan && ipvlan_to_macvlan(&mut conf);
        if changed_flannel {
            flannel.push(name.to_owned());
        }
        if changed_ipvlan {
            macvlan.push(name.to_owned());
        }
        if changed_flannel || changed_ipvlan {
            let patch = json!({"spec": {"config": serde_json::to_string_pretty(&conf).unwrap_or_default()}});
            kubectl(&[
                "patch",
                "network-attachment-definitions",
                name,
                "-n",
                ns,
                "--type=merge",
                "-p",
                &patch.to_string(),
            ])?;
        }
    }
    // Virtual nodes' configuration comes from flannel's ConfigMap, written to each node by its init container.
    if let Ok(text) = kubectl(&[
        "get",
        "configmap",
        "kube-flannel-cfg",
        "-n",
        "kube-system",
        "-o",
        "json",
    ]) {
        let cm: Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(Ok(mut conf)) = cm["data"]["cni-conf.json"]
            .as_str()
            .map(serde_json::from_str::<Value>)
        {
            if flannel_at_040(&mut conf) {
                flannel.push("configmap kube-flannel-cfg".into());
                let patch = json!({"data": {"cni-conf.json": serde_json::to_string_pretty(&conf).unwrap_or_default()}});
                kubectl(&[
                    "patch",
                    "configmap",
                    "kube-flannel-cfg",
                    "-n",
                    "kube-system",
                    "--type=merge",
                    "-p",
                    &patch.to_string(),
                ])?;
            }
        }
    }
    if !flannel.is_empty() {
        notes.push(format!(
            "flannel's CNI plugin here is containernetworking/plugins v0.9.1 (the module proxy refuses flannel-io/cni-plugin), which speaks CNI up to 0.4.0: {} run at cniVersion 0.4.0",
            flannel.join(", ")
        ));
    }
    if !macvlan.is_empty() {
        notes.push(format!(
            "this kernel has no ipvlan: {} run macvlan (bridge mode) on the same master, set in the API's objects",
            macvlan.join(", ")
        ));
    }
    Ok(notes)
}

/// Lowers a flannel chain to 0.4.0; true when it changed.
fn flannel_at_040(conf: &mut Value) -> bool {
    let is_flannel = conf["plugins"]
        .as_array()
        .and_then(|p| p.first())
        .is_some_and(|p| p["type"] == "flannel")
        || conf["type"] == "flannel";
    if is_flannel && conf["cniVersion"] != "0.4.0" {
        conf["cniVersion"] = "0.4.0".into();
        return true;
    }
    false
}

/// ipvlan (L2) to macvlan (bridge) on the same master; true when it changed.
fn ipvlan_to_macvlan(conf: &mut Value) -> bool {
    let mut changed = false;
    let plugins: Vec<&mut Value> = match conf.get_mut("plugins").and_then(Value::as_array_mut) {
        Some(list) => list.iter_mut().collect(),
        None => vec![conf],
    };
    for p in plugins {
        if p["type"] == "ipvlan" {
            p["type"] = "macvlan".into();
            p["mode"] = "bridge".into();
            changed = true;
        }
    }
    changed
}

/// The lab's own pods, bare, on their nodes: a plain pod per node (no network annotations) and the topology's.
/// Their image runs nothing here; only their network is under test. The list goes through a file in the lab's
/// directory `dir`, which `down` removes.
fn lab_pods(
    kubectl: &dyn Fn(&[&str]) -> Result<String, Error>,
    topology: &Topology,
    dir: &Path,
) -> Result<(), Error> {
    let pod = |name: &str, namespace: &str, node: &str, annotations: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace, "annotations": annotations,
                            "labels": {"app.kubernetes.io/managed-by": "netlab"}},
               "spec": {"nodeName": node, "containers": [{"name": "main", "image": "netlab.invalid/none:0"}],
                        "tolerations": [{"operator": "Exists"}]}})
    };
    let mut items: Vec<Value> = topology
        .nodes
        .iter()
        .map(|n| pod(&format!("plain-{}", n.name), "default", &n.name, json!({})))
        .collect();
    for p in &topology.pods {
        items.push(pod(&p.name, &p.namespace, &p.node, json!(p.annotations)));
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let file = dir.join("lab-pods.json");
    std::fs::write(&file, list.to_string()).map_err(|e| Error::io(&file, e))?;
    kubectl(&["create", "-f", file.to_str().unwrap_or_default()]).map(drop)
}

/// Starts `netlab internal kubelet NAME` in the background, in a process group of its own (an interrupted `up`
/// does not take it down; `down` does).
fn start_kubelet(state: &State) -> Result<(), Error> {
    start_own(state, &["internal", "kubelet", &state.name], "kubelet.log").map(drop)
}

/// Starts this executable with `args` in the background, in a process group of its own (an interrupted `up` does
/// not take it down; `down` does), its output in file `log` of the lab's directory. Its pid and the name
/// `/proc/PID/comm` shows for it.
fn start_own(state: &State, args: &[&str], log: &str) -> Result<(u32, String), Error> {
    let exe = std::env::current_exe().map_err(Error::OwnExecutable)?;
    let log_path = state.dir.join(log);
    let out = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
    let err = out.try_clone().map_err(|e| Error::io(&log_path, e))?;
    let child = std::process::Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Run {
            program: exe.display().to_string(),
            source,
        })?;
    // comm is cut to 15 bytes.
    let comm = exe
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(15).collect())
        .unwrap_or_default();
    Ok((child.id(), comm))
}

/// What the lab's files say of a pod that is not running (`NAMESPACE/NAME`): the kubelet's last lines naming it
/// and the last lines of each of its containers' logs, indented; nothing when they say nothing.
fn why_waiting(lab_dir: &Path, pod: &str) -> String {
    const LAST: usize = 3;
    let last_lines = |text: &str, keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        let lines: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
        lines[lines.len().saturating_sub(LAST)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    };
    let mut s = String::new();
    let kubelet = std::fs::read_to_string(lab_dir.join("kubelet.log")).unwrap_or_default();
    for line in last_lines(&kubelet, &|l| l.contains(pod)) {
        s.push_str(&format!("      kubelet: {line}\n"));
    }
    let containers = lab_dir.join("pods").join(pod.replacen('/', "_", 1));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&containers)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let container = log.file_stem().unwrap_or_default().to_string_lossy();
        for line in last_lines(&text, &|l| !l.trim().is_empty()) {
            s.push_str(&format!("      {container}: {line}\n"));
        }
    }
    s
}

/// Whether a DaemonSet's controller has seen its latest spec and has its pods scheduled and ready on every node
/// it wants.
fn daemonset_ready(d: &Value) -> bool {
    let s = &d["status"];
    s["desiredNumberScheduled"] == s["numberReady"]
        && s["desiredNumberScheduled"] == s["currentNumberScheduled"]
        && s["observedGeneration"] == d["metadata"]["generation"]
}

/// The DaemonSets whose pods are not all scheduled and ready, as `NAMESPACE/NAME (READY of DESIRED ready)`.
fn unready(daemonsets: &[Value]) -> String {
    let names: Vec<String> = daemonsets
        .iter()
        .filter(|d| !daemonset_ready(d))
        .map(|d| {
            format!(
                "{}/{} ({} of {} ready)",
                d["metadata"]["namespace"].as_str().unwrap_or_default(),
                d["metadata"]["name"].as_str().unwrap_or_default(),
                d["status"]["numberReady"].as_u64().unwrap_or(0),
                d["status"]["desiredNumberScheduled"].as_u64().unwrap_or(0)
            )
        })
        .collect();
    names.join(", ")
}

/// Until every DaemonSet has its pods ready and every pod on a labelled node runs (or [`PODS_WITHIN`] passes),
/// with a line of progress when the count changes. Pods on a node without an `mlab/type` label never get a
/// network (no DaemonSet gives the node a CNI configuration): they are named, not waited for.
fn wait_for_pods(
    kubectl: &dyn Fn(&[&str]) -> Result<String, Error>,
    topology: &Topology,
    lab_dir: &Path,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let unlabelled: Vec<&str> = topology
        .nodes
        .iter()
        .filter(|n| Topology::node_type(n).is_none())
        .map(|n| n.name.as_str())
        .collect();
    let labelled =
        |node: &str| topology.nodes.iter().any(|t| t.name == node) && !unlabelled.contains(&node);
    let started = Instant::now();
    let mut last = String::new();
    let json = |args: &[&str]| -> Result<Value, String> {
        let text = kubectl(args).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("kubectl {}: {e}", args.join(" ")))
    };
    loop {
        let answer = json(&["get", "pods", "-A", "-o", "json"])
            .and_then(|pods| Ok((pods, json(&["get", "daemonsets", "-A", "-o", "json"])?)));
        let (pods, daemonsets, unanswered) = match answer {
            Ok((pods, daemonsets)) => (pods, daemonsets, None),
            Err(e) => (Value::Null, Value::Null, Some(e)),
        };
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let name = |p: &Value| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap_or_default(),
                p["metadata"]["name"].as_str().unwrap_or_default()
            )
        };
        let ours: Vec<&Value> = items
            .iter()
            .filter(|p| p["spec"]["nodeName"].as_str().is_some_and(labelled))
            .collect();
        let running = ours
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        let ds = daemonsets["items"].as_array().cloned().unwrap_or_default();
        let ds_ready = !ds.is_empty() && ds.iter().all(daemonset_ready);
        let line = match &unanswered {
            // Not "0 of 0 pods": the cluster did not say.
            Some(e) => format!(
                "the API server does not answer: {}",
                e.lines().next().unwrap_or_default()
            ),
            None if running == ours.len() && !ds.is_empty() && !ds_ready => format!(
                "{running} of {running} pods running on the labelled nodes; DaemonSets not ready: {}",
                unready(&ds)
            ),
            None => format!(
                "{running} of {} pods running on the labelled nodes",
                ours.len()
            ),
        };
        if line != last {
            let _ = writeln!(out, "    {line} ({:.1} s)", started.elapsed().as_secs_f64());
            last = line;
        }
        let timed_out = started.elapsed() > sys::patience(PODS_WITHIN);
        if (ds_ready && running == ours.len()) || timed_out {
            if timed_out {
                let waiting: Vec<String> = ours
                    .iter()
                    .filter(|p| p["status"]["phase"] != "Running")
                    .map(|p| name(p))
                    .collect();
                let _ = writeln!(
                    out,
                    "NOTE: after {} s, not running: {}",
                    sys::patience(PODS_WITHIN).as_secs(),
                    waiting.join(", ")
                );
                for pod in &waiting {
                    let _ = write!(out, "{}", why_waiting(lab_dir, pod));
                }
            }
            for node in &unlabelled {
                let stranded: Vec<String> = items
                    .iter()
                    .filter(|p| p["spec"]["nodeName"] == *node)
                    .map(name)
                    .collect();
                let _ = writeln!(
                    out,
                    "NOTE: node {node} has no mlab/type label: no DaemonSet gives it a CNI configuration, so its pods \
                     never get a network ({})",
                    if stranded.is_empty() { "none scheduled".to_owned() } else { stranded.join(", ") }
                );
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_that_does_not_run_is_explained_by_the_kubelets_and_its_containers_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut kubelet = String::new();
        for i in 0..5 {
            kubelet.push_str(&format!(
                "t{i} pod kube-system/flannel-a: container exited; restarting\n"
            ));
            kubelet.push_str(&format!("t{i} pod default/other: sandbox failed\n"));
        }
        std::fs::write(dir.path().join("kubelet.log"), kubelet).unwrap();
        let pod_dir = dir.path().join("pods/kube-system_flannel-a");
        std::fs::create_dir_all(&pod_dir).unwrap();
        std::fs::write(
            pod_dir.join("kube-flannel.log"),
            "starting\n\nE main.go:292] Failed to check br_netfilter\n",
        )
        .unwrap();
        std::fs::write(pod_dir.join("ignored.txt"), "not a log\n").unwrap();

        let why = why_waiting(dir.path(), "kube-system/flannel-a");
        let lines: Vec<&str> = why.lines().collect();
        assert_eq!(
            lines,
            [
                "      kubelet: t2 pod kube-system/flannel-a: container exited; restarting",
                "      kubelet: t3 pod kube-system/flannel-a: container exited; restarting",
                "      kubelet: t4 pod kube-system/flannel-a: container exited; restarting",
                "      kube-flannel: starting",
                "      kube-flannel: E main.go:292] Failed to check br_netfilter",
            ]
        );
        // A pod the files say nothing of gets nothing, not an error.
        assert_eq!(why_waiting(dir.path(), "default/absent"), "");
    }

    #[test]
    fn the_wait_says_when_the_api_does_not_answer_and_which_daemonsets_are_not_ready() {
        let pods = json!({"items": [
            {"metadata": {"namespace": "kube-system", "name": "multus-a"},
             "spec": {"nodeName": "mlab1"}, "status": {"phase": "Running"}}
        ]});
        let daemonset = |ready: u64| {
            json!({"items": [{"metadata": {"namespace": "kube-system", "name": "multus", "generation": 1},
                "status": {"desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberReady": ready,
                           "observedGeneration": 1}}]})
        };
        // The API fails its first answer, then has every pod running and multus not ready, then ready.
        let calls = std::cell::Cell::new(0);
        let kubectl = |args: &[&str]| -> Result<String, Error> {
            let n = calls.get();
            calls.set(n + 1);
            match (n, args[1]) {
                (0, _) => Err(Error::Command {
                    command: "kubectl get pods".into(),
                    reason: "connection refused\nmore".into(),
                }),
                (_, "pods") => Ok(pods.to_string()),
                (1..=4, _) => Ok(daemonset(0).to_string()),
                _ => Ok(daemonset(1).to_string()),
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        wait_for_pods(&kubectl, &Topology::default(), dir.path(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("    the API server does not answer: ")
                && lines[0].contains("connection refused")
                && !lines[0].contains("more"),
            "{text}"
        );
        assert!(
            lines[1].starts_with(
                "    1 of 1 pods running on the labelled nodes; DaemonSets not ready: kube-system/multus (0 of 1 ready) ("
            ),
            "{text}"
        );
        assert!(
            lines[2].starts_with("    1 of 1 pods running on the labelled nodes ("),
            "{text}"
        );
        assert!(
            lines[3].starts_with("NOTE: node bare1 has no mlab/type label"),
            "{text}"
        );
    }
}
