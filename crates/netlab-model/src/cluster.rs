//! What the manifests say the lab must run: which nodes get which CNI configuration, which run flannel, the
//! NetworkAttachmentDefinitions, and the DaemonSets whose pods land on nodes.
//!
//! Read from parsed manifests by [`from_objects`]; plain data, so tests can write one by hand.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

mod read;

pub use crate::workload::{Requirement, Selector, Workload};
pub use read::from_objects;

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
    /// `Network` of flannel's net-conf.json: the pod network each node's subnet is cut from.
    pub network: Ipv4Net,
    /// `SubnetLen` of net-conf.json: the prefix length of each node's subnet; 24 where absent, as in flannel.
    pub subnet_len: u8,
}

/// Everything the manifests say.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// NetworkAttachmentDefinitions by (namespace, name): their `spec.config`.
    pub nads: BTreeMap<(String, String), String>,
    /// The DaemonSets installing CNI configuration.
    pub installers: Vec<Installer>,
    /// Flannel, where the manifests deploy it.
    pub flannel: Option<Flannel>,
    /// The DaemonSets whose pods use the pod network (not `hostNetwork`); pods are named `NAME-NODE`.
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
