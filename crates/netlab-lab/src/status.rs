//! `status`: what every pod has, read from the kernel, as a table.

use std::io::Write;

use serde_json::Value;

use crate::state::State;
use crate::sys;

/// A pod's interfaces and their addresses, from `ip -j addr` in its namespace (loopback and link-local left out).
pub fn interfaces(netns: &str) -> Vec<(String, Vec<String>)> {
    let Ok(text) = sys::ip_in(netns, &["-j", "addr", "show"]) else {
        return Vec::new();
    };
    let links: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
    links
        .iter()
        .filter_map(|l| {
            let name = l.get("ifname")?.as_str()?;
            if name == "lo" {
                return None;
            }
            let addrs = l
                .get("addr_info")?
                .as_array()?
                .iter()
                .filter(|a| a.get("scope").and_then(Value::as_str) == Some("global"))
                .filter_map(|a| {
                    Some(format!(
                        "{}/{}",
                        a.get("local")?.as_str()?,
                        a.get("prefixlen")?.as_u64()?
                    ))
                })
                .collect();
            Some((name.to_owned(), addrs))
        })
        .collect()
}

/// The kind of each of a pod's links as the kernel reports it (`ipvlan l2`, `macvlan bridge`, `veth`), by name.
pub fn link_kinds(netns: &str) -> std::collections::BTreeMap<String, String> {
    let Ok(text) = sys::ip_in(netns, &["-j", "-d", "link", "show"]) else {
        return std::collections::BTreeMap::new();
    };
    let links: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
    links
        .iter()
        .filter_map(|l| {
            let name = l.get("ifname")?.as_str()?;
            let info = l.get("linkinfo")?;
            let kind = info.get("info_kind")?.as_str()?;
            let mode = info
                .get("info_data")
                .and_then(|d| d.get("mode"))
                .and_then(Value::as_str);
            Some((
                name.to_owned(),
                mode.map_or(kind.to_owned(), |m| format!("{kind} {m}")),
            ))
        })
        .collect()
}

/// Prints each pod's `k8s.v1.cni.cncf.io/network-status` annotation, as multus would have written it.
pub fn print_network_status(state: &State, out: &mut dyn Write) {
    for pod in &state.pods {
        let text = serde_json::to_string_pretty(&pod.network_status).unwrap_or_default();
        let _ = writeln!(
            out,
            "{}/{} k8s.v1.cni.cncf.io/network-status:\n{text}",
            pod.namespace, pod.name
        );
    }
}

/// Prints the table.
pub fn print(state: &State, out: &mut dyn Write) {
    let _ = writeln!(
        out,
        "lab {} ({} nodes, {} pods){}",
        state.name,
        state.nodes.len(),
        state.pods.len(),
        if state.complete {
            ""
        } else {
            ": up did not finish; run `netlab down`"
        }
    );
    let _ = writeln!(
        out,
        "{:<8} {:<20} {:<24} {:<10} {:<15} ADDRESSES",
        "NODE", "LABEL", "POD", "INTERFACE", "KIND"
    );
    for node in &state.nodes {
        let label = node
            .node_type
            .as_ref()
            .map_or("(none)".to_owned(), |t| format!("mlab/type={t}"));
        for pod in state.pods.iter().filter(|p| p.node == node.name) {
            let ifaces = interfaces(&pod.netns);
            let kinds = link_kinds(&pod.netns);
            if ifaces.is_empty() {
                let why = pod.error.as_deref().unwrap_or("no interfaces");
                let _ = writeln!(
                    out,
                    "{:<8} {:<20} {:<24} {:<10} {:<15} no network: {}",
                    node.name, label, pod.name, "-", "-", why
                );
            }
            for (ifname, addrs) in ifaces {
                let kind = kinds.get(&ifname).map_or("-", String::as_str);
                let _ = writeln!(
                    out,
                    "{:<8} {:<20} {:<24} {:<10} {:<15} {}",
                    node.name,
                    label,
                    pod.name,
                    ifname,
                    kind,
                    addrs.join(" ")
                );
            }
        }
    }
    for s in &state.substitutions {
        let _ = writeln!(out, "NOTE: {s}");
    }
}
