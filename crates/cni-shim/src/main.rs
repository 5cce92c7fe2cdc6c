//! `cni-shim`: under its own name the operator tool, under any other name (a symlink in the shim directory) a
//! transparent pass-through to the real plugin of that name.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Dispatch on the name before anything else: the pass-through sits on every pod's start-up and must not pay
    // for the operator tool's argument parser.
    if cni_shim::invoked_as_operator(&args) {
        cni_shim::operator_main(args)
    } else {
        cni_shim::passthrough_main(args)
    }
}
