//! Integration tests of the `cni-shim` binary, with fake plugins in temp directories.
//!
//! - `passthrough`: what the caller sees is the real plugin's (exit codes, signals, bytes, errors)
//! - `records`: one intact record per call, trees, safety of the log directory, redaction, the size bound
//! - `operator`: install/uninstall, logs, show, tree, diff, replay, enable/disable
//! - `netns`: the real macvlan plugin through the shim, in a network namespace (root)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod util;

mod netns;
mod operator;
mod passthrough;
mod records;
