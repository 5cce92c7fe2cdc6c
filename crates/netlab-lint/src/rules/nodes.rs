//! Rules about the node inventory: labels, the pod CIDR flannel takes as the node's subnet, and the addresses of
//! physical nodes.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::Value;

use crate::{Finding, Options, Rule};
use netlab_model::facts::{FLANNEL_NETWORK_CIDR, FLANNEL_SUBNET_LEN};
use netlab_model::facts::{NODE_TYPES, NODE_TYPE_LABEL};
use netlab_model::manifest::Object;
use netlab_model::nodes::Node;

pub(crate) fn check(
    source: &str,
    nodes: &[Node],
    objects: &[Object],
    options: Options,
    findings: &mut Vec<Finding>,
) {
    let flannel = flannel_network(objects);
    for n in nodes {
        let mut push = |rule: Rule, message: String| {
            let mut f = Finding::new(rule, message).at(source.to_owned(), n.line);
            f.object = Some(format!("Node {}", n.name));
            findings.push(f);
        };
        if let Some(message) = label(n) {
            push(Rule::NodeLabel, message);
        }
        if let Some(message) = pod_cidr(n, flannel) {
            push(Rule::NodePodCidr, message);
        }
        if n.labels.get(NODE_TYPE_LABEL).map(String::as_str) == Some("physical") {
            if let Some(message) = address(n, flannel.0, options) {
                push(Rule::NodeAddress, message);
            }
        }
    }
}

fn label(n: &Node) -> Option<String> {
    match n.labels.get(NODE_TYPE_LABEL) {
        Some(v) if NODE_TYPES.contains(&v.as_str()) => None,
        Some(v) => Some(format!(
            "node {} has {NODE_TYPE_LABEL}={v:?}, which no CNI DaemonSet selects: its network will not work (use virtual or physical)",
            n.name
        )),
        None => Some(format!(
            "node {} has no {NODE_TYPE_LABEL} label: no CNI DaemonSet selects it, so its network will not work; label it with `kubectl label node {} {NODE_TYPE_LABEL}=virtual` (or physical)",
            n.name, n.name
        )),
    }
}

/// flannel's network and per-node prefix length: from a ConfigMap's `net-conf.json` in the manifests, else the
/// generator's.
fn flannel_network(objects: &[Object]) -> (Ipv4Net, u8) {
    let fallback = (
        FLANNEL_NETWORK_CIDR
            .parse()
            .unwrap_or_else(|_| Ipv4Net::default()),
        u8::try_from(FLANNEL_SUBNET_LEN).unwrap_or(26),
    );
    objects
        .iter()
        .filter(|o| o.kind == "ConfigMap")
        .filter_map(|o| o.value.pointer("/data/net-conf.json")?.as_str())
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .find_map(|conf| {
            let network = conf.get("Network")?.as_str()?.parse().ok()?;
            let len = conf
                .get("SubnetLen")
                .and_then(Value::as_u64)
                .and_then(|l| u8::try_from(l).ok())
                .unwrap_or(24);
            Some((network, len))
        })
        .unwrap_or(fallback)
}

/// What kube-controller-manager must be told so that every node gets a pod CIDR flannel can use.
fn controller_fix(network: Ipv4Net, len: u8) -> String {
    format!("kube-controller-manager needs --allocate-node-cidrs --cluster-cidr={network} --node-cidr-mask-size-ipv4={len} (kubeadm: networking.podSubnet {network} and controllerManager.extraArgs node-cidr-mask-size-ipv4: \"{len}\")")
}

/// flanneld with `--kube-subnet-mgr` takes the node's subnet from `spec.podCIDR` (the IPv4 one of `podCIDRs` on a
/// dual-stack node) and ignores `SubnetLen`.
fn pod_cidr(n: &Node, (network, len): (Ipv4Net, u8)) -> Option<String> {
    let v4 = n
        .pod_cidrs
        .iter()
        .find(|c| c.parse::<Ipv4Net>().is_ok())
        .or(n.pod_cidrs.first());
    let Some(text) = v4 else {
        return Some(format!(
            "node {} has no spec.podCIDR: flanneld (--kube-subnet-mgr) takes the node's subnet from it and exits with \"pod cidr not assigned\"; {}",
            n.name,
            controller_fix(network, len)
        ));
    };
    let Ok(cidr) = text.parse::<Ipv4Net>() else {
        return Some(format!(
            "node {} has spec.podCIDR {text:?}, not an IPv4 prefix: flanneld gives its pods no IPv4 subnet; {}",
            n.name,
            controller_fix(network, len)
        ));
    };
    if !network.contains(&cidr) {
        return Some(format!(
            "node {}'s spec.podCIDR {cidr} is outside flannel's network {network}: flanneld uses it as the node's subnet and nothing routes it between nodes; {}",
            n.name,
            controller_fix(network, len)
        ));
    }
    if cidr.prefix_len() != len {
        return Some(format!(
            "node {}'s spec.podCIDR {cidr} is a /{}, not the /{len} of flannel's SubnetLen: flanneld uses the pod CIDR as it is and ignores SubnetLen; {}",
            n.name,
            cidr.prefix_len(),
            controller_fix(network, len)
        ));
    }
    None
}

/// The address classes that cannot be a physical node's public address.
fn private(ip: Ipv4Addr) -> bool {
    let shared: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).unwrap_or_default();
    ip.is_private() || ip.is_loopback() || ip.is_link_local() || shared.contains(&ip)
}

/// The offset of machine `mlabN` in its site's block: +9, +22, +35, +48 on a /26, +3 on a single-machine site.
fn machine_offset(name: &str, options: Options) -> Option<(u32, u32)> {
    let digits: String = name
        .strip_prefix("mlab")?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let rest = &name[4 + digits.len()..];
    if !(rest.is_empty() || rest.starts_with(['-', '.'])) {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    match options.site_block.prefix_len {
        26 if (1..=4).contains(&n) => Some((n, (n - 1) * 13 + 9)),
        28 | 29 if n == 1 => Some((n, 3)),
        _ => None,
    }
}

/// A physical node's pods get public addresses from the node's own block: it must have a public IPv4 address,
/// outside the pod network, at its machine's offset where its name says which machine it is.
fn address(n: &Node, pod_network: Ipv4Net, options: Options) -> Option<String> {
    let v4: Vec<Ipv4Addr> = n
        .addresses
        .iter()
        .filter(|(kind, _)| kind == "InternalIP" || kind == "ExternalIP")
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let public: Vec<Ipv4Addr> = v4
        .iter()
        .copied()
        .filter(|ip| !private(*ip) && !pod_network.contains(ip))
        .collect();
    let Some(ip) = public.first() else {
        let listed = if v4.is_empty() {
            "none".to_owned()
        } else {
            v4.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Some(format!(
            "node {} is labelled {NODE_TYPE_LABEL}=physical but has no public IPv4 address (InternalIP or ExternalIP: {listed}): its index networks put pods on the node's public eth0 with addresses from its block; label it {NODE_TYPE_LABEL}=virtual, or register the node with its public address (kubelet --node-ip)",
            n.name
        ));
    };
    let (machine, offset) = machine_offset(&n.name, options)?;
    let block = Ipv4Net::new(*ip, options.site_block.prefix_len).ok()?;
    let at = u32::from(*ip) - u32::from(block.network());
    (at != offset).then(|| format!(
        "node {} is machine mlab{machine}, which sits at +{offset} of its site's /{}, but its address {ip} is at +{at}: index2ip gives its pods the node's address + index, and these would be another machine's; check the node's address and name (or --site-block)",
        n.name, options.site_block.prefix_len
    ))
}
