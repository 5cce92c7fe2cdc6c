//! A node inventory: `kubectl get nodes -o json` (or `-o yaml`) output, or a single Node.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::Error;

/// One node: its name, labels, pod CIDR, addresses, and the line its name is on where the text shows it.
#[derive(Debug, Clone)]
pub struct Node {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.podCIDR` and then `spec.podCIDRs` (a dual-stack node has one of each family), as written.
    pub pod_cidrs: Vec<String>,
    /// `status.addresses`: (type, address), such as `("InternalIP", "192.0.2.9")`.
    pub addresses: Vec<(String, String)>,
    /// The 1-based line of its name in the inventory.
    pub line: Option<usize>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<String>,
    #[serde(rename = "podCIDRs", default)]
    pod_cidrs: Vec<String>,
}

#[derive(Deserialize, Default)]
struct Status {
    #[serde(default)]
    addresses: Vec<Address>,
}

#[derive(Deserialize)]
struct Address {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

/// Parses an inventory (JSON or YAML).
pub fn parse(source_name: &str, text: &str) -> Result<Vec<Node>, Error> {
    let bad = |reason: String| Error::Nodes {
        source_name: source_name.to_owned(),
        reason,
    };
    let value: Value = serde_norway::from_str(text).map_err(|e| bad(e.to_string()))?;
    let items = match value.get("kind").and_then(Value::as_str) {
        Some("Node") => vec![value.clone()],
        Some("List" | "NodeList") => value
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| bad("no `items` list".into()))?,
        Some(other) => {
            return Err(bad(format!(
                "kind {other:?}, expected List, NodeList or Node"
            )))
        }
        None => return Err(bad("no `kind`".into())),
    };
    let mut nodes = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if item
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Node")
        {
            return Err(bad(format!("item {} is not a Node", i + 1)));
        }
        let meta: Meta = item
            .get("metadata")
            .cloned()
            .ok_or_else(|| bad(format!("item {} has no metadata", i + 1)))
            .and_then(|m| {
                serde_json::from_value(m).map_err(|e| bad(format!("item {}: {e}", i + 1)))
            })?;
        let part = |key: &str| item.get(key).cloned().unwrap_or(Value::Null);
        let spec: Spec = match part("spec") {
            Value::Null => Spec::default(),
            v => {
                serde_json::from_value(v).map_err(|e| bad(format!("item {}: spec: {e}", i + 1)))?
            }
        };
        let status: Status = match part("status") {
            Value::Null => Status::default(),
            v => serde_json::from_value(v)
                .map_err(|e| bad(format!("item {}: status: {e}", i + 1)))?,
        };
        let line = name_line(text, &meta.name);
        nodes.push(Node {
            name: meta.name,
            labels: meta.labels,
            pod_cidrs: spec.pod_cidr.into_iter().chain(spec.pod_cidrs).fold(
                Vec::new(),
                |mut all, c| {
                    if !all.contains(&c) {
                        all.push(c);
                    }
                    all
                },
            ),
            addresses: status
                .addresses
                .into_iter()
                .map(|a| (a.kind, a.address))
                .collect(),
            line,
        });
    }
    Ok(nodes)
}

fn name_line(text: &str, name: &str) -> Option<usize> {
    let json = format!("\"name\": \"{name}\"");
    let yaml = format!("name: {name}");
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            l.contains(&json) || t.trim_end() == yaml
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lists_and_single_nodes_and_refuses_others() -> Result<(), Error> {
        let nodes = parse("n.json", include_str!("../tests/fixtures/nodes/list.json"))?;
        assert_eq!(nodes.len(), 1);
        assert_eq!(
            nodes[0].labels.get("mlab/type").map(String::as_str),
            Some("physical")
        );
        assert_eq!(nodes[0].line, Some(6));
        assert_eq!(parse("n", "{kind: Node, metadata: {name: a}}")?.len(), 1);
        assert!(parse("n", "kind: Pod\n").is_err());
        assert!(parse(
            "n",
            "{kind: List, items: [{kind: Pod, metadata: {name: a}}]}"
        )
        .is_err());
        assert!(parse("n", "{").is_err());
        Ok(())
    }
}
