//! Rules about the node inventory.

use super::{Finding, Rule};
use crate::nodes::Node;
use crate::workload::{NODE_TYPES, NODE_TYPE_LABEL};

pub(super) fn check(source: &str, nodes: &[Node], findings: &mut Vec<Finding>) {
    for n in nodes {
        let message = match n.labels.get(NODE_TYPE_LABEL) {
            Some(v) if NODE_TYPES.contains(&v.as_str()) => continue,
            Some(v) => format!(
                "node {} has {NODE_TYPE_LABEL}={v:?}, which no CNI DaemonSet selects: its network will not work (use virtual or physical)",
                n.name
            ),
            None => format!(
                "node {} has no {NODE_TYPE_LABEL} label: no CNI DaemonSet selects it, so its network will not work; label it with `kubectl label node {} {NODE_TYPE_LABEL}=virtual` (or physical)",
                n.name, n.name
            ),
        };
        let mut f = Finding::new(Rule::NodeLabel, message).at(source.to_owned(), n.line);
        f.object = Some(format!("Node {}", n.name));
        findings.push(f);
    }
}
