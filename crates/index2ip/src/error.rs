//! Everything index2ip can refuse, with the CNI code each maps to.

use std::path::PathBuf;

use cni::error::code;
use cni::ErrorReply;

use crate::{AllocError, KeysError};

/// index2ip's own codes (the spec leaves 100 and above to plugins).
pub mod codes {
    /// The node's keys are missing or malformed.
    pub const NODE_KEYS: u32 = 100;
    /// The index gives no usable address on this node.
    pub const INDEX_RANGE: u32 = 101;
    /// CHECK found a `prevResult` that differs from what the index gives.
    pub const CHECK_MISMATCH: u32 = 102;
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither `ipam.index` nor the pod's name gives an index.
    #[error("no index: set ipam.index in the network config{}", match pod {
        Some(p) => format!(" (pod name {p:?} holds no index<N> to fall back on)"),
        None => " (CNI_ARGS has no K8S_POD_NAME to fall back on)".to_owned(),
    })]
    NoIndex {
        /// The pod's name, where `CNI_ARGS` gave one.
        pod: Option<String>,
    },
    /// `ipam.index` is not a positive integer.
    #[error("ipam.index must be a positive integer below 2^32, got {value}")]
    InvalidIndex {
        /// The value as written.
        value: String,
    },
    /// The pod's name holds `index` followed by digits that are no valid index.
    #[error("pod name {pod:?} holds index{digits}, which is not a valid index (1 to 4294967295)")]
    InvalidPodIndex {
        /// `K8S_POD_NAME` from `CNI_ARGS`.
        pod: String,
        /// The digits after `index`.
        digits: String,
    },
    /// `ipam.cmdline` is not a string.
    #[error("ipam.cmdline must be the path of a file in kernel command-line syntax, got {0}")]
    InvalidCmdlinePath(String),
    /// The command-line file could not be read.
    #[error("cannot read the node's keys from {path}: {source}")]
    ReadKeys {
        /// `ipam.cmdline`, or [`DEFAULT_CMDLINE`](crate::plugin::DEFAULT_CMDLINE) where it is unset.
        path: PathBuf,
        /// The read's error; every kind is answered with code 5 (I/O).
        #[source]
        source: std::io::Error,
    },
    /// The command-line file does not hold usable keys.
    #[error("node keys in {path}: {source}")]
    Keys {
        /// `ipam.cmdline`, or [`DEFAULT_CMDLINE`](crate::plugin::DEFAULT_CMDLINE) where it is unset.
        path: PathBuf,
        /// What is wrong with them.
        #[source]
        source: KeysError,
    },
    /// The index gives no usable address.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// CHECK was called without `prevResult`.
    #[error("CHECK needs prevResult: the runtime must pass the result of ADD")]
    NoPrevResult,
    /// `prevResult` does not decode.
    #[error("prevResult is not a valid result: {0}")]
    InvalidPrevResult(#[source] serde_json::Error),
    /// `prevResult` differs from what the index gives.
    #[error("prevResult lacks {missing}, which index {index} gives on this node")]
    CheckMismatch {
        /// What is missing from it.
        missing: String,
        /// The index the request resolves to (`ipam.index`, else the pod's name).
        index: crate::Index,
    },
}

impl Error {
    /// The CNI error code.
    pub fn code(&self) -> u32 {
        match self {
            Error::NoIndex { .. }
            | Error::InvalidIndex { .. }
            | Error::InvalidPodIndex { .. }
            | Error::InvalidCmdlinePath(_)
            | Error::NoPrevResult
            | Error::InvalidPrevResult(_) => code::INVALID_CONFIG,
            Error::ReadKeys { .. } => code::IO,
            Error::Keys { .. } => codes::NODE_KEYS,
            Error::Alloc(_) => codes::INDEX_RANGE,
            Error::CheckMismatch { .. } => codes::CHECK_MISMATCH,
        }
    }
}

impl From<Error> for ErrorReply {
    fn from(e: Error) -> ErrorReply {
        ErrorReply::new(e.code(), e.to_string())
    }
}
