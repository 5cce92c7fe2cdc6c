//! What can stop lint before it has anything to report.

use std::path::{Path, PathBuf};

/// A failure to read or render the inputs; problems *in* the inputs are findings, not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
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
    /// A text lint was handed cannot become the model (a node inventory that is not one).
    #[error(transparent)]
    Model(#[from] netlab_model::Error),
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
