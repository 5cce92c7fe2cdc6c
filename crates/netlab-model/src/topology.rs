//! The topology: a site block and its nodes, from a file or the built-in default.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::facts::NODE_TYPE_LABEL;
use crate::Error;

/// A site and its nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The site's public block.
    pub site: Site,
    pub nodes: Vec<NodeSpec>,
    /// Pods beyond those the DaemonSets in the manifests and one plain pod per node give.
    #[serde(default)]
    pub pods: Vec<PodSpec>,
}

/// The site's public block; the "internet" client holds its gateway addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The IPv4 block, as `192.0.2.0/26`.
    pub ipv4: Ipv4Net,
    /// The IPv4 gateway.
    pub gateway4: Ipv4Addr,
    /// The IPv6 block, where the site has one.
    #[serde(default)]
    pub ipv6: Option<Ipv6Net>,
    /// The IPv6 gateway.
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    /// Name servers handed to pods through the node's keys (two per family at most).
    #[serde(default)]
    pub dns: Vec<IpAddr>,
}

/// A machine of the site: one node of the lab, at `offset` in the site block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// 1 to 20 of a-z, 0-9 and `-`, unique in the topology.
    pub name: String,
    /// Its labels; `mlab/type` decides its CNI set-up.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its address's offset in the site block (`9` is `192.0.2.9` in `192.0.2.0/26`).
    pub offset: u8,
    /// Its kernel command line; default: `epoxy.ipv4=`/`epoxy.ipv6=` keys built from the site and offset for a
    /// physical node, nothing for others.
    #[serde(default)]
    pub cmdline: Option<String>,
}

/// An extra pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSpec {
    pub name: String,
    /// `default` where the file gives none.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The node it runs on.
    pub node: String,
    /// Its annotations (the multus ones matter).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "default".into()
}

impl Default for Topology {
    /// One /26 site in documentation space: four physical machines at the site layout's offsets (9, 22, 35, 48),
    /// one virtual node and one node without a `mlab/type` label.
    fn default() -> Topology {
        let node = |name: &str, kind: Option<&str>, offset| NodeSpec {
            name: name.into(),
            labels: kind
                .map(|k| (NODE_TYPE_LABEL.to_owned(), k.to_owned()))
                .into_iter()
                .collect(),
            offset,
            cmdline: None,
        };
        Topology {
            site: Site {
                ipv4: Ipv4Net::new(Ipv4Addr::new(192, 0, 2, 0), 26).unwrap_or_default(),
                gateway4: Ipv4Addr::new(192, 0, 2, 1),
                ipv6: Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0), 64).ok(),
                gateway6: Some(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)),
                // Outside the site block, as a site's resolvers are.
                dns: vec![
                    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 53)),
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x53)),
                ],
            },
            nodes: vec![
                node("mlab1", Some("physical"), 9),
                node("mlab2", Some("physical"), 22),
                node("mlab3", Some("physical"), 35),
                node("mlab4", Some("physical"), 48),
                node("virt1", Some("virtual"), 61),
                node("bare1", None, 62),
            ],
            pods: Vec::new(),
        }
    }
}

impl Topology {
    /// Reads a topology file (YAML or JSON) and checks it.
    pub fn from_text(name: &str, text: &str) -> Result<Topology, Error> {
        let t: Topology = serde_norway::from_str(text).map_err(|e| Error::Topology {
            file: name.to_owned(),
            reason: e.to_string(),
        })?;
        t.validate().map_err(|reason| Error::Topology {
            file: name.to_owned(),
            reason,
        })?;
        Ok(t)
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.site;
        if !s.ipv4.contains(&s.gateway4) {
            return Err(format!(
                "gateway4 {} is outside the block {}",
                s.gateway4, s.ipv4
            ));
        }
        if s.ipv6.is_some() != s.gateway6.is_some() {
            return Err("ipv6 and gateway6 go together".into());
        }
        if self.nodes.is_empty() {
            return Err("no nodes".into());
        }
        let mut names = std::collections::BTreeSet::new();
        let mut offsets = std::collections::BTreeSet::new();
        for n in &self.nodes {
            let valid = !n.name.is_empty()
                && n.name.len() <= 20
                && n.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(format!(
                    "node name {:?}: use 1 to 20 of a-z, 0-9 and -",
                    n.name
                ));
            }
            if !names.insert(&n.name) {
                return Err(format!("node {} is listed twice", n.name));
            }
            if !offsets.insert(n.offset) {
                return Err(format!(
                    "node {}: offset {} is taken by another node",
                    n.name, n.offset
                ));
            }
            let addr = self.node_address(n);
            if !s.ipv4.contains(&addr)
                || addr == s.ipv4.network()
                || addr == s.ipv4.broadcast()
                || addr == s.gateway4
            {
                return Err(format!(
                    "node {}: offset {} gives {addr}, not a host address of {}",
                    n.name, n.offset, s.ipv4
                ));
            }
        }
        for p in &self.pods {
            if !names.contains(&p.node) {
                return Err(format!(
                    "pod {}: node {} is not in the topology",
                    p.name, p.node
                ));
            }
        }
        Ok(())
    }

    /// A node's IPv4 address.
    pub fn node_address(&self, n: &NodeSpec) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.site.ipv4.network()).saturating_add(u32::from(n.offset)))
    }

    /// A node's IPv6 address, numbered by the site convention (offset 22 is `::22`).
    pub fn node_address6(&self, n: &NodeSpec) -> Option<Ipv6Addr> {
        let net = self.site.ipv6?;
        let mut seg = net.network().segments();
        seg[7] = u16::from_str_radix(&n.offset.to_string(), 16).unwrap_or(0);
        Some(Ipv6Addr::from(seg))
    }

    /// The node's kernel command line: as written, or built from the site for physical nodes.
    pub fn cmdline(&self, n: &NodeSpec) -> String {
        if let Some(c) = &n.cmdline {
            return c.clone();
        }
        if n.labels.get(NODE_TYPE_LABEL).map(String::as_str) != Some("physical") {
            return "ro quiet\n".into();
        }
        let s = &self.site;
        let dns = |v4: bool| -> String {
            let mut d: Vec<String> = s
                .dns
                .iter()
                .filter(|a| a.is_ipv4() == v4)
                .take(2)
                .map(|a| a.to_string())
                .collect();
            d.resize(2, String::new());
            d.join(",")
        };
        let mut line = format!(
            "ro quiet epoxy.ipv4={}/{},{},{}",
            self.node_address(n),
            s.ipv4.prefix_len(),
            s.gateway4,
            dns(true)
        );
        match (s.ipv6, s.gateway6, self.node_address6(n)) {
            (Some(net), Some(gw), Some(a)) => {
                line += &format!(" epoxy.ipv6={a}/{},{gw},{}", net.prefix_len(), dns(false))
            }
            _ => line += " epoxy.ipv6=",
        }
        line.push('\n');
        line
    }

    /// The label value `mlab/type`, if any.
    pub fn node_type(n: &NodeSpec) -> Option<&str> {
        n.labels.get(NODE_TYPE_LABEL).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_follows_the_site_layout() {
        let t = Topology::default();
        assert!(t.validate().is_ok());
        let mlab2 = &t.nodes[1];
        assert_eq!(
            t.cmdline(mlab2),
            "ro quiet epoxy.ipv4=192.0.2.22/26,192.0.2.1,198.51.100.53, epoxy.ipv6=2001:db8:1::22/64,2001:db8:1::1,2001:db8:ffff::53,\n"
        );
        let keys = index2ip::NodeKeys::parse(&t.cmdline(mlab2)).unwrap();
        assert!(index2ip::capacity(&keys) >= 12);
        assert_eq!(t.cmdline(&t.nodes[4]), "ro quiet\n");
    }

    #[test]
    fn refuses_broken_topologies() {
        for (text, expected) in [
            ("{site: {ipv4: 192.0.2.0/26, gateway4: 192.0.2.1}, nodes: []}", "no nodes"),
            ("{site: {ipv4: 192.0.2.0/26, gateway4: 198.51.100.1}, nodes: [{name: a, offset: 3}]}", "outside the block"),
            ("{site: {ipv4: 192.0.2.0/29, gateway4: 192.0.2.1}, nodes: [{name: a, offset: 7}]}", "not a host address"),
            ("{site: {ipv4: 192.0.2.0/26, gateway4: 192.0.2.1}, nodes: [{name: a, offset: 3}, {name: a, offset: 4}]}", "listed twice"),
            ("{site: {ipv4: 192.0.2.0/26, gateway4: 192.0.2.1}, nodes: [{name: A, offset: 3}]}", "use 1 to 20"),
            ("{site: {ipv4: 192.0.2.0/26, gateway4: 192.0.2.1}, nodes: [{name: a, offset: 3, colour: red}]}", "unknown field"),
        ] {
            let e = Topology::from_text("t.yaml", text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
