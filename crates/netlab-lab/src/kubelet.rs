//! The lab's kubelet and container runtime, for every node of a lab on the real control plane: one process
//! (`netlab internal kubelet NAME`, started by `up`, killed by `down`) that registers each node and keeps it
//! Ready, watches the pods the scheduler binds to the lab's nodes, and runs them:
//!
//! - a pod on the node's network (`hostNetwork`) runs its init containers to completion, in order, then its
//!   containers, each restarted when it exits ([`crate::containers`]); its address is the node's;
//! - any other pod first gets a sandbox: a network namespace and CNI ADD as containerd does it
//!   ([`crate::sandbox`]), tried again in a new sandbox after a failure, with back-off, as kubelet does;
//! - then each pod's status goes back to the API as the node (its kubelet credentials): phase, addresses,
//!   conditions, container statuses.
//!
//! Everything made is recorded in the lab's state before it exists, as `up` records its own.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::containers::{node_path, Bind, ContainerPlan};
use crate::images::{self, Sources};
use crate::kube::{Container, Kubectl, Pod, WatchEvent};
use crate::sandbox;
use crate::state::{PodState, State};
use crate::Error;

/// What the kubelet needs to know, written by `up` next to the state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    pub kubectl: PathBuf,
    /// The administrator's kubeconfig (to watch pods and mint tokens).
    pub admin_kubeconfig: PathBuf,
    /// The certificate the API server serves with.
    pub ca: PathBuf,
    /// kubectl's discovery cache.
    pub kube_cache: PathBuf,
    /// The network namespace the API server is reached from (its own).
    pub api_netns: String,
    /// The API server's address and port, for pods' `KUBERNETES_SERVICE_HOST` (no service proxy runs here).
    pub api_host: String,
    pub api_port: u16,
    pub nodes: Vec<NodeConfig>,
    pub sources: Sources,
}

/// One node as its kubelet registers it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeConfig {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its addresses (InternalIP).
    pub addresses: Vec<String>,
    /// Its kubelet's kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Config {
    /// Where `up` writes it for lab directory `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("kubelet.json")
    }
}

/// The file the kubelet writes its process id to, in the lab's directory.
pub const PID_FILE: &str = "kubelet.pid";
/// How often each node's lease is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// What every pod worker shares.
struct Shared {
    config: Config,
    state: Mutex<State>,
    admin: Kubectl,
    node_kubectl: BTreeMap<String, Kubectl>,
    /// Each NetworkAttachmentDefinition's index2ip index (`None`: not an index network), by `namespace/name`:
    /// read once for all, again when a name is new.
    nad_index: Mutex<BTreeMap<String, Option<u32>>>,
}

impl Shared {
    fn log(&self, line: &str) {
        eprintln!("{} {line}", rfc3339_now());
    }
}

/// Now, to the second, for log lines and the API's times.
fn rfc3339_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The kubelet's main: runs until killed.
pub fn run(name: &str) -> Result<(), Error> {
    let state = State::load(name)?.ok_or_else(|| Error::Command {
        command: "netlab internal kubelet".into(),
        reason: format!("no lab {name} is up"),
    })?;
    let config_path = Config::path(&state.dir);
    let text = std::fs::read(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let config: Config = serde_json::from_slice(&text).map_err(|e| Error::State {
        path: config_path.clone(),
        reason: e.to_string(),
    })?;
    let pid_file = state.dir.join(PID_FILE);
    std::fs::write(&pid_file, std::process::id().to_string())
        .map_err(|e| Error::io(&pid_file, e))?;
    // The host's port for kubectl, bound while this thread is still in the host's namespace.
    let listener = crate::forward::listen()?;
    // Every kubectl this process starts talks to the API server from its namespace: this thread enters it
    // before any other starts, and threads inherit it.
    crate::sys::enter_netns(&config.api_netns)?;
    crate::forward::write_kubeconfig(&listener, &state.dir, &config.admin_kubeconfig, &config.ca)?;
    let api: std::net::SocketAddr = format!("{}:{}", config.api_host, config.api_port)
        .parse()
        .map_err(|e: std::net::AddrParseError| Error::Command {
            command: "netlab internal kubelet".into(),
            reason: format!("API server address {}: {e}", config.api_host),
        })?;
    std::thread::spawn(move || crate::forward::serve(listener, api));
    let admin = Kubectl::new(
        &config.kubectl,
        &config.admin_kubeconfig,
        &config.kube_cache,
    );
    let node_kubectl = config
        .nodes
        .iter()
        .map(|n| {
            let cache = config.kube_cache.join(&n.name);
            (
                n.name.clone(),
                Kubectl::new(&config.kubectl, &n.kubeconfig, &cache),
            )
        })
        .collect();
    let shared = Arc::new(Shared {
        config,
        state: Mutex::new(state),
        admin,
        node_kubectl,
        nad_index: Mutex::new(BTreeMap::new()),
    });
    // Every node at once, as their kubelets would.
    let registered: Vec<Result<(), Error>> = std::thread::scope(|scope| {
        let workers: Vec<_> = shared
            .config
            .nodes
            .iter()
            .map(|node| {
                let shared = &shared;
                scope.spawn(move || {
                    register(shared, node)?;
                    shared.log(&format!("node {} registered", node.name));
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(Error::ThreadPanicked {
                        what: "registering a node".into(),
                    })
                })
            })
            .collect()
    });
    registered.into_iter().collect::<Result<Vec<()>, Error>>()?;
    // Each node renews its own lease, as each node's kubelet would: one slow call does not hold up the others.
    for node in &shared.config.nodes {
        let renewer = Arc::clone(&shared);
        let node = node.name.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(RENEW_EVERY);
            if let Err(e) = renew(&renewer, &node) {
                renewer.log(&format!("node {node}: lease not renewed: {e}"));
            }
        });
    }
    // A node the API shows not ready (the controller manager marks it so when its lease is late) is posted Ready
    // again, as a kubelet posts its node's status when the API's differs from its own.
    let poster = Arc::clone(&shared);
    std::thread::spawn(move || {
        watch(&poster, "nodes", &mut |event| {
            let name = event.object["metadata"]["name"]
                .as_str()
                .unwrap_or_default();
            let node = poster.config.nodes.iter().find(|n| n.name == name);
            if let Some(node) = node.filter(|_| event.kind != "DELETED") {
                let ready = ready_condition(&event.object);
                if ready.is_some_and(|r| r != "True") {
                    poster.log(&format!(
                        "node {name}: Ready is {} in the API; posting status",
                        ready.unwrap_or_default()
                    ));
                    if let Err(e) = put_node_status(&poster, node) {
                        poster.log(&format!("node {name}: status not posted: {e}"));
                    }
                }
            }
            true
        });
    });
    let (events, incoming) = mpsc::channel();
    let watcher = Arc::clone(&shared);
    std::thread::spawn(move || watch(&watcher, "pods", &mut |event| events.send(event).is_ok()));
    let mut workers: BTreeMap<String, Arc<Worker>> = BTreeMap::new();
    for event in incoming {
        let Ok(pod) = serde_json::from_value::<Pod>(event.object.clone()) else {
            continue;
        };
        let ours = pod
            .spec
            .node_name
            .as_ref()
            .is_some_and(|n| shared.node_kubectl.contains_key(n));
        if !ours {
            continue;
        }
        let gone = event.kind == "DELETED" || pod.metadata.deletion_timestamp.is_some();
        if gone {
            if let Some(worker) = workers.remove(&pod.metadata.uid) {
                worker.stop.store(true, Ordering::SeqCst);
                shared.log(&format!("pod {}: stopping", pod.key()));
            }
            continue;
        }
        if let Some(worker) = workers.get(&pod.metadata.uid) {
            // Someone else set it not ready (the controller manager, for a node whose lease was late): the pod's
            // status is written again, as a kubelet's status manager does when the API's differs from its own.
            if ready_condition(&event.object).is_some_and(|r| r != "True") {
                worker.resync.store(true, Ordering::SeqCst);
            }
            continue;
        }
        let worker = Arc::new(Worker::default());
        workers.insert(pod.metadata.uid.clone(), Arc::clone(&worker));
        let shared = Arc::clone(&shared);
        let object = event.object;
        std::thread::spawn(move || run_pod(&shared, &pod, object, &worker));
    }
    Ok(())
}

/// Creates the Node object as its kubelet does (as the node), with its status, and its lease.
fn register(shared: &Shared, node: &NodeConfig) -> Result<(), Error> {
    let kubectl = &shared.node_kubectl[&node.name];
    let object = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node.name, "labels": node.labels},
    });
    let made = kubectl.run(&["create", "-f", "-"], Some(object.to_string().as_bytes()));
    if let Err(e) = made {
        if !e.to_string().contains("AlreadyExists") {
            return Err(e);
        }
    }
    // The node controller may change the Node (its taints) between the read and the write: read it again.
    let mut tries = 0;
    while let Err(e) = put_node_status(shared, node) {
        tries += 1;
        if tries == 5 {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node.name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node.name, "leaseDurationSeconds": 40,
                 "renewTime": rfc3339_micro_now()},
    });
    kubectl.run(&["apply", "-f", "-"], Some(lease.to_string().as_bytes()))?;
    Ok(())
}

/// Lease times carry microseconds.
fn rfc3339_micro_now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// The node's status, written whole through the status subresource (a node may not read its own status first,
/// as `kubectl patch` would).
fn put_node_status(shared: &Shared, node: &NodeConfig) -> Result<(), Error> {
    let kubectl = &shared.node_kubectl[&node.name];
    let mut object = kubectl.get_json("node", &node.name, None)?;
    let now = rfc3339_now();
    let resources = json!({"cpu": "8", "memory": "32Gi", "pods": "110"});
    let mut addresses: Vec<Value> = node
        .addresses
        .iter()
        .map(|a| json!({"type": "InternalIP", "address": a}))
        .collect();
    addresses.push(json!({"type": "Hostname", "address": node.name}));
    object["status"] = json!({
        "capacity": resources, "allocatable": resources, "addresses": addresses,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "netlab's kubelet is posting ready status",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "nodeInfo": {"kubeletVersion": "netlab", "containerRuntimeVersion": "netlab://1",
                     "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
                     "machineID": "", "systemUUID": "", "bootID": "",
                     "kernelVersion": rustix::system::uname().release().to_string_lossy(),
                     "osImage": "netlab", "kubeProxyVersion": ""},
    });
    let path = format!("/api/v1/nodes/{}/status", node.name);
    kubectl.run(
        &["replace", "--raw", &path, "-f", "-"],
        Some(object.to_string().as_bytes()),
    )?;
    Ok(())
}

/// Renews a node's lease.
fn renew(shared: &Shared, node: &str) -> Result<(), Error> {
    let patch = json!({"spec": {"renewTime": rfc3339_micro_now()}}).to_string();
    shared.node_kubectl[node].run(
        &[
            "patch",
            "lease",
            node,
            "-n",
            "kube-node-lease",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    )?;
    Ok(())
}

/// What the kubelet's loop tells a pod's worker.
#[derive(Default)]
struct Worker {
    /// The pod is gone: stop its containers, remove its sandbox.
    stop: AtomicBool,
    /// The API's status of the pod is not the one written: write it again.
    resync: AtomicBool,
}

/// The status of an object's `Ready` condition (a Node's or a Pod's), when it has one.
fn ready_condition(object: &Value) -> Option<&str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?["status"]
        .as_str()
}

/// Watches every object of `resource` (`pods`, `nodes`) and hands each event to `on_event` until it returns
/// false; a watch that ends (the API server restarted) starts again.
fn watch(shared: &Shared, resource: &str, on_event: &mut dyn FnMut(WatchEvent) -> bool) {
    loop {
        let child = shared
            .admin
            .command()
            .args([
                "get",
                resource,
                "-A",
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    let stream = serde_json::Deserializer::from_reader(BufReader::new(out))
                        .into_iter::<WatchEvent>();
                    for event in stream {
                        let Ok(event) = event else { break };
                        if !on_event(event) {
                            let _ = child.kill();
                            let _ = child.wait();
                            return;
                        }
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Err(e) => shared.log(&format!("cannot watch {resource}: {e}")),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The most the lab gives a container between SIGTERM and SIGKILL (a pod's own grace period, when shorter).
const MAX_GRACE: Duration = Duration::from_secs(10);

/// Stops containers as kubelet does: SIGTERM (multus's thin_entrypoint removes its configuration then), and
/// SIGKILL for those still running after `grace`.
fn stop_containers(mut children: Vec<Child>, grace: Duration) {
    for c in &children {
        if let Some(pid) = i32::try_from(c.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && children
            .iter_mut()
            .any(|c| matches!(c.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Back-off between tries, as kubelet's: doubling from 1 s up to 10 s here (kubelet goes to 5 minutes; a lab
/// has no time to lose).
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(3)).min(Duration::from_secs(10))
}

/// Sleeps in small steps, returning early (true) when told to stop.
fn sleep_or_stop(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.load(Ordering::SeqCst)
}

/// One pod's life on its node.
/// `object` is the pod as the watch delivered it: its status is written over it.
fn run_pod(shared: &Shared, pod: &Pod, mut object: Value, worker: &Worker) {
    let stop = &worker.stop;
    let Some(node) = pod.spec.node_name.clone() else {
        return;
    };
    let node_state = {
        let state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.node(&node).cloned()
    };
    let Some(node_state) = node_state else {
        return;
    };
    shared.log(&format!("pod {} bound to {node}: starting", pod.key()));
    let mut record = PodState {
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        node: node.clone(),
        owner: pod.owner(),
        uid: Some(pod.metadata.uid.clone()),
        host_network: pod.spec.host_network,
        ..PodState::default()
    };
    let (netns_path, pod_ips) = if pod.spec.host_network {
        record.netns = node_state.netns.clone();
        let ips = vec![node_state.address.clone()];
        (crate::sys::netns_path(&node_state.netns), ips)
    } else {
        let mut attempt = 0;
        loop {
            match sandbox::create(&shared.state, &node_state, pod, &mut record) {
                Ok(ips) => break (crate::sys::netns_path(&record.netns), ips),
                Err(mut e) => {
                    if node_state.node_type.is_none() {
                        e.push_str(&format!(
                            "; node {node} has no mlab/type label, so no DaemonSet installs a CNI configuration there"
                        ));
                    }
                    // Said once, not at every try.
                    if record.error.as_ref() != Some(&e) {
                        shared.log(&format!("pod {}: sandbox failed: {e}", pod.key()));
                    }
                    // A node without its configuration yet is looked at again every second, as kubelet
                    // re-syncs a pod waiting for the network; a failed ADD backs off.
                    let wait = if e.starts_with(sandbox::NOT_READY) {
                        Duration::from_secs(1)
                    } else {
                        attempt += 1;
                        backoff(attempt)
                    };
                    record.error = Some(e);
                    save_pod(shared, &record);
                    if sleep_or_stop(stop, wait) {
                        return;
                    }
                }
            }
        }
    };
    record.error = None;
    if !pod.spec.host_network {
        match attachments_from_multus(shared, pod, &mut record) {
            Ok(newer) => object = newer,
            Err(e) => shared.log(&format!("pod {}: network-status not read: {e}", pod.key())),
        }
    }
    save_pod(shared, &record);
    let host_ip = node_state.address.clone();
    let first_ip = pod_ips.first().cloned().unwrap_or_default();
    let volumes = match volumes(shared, pod, &node_state.dir, &host_ip, &first_ip) {
        Ok(v) => v,
        Err(e) => {
            shared.log(&format!("pod {}: volumes: {e}", pod.key()));
            BTreeMap::new()
        }
    };
    let dir = containers_dir(shared, pod);
    let plan = |c: &Container| {
        plan(
            shared,
            pod,
            c,
            &netns_path,
            &volumes,
            &dir,
            &host_ip,
            &first_ip,
        )
    };
    for init in &pod.spec.init_containers {
        let mut attempt = 0;
        // An init container of an image the lab does not know runs nothing.
        while let Some(p) = plan(init) {
            let status = p
                .spawn()
                .and_then(|mut child| child.wait().map_err(|e| Error::io(&p.log, e)));
            match status {
                Ok(s) if s.success() => break,
                outcome => {
                    shared.log(&format!(
                        "pod {}: init container {} failed ({}): see {}",
                        pod.key(),
                        init.name,
                        match outcome {
                            Ok(s) => s.to_string(),
                            Err(e) => e.to_string(),
                        },
                        p.log.display()
                    ));
                    attempt += 1;
                    if sleep_or_stop(stop, backoff(attempt)) {
                        return;
                    }
                }
            }
        }
    }
    let mut running: Vec<(usize, Option<Child>, u32)> = Vec::new();
    for (i, c) in pod.spec.containers.iter().enumerate() {
        let child = plan(c).and_then(|p| p.spawn().ok());
        running.push((i, child, 0));
    }
    if let Err(e) = pod_status(shared, pod, object, &host_ip, &pod_ips) {
        shared.log(&format!("pod {}: status not written: {e}", pod.key()));
    } else {
        shared.log(&format!(
            "pod {}: running, {}",
            pod.key(),
            pod_ips.join(" ")
        ));
    }
    // Restart what exits, and write the status again when someone else changed it, until the pod goes.
    while !sleep_or_stop(stop, Duration::from_millis(500)) {
        if worker.resync.swap(false, Ordering::SeqCst) {
            let kubectl = &shared.node_kubectl[&node];
            let rewritten = kubectl
                .get_json("pod", &pod.metadata.name, Some(&pod.metadata.namespace))
                .and_then(|now| pod_status(shared, pod, now, &host_ip, &pod_ips));
            match rewritten {
                Ok(()) => shared.log(&format!(
                    "pod {}: not ready in the API; status written again",
                    pod.key()
                )),
                Err(e) => shared.log(&format!("pod {}: status not written again: {e}", pod.key())),
            }
        }
        for (i, child, restarts) in &mut running {
            let Some(c) = child else { continue };
            if let Ok(Some(status)) = c.try_wait() {
                let container = &pod.spec.containers[*i];
                shared.log(&format!(
                    "pod {}: container {} exited ({status}); restarting",
                    pod.key(),
                    container.name
                ));
                *restarts += 1;
                std::thread::sleep(backoff(*restarts));
                *child = plan(container).and_then(|p| p.spawn().ok());
            }
        }
    }
    let grace =
        Duration::from_secs(pod.spec.termination_grace_period_seconds.unwrap_or(30)).min(MAX_GRACE);
    let children: Vec<Child> = running.into_iter().filter_map(|(_, c, _)| c).collect();
    stop_containers(children, grace);
    {
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if !pod.spec.host_network {
            for failure in sandbox::remove(&node_state, &record) {
                shared.log(&format!("pod {}: {failure}", pod.key()));
            }
        }
        // Gone from the lab: `down` has nothing of it to undo.
        state.pods.retain(|p| !p.same_pod(&record));
        if let Err(e) = state.save() {
            shared.log(&format!("pod {}: state not saved: {e}", pod.key()));
        }
    }
    let key = pod.key();
    let _ = shared.node_kubectl[&node].run(
        &[
            "delete",
            "pod",
            &pod.metadata.name,
            "-n",
            &pod.metadata.namespace,
            "--grace-period=0",
            "--force",
            "--wait=false",
        ],
        None,
    );
    shared.log(&format!("pod {key}: stopped"));
}

/// Saves the pod in the lab's state: a new one whole (with its namespace recorded), a known one in the journal.
fn save_pod(shared: &Shared, pod: &PodState) {
    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let known = state.pods.iter_mut().find(|p| p.same_pod(pod));
    let saved = match known {
        Some(slot) => {
            *slot = pod.clone();
            state.save_pod(pod)
        }
        None => {
            state.pods.push(pod.clone());
            state.save()
        }
    };
    if let Err(e) = saved {
        eprintln!("cannot save pod {}/{}: {e}", pod.namespace, pod.name);
    }
}

/// The pod's attachments as multus reports them in its `k8s.v1.cni.cncf.io/network-status` annotation, where
/// the node runs multus: the default network names the sandbox's attachment (the one its DEL goes through), each
/// other network is added with the index its NAD gives index2ip. Without the annotation (flannel alone) the
/// sandbox's attachment stands as it is.
/// Returns the pod as read.
fn attachments_from_multus(
    shared: &Shared,
    pod: &Pod,
    record: &mut PodState,
) -> Result<Value, Error> {
    let node = pod.spec.node_name.as_deref().unwrap_or_default();
    let object = shared.node_kubectl[node].get_json(
        "pod",
        &pod.metadata.name,
        Some(&pod.metadata.namespace),
    )?;
    let Some(text) = object["metadata"]["annotations"][NETWORK_STATUS].as_str() else {
        return Ok(object);
    };
    record.network_status = serde_json::from_str(text).unwrap_or_default();
    let entries = record
        .network_status
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(first) = record.attachments.first().cloned() else {
        return Ok(object);
    };
    let mut attachments = Vec::new();
    for entry in entries {
        let name = entry["name"].as_str().unwrap_or_default().to_owned();
        let ifname = entry["interface"].as_str().unwrap_or_default().to_owned();
        let ips: Vec<IpAddr> = entry["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.as_str()?.parse().ok())
            .collect();
        if entry["default"] == true {
            attachments.push(crate::state::Attachment {
                network: name,
                ifname,
                default: true,
                ..first.clone()
            });
            continue;
        }
        let (namespace, nad) = name.split_once('/').unwrap_or(("default", name.as_str()));
        let index = nad_index(shared, namespace, nad);
        let result = cni::CniResult {
            ips: ips
                .into_iter()
                .map(|a| cni::IpConfig {
                    address: ipnet::IpNet::from(a),
                    gateway: None,
                    interface: None,
                })
                .collect(),
            ..cni::CniResult::default()
        };
        attachments.push(crate::state::Attachment {
            network: name.clone(),
            ifname,
            index,
            result: Some(result),
            ..crate::state::Attachment::default()
        });
    }
    if !attachments.is_empty() {
        record.attachments = attachments;
    }
    Ok(object)
}

/// The index2ip index of NAD `namespace/name`, if it is an index network.
fn nad_index(shared: &Shared, namespace: &str, name: &str) -> Option<u32> {
    let key = format!("{namespace}/{name}");
    let mut cache = shared.nad_index.lock().unwrap_or_else(|e| e.into_inner());
    if !cache.contains_key(&key) {
        let all = shared
            .admin
            .run(
                &["get", "network-attachment-definitions", "-A", "-o", "json"],
                None,
            )
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .unwrap_or_default();
        for nad in all["items"].as_array().into_iter().flatten() {
            let index = nad["spec"]["config"]
                .as_str()
                .and_then(|c| netlab_model::cniconf::NetworkConfig::parse(c).ok())
                .and_then(|c| c.index());
            let (ns, n) = (&nad["metadata"]["namespace"], &nad["metadata"]["name"]);
            if let (Some(ns), Some(n)) = (ns.as_str(), n.as_str()) {
                cache.insert(format!("{ns}/{n}"), index);
            }
        }
    }
    cache.get(&key).copied().flatten()
}

/// The annotation multus writes on each pod it attaches.
const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

/// Where a pod's containers' roots and logs live.
fn containers_dir(shared: &Shared, pod: &Pod) -> PathBuf {
    let state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    state
        .dir
        .join("pods")
        .join(format!("{}_{}", pod.metadata.namespace, pod.metadata.name))
}

/// Makes the pod's volumes on the node, by name: host paths in the node's directory, ConfigMaps and projected
/// volumes (the service-account token minted through the TokenRequest API, the cluster's CA, the namespace) and
/// empty directories in the pod's own.
fn volumes(
    shared: &Shared,
    pod: &Pod,
    node_dir: &Path,
    host_ip: &str,
    pod_ip: &str,
) -> Result<BTreeMap<String, PathBuf>, Error> {
    let dir = containers_dir(shared, pod).join("volumes");
    let mut made = BTreeMap::new();
    for v in &pod.spec.volumes {
        let path = if let Some(hp) = &v.host_path {
            let path = node_path(node_dir, &hp.path);
            match hp.kind.as_deref() {
                Some("FileOrCreate") | Some("File") => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                    }
                    if !path.exists() {
                        std::fs::write(&path, "").map_err(|e| Error::io(&path, e))?;
                    }
                }
                _ => std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?,
            }
            path
        } else {
            let path = dir.join(&v.name);
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            if let Some(cm) = &v.config_map {
                config_map(shared, &pod.metadata.namespace, cm, &path)?;
            }
            if let Some(projected) = &v.projected {
                for source in &projected.sources {
                    if let Some(cm) = &source.config_map {
                        config_map(shared, &pod.metadata.namespace, cm, &path)?;
                    }
                    if let Some(token) = &source.service_account_token {
                        let account = pod
                            .spec
                            .service_account_name
                            .as_deref()
                            .unwrap_or("default");
                        let duration = format!("{}s", token.expiration_seconds.unwrap_or(3600));
                        let text = shared.admin.run(
                            &[
                                "create",
                                "token",
                                account,
                                "-n",
                                &pod.metadata.namespace,
                                "--bound-object-kind=Pod",
                                "--bound-object-name",
                                &pod.metadata.name,
                                "--bound-object-uid",
                                &pod.metadata.uid,
                                "--duration",
                                &duration,
                            ],
                            None,
                        )?;
                        write_file(&path.join(&token.path), text.trim())?;
                    }
                    if let Some(api) = &source.downward_api {
                        for item in &api.items {
                            let field = item
                                .field_ref
                                .as_ref()
                                .and_then(|f| pod.field(&f.field_path, host_ip, pod_ip));
                            write_file(&path.join(&item.path), &field.unwrap_or_default())?;
                        }
                    }
                }
            }
            path
        };
        made.insert(v.name.clone(), path);
    }
    Ok(made)
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// A ConfigMap's keys as files in `dir`: those listed, or all.
fn config_map(
    shared: &Shared,
    namespace: &str,
    cm: &crate::kube::ConfigMapSource,
    dir: &Path,
) -> Result<(), Error> {
    let object = shared
        .admin
        .get_json("configmap", &cm.name, Some(namespace))?;
    let data = object["data"].as_object().cloned().unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if cm.items.is_empty() {
        for key in data.keys() {
            write_file(&dir.join(key), &text(key))?;
        }
    } else {
        for item in &cm.items {
            write_file(&dir.join(&item.path), &text(&item.key))?;
        }
    }
    Ok(())
}

/// How to run one container: `None` when its image is not one the lab knows (it runs nothing).
#[allow(clippy::too_many_arguments)]
fn plan(
    shared: &Shared,
    pod: &Pod,
    c: &Container,
    netns: &Path,
    volumes: &BTreeMap<String, PathBuf>,
    dir: &Path,
    host_ip: &str,
    pod_ip: &str,
) -> Option<ContainerPlan> {
    let image = images::lookup(&c.image)?;
    let mut binds: Vec<Bind> = image
        .files
        .iter()
        .filter_map(|(target, source)| {
            let source = shared.config.sources.resolve(*source)?;
            Some(Bind {
                target: (*target).to_owned(),
                source,
            })
        })
        .collect();
    for m in &c.volume_mounts {
        let Some(source) = volumes.get(&m.name) else {
            continue;
        };
        let source = match &m.sub_path {
            Some(sub) if !sub.is_empty() => source.join(sub),
            _ => source.clone(),
        };
        binds.push(Bind {
            target: m.mount_path.clone(),
            source,
        });
    }
    let mut env = vec![
        (
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        (
            "HOSTNAME".to_owned(),
            pod.spec.node_name.clone().unwrap_or_default(),
        ),
        (
            "KUBERNETES_SERVICE_HOST".to_owned(),
            shared.config.api_host.clone(),
        ),
        (
            "KUBERNETES_SERVICE_PORT".to_owned(),
            shared.config.api_port.to_string(),
        ),
    ];
    for e in &c.env {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => from
                .field_ref
                .as_ref()
                .and_then(|f| pod.field(&f.field_path, host_ip, pod_ip))
                .unwrap_or_default(),
            (None, None) => String::new(),
        };
        env.push((e.name.clone(), value));
    }
    let argv: Vec<String> = c.command.iter().chain(&c.args).cloned().collect();
    let name = format!("{}-{}", c.name, std::process::id());
    Some(ContainerPlan {
        netns: netns.to_owned(),
        root: dir.join(&name).join("root"),
        binds,
        argv,
        env,
        log: dir.join(format!("{}.log", c.name)),
    })
}

/// The pod's status as its kubelet reports it once everything runs.
/// `object` is the pod as last read; when the API refuses the write (the pod changed since), it is read again.
fn pod_status(
    shared: &Shared,
    pod: &Pod,
    object: Value,
    host_ip: &str,
    ips: &[String],
) -> Result<(), Error> {
    let Some(node) = pod.spec.node_name.as_deref() else {
        return Ok(());
    };
    let now = rfc3339_now();
    let mut ips: Vec<&String> = ips.iter().collect();
    // IPv4 first, as kubelet orders podIPs on a cluster whose first family is IPv4.
    ips.sort_by_key(|ip| ip.parse::<IpAddr>().map_or(2, |a| u8::from(a.is_ipv6())));
    let statuses: Vec<Value> = pod
        .spec
        .containers
        .iter()
        .map(|c| {
            json!({"name": c.name, "image": c.image, "imageID": "", "ready": true, "started": true,
                   "restartCount": 0, "containerID": format!("netlab://{}", c.name),
                   "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let conditions: Vec<Value> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": now}))
    .collect();
    let status = json!({
        "phase": "Running", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": ips.first(), "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
        "startTime": now,
        "conditions": conditions,
        "containerStatuses": statuses,
    });
    // As kubelet does it: the whole status through the status subresource (a node may read its pods, not their
    // status, which `kubectl patch --subresource=status` would), read again when the pod changed meanwhile.
    let kubectl = &shared.node_kubectl[node];
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}/status",
        pod.metadata.namespace, pod.metadata.name
    );
    let mut tries = 0;
    let mut object = object;
    loop {
        if tries > 0 {
            object = kubectl.get_json("pod", &pod.metadata.name, Some(&pod.metadata.namespace))?;
        }
        object["status"] = status.clone();
        match kubectl.run(
            &["replace", "--raw", &path, "-f", "-"],
            Some(object.to_string().as_bytes()),
        ) {
            Ok(_) => return Ok(()),
            Err(e) if tries < 5 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(9), Duration::from_secs(8));
    }
}
