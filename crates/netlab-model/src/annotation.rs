//! The multus pod annotations: `k8s.v1.cni.cncf.io/networks` and `v1.multus-cni.io/default-network`.
//!
//! The networks annotation is a JSON list of network selection elements or a comma-separated list of
//! `[namespace/]name[@interface]`; the default-network annotation is one such element.

use serde::Deserialize;

/// The annotation asking for additional networks.
pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
/// The annotation replacing the cluster network.
pub const DEFAULT_NETWORK: &str = "v1.multus-cni.io/default-network";

/// One network a pod asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRef {
    /// The NAD's namespace, if written.
    pub namespace: Option<String>,
    /// The NAD's name.
    pub name: String,
    /// The interface name asked for, if any.
    pub interface: Option<String>,
}

impl NetworkRef {
    /// `namespace/name` with the namespace multus would use when none is written.
    pub fn qualified(&self, default_namespace: &str) -> (String, String) {
        (
            self.namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned()),
            self.name.clone(),
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Element {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    interface: Option<String>,
}

/// Parses a networks annotation. An empty value asks for nothing.
pub fn parse_networks(value: &str) -> Result<Vec<NetworkRef>, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let refs = if trimmed.starts_with('[') {
        let elements: Vec<Element> = serde_json::from_str(trimmed)
            .map_err(|e| format!("not a JSON list of network selection elements: {e}"))?;
        elements
            .into_iter()
            .map(|e| NetworkRef {
                namespace: e.namespace,
                name: e.name,
                interface: e.interface,
            })
            .collect()
    } else if trimmed.starts_with('{') {
        return Err("a JSON network selection must be a list: wrap the object in [ ]".into());
    } else {
        trimmed
            .split(',')
            .map(|item| parse_item(item.trim()))
            .collect::<Result<Vec<_>, _>>()?
    };
    for r in &refs {
        check(r)?;
    }
    let mut interfaces: Vec<&str> = refs.iter().filter_map(|r| r.interface.as_deref()).collect();
    interfaces.sort_unstable();
    if let Some(w) = interfaces.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("interface {:?} asked for twice", w[0]));
    }
    Ok(refs)
}

/// Parses a default-network annotation: exactly one network.
pub fn parse_default_network(value: &str) -> Result<NetworkRef, String> {
    let mut refs = parse_networks(value)?;
    match refs.len() {
        1 => Ok(refs.remove(0)),
        0 => Err("names no network".into()),
        n => Err(format!("names {n} networks; a pod has one default network")),
    }
}

fn parse_item(item: &str) -> Result<NetworkRef, String> {
    if item.is_empty() {
        return Err("an empty element in the comma-separated list".into());
    }
    let (rest, interface) = match item.split_once('@') {
        Some((rest, ifname)) => (rest, Some(ifname.to_owned())),
        None => (item, None),
    };
    let (namespace, name) = match rest.split_once('/') {
        Some((ns, name)) => (Some(ns.to_owned()), name.to_owned()),
        None => (None, rest.to_owned()),
    };
    Ok(NetworkRef {
        namespace,
        name,
        interface,
    })
}

fn check(r: &NetworkRef) -> Result<(), String> {
    if !is_dns_subdomain(&r.name) {
        return Err(format!(
            "{:?} is not a valid object name (lower-case letters, digits, '-' and '.')",
            r.name
        ));
    }
    if let Some(ns) = &r.namespace {
        if !is_dns_label(ns) {
            return Err(format!("{ns:?} is not a valid namespace"));
        }
    }
    if let Some(ifname) = &r.interface {
        let ok = !ifname.is_empty()
            && ifname.len() <= 15
            && ifname != "."
            && ifname != ".."
            && !ifname.contains(['/', ':', '@'])
            && !ifname.chars().any(char::is_whitespace);
        if !ok {
            return Err(format!("{ifname:?} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)"));
        }
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ns: Option<&str>, name: &str, ifname: Option<&str>) -> NetworkRef {
        NetworkRef {
            namespace: ns.map(Into::into),
            name: name.into(),
            interface: ifname.map(Into::into),
        }
    }

    #[test]
    fn reads_every_form() -> Result<(), String> {
        assert_eq!(parse_networks("a")?, vec![r(None, "a", None)]);
        assert_eq!(
            parse_networks(" ns/a@net1 , b ")?,
            vec![r(Some("ns"), "a", Some("net1")), r(None, "b", None)]
        );
        assert_eq!(
            parse_networks(
                r#"[{ "name": "index2ip-index-2-conf" }, {"name":"b","namespace":"x","interface":"net2"}]"#
            )?,
            vec![
                r(None, "index2ip-index-2-conf", None),
                r(Some("x"), "b", Some("net2"))
            ]
        );
        assert_eq!(parse_networks("")?, vec![]);
        assert_eq!(
            parse_default_network("kube-system/flannel-experiment-conf")?,
            r(Some("kube-system"), "flannel-experiment-conf", None)
        );
        Ok(())
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "a,,b",
            "a/b/c",
            "A",
            "a@",
            "a@x@y",
            "/a",
            "ns/",
            "[{\"name\":\"a\"}",
            "{\"name\":\"a\"}",
            "[{\"namespace\":\"x\"}]",
            "[1]",
            "a@net1,b@net1",
            "a b",
            "a@waytoolonginterfacename",
        ] {
            assert!(parse_networks(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_default_network("a,b").is_err());
        assert!(parse_default_network("").is_err());
    }
}
