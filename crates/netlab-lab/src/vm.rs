//! `run --vm`: the lab inside a small VM booted from Debian's stock kernel, whose ipvlan is real (issue 8).
//!
//! `scripts/vm-image.sh` builds the kernel and an initramfs holding busybox, the Debian tools and reference plugins
//! the lab drives, netlab, index2ip and cni-shim. `run --vm` appends a second archive with what this run needs (the
//! arguments, the topology file, the manifests) and boots it under `qemu-system-x86_64`: KVM where `/dev/kvm` works
//! and the guest reaches its init in time, software emulation otherwise. The image's init runs `netlab run` and
//! prints its exit status; the serial console comes back here line by line, and that status is the verdict.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::verbs::LabArgs;
use crate::Error;

/// What the image's init prints before anything else, once the kernel has started it.
pub const BEGIN: &str = "NETLAB-VM-BEGIN";
/// What the image's init prints with `netlab run`'s exit status.
pub const EXIT: &str = "NETLAB-VM-EXIT=";
/// The VM's memory by default.
pub const MEMORY_MIB: u32 = 1024;
/// How many times slower than the host the VM's lab is taken to be ([`crate::sys::TIME_SCALE`]): software
/// emulation runs the lab's programs about ten times slower.
pub const TIME_SCALE: u32 = 10;
/// Where `scripts/vm-image.sh` keeps the last image it built, below a cargo target directory.
pub const CURRENT: &str = "vm/current";

/// Set by SIGINT, SIGTERM or SIGHUP once [`watch_signals`] ran: a VM run then stops the VM and removes what it made,
/// instead of dying with the initrd and a control plane left in place.
fn interrupted() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Turns the termination signals into [`interrupted`]'s flag for the rest of the process.
fn watch_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            // Failing to register leaves the default action: the run dies as it did before.
            let _ = signal_hook::flag::register(signal, Arc::clone(interrupted()));
        }
    });
}

/// [`Error::Interrupted`] once a signal came.
fn check_interrupted() -> Result<(), Error> {
    match interrupted().load(Ordering::Relaxed) {
        true => Err(Error::Interrupted),
        false => Ok(()),
    }
}

/// How the VM is accelerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when `/dev/kvm` opens and the guest reaches its init within the boot timeout; else software.
    Auto,
    /// KVM only.
    Kvm,
    /// Software emulation (TCG) only.
    Tcg,
}

impl Accel {
    fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg | Accel::Auto => "tcg",
        }
    }
}

/// How to run the VM.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The image directory (`vmlinuz`, `initramfs.cpio`); found as [`find_image`] says when not given.
    pub image: Option<PathBuf>,
    /// The accelerator.
    pub accel: Accel,
    /// How long the kernel may take to start the image's init under KVM before software emulation is tried.
    pub boot_timeout: Duration,
    /// How long the whole run may take.
    pub timeout: Duration,
    /// The VM's memory ([`MEMORY_MIB`] when not given).
    pub memory_mib: Option<u32>,
    /// A network card on qemu's user network: the guest's `eth0` (the image's init gives it 10.0.2.15/24), from
    /// which this machine's loopback is 10.0.2.2.
    pub user_network: bool,
    /// qemu.
    pub qemu: PathBuf,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            image: None,
            accel: Accel::Auto,
            boot_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(1800),
            memory_mib: None,
            user_network: false,
            qemu: PathBuf::from("qemu-system-x86_64"),
        }
    }
}

/// What a VM run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exit status of what ran inside the VM (`netlab run`, or `vm-exec`'s command).
    pub status: u8,
    /// The accelerator that ran it.
    pub accel: &'static str,
    /// From starting qemu to the image's init.
    pub boot: Duration,
    /// From starting qemu to its exit.
    pub total: Duration,
}

/// The image directory: `given`, else `vm/current` in a cargo target directory above this executable (where
/// `cargo build` put it), else `target/vm/current` below the current directory.
pub fn find_image(given: Option<&Path>) -> Result<PathBuf, Error> {
    let candidates: Vec<PathBuf> = match given {
        Some(p) => vec![p.to_owned()],
        None => {
            let exe = std::env::current_exe().ok();
            let above = exe
                .iter()
                .flat_map(|e| e.ancestors().skip(1).take(3))
                .map(|d| d.join(CURRENT));
            above.chain([Path::new("target").join(CURRENT)]).collect()
        }
    };
    candidates
        .iter()
        .find(|d| d.join("vmlinuz").is_file() && d.join("initramfs.cpio").is_file())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            Error::NoVmImage { looked }
        })
}

/// Runs `netlab run` with `args` inside the VM, streaming its output to `out`. Without `args.control_plane`, the
/// VM runs the emulated lab. With it, the control plane runs on this machine, where it costs a tenth of a core,
/// and the VM runs the nodes with the upstream peers, reaching the API server through qemu's user network: under
/// software emulation the control plane does not fit in the VM as well (crates/netlab/README.md).
pub fn run(args: &LabArgs, vm: &VmOptions, out: &mut dyn Write) -> Result<Outcome, Error> {
    if args.index2ip.is_some() {
        return Err(Error::NotWithVm {
            option: "--index2ip",
            why: "the VM runs the index2ip of its image (scripts/vm-image.sh --bin-dir)",
        });
    }
    if args.reference_dir.is_some() {
        return Err(Error::NotWithVm {
            option: "--plugins",
            why: "the VM runs the reference plugins of its image",
        });
    }
    if matches!(args.trace, Some(Some(_))) {
        return Err(Error::NotWithVm {
            option: "--trace=PATH",
            why: "the VM traces through the cni-shim of its image (use --trace)",
        });
    }
    // The image first: without one nothing else matters.
    find_image(vm.image.as_deref())?;
    watch_signals();
    match &args.control_plane {
        None => boot_with(&run_archive(args, None)?, "netlab run", vm, out),
        Some(peers) => run_with_control_plane_here(args, peers, vm, out),
    }
}

/// Where the VM's lab finds the credentials of the control plane outside.
const REMOTE_DIR: &str = "/vm/cp";
/// Where the VM's lab finds the upstream peers its nodes run.
const PEERS_DIR: &str = "/vm/peers";
/// This machine's loopback as qemu's user network shows it to the guest.
const HOST_FROM_GUEST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 2);
/// The VM's memory by default when its nodes run the upstream peers (about 170 MB of them in its archive).
pub const MEMORY_MIB_PEERS: u32 = 3072;

/// A directory removed, with everything in it, when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The control plane on this machine, in a namespace of its own, reached from the VM through a port on this
/// machine's loopback; the rest of the lab in the VM. Everything made here goes when this returns.
fn run_with_control_plane_here(
    args: &LabArgs,
    peers: &Path,
    vm: &VmOptions,
    out: &mut dyn Write,
) -> Result<Outcome, Error> {
    use crate::control_plane::{ControlPlane, Options, API_PORT};
    use crate::real::API_ADDRESS;

    let peers = crate::real::peers_ready(peers, true)?;
    let topology = match &args.topology {
        None => netlab_model::topology::Topology::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            netlab_model::topology::Topology::from_text(&p.display().to_string(), &text)?
        }
    };
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "netlab-vm-{}-{}",
        args.name,
        std::process::id()
    )));
    let netns = format!("{}-vmcp", args.name);
    let started = Instant::now();
    let _ = writeln!(
        out,
        "==> control plane on this machine (namespace {netns}); the nodes in the VM"
    );
    let cp = ControlPlane::start(
        &peers,
        &scratch.0.join("cp"),
        &netns,
        &Options {
            controllers: true,
            address: Some(API_ADDRESS),
            nodes: topology.nodes.iter().map(|n| n.name.clone()).collect(),
            slow_nodes: TIME_SCALE,
        },
    )?;
    // A signal during the start: the control plane goes now, with `cp`.
    check_interrupted()?;
    let listener = crate::forward::listen()?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let into = netns.clone();
    // This thread enters the control plane's namespace and serves there until the process ends: the connections
    // it makes are made from there.
    std::thread::spawn(move || {
        if crate::sys::enter_netns(&into).is_ok() {
            crate::forward::serve(
                listener,
                std::net::SocketAddr::from((API_ADDRESS, API_PORT)),
            );
        }
    });
    let _ = writeln!(
        out,
        "    etcd, kube-apiserver {}, controller manager, scheduler ready in {:.1} s; the VM reaches it at {HOST_FROM_GUEST}:{port}",
        cp.server(),
        started.elapsed().as_secs_f64()
    );
    let remote = scratch.0.join("vm-cp");
    cp.export_credentials(&remote, Path::new(REMOTE_DIR))?;
    let upstream = remote.join(crate::real::UPSTREAM_FILE);
    std::fs::write(&upstream, format!("{HOST_FROM_GUEST}:{port}\n"))
        .map_err(|e| Error::io(&upstream, e))?;
    let archive = run_archive(args, Some((&remote, &peers)))?;
    let vm = VmOptions {
        memory_mib: Some(vm.memory_mib.unwrap_or(MEMORY_MIB_PEERS)),
        user_network: true,
        ..vm.clone()
    };
    let outcome = boot_with(&archive, "netlab run", &vm, out);
    // The control plane's processes and namespace, then the scratch directory.
    drop(cp);
    drop(scratch);
    outcome
}

/// Runs `cmd` inside the VM with the files of `ship` (and the shared libraries `ldd` names for them) at their own
/// paths, streaming its output to `out`: a test binary built on this machine can run its kernel-dependent tests
/// there.
pub fn exec(
    ship: &[PathBuf],
    cmd: &[String],
    vm: &VmOptions,
    out: &mut dyn Write,
) -> Result<Outcome, Error> {
    if cmd.is_empty() {
        return Err(Error::NoCommand("vm-exec"));
    }
    watch_signals();
    let mut cpio = Cpio::default();
    let mut files: std::collections::BTreeMap<PathBuf, PathBuf> = std::collections::BTreeMap::new();
    for f in ship {
        let abs = std::path::absolute(f).map_err(|e| Error::io(f, e))?;
        for lib in libraries(&abs) {
            files.insert(merged_usr(&lib), lib);
        }
        files.insert(merged_usr(&abs), abs);
    }
    // Directories first (sorted, so parents before children), then the files.
    let mut dirs = std::collections::BTreeSet::new();
    let mut contents = Vec::new();
    for (dest, src) in &files {
        let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
        let rel = dest.strip_prefix("/").unwrap_or(dest);
        for d in rel
            .ancestors()
            .skip(1)
            .filter(|d| !d.as_os_str().is_empty())
        {
            dirs.insert(d.to_owned());
        }
        contents.push((rel.display().to_string(), bytes));
    }
    for d in dirs {
        cpio.dir(&d.display().to_string());
    }
    for (name, bytes) in contents {
        cpio.entry(&name, 0o100_755, &bytes);
    }
    cpio.dir("vm");
    cpio.file("vm/args", args_file(cmd)?.as_bytes());
    boot_with(&cpio.finish(), &cmd[0], vm, out)
}

/// Where `path` is in the image, whose `/bin`, `/sbin`, `/lib` and `/lib64` are links into `/usr`: the kernel
/// replaces a link by a directory of the same name in an archive unpacked after it, so nothing may be shipped
/// through one.
fn merged_usr(path: &Path) -> PathBuf {
    let first = path.components().nth(1);
    match first {
        Some(std::path::Component::Normal(top))
            if ["bin", "sbin", "lib", "lib64"].iter().any(|d| top == *d) =>
        {
            Path::new("/usr").join(path.strip_prefix("/").unwrap_or(path))
        }
        _ => path.to_owned(),
    }
}

/// The shared libraries (and loader) `ldd` names for `file`; none for a static one.
fn libraries(file: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("ldd").arg(file).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.trim().split(' ').next()?,
                None => l.split(' ').next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// `/vm/args`: the program and its arguments, one a line.
fn args_file(argv: &[String]) -> Result<String, Error> {
    if let Some(bad) = argv.iter().find(|a| a.contains('\n')) {
        return Err(Error::VmArgument(bad.clone()));
    }
    Ok(format!("{}\n", argv.join("\n")))
}

/// Boots the image with `extra` appended, with KVM first where it may work.
fn boot_with(
    extra: &[u8],
    what: &str,
    vm: &VmOptions,
    out: &mut dyn Write,
) -> Result<Outcome, Error> {
    let image = find_image(vm.image.as_deref())?;
    let release = std::fs::read_to_string(image.join("kernel-release"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "(unknown)".into());
    let initrd = Initrd::write(&image, extra)?;

    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let tries: Vec<Accel> = match vm.accel {
        Accel::Tcg => vec![Accel::Tcg],
        Accel::Kvm => vec![Accel::Kvm],
        Accel::Auto if kvm_usable => vec![Accel::Kvm, Accel::Tcg],
        Accel::Auto => vec![Accel::Tcg],
    };
    let mut last = None;
    for (i, accel) in tries.iter().enumerate() {
        let _ = writeln!(
            out,
            "==> VM: booting kernel {release} (image {}) under {} -accel {}",
            image.display(),
            vm.qemu.display(),
            accel.name()
        );
        match boot(&image, &initrd.path, *accel, vm, out) {
            Ok(outcome) => {
                let _ = writeln!(
                    out,
                    "==> VM: kernel {release}, -accel {}: init after {:.1} s, done after {:.1} s; {what} exited {}",
                    outcome.accel,
                    outcome.boot.as_secs_f64(),
                    outcome.total.as_secs_f64(),
                    outcome.status
                );
                return Ok(outcome);
            }
            Err(Boot::NoInit(console)) if i + 1 < tries.len() => {
                let _ = writeln!(
                    out,
                    "==> VM: the guest did not reach its init within {} s under -accel {}; trying -accel {}{}",
                    vm.boot_timeout.as_secs(),
                    accel.name(),
                    tries[i + 1].name(),
                    tail(&console)
                );
            }
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    Err(match last {
        Some(Boot::NoInit(console)) => Error::VmNoInit {
            timeout: vm.boot_timeout,
            console: tail(&console),
        },
        Some(Boot::Failed(e)) => e,
        None => Error::NoAccelerator,
    })
}

/// The last lines of what the console showed, for an error.
fn tail(console: &[String]) -> String {
    if console.is_empty() {
        return String::new();
    }
    let from = console.len().saturating_sub(20);
    format!(
        "; the console's last lines:\n{}",
        console[from..].join("\n")
    )
}

enum Boot {
    /// The guest never printed [`BEGIN`]: what the console showed.
    NoInit(Vec<String>),
    /// Anything else.
    Failed(Error),
}

/// qemu, killed when dropped.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn boot(
    image: &Path,
    initrd: &Path,
    accel: Accel,
    vm: &VmOptions,
    out: &mut dyn Write,
) -> Result<Outcome, Boot> {
    let mut cmd = Command::new(&vm.qemu);
    cmd.args(["-accel", accel.name()]);
    if accel == Accel::Kvm {
        cmd.args(["-cpu", "host"]);
    }
    let memory = vm.memory_mib.unwrap_or(MEMORY_MIB);
    cmd.args(["-m", &memory.to_string(), "-smp", "2"]).args([
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
    ]);
    if vm.user_network {
        cmd.args([
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ]);
    }
    cmd.args(["-display", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(initrd)
        // Errors only from the kernel; panic reboots, and -no-reboot turns that into qemu's exit.
        .args(["-append", "console=ttyS0 loglevel=3 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| {
        Boot::Failed(Error::QemuStart {
            qemu: vm.qemu.clone(),
            source,
        })
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let qemu = Qemu(child);
    let lines = read_lines(stdout);
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let outcome = follow(&lines, started, accel, vm, out);
    drop(qemu);
    let qemu_errors = errors.join().unwrap_or_default();
    match outcome {
        Err(Boot::Failed(error)) if !qemu_errors.trim().is_empty() => {
            Err(Boot::Failed(Error::Qemu {
                error: Box::new(error),
                stderr: qemu_errors.trim().to_owned(),
            }))
        }
        other => other,
    }
}

/// Reads the console until the guest's exit status, forwarding what its init prints.
fn follow(
    lines: &Receiver<String>,
    started: Instant,
    accel: Accel,
    vm: &VmOptions,
    out: &mut dyn Write,
) -> Result<Outcome, Boot> {
    let mut console = Vec::new();
    let mut boot = None;
    loop {
        let limit = if boot.is_none() && accel == Accel::Kvm {
            vm.boot_timeout
        } else {
            vm.timeout
        };
        if interrupted().load(Ordering::Relaxed) {
            return Err(Boot::Failed(Error::Interrupted));
        }
        let left = limit.saturating_sub(started.elapsed());
        // Woken at least this often to notice a signal.
        let tick = Duration::from_millis(250);
        match lines.recv_timeout(left.min(tick)) {
            Ok(line) => {
                if boot.is_none() {
                    if line.contains(BEGIN) {
                        boot = Some(started.elapsed());
                    } else {
                        console.push(line);
                    }
                    continue;
                }
                // The marker may follow output that did not end its line.
                if let Some(at) = line.rfind(EXIT) {
                    let (before, code) = line.split_at(at);
                    if !before.is_empty() {
                        let _ = writeln!(out, "{before}");
                    }
                    let status = code
                        .trim_start_matches(EXIT)
                        .trim()
                        .parse::<u8>()
                        .unwrap_or(2);
                    return Ok(Outcome {
                        status,
                        accel: accel.name(),
                        boot: boot.unwrap_or_default(),
                        total: started.elapsed(),
                    });
                }
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
                console.push(line);
            }
            // A signal (also qemu's, killed by the same Ctrl-C): the run stops here, and its owners clean up.
            Err(_) if interrupted().load(Ordering::Relaxed) => {
                return Err(Boot::Failed(Error::Interrupted));
            }
            Err(RecvTimeoutError::Timeout) if started.elapsed() < limit => {}
            Err(RecvTimeoutError::Timeout) if boot.is_none() && accel == Accel::Kvm => {
                return Err(Boot::NoInit(console));
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(Boot::Failed(Error::VmTimeout {
                    timeout: vm.timeout,
                    console: tail(&console),
                }));
            }
            Err(RecvTimeoutError::Disconnected) if boot.is_none() => {
                return Err(Boot::Failed(Error::QemuExited {
                    console: tail(&console),
                }));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Boot::Failed(Error::VmNoStatus {
                    console: tail(&console),
                }));
            }
        }
    }
}

/// The console's lines, as they come, without the serial line's carriage returns.
fn read_lines(stdout: Option<impl Read + Send + 'static>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Some(stdout) = stdout else {
            return;
        };
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .replace('\r', "");
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The image's initramfs with this run's archive appended (the kernel unpacks concatenated archives in turn),
/// in a temporary file removed when dropped.
struct Initrd {
    path: PathBuf,
}

impl Initrd {
    fn write(image: &Path, extra: &[u8]) -> Result<Initrd, Error> {
        let base_path = image.join("initramfs.cpio");
        let mut bytes = std::fs::read(&base_path).map_err(|e| Error::io(&base_path, e))?;
        // Each archive of a concatenation must start at a multiple of four.
        while !bytes.len().is_multiple_of(4) {
            bytes.push(0);
        }
        bytes.extend_from_slice(extra);
        let path = std::env::temp_dir().join(format!(
            "netlab-vm-{}-{}.initrd",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        Ok(Initrd { path })
    }
}

impl Drop for Initrd {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The archive this run adds under `/vm`: `args` (one argument of `netlab` per line), the topology and the
/// manifests.
pub fn run_archive(args: &LabArgs, remote: Option<(&Path, &Path)>) -> Result<Vec<u8>, Error> {
    let mut cpio = Cpio::default();
    cpio.dir("vm");
    let mut argv: Vec<String> = vec![
        "env".into(),
        format!("{}={TIME_SCALE}", crate::sys::TIME_SCALE),
        "netlab".into(),
        "run".into(),
    ];
    match remote {
        None => argv.push("--emulate".into()),
        Some((credentials, peers)) => {
            cpio.dir(REMOTE_DIR.trim_start_matches('/'));
            add_tree(&mut cpio, credentials, REMOTE_DIR.trim_start_matches('/'))?;
            cpio.dir(PEERS_DIR.trim_start_matches('/'));
            for name in crate::real::NODE_PEERS {
                let path = peers.join(name);
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                cpio.entry(
                    &format!("{}/{name}", PEERS_DIR.trim_start_matches('/')),
                    0o100_755,
                    &bytes,
                );
            }
            argv.extend([
                "--peers".into(),
                PEERS_DIR.into(),
                "--remote-control-plane".into(),
                REMOTE_DIR.into(),
            ]);
        }
    }
    argv.extend(["--name".into(), args.name.clone()]);
    if let Some(t) = &args.topology {
        let text = std::fs::read(t).map_err(|e| Error::io(t, e))?;
        cpio.file("vm/topology.yaml", &text);
        argv.extend(["--topology".into(), "/vm/topology.yaml".into()]);
    }
    let m = &args.manifests;
    let meta = std::fs::metadata(m).map_err(|e| Error::io(m, e))?;
    cpio.dir("vm/manifests");
    if meta.is_dir() {
        add_tree(&mut cpio, m, "vm/manifests")?;
        argv.extend(["--manifests".into(), "/vm/manifests".into()]);
    } else {
        let name = m.file_name().map_or("manifests.yaml".into(), |n| {
            n.to_string_lossy().into_owned()
        });
        let text = std::fs::read(m).map_err(|e| Error::io(m, e))?;
        cpio.file(&format!("vm/manifests/{name}"), &text);
        argv.extend(["--manifests".into(), format!("/vm/manifests/{name}")]);
    }
    if args.trace.is_some() {
        argv.push("--trace".into());
    }
    cpio.file("vm/args", args_file(&argv)?.as_bytes());
    Ok(cpio.finish())
}

/// Adds the files below `dir` (following symbolic links), sorted, as `prefix/...`.
fn add_tree(cpio: &mut Cpio, dir: &Path, prefix: &str) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let path = e.path();
        let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
        let meta = std::fs::metadata(&path).map_err(|err| Error::io(&path, err))?;
        if meta.is_dir() {
            cpio.dir(&name);
            add_tree(cpio, &path, &name)?;
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).map_err(|err| Error::io(&path, err))?;
            cpio.file(&name, &bytes);
        }
    }
    Ok(())
}

/// A cpio archive in the kernel's initramfs format ("newc"), owned by root, time zero.
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.inode += 1;
        let nlink = if mode & 0o040_000 != 0 { 2 } else { 1 };
        let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let fields = [
            self.inode, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }

    fn file(&mut self, name: &str, data: &[u8]) {
        self.entry(name, 0o100_644, data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.inode = 0;
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_aligned_and_end_with_the_trailer() {
        let mut c = Cpio::default();
        c.dir("vm");
        c.file("vm/args", b"run\n");
        let bytes = c.finish();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        // The second header starts at a multiple of four and names vm/args with its size.
        let text = String::from_utf8_lossy(&bytes);
        let second = text.match_indices("070701").nth(1).unwrap().0;
        assert_eq!(second % 4, 0);
        assert_eq!(&text[second + 6 + 6 * 8..second + 6 + 7 * 8], "00000004");
        assert!(text.contains("vm/args\0"));
        assert!(text.contains("TRAILER!!!\0"));
    }

    #[test]
    fn the_run_archive_carries_the_arguments_and_the_manifests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.yaml"), "kind: X\n").unwrap();
        let args = LabArgs {
            name: "lab1".into(),
            topology: None,
            manifests: dir.path().to_owned(),
            index2ip: None,
            reference_dir: None,
            trace: Some(None),
            control_plane: None,
            remote_control_plane: None,
        };
        let bytes = run_archive(&args, None).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("vm/manifests/sub/a.yaml\0"));
        assert!(text.contains(
            "env\nNETLAB_TIME_SCALE=10\nnetlab\nrun\n--emulate\n--name\nlab1\n--manifests\n/vm/manifests\n--trace\n"
        ));
    }

    #[test]
    fn with_a_control_plane_outside_the_archive_carries_the_node_peers_and_its_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("k8s");
        std::fs::create_dir(&manifests).unwrap();
        std::fs::write(manifests.join("a.yaml"), "kind: X\n").unwrap();
        let peers = dir.path().join("peers");
        std::fs::create_dir(&peers).unwrap();
        for p in crate::real::NODE_PEERS {
            std::fs::write(peers.join(p), format!("binary {p}")).unwrap();
        }
        let credentials = dir.path().join("vm-cp");
        std::fs::create_dir_all(credentials.join("nodes")).unwrap();
        std::fs::write(credentials.join("upstream"), "10.0.2.2:40000\n").unwrap();
        std::fs::write(credentials.join("nodes/mlab1.kubeconfig"), "k").unwrap();
        let args = LabArgs {
            name: "lab1".into(),
            topology: None,
            manifests,
            index2ip: None,
            reference_dir: None,
            trace: None,
            control_plane: Some(peers.clone()),
            remote_control_plane: None,
        };
        let bytes = run_archive(&args, Some((&credentials, &peers))).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(
            "env\nNETLAB_TIME_SCALE=10\nnetlab\nrun\n--peers\n/vm/peers\n--remote-control-plane\n/vm/cp\n--name\nlab1\n"
        ), "{text}");
        assert!(!text.contains("--emulate"));
        for p in crate::real::NODE_PEERS {
            assert!(text.contains(&format!("vm/peers/{p}\0")), "{p}");
        }
        // The control plane's own programs stay here.
        assert!(!text.contains("kube-apiserver"));
        assert!(text.contains("vm/cp/upstream\0") && text.contains("10.0.2.2:40000"));
        assert!(text.contains("vm/cp/nodes/mlab1.kubeconfig\0"));
    }

    #[test]
    fn shipped_files_go_through_usr_where_the_image_links_into_it() {
        let at = |p: &str| merged_usr(Path::new(p)).display().to_string();
        assert_eq!(
            at("/lib64/ld-linux-x86-64.so.2"),
            "/usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(
            at("/lib/x86_64-linux-gnu/libc.so.6"),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(at("/bin/sh"), "/usr/bin/sh");
        assert_eq!(at("/library/x"), "/library/x");
        assert_eq!(at("/work/target/debug/netlab"), "/work/target/debug/netlab");
        assert_eq!(at("/usr/lib/cni/ipvlan"), "/usr/lib/cni/ipvlan");
    }
}
