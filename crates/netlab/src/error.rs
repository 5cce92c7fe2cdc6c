//! What can stop netlab before it has anything to report.

use std::path::{Path, PathBuf};

/// A failure to read or render the inputs; problems *in* the inputs are lint findings, not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// A directory holds a kustomization.yaml that is not a mapping or lists resources that are not strings.
    #[error("{path}: not a kustomization: {reason}")]
    Kustomization {
        /// The kustomization file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `kubectl kustomize` could not be run or failed.
    #[error("kubectl kustomize {dir}: {reason}")]
    Kustomize {
        /// The directory being rendered.
        dir: PathBuf,
        /// Why it failed (kubectl's stderr, or that kubectl is absent).
        reason: String,
    },
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
}

impl Error {
    /// An I/O failure at `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}
