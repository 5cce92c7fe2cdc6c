//! The Container Network Interface protocol, as index2ip's binaries speak it.
//!
//! Small on purpose: it runs inside every plugin call on a pod's start-up path. It holds
//!
//! - [`Env`]: the `CNI_*` environment, parsed once, with what each verb requires enforced;
//! - [`NetConf`]: the configuration on stdin, unknown keys kept so it round-trips;
//! - [`CniResult`]: one result model rendered in the exact shape of every spec version from 0.1.0 to 1.1.0, and
//!   parsed back from any of them;
//! - [`ErrorReply`] and [`error::code`]: the spec's error object and codes;
//! - [`plugin`]: the plugin side, where [`plugin::serve`] reads the invocation, calls one [`Plugin`] method and
//!   writes the reply with the one function that writes a plugin's stdout.
//!
//! The runtime side (running a plugin or a chain as libcni does) is the lab's, in `netlab-lab`.
//!
//! # Quick start
//!
//! ```no_run
//! use cni::{CniResult, ErrorReply, Plugin, Request};
//!
//! struct Noop;
//!
//! impl Plugin for Noop {
//!     fn add(&self, _req: &Request) -> Result<CniResult, ErrorReply> {
//!         Ok(CniResult::default())
//!     }
//!     fn del(&self, _req: &Request) -> Result<(), ErrorReply> {
//!         Ok(())
//!     }
//!     fn check(&self, _req: &Request) -> Result<(), ErrorReply> {
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     cni::plugin::serve(&Noop)
//! }
//! ```
#![warn(missing_docs)]

pub mod command;
pub mod config;
pub mod env;
pub mod error;
pub mod plugin;
pub mod result;
pub mod version;

pub use command::Command;
pub use config::{Ipam, NetConf};
pub use env::Env;
pub use error::{Error, ErrorReply};
pub use plugin::{Plugin, Request};
pub use result::{CniResult, Dns, Interface, IpConfig, Route, VersionInfo};
pub use version::Version;
