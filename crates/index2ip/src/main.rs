//! The `index2ip` binary: a CNI plugin when a runtime calls it, a small planning tool when an operator does.

use std::process::ExitCode;

/// The allocator: see the workspace's Cargo.toml.
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> ExitCode {
    // Runtimes always set CNI_COMMAND and pass no arguments; an operator does the opposite.
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if std::env::var_os("CNI_COMMAND").is_none() && !args.is_empty() {
        return index2ip::cli::run(&args);
    }
    cni::plugin::serve(&index2ip::Index2ip)
}
