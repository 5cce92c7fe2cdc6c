//! `__listen` and `__connect`: the lab's own helpers for `check`, run inside a pod's or the client's namespace;
//! `internal kubelet`: the lab's kubelet on the real control plane; `internal relay`: a VM's lab's way to the
//! control plane outside the VM.

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
    /// The way from a VM's lab to the control plane outside it: listen at LISTEN in namespace NETNS, connect each
    /// client to TO from this process's namespace, until `down` kills it.
    Relay {
        #[arg(long)]
        netns: String,
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        to: std::net::SocketAddr,
    },
}
