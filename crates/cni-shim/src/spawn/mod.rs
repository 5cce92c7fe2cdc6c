//! Starting the real plugin so that it dies with the shim, at the cost of `posix_spawn` rather than of `fork`.
//!
//! A runtime that times a call out kills the shim. Without the shim it would have killed the plugin, so the plugin
//! must not live on: between its creation and its `execve` it asks the kernel for SIGKILL when the shim goes
//! (`PR_SET_PDEATHSIG`).
//!
//! Two ways, chosen at build time:
//!
//! - Linux on x86_64 and aarch64 ([`vfork`]): a `posix_spawn`-like child that asks for the signal itself. Hand
//!   written and `unsafe`, because the standard library's only way to run a step in the child (`pre_exec`) costs
//!   a full `fork`: 55 to 90 µs a call measured (crates/bench/NOTES.md). It resets signal handlers through the
//!   kernel's own `struct sigaction`, whose layout differs between architectures, so it is fenced to the two
//!   whose layout it spells out.
//! - Everywhere else, and with the `portable-spawn` feature (which runs the whole test suite through this path on
//!   any machine; its unit tests run in every test build): `std::process`, no `unsafe`. There the plugin does
//!   **not** die with a killed shim: the standard library has no safe way to set `PR_SET_PDEATHSIG` in the child.
//!   A runtime's timeout then leaves the plugin running to its own end, as an orphan; its output goes nowhere.

use std::ffi::CString;
use std::io;

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(feature = "portable-spawn")
))]
mod vfork;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(feature = "portable-spawn")
))]
pub(crate) use vfork::spawn;

// Also built for the unit tests everywhere, so that the fallback is tested on every machine that runs them.
#[cfg(any(
    test,
    not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64"),
        not(feature = "portable-spawn")
    ))
))]
mod portable;
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(feature = "portable-spawn")
)))]
pub(crate) use portable::spawn;

/// A program and what it runs with, as C strings prepared before the child exists.
#[derive(Debug)]
pub(crate) struct Program {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl Program {
    /// `argv[0]` is `path`; `env` holds `KEY=value` entries. An interior NUL byte, which no `execve` could carry
    /// either, is an `InvalidInput` error.
    pub(crate) fn new(
        path: &[u8],
        args: impl IntoIterator<Item = Vec<u8>>,
        env: impl IntoIterator<Item = Vec<u8>>,
    ) -> io::Result<Program> {
        let c = |bytes: Vec<u8>| {
            CString::new(bytes).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an argument or environment variable holds a NUL byte",
                )
            })
        };
        let path = c(path.to_vec())?;
        let mut argv = vec![path.clone()];
        for a in args {
            argv.push(c(a)?);
        }
        let envp = env.into_iter().map(c).collect::<io::Result<_>>()?;
        Ok(Program { path, argv, envp })
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Killed(i32),
}

/// The same tests for each way of starting a plugin that this build has.
#[cfg(test)]
macro_rules! spawn_tests {
    ($name:ident, $spawn:path) => {
        mod $name {
            use $spawn as spawn;

            use super::{io, Ended, Program};
            use std::io::{Read, Write};
            use std::os::fd::AsFd;
            use std::os::fd::OwnedFd;

            fn pipe() -> (OwnedFd, OwnedFd) {
                let (r, w) = std::io::pipe().unwrap();
                (r.into(), w.into())
            }

            #[test]
            fn the_program_gets_its_arguments_environment_and_descriptors() {
                let script =
                    r#"read line; echo "$line $0 $1 $GREETING"; echo to-stderr >&2; exit 7"#;
                let program = Program::new(
                    b"/bin/sh",
                    [b"-c".to_vec(), script.as_bytes().to_vec(), b"one".to_vec()],
                    [b"GREETING=hello".to_vec()],
                )
                .unwrap();
                let (in_r, in_w) = pipe();
                let (out_r, out_w) = pipe();
                let (err_r, err_w) = pipe();
                std::fs::File::from(in_w).write_all(b"input\n").unwrap();
                let child = spawn(&program, [in_r.as_fd(), out_w.as_fd(), err_w.as_fd()]).unwrap();
                assert!(child.id() > 1);
                drop((in_r, out_w, err_w));
                let (mut out, mut err) = (String::new(), String::new());
                std::fs::File::from(out_r).read_to_string(&mut out).unwrap();
                std::fs::File::from(err_r).read_to_string(&mut err).unwrap();
                assert_eq!(child.wait().unwrap(), Ended::Exited(7));
                assert_eq!(out, "input one  hello\n");
                assert_eq!(err, "to-stderr\n");
            }

            #[test]
            fn a_signal_that_kills_the_program_is_reported() {
                let program =
                    Program::new(b"/bin/sh", [b"-c".to_vec(), b"kill -9 $$".to_vec()], []).unwrap();
                let (r, w) = pipe();
                let child = spawn(&program, [r.as_fd(), w.as_fd(), w.as_fd()]).unwrap();
                assert_eq!(child.wait().unwrap(), Ended::Killed(libc::SIGKILL));
            }

            #[test]
            fn a_program_that_cannot_run_is_its_execve_error() {
                let dir = tempfile::tempdir().unwrap();
                let garbage = dir.path().join("garbage");
                std::fs::write(&garbage, [0u8, 1, 2, 3]).unwrap();
                std::fs::set_permissions(
                    &garbage,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .unwrap();
                let (r, w) = pipe();
                for (path, errno) in [
                    (b"/nonexistent/plugin".to_vec(), libc::ENOENT),
                    (
                        dir.path().as_os_str().as_encoded_bytes().to_vec(),
                        libc::EACCES,
                    ),
                    (
                        garbage.as_os_str().as_encoded_bytes().to_vec(),
                        libc::ENOEXEC,
                    ),
                ] {
                    let program = Program::new(&path, [], []).unwrap();
                    // A test on another thread forking while `garbage` was open for writing here holds it open for a
                    // moment (ETXTBSY): try again then.
                    let mut e = spawn(&program, [r.as_fd(), w.as_fd(), w.as_fd()]).unwrap_err();
                    for _ in 0..50 {
                        if e.raw_os_error() != Some(libc::ETXTBSY) {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        e = spawn(&program, [r.as_fd(), w.as_fd(), w.as_fd()]).unwrap_err();
                    }
                    assert_eq!(e.raw_os_error(), Some(errno), "{e}");
                }
            }

            #[test]
            fn a_nul_byte_is_refused_before_anything_starts() {
                let e = Program::new(b"/bin/true", [b"a\0b".to_vec()], []).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            }
        }
    };
}

#[cfg(all(
    test,
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(feature = "portable-spawn")
))]
spawn_tests!(vfork_tests, super::vfork::spawn);
#[cfg(test)]
spawn_tests!(portable_tests, super::portable::spawn);
