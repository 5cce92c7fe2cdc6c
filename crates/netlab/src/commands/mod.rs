//! netlab's commands, one file each: the flags it takes (typed by clap) and the one library call it makes.

mod args;
mod check;
mod down;
mod exec;
mod gen;
mod internal;
mod kubeconfig;
mod lint;
mod run;
mod status;
mod up;
mod vm_exec;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The operator tool of index2ip's cluster network.
#[derive(Parser)]
#[command(name = "netlab", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the generated manifests (index networks, flannel and multus configuration) below the repository root.
    Gen(gen::Gen),
    /// Check manifests and a node inventory before applying them.
    Lint(lint::Lint),
    /// Bring a small cluster's pod networking up on this machine, in network namespaces, from the manifests (root).
    ///
    /// Nodes come from the topology (default: a /26 site with four physical machines, one virtual node and one
    /// unlabelled node); pods from the manifests' DaemonSets plus a plain pod per node. The real reference plugins
    /// and index2ip run every attachment; multus and flannel semantics are the lab's own.
    Up(args::LabOpts),
    /// Show every node and pod with its interfaces and addresses.
    Status(status::Status),
    /// Print the path of an administrator's kubeconfig for a lab on the real control plane:
    /// `kubectl --kubeconfig "$(netlab kubeconfig)" get pods -A -o wide`.
    Kubeconfig(args::Name),
    /// Check the lab end to end: pod to pod over flannel, the internet to every public address over TCP, net1 only
    /// where asked for, every address as index2ip computes it. Exit 1 when a check fails.
    Check(args::Name),
    /// Run a command in a pod's network namespace (`netlab exec POD -- ip addr`), or with --node in a node's
    /// network and mount namespaces, where /proc/cmdline, /etc/cni/net.d, /var/lib/cni and /run/flannel are that
    /// node's (`netlab exec --node mlab1 -- cat /proc/cmdline`).
    Exec(exec::Exec),
    /// DEL every attachment in reverse, remove everything the lab made, and report anything that leaked.
    /// Idempotent; works after a crash from the state file. Exit 1 when anything leaked.
    Down(args::Name),
    /// up, status, check and down in one; exits with the check's status (1 also when anything leaked).
    ///
    /// With --vm all of it runs inside a VM booted from Debian's stock kernel (built by scripts/vm-image.sh),
    /// where ipvlan is real.
    Run(run::Run),
    /// Run a command inside the lab's VM (the image scripts/vm-image.sh builds), with files of this machine at
    /// their own paths: `netlab vm-exec --ship target/debug/deps/tests-HASH -- target/debug/deps/tests-HASH
    /// interop::ipvlan` runs a test binary's kernel-dependent tests on a kernel with ipvlan. Exits with the
    /// command's status.
    VmExec(vm_exec::VmExec),
    /// (internal) a pod's TCP listener for `check`.
    #[command(name = "__listen", hide = true)]
    Listen(internal::Args),
    /// (internal) the internet client's TCP probe for `check`.
    #[command(name = "__connect", hide = true)]
    Connect(internal::Args),
    /// (internal) the site router's IPv6 router advertisements.
    #[command(name = "__ra", hide = true)]
    Ra(internal::Args),
    /// (internal) the lab's kubelet on the real control plane, and a VM's relay to it.
    #[command(name = "internal", hide = true, subcommand)]
    Internal(internal::Internal),
}

impl Cli {
    /// Runs the command; its exit status, or what stopped it (exit status 2).
    pub fn run(self) -> Result<ExitCode> {
        let out = &mut std::io::stdout();
        match self.command {
            Command::Gen(c) => c.run(),
            Command::Lint(c) => c.run(),
            Command::Up(c) => up::run(c, out),
            Command::Status(c) => c.run(out),
            Command::Kubeconfig(c) => kubeconfig::run(c, out),
            Command::Check(c) => check::run(c, out),
            Command::Exec(c) => c.run(),
            Command::Down(c) => down::run(c, out),
            Command::Run(c) => c.run(out),
            Command::VmExec(c) => c.run(out),
            Command::Listen(c) => Ok(netlab_lab::check::listen_main(&c.args)),
            Command::Connect(c) => Ok(netlab_lab::check::connect_main(&c.args)),
            Command::Ra(c) => Ok(netlab_lab::ra::ra_main(&c.args)),
            Command::Internal(internal::Internal::Kubelet { name }) => {
                netlab_lab::kubelet::run(&name)?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Internal(internal::Internal::Relay { netns, listen, to }) => {
                netlab_lab::forward::relay(&netns, listen, to)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// Exit status 0 when `ok`, else 1.
fn verdict(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
