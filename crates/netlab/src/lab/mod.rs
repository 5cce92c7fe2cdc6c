//! The lab: a small cluster's pod networking on one machine, in network namespaces, from the real manifests and
//! with the real plugins.
//!
//! - [`topology`]: the site and its nodes (a file, or the built-in default);
//! - [`manifests`]: what the manifests say ([`cluster::Cluster`]): which node gets which CNI configuration, where
//!   flannel runs, the NetworkAttachmentDefinitions, the DaemonSets whose pods land on nodes;
//! - [`build`]: `up`, recording everything in the [`state`] file before making it;
//! - [`runtime`]: attaching pods with multus and flannel semantics and the real plugins;
//! - [`status`], [`check`], [`teardown`] (`down`);
//! - [`vm`]: `run --vm`, the whole run inside a VM whose kernel has ipvlan.

pub mod build;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod manifests;
pub mod netlink;
pub mod runtime;
pub mod state;
pub mod status;
pub mod sys;
pub mod teardown;
pub mod topology;
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
    /// The topology file is unusable.
    #[error("topology {file}: {reason}")]
    Topology {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
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
