//! index2ip's integration tests, one binary for the crate.
//!
//! - `binary`: the built plugin run as a runtime runs it, every verb at every spec version, exact JSON.
//! - `hostile`: inputs that must each give a typed CNI error and never a panic or a silent success.
//! - `cli`: what an operator sees when running it by hand.
//! - `differential`: the original Go plugin and ours on a generated corpus of at least 2,000 cases; every
//!   difference must be one README.md's table lists.
//! - `interop`: Debian's reference macvlan (and ipvlan where the kernel has it) using index2ip as IPAM in network
//!   namespaces, directly and through cnitool (libcni); needs root.

// A failed unwrap or panic here is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod util;

mod binary;
mod cli;
mod differential;
mod hostile;
mod interop;
