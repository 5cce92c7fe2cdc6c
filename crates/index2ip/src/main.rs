//! The `index2ip` binary: a CNI plugin when a runtime calls it, a small planning tool when an operator does.
//!
//! The C runtime calls `main` below directly, without Rust's own start-up (`lang_start`). That start-up checks that
//! stdin, stdout and stderr are open, ignores SIGPIPE and maps an alternate signal stack to report stack overflows:
//! a dozen system calls and three page faults that cost a static index2ip about 15 µs of the 150 µs a call takes on
//! the benchmark's machine, where the whole process start of a program that does nothing is about 75 µs
//! (crates/bench/NOTES.md). None of it serves a plugin: the runtime hands it three pipes, a closed stdout kills
//! it with SIGPIPE instead of an error it could not report anyway, and its stack holds a few frames.
#![no_main]

use std::ffi::{c_char, c_int, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

/// The allocator: see the workspace's Cargo.toml.
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

// `no_mangle` is an unsafe attribute: this symbol replaces the C runtime's `main`, which nothing else in the
// program defines (the crate is `no_main`). The arguments are never read through the pointers.
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let code = run();
    let _ = std::io::stdout().flush();
    if code == ExitCode::SUCCESS {
        0
    } else if code == ExitCode::from(2) {
        2
    } else {
        1
    }
}

fn run() -> ExitCode {
    // Runtimes always set CNI_COMMAND and pass no arguments; an operator does the opposite.
    if std::env::var_os("CNI_COMMAND").is_some() {
        return cni::plugin::serve(&index2ip::Index2ip);
    }
    let args = operator_args();
    if args.is_empty() {
        return cni::plugin::serve(&index2ip::Index2ip);
    }
    index2ip::cli::run(&args)
}

/// The command line past the program's name. Without `lang_start`, the standard library knows the arguments only
/// where glibc hands them to it; elsewhere (musl, the static build) they are read back from the kernel.
fn operator_args() -> Vec<OsString> {
    let from_std: Vec<OsString> = std::env::args_os().collect();
    let all = if from_std.is_empty() {
        std::fs::read("/proc/self/cmdline")
            .map(|raw| {
                raw.split(|&b| b == 0)
                    .map(|arg| OsString::from_vec(arg.to_vec()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    } else {
        from_std
    };
    // /proc/self/cmdline ends with a NUL, which leaves one empty piece after the last argument.
    let end = all.len() - usize::from(all.last().is_some_and(|a| a.is_empty()));
    all.into_iter().take(end).skip(1).collect()
}
