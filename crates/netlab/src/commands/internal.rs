//! `__listen` and `__connect`: the lab's own helpers for `check`, run inside a pod's or the client's namespace;
//! `internal kubelet`: the lab's kubelet on the real control plane.

/// Their arguments, passed through as `check` wrote them.
#[derive(clap::Args)]
pub struct Args {
    pub args: Vec<String>,
}

/// The lab's background processes.
#[derive(clap::Subcommand)]
pub enum Internal {
    /// Every node's kubelet and container runtime for lab NAME, until `down` kills it.
    Kubelet {
        /// The lab.
        name: String,
    },
}
