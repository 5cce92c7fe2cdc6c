//! Attaching pods as the node's runtime, multus and flannel would: the lab's stand-in for the binaries it cannot
//! run here (multus needs an API server, flannel's plugin a running flanneld), executing the real plugins for
//! everything else.
//!
//! - The node's primary CNI configuration is the first file of its `/etc/cni/net.d` by name, as runtimes pick it.
//! - multus (thin): the cluster network is `clusterNetwork`, replaced by the pod's
//!   `v1.multus-cni.io/default-network`, both resolved in `multusNamespace`; each network of
//!   `k8s.v1.cni.cncf.io/networks` is resolved in the pod's namespace unless it names one, and becomes `net1`,
//!   `net2`... unless it names an interface. Any failure fails the pod, as multus fails the whole ADD.
//! - flannel: the plugin's entry in a chain becomes its delegate, a `bridge` config with `host-local` IPAM on the
//!   node's flannel subnet, as flannel's plugin writes it.
//! - ipvlan, where the kernel lacks it: `macvlan` with the same master and IPAM (mode `bridge`), said in the output.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::exec::{runnable, Invocation};
use cni::{Command, NetConf};
use netlab_model::cniconf::NetworkConfig;
use serde_json::{json, Value};

use crate::state::{Attachment, NodeState, PodState};
use netlab_model::cluster::Cluster;

use netlab_model::annotation::{
    parse_default_network, parse_networks, NetworkRef, DEFAULT_NETWORK, NETWORKS,
};

/// What the lab says wherever it ran ipvlan as macvlan.
pub const MACVLAN_FOR_IPVLAN: &str =
    "this kernel has no ipvlan: ipvlan L2 networks run as macvlan (mode bridge) with the same master and IPAM";

/// What the lab says where the kernel has ipvlan.
pub const IPVLAN_REAL: &str =
    "ipvlan: real (this kernel has it): ipvlan networks run as written, no substitution";

/// How plugins are run.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// `CNI_PATH`: the lab's plugin directory.
    pub cni_path: Vec<PathBuf>,
    /// Whether the kernel has ipvlan; without it, ipvlan runs as macvlan.
    pub has_ipvlan: bool,
    /// Flannel's cluster network.
    pub flannel_network: Option<ipnet::Ipv4Net>,
}

/// The plugin type of a conf or conflist text's first plugin (`multus`, `flannel`...).
fn first_type(config: &str) -> Option<String> {
    let v: Value = serde_json::from_str(config).ok()?;
    let first = v.get("plugins").and_then(|p| p.get(0)).unwrap_or(&v);
    first.get("type").and_then(Value::as_str).map(str::to_owned)
}

/// The networks a pod gets on a node, in order: (network name, NAD config or node config, interface, default).
pub fn plan_pod(
    cluster: &Cluster,
    node: &NodeState,
    pod: &PodState,
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<(String, String, String, bool)>, String> {
    let Some((file, primary)) = node.cni_configs.first() else {
        let why = match &node.node_type {
            None => format!(
                "node {} has no mlab/type label: no DaemonSet installs a CNI configuration there, so the runtime \
                 reports the network as not ready (NetworkPluginNotReady) and pod {} never starts; label the node \
                 mlab/type=physical or mlab/type=virtual",
                node.name, pod.name
            ),
            Some(t) => format!(
                "node {} (mlab/type={t}) has no CNI configuration: no DaemonSet in the manifests installs one for that \
                 label, so pod {} gets no network",
                node.name, pod.name
            ),
        };
        return Err(why);
    };
    if first_type(primary).as_deref() != Some("multus") {
        // Plain flannel (virtual nodes): the node's own conflist is the pod's only network.
        let name = serde_json::from_str::<Value>(primary)
            .ok()
            .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| file.clone());
        return Ok(vec![(name, primary.clone(), "eth0".into(), true)]);
    }
    let conf: Value = serde_json::from_str(primary).map_err(|e| format!("{file}: {e}"))?;
    let multus_ns = conf
        .get("multusNamespace")
        .and_then(Value::as_str)
        .unwrap_or("kube-system")
        .to_owned();
    let lookup = |r: &NetworkRef, default_ns: &str| -> Result<(String, String), String> {
        let ns = r.namespace.clone().unwrap_or_else(|| default_ns.to_owned());
        cluster
            .nads
            .get(&(ns.clone(), r.name.clone()))
            .map(|c| (format!("{ns}/{}", r.name), c.clone()))
            .ok_or_else(|| format!("NetworkAttachmentDefinition {ns}/{} not found", r.name))
    };
    let cluster_net = conf
        .get("clusterNetwork")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let default_ref =
        match annotations.get(DEFAULT_NETWORK) {
            Some(v) => parse_default_network(v)
                .map_err(|e| format!("annotation {DEFAULT_NETWORK}: {e}"))?,
            None => parse_default_network(cluster_net)
                .map_err(|e| format!("{file}: clusterNetwork {e}"))?,
        };
    let (name, config) = lookup(&default_ref, &multus_ns)?;
    let mut plan = vec![(name, config, "eth0".to_owned(), true)];
    if let Some(v) = annotations.get(NETWORKS) {
        let refs = parse_networks(v).map_err(|e| format!("annotation {NETWORKS}: {e}"))?;
        for (i, r) in refs.iter().enumerate() {
            let (name, config) = lookup(r, &pod.namespace)?;
            let ifname = r
                .interface
                .clone()
                .unwrap_or_else(|| format!("net{}", i + 1));
            plan.push((name, config, ifname, false));
        }
    }
    Ok(plan)
}

impl Runtime {
    /// The invocation for one of a pod's interfaces, run inside its node's namespaces.
    /// The node's own CNI bin dir, where it has one, comes before the lab's.
    pub fn invocation(&self, node: &NodeState, pod: &PodState, ifname: &str) -> Invocation {
        let mut args = vec![
            ("IgnoreUnknown".into(), "true".into()),
            ("K8S_POD_NAMESPACE".into(), pod.namespace.clone()),
            ("K8S_POD_NAME".into(), pod.name.clone()),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), container_id(pod)),
        ];
        if let Some(uid) = &pod.uid {
            args.push(("K8S_POD_UID".into(), uid.clone()));
        }
        Invocation {
            container_id: container_id(pod),
            netns: Some(crate::sys::netns_path(&pod.netns)),
            ifname: ifname.to_owned(),
            args,
            path: node
                .cni_bin
                .iter()
                .cloned()
                .chain(self.cni_path.iter().cloned())
                .collect(),
            // The node's network, then its mount namespace (where /proc/cmdline, /etc/cni/net.d and /var/lib/cni
            // are the node's), entered by the thread that spawns the plugin.
            namespaces: vec![crate::sys::netns_path(&node.netns), node.mnt.clone()],
            // One W3C trace per pod, as a runtime passing TRACEPARENT gives: with --trace, cni-shim files every
            // call of the pod's set-up under it.
            extra_env: vec![("TRACEPARENT".into(), traceparent(&container_id(pod)).into())],
            capability_args: serde_json::Map::new(),
        }
    }

    /// Turns a NAD's or node's configuration into the list the lab executes, with flannel and (where needed)
    /// ipvlan replaced; returns it and what was substituted.
    pub fn prepare(
        &self,
        node: &NodeState,
        config: &str,
    ) -> Result<(NetworkConfig, Vec<String>), String> {
        let mut list = NetworkConfig::parse(config).map_err(|e| e.message)?;
        let name = runnable(&list).map_err(|e| e.to_string())?.0.to_owned();
        let mut notes = Vec::new();
        for plugin in &mut list.plugins {
            match plugin.plugin_type.as_str() {
                "flannel" => *plugin = self.flannel_delegate(node, &name, plugin)?,
                "ipvlan" if !self.has_ipvlan => {
                    let mode = plugin
                        .extra
                        .get("mode")
                        .and_then(Value::as_str)
                        .unwrap_or("l2");
                    if mode != "l2" {
                        return Err(format!("ipvlan mode {mode} has no macvlan equivalent, and this kernel lacks ipvlan"));
                    }
                    plugin.plugin_type = "macvlan".into();
                    plugin.extra.insert("mode".into(), "bridge".into());
                    notes.push(MACVLAN_FOR_IPVLAN.to_owned());
                }
                _ => {}
            }
        }
        Ok((list, notes))
    }

    /// What flannel's CNI plugin hands to its delegate on this node.
    fn flannel_delegate(
        &self,
        node: &NodeState,
        name: &str,
        flannel: &NetConf,
    ) -> Result<NetConf, String> {
        let (Some(subnet), Some(network)) = (&node.subnet, self.flannel_network) else {
            return Err(format!(
                "flannel has no subnet on node {}: flanneld does not run there (no flannel DaemonSet selects it)",
                node.name
            ));
        };
        let mut d = flannel
            .extra
            .get("delegate")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let Some(obj) = d.as_object_mut() else {
            return Err("flannel's \"delegate\" must be an object".into());
        };
        obj.insert("name".into(), name.into());
        obj.entry("type").or_insert_with(|| "bridge".into());
        // flanneld runs with --ip-masq, so the delegate does not masquerade again.
        obj.entry("ipMasq").or_insert(false.into());
        obj.entry("mtu").or_insert(1450.into());
        if obj.get("type").and_then(Value::as_str) == Some("bridge") {
            obj.entry("isGateway").or_insert(true.into());
        }
        obj.insert(
            "ipam".into(),
            json!({"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": network.to_string()}]}),
        );
        serde_json::from_value(d).map_err(|e| format!("flannel's \"delegate\": {e}"))
    }

    /// ADD for every network of a pod, in order; stops at the first failure, as multus does. `held` maps the
    /// indices other pods on the node already hold to those pods. `persist` is called with the pod, its next
    /// attachment already listed, right before that attachment's ADD: a crash from then on still leaves `down` the
    /// attachment to DEL. When it cannot save, the ADD is not made and the pod fails with its reason.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        &self,
        cluster: &Cluster,
        node: &NodeState,
        pod: &mut PodState,
        annotations: &BTreeMap<String, String>,
        held: &BTreeMap<u32, String>,
        notes: &mut Vec<String>,
        persist: &mut dyn FnMut(&PodState) -> Result<(), String>,
    ) {
        let plan = match plan_pod(cluster, node, pod, annotations) {
            Ok(p) => p,
            Err(e) => {
                pod.error = Some(e);
                return;
            }
        };
        for (network, config, ifname, default) in plan {
            let mut att = Attachment {
                network: network.clone(),
                ifname: ifname.clone(),
                default,
                ..Attachment::default()
            };
            let list = match self.prepare(node, &config) {
                Ok((list, subs)) => {
                    for s in subs {
                        if !notes.contains(&s) {
                            notes.push(s);
                        }
                    }
                    att.conflist = Some(list.clone());
                    att.index = list.index();
                    Ok(list)
                }
                Err(e) => Err(e),
            };
            let refused = match (&list, att.index.and_then(|i| held.get(&i))) {
                (Err(e), _) => Some(e.clone()),
                // Real ipvlan refuses a second interface with the same address on one master; macvlan, standing
                // in for it, would not, so the lab refuses in its place rather than hide the conflict.
                (Ok(_), Some(other)) if !self.has_ipvlan => Some(format!(
                    "index {} is already held on node {} by pod {other}: ipvlan refuses a second interface with \
                     the same address on one master (EADDRINUSE); the lab, running macvlan in its place, refuses it too",
                    att.index.unwrap_or_default(),
                    node.name
                )),
                _ => None,
            };
            if let Some(e) = refused {
                pod.error = Some(format!("{ifname} ({network}): {e}"));
                att.error = Some(e);
                pod.attachments.push(att);
                return;
            }
            let Ok(list) = list else { return };
            pod.attachments.push(att);
            if let Err(e) = persist(pod) {
                let e =
                    format!("not made: it could not be recorded first for `down` to undo ({e})");
                pod.error = Some(format!("{ifname} ({network}): {e}"));
                if let Some(att) = pod.attachments.last_mut() {
                    att.error = Some(e);
                }
                return;
            }
            let started = std::time::Instant::now();
            let result = self.invocation(node, pod, &ifname).add_chain(&list);
            let Some(att) = pod.attachments.last_mut() else {
                return;
            };
            att.add_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            match result {
                Ok(result) => att.result = Some(result),
                Err(e) => {
                    att.error = Some(e.to_string());
                    pod.error = Some(format!("{ifname} ({network}): {e}"));
                    return;
                }
            }
        }
    }

    /// DEL for every attachment of a pod that was tried, in reverse; returns the failures.
    pub fn detach(&self, node: &NodeState, pod: &PodState) -> Vec<String> {
        let mut failures = Vec::new();
        for att in pod.attachments.iter().rev() {
            let Some(list) = &att.conflist else {
                continue;
            };
            if let Err(e) = self.invocation(node, pod, &att.ifname).finish_chain(
                Command::Del,
                list,
                att.result.as_ref(),
            ) {
                failures.push(format!("pod {} {}: DEL failed: {e}", pod.name, att.ifname));
            }
        }
        failures
    }
}

/// The `k8s.v1.cni.cncf.io/network-status` annotation of a pod, as multus computes it from the results: one
/// entry per attachment that succeeded, with its network, interface, addresses, MAC, whether it is the default
/// network, and DNS.
pub fn network_status(pod: &PodState) -> Value {
    let entries: Vec<Value> = pod
        .attachments
        .iter()
        .filter_map(|a| {
            let r = a.result.as_ref()?;
            let ips: Vec<String> = r.ips.iter().map(|i| i.address.addr().to_string()).collect();
            let mac = r
                .interfaces
                .iter()
                .find(|i| i.name == a.ifname && i.sandbox.is_some())
                .and_then(|i| i.mac.clone());
            let mut e = json!({"name": a.network, "interface": a.ifname, "ips": ips});
            if let Some(mac) = mac {
                e["mac"] = mac.into();
            }
            if a.default {
                e["default"] = true.into();
            }
            if !r.dns.is_empty() {
                e["dns"] = serde_json::to_value(&r.dns).unwrap_or_default();
            }
            Some(e)
        })
        .collect();
    Value::Array(entries)
}

/// A W3C `traceparent` derived from a container id (FNV-1a), stable across the pod's calls.
fn traceparent(id: &str) -> String {
    let fnv = |seed: u64| {
        id.bytes().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    format!("00-{:016x}{:016x}-{:016x}-01", fnv(1), fnv(2), fnv(3))
}

/// The container id of a pod's CNI calls: its sandbox's, or one the emulation derives from its name.
pub fn container_id(pod: &PodState) -> String {
    pod.sandbox
        .clone()
        .unwrap_or_else(|| format!("netlab-{}-{}", pod.namespace, pod.name))
}
