//! The shim under a plugin's name: run the real plugin, forward everything, record the call afterwards.
//!
//! The caller's view is the real plugin's: same stdout and stderr bytes, same exit status. The record's file is
//! made on a thread while the plugin runs, and the shim waits for it at most [`RECORD_TIMEOUT`] after the call
//! before writing the record into it ([`Recorder`]). Nothing about the record (a missing, unwritable, full or slow
//! log directory, a panic) reaches the caller. The shim writes nothing of its own to stderr, which belongs to the
//! plugin.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use cni::plugin::{write_reply, Outcome, STDIN_LIMIT};
use cni::ErrorReply;

use rustix::pipe::{pipe_with, PipeFlags};

use crate::capture::{Capture, Ends, Pump, StdinSoFar};
use crate::config::{self, ShimConfig, DEFAULT_CAPTURE_BYTES};
use crate::record::{Exit, Payload, Record, FORMAT};
use crate::spawn::{spawn, Ended, Program};
use crate::store::{Draft, LogDir};
use crate::trace::{self, Source, Span};
use crate::{redact, time, Error};

/// The longest the shim waits for its record to be written before exiting without it.
pub(crate) const RECORD_TIMEOUT: Duration = Duration::from_secs(2);

/// What happened, as the caller saw it.
#[derive(Debug, Default)]
pub(crate) struct Call {
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

    let config = config::locate_shim_dir(&argv0).and_then(|dir| ShimConfig::load(&dir));
    // The record's file is made while the plugin runs. Not for a probe unless probes are recorded: most are not
    // (only failed ones), and a file made and removed for nothing would be work on every probe.
    let early = match &config {
        Ok(c) if !probe || c.record_probes => Recorder::start(c, &span, started),
        _ => None,
    };
    let (config, real, outcome) = match config {
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
    let call = outcome.unwrap_or_else(|e| {
        let nothing_read = StdinSoFar {
            kept: Capture::new(limit),
            ..StdinSoFar::default()
        };
        reply_error(&e, nothing_read)
    });
    let duration = clock.elapsed();
    let code = call.exit.code;

    if let Some(config) = config {
        let quiet = probe && code == 0 && !config.record_probes;
        // A probe that is not to be recorded starts nothing; a failed one starts its recorder now.
        let recorder = match quiet {
            true => None,
            false => early.or_else(|| Recorder::start(&config, &span, started)),
        };
        if let Some(recorder) = recorder {
            let meta = Meta {
                env,
                plugin,
                real,
                args,
                span,
                started,
                duration,
            };
            recorder.finish(meta, &call);
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

/// A thread with a small stack: the record's writer needs little, and mapping the default 2 MiB shows in the
/// shim's overhead.
fn small_thread() -> thread::Builder {
    thread::Builder::new().stack_size(256 * 1024)
}

/// A duplicate of one of our standard descriptors, unbuffered; `None` when it is closed.
fn dup(fd: impl AsFd) -> Option<File> {
    fd.as_fd().try_clone_to_owned().ok().map(File::from)
}

/// The real plugin's program: our own arguments after `argv[0]`, and our environment with the call's span for
/// its children in place of ours. The plain execve keeps the failure a runtime would see (a file of no known
/// format fails with ENOEXEC; glibc's execvp, which the standard library would use, runs it through /bin/sh).
fn program(real: &Path, args: &[OsString], span: &Span) -> io::Result<Program> {
    use std::os::unix::ffi::OsStrExt;
    let mut env: Vec<Vec<u8>> = std::env::vars_os()
        .filter(|(k, _)| k != trace::ENV)
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .collect();
    env.push([trace::ENV.as_bytes(), b"=", span.child_env().as_bytes()].concat());
    Program::new(
        real.as_os_str().as_bytes(),
        args.iter().skip(1).map(|a| a.as_bytes().to_vec()),
        env,
    )
}

/// Runs the real plugin, streaming stdin to it and its stdout and stderr to ours (one thread, one poll loop),
/// keeping bounded copies. The plugin dies with the shim ([`spawn`]).
fn run(real: &Path, args: &[OsString], span: &Span, limit: u64) -> Result<Call, Error> {
    let spawn_error = |source| Error::Spawn {
        path: real.to_owned(),
        source,
    };
    let pipe = || pipe_with(PipeFlags::CLOEXEC).map_err(|e| spawn_error(e.into()));
    let (stdin_r, stdin_w) = pipe()?;
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let (stdin, stdout, stderr) = (io::stdin(), io::stdout(), io::stderr());
    let mut pump = Pump::new(
        Ends {
            caller_in: Some(stdin.as_fd()),
            caller_out: Some(stdout.as_fd()),
            caller_err: Some(stderr.as_fd()),
            child_in: Some(stdin_w),
            child_out: Some(stdout_r),
            child_err: Some(stderr_r),
        },
        limit,
    );
    // What the caller has written already goes into the plugin's pipe before the plugin exists: a config is
    // usually all there, so the plugin reads it, and its end, without waiting for the shim.
    pump.prefill();
    let started = program(real, args, span)
        .and_then(|p| spawn(&p, [stdin_r.as_fd(), stdout_w.as_fd(), stderr_w.as_fd()]));
    // The child has its copies: ours would keep its input open and its outputs from ending.
    drop((stdin_r, stdout_w, stderr_w));
    let child = match started {
        Ok(child) => child,
        Err(e) => return Ok(reply_error(&spawn_error(e), pump.into_stdin())),
    };
    let child_pid = child.id();
    let streams = pump.finish();
    let (exit, error) = match child.wait() {
        Ok(Ended::Exited(code)) => (Exit { code, signal: None }, None),
        Ok(Ended::Killed(sig)) => (
            Exit {
                code: 128 + sig,
                signal: Some(sig),
            },
            None,
        ),
        Err(e) => (
            Exit {
                code: 1,
                signal: None,
            },
            Some(format!("cannot wait for the real plugin: {e}")),
        ),
    };
    Ok(Call {
        stdin: streams.stdin,
        stdout: streams.stdout,
        stderr: streams.stderr,
        exit,
        child_pid: Some(child_pid),
        error,
    })
}

/// The shim's own reply when it cannot run the real plugin: a CNI error on stdout, in the request's version.
/// `so_far` is what was read of the caller's stdin already; the rest, if any, is read here.
fn reply_error(e: &Error, so_far: StdinSoFar) -> Call {
    let StdinSoFar {
        kept: mut stdin,
        mut bytes,
        ended,
    } = so_far;
    if let Some(from) = dup(io::stdin()).filter(|_| !ended) {
        let mut rest = Vec::new();
        let _ = from
            .take(STDIN_LIMIT.saturating_sub(stdin.total))
            .read_to_end(&mut rest);
        stdin.push(&rest);
        bytes.extend_from_slice(&rest);
    }
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
    let limit = stdin.limit();
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
pub(crate) fn recorded_env(
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> BTreeMap<String, String> {
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
pub(crate) struct Meta {
    /// The recorded variables ([`recorded_env`]).
    pub env: BTreeMap<String, String>,
    /// The name the shim ran as.
    pub plugin: String,
    pub real: Option<PathBuf>,
    pub args: Vec<OsString>,
    pub span: Span,
    pub started: SystemTime,
    pub duration: Duration,
}

/// Builds the record from the call and the process environment.
pub(crate) fn build_record(meta: Meta, call: &Call) -> Record {
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

/// The record's preparation: a thread started before the real plugin, which checks the log directory and creates
/// the record's temp file while the plugin runs. The shim waits for it at most [`RECORD_TIMEOUT`] after the call,
/// then serialises the record and writes it into the file itself: a hand-over to the thread would put two
/// wake-ups on the caller's path (about 0.1 ms here), and a directory that just took a new file is one that
/// answers. When this call's turn to prune has come, the thread prunes after the write (so that the bound holds
/// with this record in), and the shim waits for that at most [`RECORD_TIMEOUT`] too. Every failure is
/// swallowed: the caller's outcome is decided by then and the shim has no channel of its own to report on.
struct Recorder {
    ready: mpsc::Receiver<Option<Draft>>,
    /// When this call prunes: tells the thread the record is written, and hears back when the prune is done.
    prune: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
}

impl Recorder {
    /// `None` when records are off or no thread can be made.
    fn start(config: &ShimConfig, span: &Span, started: SystemTime) -> Option<Recorder> {
        let log_dir = config.log_dir.clone()?;
        let stem = Record::stem(time::unix_nanos(started), &span.id);
        let prunes = u64::from_str_radix(&span.id, 16)
            .unwrap_or(0)
            .is_multiple_of(u64::from(config.prune_every.max(1)));
        let max_bytes = config.max_bytes;
        let (send, ready) = mpsc::channel();
        let (written, wait_written) = mpsc::channel();
        let (pruned, wait_pruned) = mpsc::channel();
        small_thread()
            .spawn(move || {
                let dir = LogDir::open_for_write(&log_dir);
                let draft = dir.as_ref().ok().and_then(|d| d.draft(&stem).ok());
                // A shim that no longer waits (a probe not to be recorded) drops the draft, which removes it.
                let _ = send.send(draft);
                if let (true, Ok(dir), Ok(())) = (prunes, dir, wait_written.recv()) {
                    let _ = dir.prune(max_bytes);
                    let _ = pruned.send(());
                }
            })
            .ok()?;
        Some(Recorder {
            ready,
            prune: prunes.then_some((written, wait_pruned)),
        })
    }

    /// Waits for the prepared file, at most [`RECORD_TIMEOUT`], writes the record into it, and lets the thread
    /// prune when it is this call's turn.
    fn finish(self, meta: Meta, call: &Call) {
        let Ok(Some(draft)) = self.ready.recv_timeout(RECORD_TIMEOUT) else {
            return;
        };
        // A bug in building the record must not change the exit status the caller gets.
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            draft.finish(&build_record(meta, call)).is_ok()
        }));
        if let (Ok(true), Some((written, pruned))) = (written, self.prune) {
            if written.send(()).is_ok() {
                let _ = pruned.recv_timeout(RECORD_TIMEOUT);
            }
        }
    }
}
