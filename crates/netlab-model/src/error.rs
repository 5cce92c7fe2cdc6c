//! What stops the model from reading a text it is handed.

/// A text that cannot become the model: a node inventory, a site block, a topology, or manifests the lab cannot
/// read a cluster from. Problems lint reports as findings are not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node inventory is not `kubectl get nodes -o json` (or -o yaml) output.
    #[error("{source_name}: not a node list: {reason}")]
    Nodes {
        /// Where the inventory came from.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--site-block` is not a prefix length with a known site layout.
    #[error("site block {0:?}: expected /26, /28 or /29 (optionally with an address, as 4.14.159.64/26)")]
    SiteBlock(String),
    /// The topology file is unusable.
    #[error("topology {file}: {reason}")]
    Topology {
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A workload's pod template cannot be read.
    #[error("{object}: {reason}")]
    Template {
        /// The object, as `Kind namespace/name`.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// Flannel's `net-conf.json` in a ConfigMap is unusable.
    #[error("ConfigMap {config_map}: net-conf.json: {reason}")]
    NetConf {
        /// The ConfigMap's name.
        config_map: String,
        /// What is wrong.
        reason: String,
    },
}
