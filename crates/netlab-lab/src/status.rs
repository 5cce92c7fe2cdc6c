//! `status`: what every pod has, read from the kernel, as a table.

use std::collections::BTreeMap;
use std::io::Write;

use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoMacVlan, IpVlanMode, LinkAttribute, LinkInfo, LinkMessage,
    MacVlanMode,
};

use crate::netlink::Netlink;
use crate::state::State;

/// A pod's interfaces and their global addresses as `ip addr` shows them (loopback and link-local left out),
/// dumped over rtnetlink in its namespace; nothing when the namespace cannot be read.
pub fn interfaces(netns: &str) -> Vec<(String, Vec<String>)> {
    let dumped = Netlink::in_netns(netns).and_then(|mut n| Ok((n.links()?, n.addresses()?)));
    match dumped {
        Ok((links, addresses)) => addresses_by_link(&links, &addresses),
        Err(_) => Vec::new(),
    }
}

/// The kind of each of a pod's links as the kernel reports it (`ipvlan l2`, `macvlan bridge`, `veth`), by name;
/// nothing when the namespace cannot be read.
pub fn link_kinds(netns: &str) -> BTreeMap<String, String> {
    let links = Netlink::in_netns(netns).and_then(|mut n| n.links());
    links
        .unwrap_or_default()
        .iter()
        .filter_map(|l| Some((name_of(l)?.to_owned(), kind_of(l)?)))
        .collect()
}

/// Each link but `lo`, in the kernel's order, with its addresses of global scope as `ADDRESS/PREFIX`.
fn addresses_by_link(
    links: &[LinkMessage],
    addresses: &[AddressMessage],
) -> Vec<(String, Vec<String>)> {
    links
        .iter()
        .filter_map(|l| {
            let name = name_of(l).filter(|n| *n != "lo")?;
            let shown = addresses
                .iter()
                .filter(|a| a.header.index == l.header.index)
                .filter(|a| a.header.scope == AddressScope::Universe)
                .filter_map(|a| {
                    // `ip` shows IFA_LOCAL, or IFA_ADDRESS where there is none (IPv6).
                    let local = a
                        .attributes
                        .iter()
                        .find_map(|x| match x {
                            AddressAttribute::Local(ip) => Some(ip),
                            _ => None,
                        })
                        .or_else(|| {
                            a.attributes.iter().find_map(|x| match x {
                                AddressAttribute::Address(ip) => Some(ip),
                                _ => None,
                            })
                        })?;
                    Some(format!("{local}/{}", a.header.prefix_len))
                })
                .collect();
            Some((name.to_owned(), shown))
        })
        .collect()
}

fn name_of(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// `KIND` or `KIND MODE` in `ip -d link`'s words, for a link with link information.
fn kind_of(link: &LinkMessage) -> Option<String> {
    let info = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(info) => Some(info),
        _ => None,
    })?;
    let kind = info.iter().find_map(|i| match i {
        LinkInfo::Kind(kind) => Some(kind.to_string()),
        _ => None,
    })?;
    let mode = info.iter().find_map(|i| match i {
        LinkInfo::Data(data) => mode_of(data),
        _ => None,
    });
    Some(mode.map_or(kind.clone(), |m| format!("{kind} {m}")))
}

/// The mode of the kinds that have one among the links the lab's plugins make: ipvlan's and macvlan's.
fn mode_of(data: &InfoData) -> Option<&'static str> {
    match data {
        InfoData::IpVlan(data) => data.iter().find_map(|d| match d {
            InfoIpVlan::Mode(IpVlanMode::L2) => Some("l2"),
            InfoIpVlan::Mode(IpVlanMode::L3) => Some("l3"),
            InfoIpVlan::Mode(IpVlanMode::L3S) => Some("l3s"),
            InfoIpVlan::Mode(_) => Some("unknown"),
            _ => None,
        }),
        InfoData::MacVlan(data) => data.iter().find_map(|d| match d {
            InfoMacVlan::Mode(MacVlanMode::Private) => Some("private"),
            InfoMacVlan::Mode(MacVlanMode::Vepa) => Some("vepa"),
            InfoMacVlan::Mode(MacVlanMode::Bridge) => Some("bridge"),
            InfoMacVlan::Mode(MacVlanMode::Passthrough) => Some("passthru"),
            InfoMacVlan::Mode(MacVlanMode::Source) => Some("source"),
            InfoMacVlan::Mode(_) => Some("unknown"),
            _ => None,
        }),
        _ => None,
    }
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
    let api_labels = control_plane_line(state, out);
    let _ = writeln!(
        out,
        "{:<8} {:<20} {:<24} {:<10} {:<15} ADDRESSES",
        "NODE", "LABEL", "POD", "INTERFACE", "KIND"
    );
    for node in &state.nodes {
        // On the control plane the label is the API's now: a node may have been relabelled since `up`.
        let node_type = match &api_labels {
            Some(labels) if labels.contains_key(&node.name) => labels[&node.name].as_ref(),
            _ => node.node_type.as_ref(),
        };
        let label = node_type.map_or("(none)".to_owned(), |t| format!("mlab/type={t}"));
        for pod in state.pods.iter().filter(|p| p.node == node.name) {
            if pod.host_network {
                let _ = writeln!(
                    out,
                    "{:<8} {:<20} {:<24} {:<10} {:<15} the node's network (hostNetwork): {}",
                    node.name, label, pod.name, "-", "-", node.address
                );
                continue;
            }
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

/// Each node's `mlab/type` label (none when it has none), by node name.
type NodeTypes = std::collections::BTreeMap<String, Option<String>>;

/// On the real control plane: prints the API server's address and version, and how to reach it from this
/// machine; returns each node's `mlab/type` label as the API has it (`None` for a lab without a control plane, or
/// when the API does not answer).
fn control_plane_line(state: &State, out: &mut dyn Write) -> Option<NodeTypes> {
    let text = std::fs::read(crate::kubelet::Config::path(&state.dir)).ok()?;
    let config = serde_json::from_slice::<crate::kubelet::Config>(&text).ok()?;
    let host = state.dir.join(crate::forward::HOST_KUBECONFIG);
    let kubectl = crate::kube::Kubectl::new(&config.kubectl, &host, &config.kube_cache);
    let version = kubectl
        .run(&["version", "-o", "json"], None)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["serverVersion"]["gitVersion"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "not answering".into());
    let _ = writeln!(
        out,
        "control plane: kube-apiserver {version} at https://{}:{} in {}; kubectl --kubeconfig {}",
        config.api_host,
        config.api_port,
        config.api_netns,
        host.display()
    );
    let nodes: serde_json::Value = kubectl
        .run(&["get", "nodes", "-o", "json"], None)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())?;
    node_types(&nodes)
}

/// Each node's `mlab/type` label from a `NodeList`.
fn node_types(list: &serde_json::Value) -> Option<NodeTypes> {
    let items = list["items"].as_array()?;
    Some(
        items
            .iter()
            .filter_map(|n| {
                let name = n["metadata"]["name"].as_str()?.to_owned();
                let label = n["metadata"]["labels"]["mlab/type"]
                    .as_str()
                    .map(str::to_owned);
                Some((name, label))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_types_come_from_the_node_list_and_a_node_without_the_label_has_none() {
        let list = serde_json::json!({"kind": "NodeList", "items": [
            {"metadata": {"name": "mlab4", "labels": {"mlab/type": "virtual", "x": "y"}}},
            {"metadata": {"name": "bare1", "labels": {"kubernetes.io/os": "linux"}}},
            {"metadata": {"labels": {"mlab/type": "physical"}}}
        ]});
        let types = node_types(&list).unwrap();
        assert_eq!(types.len(), 2);
        assert_eq!(types["mlab4"].as_deref(), Some("virtual"));
        assert_eq!(types["bare1"], None);
        assert!(node_types(&serde_json::json!({"kind": "Status"})).is_none());
    }
    use netlink_packet_route::link::InfoKind;
    use std::net::IpAddr;

    fn link(index: u32, name: &str, info: Option<Vec<LinkInfo>>) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.attributes.push(LinkAttribute::IfName(name.into()));
        if let Some(info) = info {
            link.attributes.push(LinkAttribute::LinkInfo(info));
        }
        link
    }

    fn address(index: u32, ip: &str, prefix: u8, scope: AddressScope) -> AddressMessage {
        let ip: IpAddr = ip.parse().unwrap();
        let mut address = AddressMessage::default();
        address.header.index = index;
        address.header.prefix_len = prefix;
        address.header.scope = scope;
        address.attributes.push(AddressAttribute::Address(ip));
        if ip.is_ipv4() {
            address.attributes.push(AddressAttribute::Local(ip));
        }
        address
    }

    #[test]
    fn interfaces_leave_out_loopback_and_addresses_not_global() {
        let links = [
            link(1, "lo", None),
            link(2, "eth0", None),
            link(3, "net1", None),
        ];
        let addresses = [
            address(1, "127.0.0.1", 8, AddressScope::Host),
            address(2, "10.244.1.5", 24, AddressScope::Universe),
            address(2, "fd00::5", 64, AddressScope::Universe),
            address(2, "fe80::1", 64, AddressScope::Link),
        ];
        assert_eq!(
            addresses_by_link(&links, &addresses),
            vec![
                (
                    "eth0".to_owned(),
                    vec!["10.244.1.5/24".to_owned(), "fd00::5/64".to_owned()]
                ),
                ("net1".to_owned(), vec![]),
            ]
        );
    }

    #[test]
    fn an_address_shows_its_local_side() {
        let mut peer = address(2, "10.0.0.1", 32, AddressScope::Universe);
        peer.attributes = vec![
            AddressAttribute::Address("10.0.0.2".parse().unwrap()),
            AddressAttribute::Local("10.0.0.1".parse().unwrap()),
        ];
        let shown = addresses_by_link(&[link(2, "eth0", None)], &[peer]);
        assert_eq!(shown[0].1, vec!["10.0.0.1/32".to_owned()]);
    }

    #[test]
    fn a_named_namespace_is_read_over_rtnetlink() {
        if !test_support::need_root("status::a_named_namespace") {
            return;
        }
        struct Removed(String);
        impl Drop for Removed {
            fn drop(&mut self) {
                let _ = crate::sys::remove_netns(&self.0);
            }
        }
        let ns = format!("nlstatus{}", std::process::id());
        let _removed = Removed(ns.clone());
        let mut links = crate::sys::add_netns_for_links(std::slice::from_ref(&ns), &[]).unwrap();
        let n = &mut links[0];
        n.add_veth("eth0", "peer0", None).unwrap();
        let (eth0, peer0) = (n.index("eth0").unwrap(), n.index("peer0").unwrap());
        n.add_address(eth0, "10.1.2.3".parse().unwrap(), 24, false)
            .unwrap();
        n.add_address(eth0, "fd00::3".parse().unwrap(), 64, true)
            .unwrap();
        n.set_up(eth0, None, None).unwrap();
        n.set_up(peer0, None, None).unwrap();
        assert_eq!(
            interfaces(&ns),
            [
                ("peer0".to_owned(), vec![]),
                (
                    "eth0".to_owned(),
                    vec!["10.1.2.3/24".to_owned(), "fd00::3/64".to_owned()]
                ),
            ]
        );
        let kinds = link_kinds(&ns);
        assert_eq!(kinds.get("eth0").map(String::as_str), Some("veth"));
        assert_eq!(kinds.get("lo"), None);
        assert!(interfaces("nlstatus-none").is_empty());
    }

    #[test]
    fn kinds_carry_the_mode_where_ip_shows_one() {
        let kind = |info| kind_of(&link(2, "x", Some(info)));
        assert_eq!(
            kind(vec![LinkInfo::Kind(InfoKind::Veth)]).as_deref(),
            Some("veth")
        );
        assert_eq!(
            kind(vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                    MacVlanMode::Bridge
                )])),
            ])
            .as_deref(),
            Some("macvlan bridge")
        );
        assert_eq!(
            kind(vec![
                LinkInfo::Kind(InfoKind::IpVlan),
                LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)])),
            ])
            .as_deref(),
            Some("ipvlan l2")
        );
        assert_eq!(kind_of(&link(1, "lo", None)), None);
    }
}
