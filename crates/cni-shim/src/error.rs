//! The shim's errors.

use std::path::PathBuf;

use cni::error::code;

/// What can go wrong, in the pass-through and in the operator commands. Each variant's message says what its
/// fields are.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The shim cannot tell which directory it was run from.
    #[error("cannot locate the shim directory: invoked as {argv0:?}, which names no directory and is not found on PATH")]
    Locate { argv0: String },
    /// The shim's configuration file cannot be read.
    #[error("cannot read the shim configuration {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The shim's configuration file is not valid.
    #[error("the shim configuration {path} is invalid: {source}")]
    ConfigDecode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The configuration is well-formed but unusable.
    #[error("the shim configuration {path} is invalid: {reason}")]
    ConfigInvalid { path: PathBuf, reason: String },
    /// The real plugin is not there.
    #[error("the real plugin {path} cannot be run: {source}")]
    RealPluginMissing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The real plugin is the shim itself: running it would loop.
    #[error(
        "the real plugin {path} is the shim itself: the real directory must hold the real plugins"
    )]
    RunsItself {
        /// The path that resolved to the shim.
        path: PathBuf,
    },
    /// The real plugin could not be started.
    #[error("cannot start the real plugin {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The log directory is unsafe or unusable.
    #[error("log directory {path} refused: {reason}")]
    LogDir { path: PathBuf, reason: String },
    /// A file-system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done, as a verb phrase.
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record could not be encoded or decoded.
    #[error("record {path} is invalid: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// No record has this id.
    #[error("no record with id {0:?}")]
    NoSuchRecord(String),
    /// Several records share this id prefix.
    #[error("id {prefix:?} is ambiguous: it matches {}", matches.join(", "))]
    AmbiguousId {
        prefix: String,
        matches: Vec<String>,
    },
    /// A runtime configuration file cannot be edited safely.
    #[error("cannot edit {path}: {reason}")]
    Edit { path: PathBuf, reason: String },
    /// A command the operator asked for cannot be done as asked.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// The CNI error code the pass-through replies with.
    pub fn code(&self) -> u32 {
        match self {
            Error::ConfigDecode { .. } | Error::ConfigInvalid { .. } => code::INVALID_CONFIG,
            Error::Locate { .. } => code::INVALID_ENVIRONMENT,
            _ => code::IO,
        }
    }

    /// Shorthand for [`Error::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
