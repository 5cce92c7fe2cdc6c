//! The shim under a plugin's name: run the real plugin, forward everything, record the call afterwards.
//!
//! The caller's view is the real plugin's: same stdout and stderr bytes, same exit status. The record is written
//! after forwarding, on a thread the shim waits for at most [`RECORD_TIMEOUT`]; nothing about it (a missing,
//! unwritable, full or slow log directory, a panic) reaches the caller. The shim writes nothing of its own to
//! stderr, which belongs to the plugin.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use cni::plugin::{write_reply, Outcome, STDIN_LIMIT};
use cni::ErrorReply;

use crate::capture::{pump, Capture, OnBroken};
use crate::config::{self, ShimConfig, DEFAULT_CAPTURE_BYTES};
use crate::record::{Exit, Payload, Record, FORMAT};
use crate::store::LogDir;
use crate::trace::{self, Source, Span};
use crate::{redact, time, Error};

/// The longest the shim waits for its record to be written before exiting without it.
pub const RECORD_TIMEOUT: Duration = Duration::from_secs(2);

/// What happened, as the caller saw it.
#[derive(Debug, Default)]
pub struct Call {
    /// The runtime's stdin.
    pub stdin: Capture,
    /// What the caller got on stdout.
    pub stdout: Capture,
    /// What the caller got on stderr.
    pub stderr: Capture,
    /// The status the caller got.
    pub exit: Exit,
    /// The real plugin's pid.
    pub child_pid: Option<u32>,
    /// Why the shim answered itself.
    pub error: Option<String>,
}

/// The pass-through's `main`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    // Stderr belongs to the plugin: a bug in the recording must not print there.
    std::panic::set_hook(Box::new(|_| {}));
    let started = SystemTime::now();
    let clock = Instant::now();
    let argv0 = args.first().cloned().unwrap_or_default();
    let plugin = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The environment is read once, here; the real plugin inherits all of it untouched.
    let env = recorded_env(std::env::vars_os());
    let var = |k: &str| env.get(k).map(String::as_str);
    let span = Span::start(var(trace::ENV), var(trace::W3C_ENV));
    let probe = matches!(var("CNI_COMMAND"), Some("VERSION" | "STATUS"));

    let (config, real, outcome) =
        match config::locate_shim_dir(&argv0).and_then(|dir| ShimConfig::load(&dir)) {
            Ok(config) => {
                let real = config.real_dir.join(&plugin);
                let outcome =
                    resolve(&real).and_then(|()| run(&real, &args, &span, config.capture_bytes));
                (Some(config), Some(real), outcome)
            }
            Err(e) => (None, None, Err(e)),
        };
    let limit = config
        .as_ref()
        .map_or(DEFAULT_CAPTURE_BYTES, |c| c.capture_bytes);
    let call = outcome.unwrap_or_else(|e| reply_error(&e, limit));
    let duration = clock.elapsed();
    let code = call.exit.code;

    if let Some(config) = config {
        let quiet = probe && code == 0 && !config.record_probes;
        if let (Some(log_dir), false) = (config.log_dir.clone(), quiet) {
            let meta = Meta {
                env,
                plugin,
                real,
                args,
                span,
                started,
                duration,
            };
            record_with_timeout(log_dir, config, meta, call);
        }
    }
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

/// Checks the real plugin exists and is not the shim itself (a real directory pointing back at the shim).
fn resolve(real: &Path) -> Result<(), Error> {
    let meta = fs::metadata(real).map_err(|source| Error::RealPluginMissing {
        path: real.to_owned(),
        source,
    })?;
    let me = fs::metadata("/proc/self/exe").ok();
    if me.is_some_and(|me| me.dev() == meta.dev() && me.ino() == meta.ino()) {
        return Err(Error::RunsItself {
            path: real.to_owned(),
        });
    }
    Ok(())
}

/// A thread with a small stack: the pumps need little, and mapping the default 2 MiB shows in the shim's
/// overhead.
fn small_thread() -> thread::Builder {
    thread::Builder::new().stack_size(256 * 1024)
}

/// A duplicate of one of our standard descriptors, unbuffered; `None` when it is closed.
fn dup(fd: impl AsFd) -> Option<File> {
    fd.as_fd().try_clone_to_owned().ok().map(File::from)
}

fn lock(m: &Mutex<Capture>) -> std::sync::MutexGuard<'_, Capture> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The real plugin's execve(2), prepared before fork: when the runtime kills the shim (its timeout), the plugin
/// must not live on, as it would not have without the shim. The child asks the kernel for SIGKILL when the shim
/// dies and then makes this very call itself, between fork and exec. The plain execve keeps the failure a runtime
/// would see (a file of no known format fails with ENOEXEC; glibc's execvp, which the standard library would use,
/// runs it through /bin/sh instead).
struct Exec {
    path: std::ffi::CString,
    argv: Vec<std::ffi::CString>,
    envp: Vec<std::ffi::CString>,
    shim: i64,
}

impl Exec {
    /// `None` where an argument or variable holds a NUL byte (the kernel could not take it either; the standard
    /// library's spawn then reports it).
    fn new(real: &Path, args: &[OsString], span: &Span) -> Option<Exec> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = |s: &OsStr| CString::new(s.as_bytes()).ok();
        let mut argv = vec![c(real.as_os_str())?];
        for a in args.iter().skip(1) {
            argv.push(c(a)?);
        }
        let mut envp = Vec::new();
        for (k, v) in std::env::vars_os().filter(|(k, _)| k != trace::ENV) {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            envp.push(c(&kv)?);
        }
        let mut trace_var = OsString::from(trace::ENV);
        trace_var.push("=");
        trace_var.push(span.child_env());
        envp.push(c(&trace_var)?);
        Some(Exec {
            path: c(real.as_os_str())?,
            argv,
            envp,
            shim: i64::from(std::process::id()),
        })
    }

    fn die_with_the_shim(self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        /// Pointers into the strings the closure owns: they live as long as it does and are only read.
        struct Ptrs(Vec<*const libc::c_char>, Vec<*const libc::c_char>);
        // SAFETY: the pointers are read only, in the forked child, and point into strings moved along with them.
        #[allow(unsafe_code)]
        unsafe impl Send for Ptrs {}
        #[allow(unsafe_code)]
        unsafe impl Sync for Ptrs {}
        let null = std::iter::once(std::ptr::null());
        let ptrs = Ptrs(
            self.argv
                .iter()
                .map(|a| a.as_ptr())
                .chain(null.clone())
                .collect(),
            self.envp.iter().map(|e| e.as_ptr()).chain(null).collect(),
        );
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the forked child, after the standard library has set up its descriptors and
        // before its own exec. It calls only prctl, getppid and execve, all async-signal-safe, allocates nothing
        // (the strings and pointer arrays were built before fork) and takes no lock. On success execve does not
        // return; on failure its errno is handed back to the parent as the spawn error.
        unsafe {
            command.pre_exec(move || {
                let (_keep, ptrs) = (&self, &ptrs);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The shim may have died between fork and prctl; then the signal would never come.
                if i64::from(libc::getppid()) != self.shim {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                libc::execve(self.path.as_ptr(), ptrs.0.as_ptr(), ptrs.1.as_ptr());
                Err(io::Error::last_os_error())
            });
        }
    }
}

/// Runs the real plugin, streaming stdin to it and its stdout and stderr to ours, keeping bounded copies.
fn run(real: &Path, args: &[OsString], span: &Span, limit: u64) -> Result<Call, Error> {
    let mut command = Command::new(real);
    command
        .args(args.iter().skip(1))
        .env(trace::ENV, span.child_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(exec) = Exec::new(real, args, span) {
        exec.die_with_the_shim(&mut command);
    }
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        path: real.to_owned(),
        source,
    })?;
    let child_pid = child.id();

    // stdin: forwarded on its own thread, not joined: a caller that never closes stdin must not hold up the exit.
    let stdin_keep = Arc::new(Mutex::new(Capture::new(limit)));
    if let (Some(to), Some(from)) = (child.stdin.take(), dup(io::stdin())) {
        let keep = Arc::clone(&stdin_keep);
        // Only when the system cannot make a thread does this fail; the child then sees stdin closed.
        let _ = small_thread().spawn(move || {
            // A plugin that stops reading (or exits) must not block the runtime's write of its config.
            let _ = pump(from, Some(to), OnBroken::Drain, &mut |b| {
                lock(&keep).push(b)
            });
        });
    }
    let stderr_thread = child.stderr.take().and_then(|from| {
        small_thread()
            .spawn(move || {
                let mut keep = Capture::new(limit);
                let _ = pump(from, dup(io::stderr()), OnBroken::Stop, &mut |b| {
                    keep.push(b)
                });
                keep
            })
            .ok()
    });
    let mut stdout = Capture::new(limit);
    if let Some(from) = child.stdout.take() {
        // A caller that closes its end makes the plugin meet a broken pipe, as it would without the shim.
        let _ = pump(from, dup(io::stdout()), OnBroken::Stop, &mut |b| {
            stdout.push(b)
        });
    }
    let stderr = stderr_thread
        .and_then(|t| t.join().ok())
        .unwrap_or_else(|| Capture::new(limit));
    let (exit, error) = match child.wait() {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => (Exit { code, signal: None }, None),
            (None, Some(sig)) => (
                Exit {
                    code: 128 + sig,
                    signal: Some(sig),
                },
                None,
            ),
            (None, None) => (
                Exit {
                    code: 1,
                    signal: None,
                },
                Some(format!("unknown exit status {status:?}")),
            ),
        },
        Err(e) => (
            Exit {
                code: 1,
                signal: None,
            },
            Some(format!("cannot wait for the real plugin: {e}")),
        ),
    };
    let stdin = lock(&stdin_keep).clone();
    Ok(Call {
        stdin,
        stdout,
        stderr,
        exit,
        child_pid: Some(child_pid),
        error,
    })
}

/// The shim's own reply when it cannot run the real plugin: a CNI error on stdout, in the request's version.
fn reply_error(e: &Error, limit: u64) -> Call {
    let mut stdin = Capture::new(limit);
    let mut bytes = Vec::new();
    if let Some(from) = dup(io::stdin()) {
        let _ = from.take(STDIN_LIMIT).read_to_end(&mut bytes);
    }
    stdin.push(&bytes);
    let version = cni::config::sniff_version(&bytes)
        .filter(|v| v.parse::<cni::Version>().is_ok())
        .unwrap_or_else(|| cni::Version::LATEST.as_str().to_owned());
    let mut out = Vec::new();
    let reply = ErrorReply::new(e.code(), e.to_string());
    let status = write_reply(&mut out, &version, Outcome::Error(reply));
    let code = if status == ExitCode::SUCCESS { 0 } else { 1 };
    if let Some(mut to) = dup(io::stdout()) {
        let _ = io::Write::write_all(&mut to, &out);
    }
    let mut stdout = Capture::new(limit);
    stdout.push(&out);
    Call {
        stdin,
        stdout,
        stderr: Capture::new(limit),
        exit: Exit { code, signal: None },
        child_pid: None,
        error: Some(e.to_string()),
    }
}

/// The variables a record keeps: `CNI_*`, `TRACEPARENT` and `TRACESTATE`. Not the whole environment: it may
/// hold secrets and says nothing about the call.
pub fn recorded_env(vars: impl Iterator<Item = (OsString, OsString)>) -> BTreeMap<String, String> {
    vars.filter(|(k, _)| {
        let k = k.as_encoded_bytes();
        k.starts_with(b"CNI_") || k == b"TRACEPARENT" || k == b"TRACESTATE"
    })
    .map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    })
    .collect()
}

/// What the record needs besides the call.
#[derive(Debug)]
pub struct Meta {
    /// The recorded variables ([`recorded_env`]).
    pub env: BTreeMap<String, String>,
    /// The name the shim ran as.
    pub plugin: String,
    /// The real plugin's path.
    pub real: Option<PathBuf>,
    /// The arguments.
    pub args: Vec<OsString>,
    /// The call's span.
    pub span: Span,
    /// When it started.
    pub started: SystemTime,
    /// How long it took.
    pub duration: Duration,
}

/// Builds the record from the call and the process environment.
pub fn build_record(meta: Meta, call: &Call) -> Record {
    let mut redacted = Vec::new();
    let mut env = meta.env;
    if let Some(args) = env.get_mut("CNI_ARGS") {
        if let Some(clean) = redact::redact_cni_args(args, &mut redacted) {
            *args = clean;
        }
    }
    let var = |k: &str| env.get(k).cloned();
    let (parent_id, parent_source) = match meta.span.parent {
        Some((id, Source::Shim)) => (Some(id), Some("shim".to_owned())),
        Some((id, Source::W3c)) => (Some(id), Some("traceparent".to_owned())),
        None => (None, None),
    };
    let start_unix_ns = time::unix_nanos(meta.started);
    Record {
        format: FORMAT,
        id: meta.span.id,
        trace_id: meta.span.trace_id,
        parent_id,
        parent_source,
        plugin: meta.plugin,
        real_path: meta.real.map(|p| p.to_string_lossy().into_owned()),
        command: var("CNI_COMMAND"),
        container_id: var("CNI_CONTAINERID"),
        ifname: var("CNI_IFNAME"),
        netns: var("CNI_NETNS"),
        cni_args: var("CNI_ARGS"),
        cni_path: var("CNI_PATH"),
        argv: meta
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        stdin: Payload::from_capture(&call.stdin, "stdin", &mut redacted),
        stdout: Payload::from_capture(&call.stdout, "stdout", &mut redacted),
        stderr: Payload::from_capture(&call.stderr, "stderr", &mut redacted),
        env,
        exit: call.exit,
        error: call.error.clone(),
        start: time::rfc3339(start_unix_ns),
        start_unix_ns,
        duration_us: u64::try_from(meta.duration.as_micros()).unwrap_or(u64::MAX),
        pid: std::process::id(),
        child_pid: call.child_pid,
        redacted,
    }
}

/// Writes the record on a thread and waits for it at most [`RECORD_TIMEOUT`]. Every failure is swallowed: the
/// caller's outcome is already decided and the shim has no channel of its own to report on.
fn record_with_timeout(log_dir: PathBuf, config: ShimConfig, meta: Meta, call: Call) {
    let (done, wait) = mpsc::channel();
    let worker = small_thread().spawn(move || {
        let prune = u64::from_str_radix(&meta.span.id, 16)
            .unwrap_or(0)
            .is_multiple_of(u64::from(config.prune_every.max(1)));
        let record = build_record(meta, &call);
        if let Ok(dir) = LogDir::open_for_write(&log_dir) {
            let _ = dir.write(&record);
            if prune {
                let _ = dir.prune(config.max_bytes);
            }
        }
        let _ = done.send(());
    });
    if worker.is_ok() {
        let _ = wait.recv_timeout(RECORD_TIMEOUT);
    }
}

/// The name a plugin symlink must not have: the shim's own.
pub fn is_shim_name(name: &OsStr) -> bool {
    name == crate::BINARY_NAME
}
