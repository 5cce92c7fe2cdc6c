//! A transparent CNI debugging shim.
//!
//! A shim directory holds one symlink per real plugin, each pointing at the pass-through binary
//! (`cni-shim-passthrough`) that `install` copies beside them. A runtime pointed at that directory runs the shim
//! under the plugin's name; the shim runs the real plugin with the same arguments,
//! environment and stdin, forwards its stdout and stderr byte for byte, exits with its status, and afterwards writes
//! one record of the call. Delegated calls (a main plugin running its IPAM through `CNI_PATH`) go through the shim
//! too and are linked to their parent, so that a pod's set-up reads as one tree.
//!
//! Under its own name (`cni-shim`) the main binary is the operator tool: `install`, `uninstall`, `enable`, `disable`,
//! `logs`, `show`, `tree`, `diff`, `replay`.
//!
//! # Quick start
//!
//! ```text
//! cni-shim install --real-dir /opt/cni/bin --shim-dir /opt/cni-shim/bin --log-dir /var/log/cni-shim
//! cni-shim enable containerd          # prints the restart command
//! cni-shim logs --failed
//! cni-shim tree CONTAINER_ID
//! ```
#![warn(missing_docs)]

mod atomic;
mod capture;
mod cli;
mod commands;
pub mod config;
mod error;
mod passthrough;
mod record;
mod redact;
mod spawn;
mod store;
mod time;
mod trace;

pub use cli::main as operator_main;
pub use config::ShimConfig;
pub use error::Error;
pub use passthrough::main as passthrough_main;
pub use record::{Exit, Payload, Record, FORMAT};

use std::ffi::OsString;
use std::path::Path;

/// The main binary's own name: invoked under it, it is the operator tool.
pub const BINARY_NAME: &str = "cni-shim";

/// The pass-through binary's name: the target of every plugin link in a shim directory. Shipped beside
/// [`BINARY_NAME`], from which `install` copies it.
pub const PASSTHROUGH_NAME: &str = "cni-shim-passthrough";

/// Whether `argv[0]` names the operator tool rather than a plugin.
pub fn invoked_as_operator(args: &[OsString]) -> bool {
    args.first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|name| name == BINARY_NAME)
}
