//! Integration tests of the `cni-shim` binary, with fake plugins in temp directories.
//!
//! - `passthrough`: what the caller sees is the real plugin's (exit codes, signals, bytes, errors)
//! - `records`: one intact record per call, trees, safety of the log directory, redaction, the size bound
//! - `faults`: a real plugin that cannot be executed, hangs past the runtime's timeout, or writes a gigabyte; a log
//!   directory replaced by a symbolic link mid-run
//! - `churn`: 256 concurrent calls, with and without the size bound; 10 000 sequential calls (ignored: run by
//!   `scripts/churn.sh`)
//! - `secrets`: a config with a password, a token and embedded kubeconfigs leaves no copy readable by others
//! - `operator`: install/uninstall, logs, show, tree, diff, replay, enable/disable
//! - `netns`: the real macvlan plugin through the shim, in a network namespace (root)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod util;

mod churn;
mod faults;
mod netns;
mod operator;
mod passthrough;
mod records;
mod secrets;
