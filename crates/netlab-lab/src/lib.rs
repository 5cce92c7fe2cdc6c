//! The lab: a small cluster's pod networking on one machine, in network namespaces, from the real manifests and
//! with the real plugins. Every root-only and `unsafe` line of netlab is here.
//!
//! - [`verbs`]: what the `netlab` commands call: `up`, `status`, `check`, `exec`, `down`, `run`;
//! - [`build`]: `up`, recording everything in the [`state`] file before making it;
//! - [`runtime`]: attaching pods with multus and flannel semantics and the real plugins, run by [`exec`] (the
//!   runtime side of CNI: a plugin or a chain run as libcni runs them);
//! - [`status`], [`check`], [`teardown`] (`down`);
//! - [`sys`] (namespaces made and entered from threads, mounts) and [`netlink`] (links, addresses, routes);
//! - [`vm`]: `run --vm`, the whole run inside a VM whose kernel has ipvlan.
//!
//! What the lab runs comes from [`netlab_model`]: a [`netlab_model::topology::Topology`] and the
//! [`netlab_model::cluster::Cluster`] the manifests describe.
//!
//! # Quick start
//!
//! ```no_run
//! use netlab_lab::verbs::{self, LabArgs};
//! use netlab_model::{cluster::Cluster, topology::Topology};
//!
//! let args = LabArgs {
//!     name: "netlab".into(),
//!     topology: None,
//!     manifests: "k8s".into(),
//!     index2ip: None,
//!     reference_dir: "/usr/lib/cni".into(),
//!     trace: None,
//! };
//! let passed = verbs::run(&args, &Topology::default(), &Cluster::default(), &mut std::io::stdout())?;
//! # Ok::<(), netlab_lab::Error>(())
//! ```

pub mod build;
pub mod check;
pub mod exec;
pub mod netlink;
pub mod runtime;
pub mod state;
pub mod status;
pub mod sys;
pub mod teardown;
pub mod verbs;
pub mod vm;

use std::path::PathBuf;

/// What stops the lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system command failed.
    #[error("{command}: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr, or why it could not start.
        reason: String,
    },
    /// A text the lab was handed cannot become the model.
    #[error(transparent)]
    Model(#[from] netlab_model::Error),
    /// The state file is unusable.
    #[error("lab state {}: {reason}", .path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file of the lab's own could not be written or read.
    #[error("{}: {reason}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A network namespace's name was taken by someone else between the check and its making.
    #[error("a network namespace named {0} exists already and is not this lab's: remove it (ip netns del {0}) or choose another --name")]
    NetnsTaken(String),
    /// Anything else the lab refuses, said in full.
    #[error("{0}")]
    Lab(String),
}

impl Error {
    /// An I/O failure on `path`.
    pub fn io(path: impl Into<PathBuf>, e: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            reason: e.to_string(),
        }
    }
}
