//! What the manifests say the lab must run: which nodes get which CNI configuration, which run flannel, the
//! NetworkAttachmentDefinitions, and the DaemonSets whose pods land on nodes.
//!
//! Built from parsed manifests by [`crate::from_manifests`]; plain data, so tests can write one by hand.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

pub use crate::workload::Requirement;

/// Which nodes a DaemonSet selects: its `nodeSelector` and required node affinity terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// `nodeSelector`: every pair must match.
    pub labels: BTreeMap<String, String>,
    /// Required node-affinity terms: any one term must match, each term's requirements all.
    pub terms: Vec<Vec<Requirement>>,
}

impl Selector {
    /// Whether a node with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let pairs = self.labels.iter().all(|(k, v)| labels.get(k) == Some(v));
        let term = |t: &Vec<Requirement>| {
            t.iter().all(|r| {
                let v = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => v.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => !v.is_some_and(|v| r.values.contains(v)),
                    "Exists" => v.is_some(),
                    "DoesNotExist" => v.is_none(),
                    // Gt and Lt compare integers; nothing here uses them, so they select nothing.
                    _ => false,
                }
            })
        };
        pairs && (self.terms.is_empty() || self.terms.iter().any(term))
    }
}

/// A DaemonSet that writes CNI configuration files into the node's `/etc/cni/net.d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installer {
    /// `DaemonSet namespace/name`, for messages.
    pub source: String,
    /// Where it runs.
    pub selector: Selector,
    /// The files it installs: name and contents.
    pub configs: Vec<(String, String)>,
}

/// Flannel's network, and where flanneld runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flannel {
    /// The DaemonSets running flanneld.
    pub daemonsets: Vec<(String, Selector)>,
    /// `Network`.
    pub network: Ipv4Net,
    /// `SubnetLen`.
    pub subnet_len: u8,
}

/// A DaemonSet whose pods use the pod network (not `hostNetwork`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its name; pods are named `NAME-NODE`.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Where it runs.
    pub selector: Selector,
    /// Its pod template's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Everything the manifests say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// NetworkAttachmentDefinitions by (namespace, name): their `spec.config`.
    pub nads: BTreeMap<(String, String), String>,
    /// The DaemonSets installing CNI configuration.
    pub installers: Vec<Installer>,
    /// Flannel, where the manifests deploy it.
    pub flannel: Option<Flannel>,
    /// The pod-network DaemonSets.
    pub workloads: Vec<Workload>,
}

impl Cluster {
    /// The CNI configuration files a node with `labels` gets, sorted by name as runtimes read them.
    pub fn configs_for(&self, labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = self
            .installers
            .iter()
            .filter(|i| i.selector.matches(labels))
            .flat_map(|i| i.configs.iter().cloned())
            .collect();
        files.sort();
        files.dedup_by(|a, b| a.0 == b.0);
        files
    }

    /// Whether flanneld runs on a node with `labels`.
    pub fn runs_flannel(&self, labels: &BTreeMap<String, String>) -> bool {
        self.flannel
            .as_ref()
            .is_some_and(|f| f.daemonsets.iter().any(|(_, s)| s.matches(labels)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selectors_follow_kubernetes() {
        let physical = Selector {
            labels: labels(&[("mlab/type", "physical")]),
            terms: vec![],
        };
        assert!(physical.matches(&labels(&[("mlab/type", "physical"), ("x", "y")])));
        assert!(!physical.matches(&labels(&[("mlab/type", "virtual")])));
        assert!(!physical.matches(&labels(&[])));
        let typed = Selector {
            labels: BTreeMap::new(),
            terms: vec![vec![Requirement {
                key: "mlab/type".into(),
                operator: "In".into(),
                values: vec!["virtual".into(), "physical".into()],
            }]],
        };
        assert!(typed.matches(&labels(&[("mlab/type", "virtual")])));
        assert!(!typed.matches(&labels(&[])));
        assert!(Selector::default().matches(&labels(&[])));
    }
}
