//! A pod's sandbox as containerd makes one: a network namespace, and CNI ADD with the node's configuration.
//!
//! - The configuration is the first file of the node's `/etc/cni/net.d` in name order with a `.conf`,
//!   `.conflist` or `.json` name, a single plugin's configuration read as a chain of one (libcni's `ConfFiles`
//!   and `ConfListFromConf`, with containerd's one network). None yet: the node's network is not ready, and the
//!   pod waits, as kubelet keeps it in `ContainerCreating`.
//! - The call: `CNI_CONTAINERID` a new sandbox's 64 hex digits, `CNI_IFNAME=eth0`, `CNI_ARGS` with
//!   `IgnoreUnknown`, `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_INFRA_CONTAINER_ID` and `K8S_POD_UID`,
//!   `CNI_PATH` the node's `/opt/cni/bin`; the plugins run in the node's network and mount namespaces.
//! - A failed ADD is undone with DEL and the namespace removed; the caller tries again with a new sandbox.
//!
//! - Capabilities: a container port with a `hostPort` becomes the `portMappings` capability argument, in the
//!   `runtimeConfig` of every plugin declaring it (multus passes it on to its delegates: portmap).

use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use cni::{CniResult, Command};
use netlab_model::cniconf::NetworkConfig;

use crate::kube::Pod;
use crate::runtime::Runtime;
use crate::state::{Attachment, NodeState, PodState, Resource, State};
use crate::sys;

/// How the error of a node without a CNI configuration starts, as kubelet's `NetworkPluginNotReady` says it.
pub const NOT_READY: &str = "network not ready";

/// The file extensions libcni reads in a configuration directory.
const EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

/// The node's CNI configuration, as containerd picks it: `(file name, configuration)`; `Err` says why there is
/// none to use.
pub fn node_config(net_d: &Path) -> Result<(String, NetworkConfig), String> {
    let mut names: Vec<String> = std::fs::read_dir(net_d)
        .map_err(|e| format!("cannot read {}: {e}", net_d.display()))?
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            Path::new(n)
                .extension()
                .is_some_and(|x| EXTENSIONS.iter().any(|e| x == *e))
        })
        .collect();
    names.sort();
    let Some(first) = names.into_iter().next() else {
        return Err(format!(
            "{NOT_READY}: no CNI configuration in {} (the node's /etc/cni/net.d)",
            net_d.display()
        ));
    };
    let path = net_d.join(&first);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let list =
        NetworkConfig::parse(&text).map_err(|e| format!("{}: {}", path.display(), e.message))?;
    Ok((first, list))
}

/// 64 random hex digits, as a container id.
fn new_container_id() -> Result<String, String> {
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}

/// Makes a new sandbox for `pod` on `node` and runs ADD: fills `record` (its namespace, sandbox id, the
/// attachment) and returns the pod's addresses. Each namespace is recorded in the state before it is made.
pub fn create(
    state: &Mutex<State>,
    node: &NodeState,
    pod: &Pod,
    record: &mut PodState,
) -> Result<Vec<String>, String> {
    let (file, list) = node_config(&node.dir.join("net.d"))?;
    let id = new_container_id()?;
    {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let plain = format!("{}-{}", state.name, pod.metadata.name);
        let netns = if sys::netns_path(&plain).exists() {
            format!("{plain}-{}", &id[..8])
        } else {
            plain
        };
        record.netns = netns.clone();
        record.sandbox = Some(id.clone());
        record.attachments = vec![Attachment {
            network: format!("{file} (the node's CNI configuration)"),
            ifname: "eth0".into(),
            default: true,
            conflist: Some(list.clone()),
            ..Attachment::default()
        }];
        // Recorded before it exists; the pod itself with its new sandbox, one record per pod.
        state.created.push(Resource::Netns { name: netns });
        match state.pods.iter_mut().find(|p| p.same_pod(record)) {
            Some(slot) => *slot = record.clone(),
            None => state.pods.push(record.clone()),
        }
        state.save().map_err(|e| e.to_string())?;
    }
    sys::add_netns(std::slice::from_ref(&record.netns), &[]).map_err(|e| e.to_string())?;
    let runtime = node_runtime();
    let started = std::time::Instant::now();
    let mut invocation = runtime.invocation(node, record, "eth0");
    let ports = port_mappings(pod);
    if !ports.is_empty() {
        invocation
            .capability_args
            .insert("portMappings".into(), serde_json::Value::Array(ports));
    }
    match invocation.add_chain(&list) {
        Ok(result) => {
            let ips = addresses(&result);
            if let Err(e) = write_cache(node, record, &list, &invocation, &result) {
                // The pod has its network; only a later DEL would miss the cached result.
                eprintln!("pod {}/{}: {e}", record.namespace, record.name);
            }
            if let Some(a) = record.attachments.first_mut() {
                a.add_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                a.result = Some(result);
            }
            Ok(ips)
        }
        Err(e) => {
            let failures = del(node, record);
            let _ = sys::remove_netns(&record.netns);
            let mut msg = format!("ADD with {file} failed: {e}");
            for f in failures {
                msg.push_str(&format!("; then {f}"));
            }
            if let Some(a) = record.attachments.first_mut() {
                a.error = Some(msg.clone());
            }
            Err(msg)
        }
    }
}

/// The pod's host ports as the `portMappings` capability carries them, as containerd derives them from the pod's
/// containers (`hostPort`, `containerPort`, lower-case `protocol`).
pub fn port_mappings(pod: &Pod) -> Vec<serde_json::Value> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter_map(|p| {
            let host = p.host_port.filter(|h| *h != 0)?;
            let protocol = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            Some(serde_json::json!({
                "hostPort": host, "containerPort": p.container_port, "protocol": protocol,
            }))
        })
        .collect()
}

/// The runtime of a node with its own plugins: [`Runtime::invocation`] puts the node's CNI bin dir on CNI_PATH.
fn node_runtime() -> Runtime {
    Runtime {
        cni_path: Vec::new(),
        has_ipvlan: true,
        flannel_network: None,
    }
}

/// DEL for the sandbox, with the configuration ADD ran; returns the failures.
fn del(node: &NodeState, pod: &PodState) -> Vec<String> {
    let runtime = node_runtime();
    let mut failures = Vec::new();
    for a in &pod.attachments {
        let Some(list) = &a.conflist else { continue };
        if let Err(e) = runtime.invocation(node, pod, &a.ifname).finish_chain(
            Command::Del,
            list,
            a.result.as_ref(),
        ) {
            failures.push(format!("DEL failed: {e}"));
        }
    }
    failures
}

/// The file libcni keeps a network's result in, per container and interface, under the node's `/var/lib/cni`.
fn cache_path(
    node: &NodeState,
    network: &str,
    pod: &PodState,
    ifname: &str,
) -> Option<std::path::PathBuf> {
    let id = pod.sandbox.as_deref()?;
    Some(
        node.dir
            .join("cni-state/results")
            .join(format!("{network}-{id}-{ifname}")),
    )
}

/// libcni's result cache (`cniCacheV1`), as containerd leaves it after ADD: the configuration run, the arguments,
/// and the result, written whole (a temporary file renamed).
fn write_cache(
    node: &NodeState,
    pod: &PodState,
    list: &NetworkConfig,
    invocation: &crate::exec::Invocation,
    result: &CniResult,
) -> Result<(), String> {
    use base64::Engine as _;
    let name = list.name.clone().unwrap_or_default();
    let version = list.version().map_err(|e| e.to_string())?;
    let path = cache_path(node, &name, pod, &invocation.ifname).ok_or("no sandbox id")?;
    let config = serde_json::to_vec(&list.to_conflist()).map_err(|e| e.to_string())?;
    let entry = serde_json::json!({
        "kind": "cniCacheV1",
        "containerId": invocation.container_id,
        "config": base64::engine::general_purpose::STANDARD.encode(config),
        "ifName": invocation.ifname,
        "networkName": name,
        "netns": invocation.netns,
        "cniArgs": invocation.args.iter().map(|(k, v)| [k, v]).collect::<Vec<_>>(),
        "capabilityArgs": invocation.capability_args,
        "result": result.at(version),
    });
    let dir = path.parent().ok_or("no cache directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    sys::replace_file(&path, entry.to_string().as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Takes a pod's sandbox down: DEL, libcni's cached result, then its namespace. Returns what failed.
pub fn remove(node: &NodeState, pod: &PodState) -> Vec<String> {
    let mut failures = del(node, pod);
    for a in &pod.attachments {
        let name = a.conflist.as_ref().and_then(|l| l.name.clone());
        if let Some(path) = name.and_then(|n| cache_path(node, &n, pod, &a.ifname)) {
            let _ = std::fs::remove_file(path);
        }
    }
    if let Err(e) = sys::remove_netns(&pod.netns) {
        failures.push(e.to_string());
    }
    failures
}

/// A result's addresses, without their prefix lengths.
pub fn addresses(result: &CniResult) -> Vec<String> {
    result
        .ips
        .iter()
        .map(|i| i.address.addr().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_file_by_name_with_a_cni_extension_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert!(node_config(dir.path())
            .unwrap_err()
            .contains("network not ready"));
        std::fs::write(dir.path().join("README"), "not a config").unwrap();
        std::fs::create_dir(dir.path().join("00-dir.conf")).unwrap();
        std::fs::write(
            dir.path().join("10-flannel.conflist"),
            r#"{"cniVersion":"0.4.0","name":"flannel","plugins":[{"type":"flannel"}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("00-multus.conf"),
            r#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus"}"#,
        )
        .unwrap();
        let (file, list) = node_config(dir.path()).unwrap();
        assert_eq!(file, "00-multus.conf");
        assert_eq!(list.plugins.len(), 1);
        std::fs::write(dir.path().join("00-multus.conf"), "{").unwrap();
        assert!(node_config(dir.path())
            .unwrap_err()
            .contains("00-multus.conf"));
    }
}
