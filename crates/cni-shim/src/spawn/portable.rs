//! The portable path: `std::process`, no `unsafe`, and no parent-death signal (see [`super`]).

use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use super::{Ended, Program};

/// A started child, to be waited for.
#[derive(Debug)]
pub(crate) struct Child(std::process::Child);

impl Child {
    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }

    pub(crate) fn wait(mut self) -> io::Result<Ended> {
        let status = self.0.wait()?;
        match (status.code(), status.signal()) {
            (Some(code), _) => Ok(Ended::Exited(code)),
            (None, Some(signal)) => Ok(Ended::Killed(signal)),
            (None, None) => Err(io::Error::other(format!(
                "the plugin ended oddly: {status}"
            ))),
        }
    }
}

/// Starts `program` with `stdio` as its standard input, output and error, with the environment it names only.
/// The standard library gives the child a default SIGPIPE and an empty signal mask. Errors are the caller's or
/// the child's `execve` errno, as on the fast path.
pub(crate) fn spawn(program: &Program, stdio: [BorrowedFd<'_>; 3]) -> io::Result<Child> {
    let os = |c: &std::ffi::CString| OsStr::from_bytes(c.as_bytes()).to_owned();
    let [stdin, stdout, stderr] = stdio;
    let mut command = Command::new(os(&program.path));
    command
        .args(program.argv.iter().skip(1).map(os))
        .env_clear()
        .stdin(Stdio::from(stdin.try_clone_to_owned()?))
        .stdout(Stdio::from(stdout.try_clone_to_owned()?))
        .stderr(Stdio::from(stderr.try_clone_to_owned()?));
    for entry in &program.envp {
        let bytes = entry.as_bytes();
        let at = bytes.iter().position(|&b| b == b'=').unwrap_or(bytes.len());
        let value = bytes.get(at + 1..).unwrap_or_default();
        command.env(OsStr::from_bytes(&bytes[..at]), OsStr::from_bytes(value));
    }
    command.spawn().map(Child)
}
