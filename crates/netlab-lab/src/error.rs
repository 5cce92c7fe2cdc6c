//! What stops the lab.

use std::path::PathBuf;
use std::time::Duration;

/// What stops the lab: each variant says what went wrong and carries what it went wrong with. A plugin's own
/// failure is not one of them: it is an [`crate::exec::ExecError`], recorded against the pod it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system command failed.
    #[error("{command}: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr, or why it could not start.
        reason: String,
    },
    /// A text the lab was handed cannot become the model.
    #[error(transparent)]
    Model(#[from] netlab_model::Error),
    /// The state file is unusable.
    #[error("lab state {}: {reason}", .path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file of the lab's own could not be written or read.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A network namespace's name was taken by someone else between the check and its making.
    #[error("a network namespace named {0} exists already and is not this lab's: remove it (ip netns del {0}) or choose another --name")]
    NetnsTaken(String),
    /// The lab runs as a user other than root.
    #[error("the lab needs root: {why}")]
    NotRoot {
        /// What it needs root for.
        why: &'static str,
    },
    /// A lab of that name is up already.
    #[error("lab {name} is already up (state in {}): run `netlab down` first", .state.display())]
    AlreadyUp {
        /// The lab's name.
        name: String,
        /// Its state file.
        state: PathBuf,
    },
    /// No lab of that name is up.
    #[error("no lab {0} is up: run `netlab up` first")]
    NotUp(String),
    /// A thread for a piece of the work could not start.
    #[error("cannot start a thread for {what}: {source}")]
    ThreadStart {
        /// The work.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A thread doing a piece of the work panicked.
    #[error("{what} failed unexpectedly")]
    ThreadPanicked {
        /// The work.
        what: String,
    },
    /// Fewer rtnetlink sockets came back than namespaces were made.
    #[error("no rtnetlink socket for {0}")]
    NoSocket(&'static str),
    /// Two nodes or pods of the topology would have the same network namespace.
    #[error("{first} and {second} would both have the network namespace {netns}: rename one in the topology")]
    NetnsClash {
        /// The first to claim it.
        first: String,
        /// The second.
        second: String,
        /// The namespace.
        netns: String,
    },
    /// The topology has fewer nodes than the lab counted.
    #[error("no node {0} in the topology")]
    NoNode(usize),
    /// Flannel's network has no subnet left for another node.
    #[error("flannel network {network} has no room for a {n}th /{len} subnet")]
    FlannelFull {
        /// `Network`.
        network: ipnet::Ipv4Net,
        /// The subnet asked for (1-based).
        n: u32,
        /// `SubnetLen`.
        len: u8,
    },
    /// `check`'s TCP listener could not start in a pod.
    #[error("cannot start a listener in {netns}: {source}")]
    Listener {
        /// The pod's network namespace.
        netns: String,
        /// Why.
        source: std::io::Error,
    },
    /// A binary given by path is not there.
    #[error("{name} {}: no such file", .path.display())]
    NoSuchBinary {
        /// Which binary (`index2ip`, `cni-shim`).
        name: String,
        /// The path given.
        path: PathBuf,
    },
    /// A binary is nowhere the lab looks.
    #[error("{0} not found next to netlab, on PATH or in /opt/cni/bin: build it (cargo build -p {0}) or pass its path")]
    BinaryNotFound(String),
    /// netlab cannot name its own executable (which `check` runs in the pods).
    #[error("cannot find netlab's own executable: {0}")]
    OwnExecutable(std::io::Error),
    /// `exec` names a node or pod the lab does not have.
    #[error("no {kind} {target} in lab {lab}; {kind}s: {}", .known.join(", "))]
    NoTarget {
        /// `node` or `pod`.
        kind: &'static str,
        /// The name given.
        target: String,
        /// The lab.
        lab: String,
        /// Those it has.
        known: Vec<String>,
    },
    /// `exec` or `vm-exec` without a command.
    #[error("{0} needs a command after --")]
    NoCommand(&'static str),
    /// The upstream peers are not (all) built.
    #[error("the upstream peers are not built in {}: {} missing; run scripts/upstream.sh (about 8 minutes the first time), pass --peers DIR, or run the emulation with --emulate", .dir.display(), .missing.join(", "))]
    PeersNotBuilt {
        /// Where they were looked for.
        dir: PathBuf,
        /// What is missing.
        missing: Vec<String>,
    },
    /// An option of the emulation that the real control plane does not take.
    #[error("{option} does not apply with --control-plane: {why}")]
    NotWithControlPlane {
        /// The option.
        option: &'static str,
        /// Why, and what to do instead.
        why: &'static str,
    },
    /// A lab without a control plane was asked for its API server.
    #[error("lab {0} runs no control plane (bring it up with `netlab up --control-plane`), or its kubelet has not started")]
    NoControlPlane(String),
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Run {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// No VM image where the lab looked.
    #[error("no VM image (vmlinuz and initramfs.cpio) in {}: build one with scripts/vm-image.sh (as root) or pass --vm-image DIR", .looked.join(", "))]
    NoVmImage {
        /// The directories looked in.
        looked: Vec<String>,
    },
    /// An option of the lab's that the VM's image decides.
    #[error("{option} does not apply with --vm: {why}")]
    NotWithVm {
        /// The option.
        option: &'static str,
        /// What the VM uses instead.
        why: &'static str,
    },
    /// An argument the VM's init cannot carry.
    #[error("{0:?}: an argument for the VM cannot hold a line break")]
    VmArgument(String),
    /// A KVM guest did not reach its init in time, and nothing else was tried.
    #[error("the VM did not reach its init within {} s{console}", .timeout.as_secs())]
    VmNoInit {
        /// The boot timeout.
        timeout: Duration,
        /// The console's last lines.
        console: String,
    },
    /// No accelerator was left to try.
    #[error("no accelerator to try")]
    NoAccelerator,
    /// qemu could not be started.
    #[error("cannot start {}: {source} (apt-get install qemu-system-x86)", .qemu.display())]
    QemuStart {
        /// The qemu binary.
        qemu: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The VM ran past its timeout and was stopped.
    #[error("the VM run took longer than {} s and was stopped{console}", .timeout.as_secs())]
    VmTimeout {
        /// The run's timeout.
        timeout: Duration,
        /// The console's last lines.
        console: String,
    },
    /// qemu exited before the guest's init ran.
    #[error("qemu exited before the guest reached its init{console}")]
    QemuExited {
        /// The console's last lines.
        console: String,
    },
    /// A signal stopped a VM run; what it made is removed.
    #[error("interrupted by a signal: the VM is stopped and what this run made is removed")]
    Interrupted,
    /// The guest stopped without printing netlab's exit status.
    #[error("the VM stopped without netlab's exit status{console}")]
    VmNoStatus {
        /// The console's last lines.
        console: String,
    },
    /// A VM failure, with what qemu wrote on its stderr.
    #[error("{error}; qemu said: {stderr}")]
    Qemu {
        /// The failure.
        error: Box<Error>,
        /// qemu's stderr.
        stderr: String,
    },
}

impl Error {
    /// An I/O failure on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
