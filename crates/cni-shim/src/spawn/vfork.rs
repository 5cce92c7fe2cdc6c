//! The fast path: a `CLONE_VM | CLONE_VFORK` child, as `posix_spawn` makes one, that asks for `PR_SET_PDEATHSIG`
//! before its `execve`.
//!
//! The standard library runs such a step only after a full `fork`, which copies the shim's page tables and makes
//! each page the shim writes afterwards fault once: 55 to 90 µs a call on the benchmark's machine
//! (crates/bench/NOTES.md). Here the child shares the shim's memory (`CLONE_VM`) on a stack of its own, makes only
//! system calls, and the calling thread is suspended until the `execve` (`CLONE_VFORK`).
//!
//! The one place in cni-shim with `unsafe` code; each block says why it holds. It is compiled only where the
//! kernel's `struct sigaction` and signal set are the ones written out below (Linux on x86_64 and aarch64: see
//! [`super`]). Written for musl (the shipped static build) and glibc 2.25 or later: older glibc had a `CLONE_VM`
//! child overwrite its parent's cached thread id.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::io::fcntl_dupfd_cloexec;
use rustix::process::{waitpid, Pid, WaitOptions};

use super::{Ended, Program};

/// A started child, to be waited for.
#[derive(Debug)]
pub(crate) struct Child {
    pid: Pid,
}

impl Child {
    pub(crate) fn id(&self) -> u32 {
        self.pid.as_raw_pid().unsigned_abs()
    }

    /// Waits for the child to end; interrupted waits are retried.
    pub(crate) fn wait(self) -> io::Result<Ended> {
        loop {
            match waitpid(Some(self.pid), WaitOptions::empty()) {
                Ok(Some((_, status))) => {
                    if let Some(code) = status.exit_status() {
                        return Ok(Ended::Exited(code));
                    }
                    if let Some(signal) = status.terminating_signal() {
                        return Ok(Ended::Killed(signal));
                    }
                    // Stopped or continued: not asked for, so not reported; wait on.
                }
                Ok(None) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What the child reads, on the child's own stack, from memory it shares with the suspended caller.
struct Shared {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    stdio: [c_int; 3],
    parent: libc::pid_t,
    /// The errno of the step that failed, written by the child before it exits; 0 when it reached its program.
    error: AtomicI32,
}

/// The child's stack: it makes a handful of system calls through libc and returns nowhere.
const STACK: usize = 32 * 1024;

/// Starts `program` with `stdio` as its standard input, output and error, a default SIGPIPE, an empty signal mask
/// and SIGKILL due when the calling thread ends. The descriptors are the caller's to close afterwards. An error
/// is the caller's (no memory, no process) or the child's own errno from the step that failed (`execve`'s ENOENT,
/// ENOEXEC, EACCES ...); such a child has been reaped.
pub(crate) fn spawn(program: &Program, stdio: [BorrowedFd<'_>; 3]) -> io::Result<Child> {
    // A descriptor below 3 would be overwritten by another's dup2 in the child: move it up first.
    let mut moved: Vec<OwnedFd> = Vec::new();
    let mut raw = [0; 3];
    for (slot, fd) in raw.iter_mut().zip(stdio) {
        *slot = match fd.as_raw_fd() {
            low if low < 3 => {
                let up = fcntl_dupfd_cloexec(fd, 3)?;
                let up_raw = up.as_raw_fd();
                moved.push(up);
                up_raw
            }
            n => n,
        };
    }
    let null = std::iter::once(std::ptr::null());
    let argv: Vec<*const c_char> = program
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(null.clone())
        .collect();
    let envp: Vec<*const c_char> = program
        .envp
        .iter()
        .map(|e| e.as_ptr())
        .chain(null)
        .collect();
    let shared = Shared {
        path: program.path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        stdio: raw,
        parent: libc::pid_t::try_from(std::process::id()).unwrap_or(-1),
        error: AtomicI32::new(0),
    };
    let mut stack = vec![0u8; STACK];
    // The stack grows down: start at its 16-byte aligned top.
    let top = stack.as_mut_ptr().wrapping_add(STACK);
    let top = top.wrapping_sub(top.addr() % 16);

    let pid = {
        // Every signal blocked on this thread while the child shares its memory, so that no handler of the shim's
        // runs in the child before the child has reset it; the child inherits the blocked mask and empties it just
        // before execve, and this thread's old mask is restored below whatever clone returns.
        let old = block_every_signal();
        // SAFETY: `child` runs on `stack`, which outlives it: with CLONE_VFORK this thread is suspended until the
        // child has called execve or exited, and `stack`, `shared`, `argv`, `envp` and `program` are dropped only
        // after that. The child only reads `shared` and the strings it points to, which nothing writes meanwhile,
        // and writes `shared.error`, an atomic read here only after clone returns. Other threads of the shim go
        // on; the child touches none of their data, takes no lock and allocates nothing.
        let pid = unsafe {
            libc::clone(
                child,
                top.cast::<c_void>(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                std::ptr::from_ref(&shared).cast_mut().cast::<c_void>(),
            )
        };
        let clone_error = io::Error::last_os_error();
        set_signal_mask(&old);
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    drop(stack);
    drop(moved);
    let child = Child {
        pid: Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?,
    };
    match shared.error.load(Ordering::Acquire) {
        0 => Ok(child),
        errno => {
            // It exited with 127 without running anything; reap it so that no zombie is left.
            let _ = child.wait();
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// The child, between clone and execve. Returns only through `_exit` or the program it becomes.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Shared` that `spawn` passed to clone and keeps alive until this child has exec'd or
    // exited (see there); it is only read here, apart from the atomic.
    let shared = unsafe { &*arg.cast_const().cast::<Shared>() };
    // SAFETY: only async-signal-safe system calls on descriptors and C strings prepared before clone; no
    // allocation, no lock, nothing of the parent's changed but the atomic and errno, which the parent does not
    // read across clone. SIGPIPE's disposition is the child's own copy (no CLONE_SIGHAND): the standard library
    // ignores SIGPIPE in the shim, and an ignored signal would stay ignored across execve.
    let errno = unsafe {
        'setup: {
            for (target, &fd) in (0..3).zip(&shared.stdio) {
                // Every source is at 3 or above, so no dup2 overwrites another's source; the copies are
                // inherited (dup2 clears close-on-exec), the sources are not.
                if libc::dup2(fd, target) < 0 {
                    break 'setup errno();
                }
            }
            // Every handler back to the default before any signal can be delivered: a handler of the shim's would
            // run here, on memory the shim is suspended on. The standard library ignores SIGPIPE in the shim, and
            // an ignored signal would stay ignored across execve: the plugin gets the default. Other ignored
            // signals stay ignored, as they would through any exec. Raw system calls: libc's sigaction takes a
            // lock for SIGABRT (musl, recent glibc), in memory another thread of the shim may hold it in.
            for signal in 1..SIGNALS {
                let Some(action) = kernel_sigaction(signal, None) else {
                    continue;
                };
                let handled = action.handler != libc::SIG_DFL && action.handler != libc::SIG_IGN;
                if handled || signal == libc::SIGPIPE {
                    kernel_sigaction(signal, Some(&KernelSigaction::DEFAULT));
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                break 'setup errno();
            }
            // The shim may have died before prctl; then the signal would never come.
            if libc::getppid() != shared.parent {
                break 'setup libc::ESRCH;
            }
            set_signal_mask(&0);
            libc::execve(shared.path, shared.argv, shared.envp);
            errno()
        }
    };
    shared.error.store(errno.max(1), Ordering::Release);
    // SAFETY: ends the child without running anything of the parent's (no atexit handlers, no flushing).
    unsafe { libc::_exit(127) }
}

/// Signals 1 to 64: the kernel's set on x86_64 and aarch64, real-time ones included (libc's own among them).
const SIGNALS: c_int = 65;

/// The kernel's `struct sigaction` (x86_64 and aarch64 alike, both with a restorer), not libc's.
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

impl KernelSigaction {
    const DEFAULT: KernelSigaction = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
}

/// rt_sigaction(2) for one signal: sets `new` when given, and returns the previous action; `None` when the kernel
/// refuses (SIGKILL and SIGSTOP cannot be set; nothing here asks to).
fn kernel_sigaction(signal: c_int, new: Option<&KernelSigaction>) -> Option<KernelSigaction> {
    let mut old = KernelSigaction::DEFAULT;
    let new = new.map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: the kernel reads a whole `KernelSigaction` from `new` when it is not null and writes one to `old`,
    // both valid for the call and laid out as the kernel's struct; the mask is the kernel's 8 bytes. A handler of
    // SIG_DFL needs no restorer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            new,
            std::ptr::from_mut(&mut old),
            std::mem::size_of::<u64>(),
        )
    };
    (r == 0).then_some(old)
}

/// Blocks every signal on the calling thread, libc's own included (its `sigfillset` leaves those out), and returns
/// the old mask: the raw system call, as `posix_spawn` does.
fn block_every_signal() -> u64 {
    let mut old = 0u64;
    set_mask(&!0, Some(&mut old));
    old
}

/// Sets the calling thread's signal mask (a kernel sigset: one bit a signal).
fn set_signal_mask(mask: &u64) {
    set_mask(mask, None);
}

fn set_mask(mask: &u64, old: Option<&mut u64>) {
    let old = old.map_or(std::ptr::null_mut(), std::ptr::from_mut);
    // SAFETY: rt_sigprocmask reads 8 bytes of `mask` and writes 8 bytes to `old` when it is not null, both valid
    // for the call; it fails only on bad arguments, which these are not, and SIGKILL and SIGSTOP stay unblockable
    // whatever the mask says.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            std::ptr::from_ref(mask),
            old,
            std::mem::size_of::<u64>(),
        );
    }
}

/// The calling thread's errno: in the child, the one of its last failed call.
fn errno() -> c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}
