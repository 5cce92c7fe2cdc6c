//! `cni-shim-passthrough`: the shim under a plugin's name, and nothing else. Every link `cni-shim install` makes
//! points here, so a pod's start-up loads only the pass-through's code; the operator tool is `cni-shim`.

use std::process::ExitCode;

fn main() -> ExitCode {
    cni_shim::passthrough_main(std::env::args_os().collect())
}
