//! The `netlab` command: parse the flags, run one library function, render the outcome.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use netlab::input::Render;
use netlab::lab::cli as lab;
use netlab::lab::vm::Accel;
use netlab::lint::Options;
use netlab::site::SiteBlock;
use netlab::{gen, NodesFrom};

/// The operator tool of index2ip's cluster network.
#[derive(Parser)]
#[command(name = "netlab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the generated manifests (index networks, flannel and multus configuration) below the repository root.
    Gen {
        /// The repository root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Change nothing; exit 1 and name the files that differ from what would be written.
        #[arg(long)]
        check: bool,
    },
    /// Check manifests and a node inventory before applying them.
    Lint {
        /// Manifest files or directories (a directory with a kustomization follows its resources); `-` reads
        /// standard input, such as `kubectl kustomize k8s` output. Each is an apply unit of its own (one
        /// `kubectl apply`); the default is the two of scripts/apply.sh.
        #[arg(default_values = ["k8s/crds", "k8s"])]
        paths: Vec<PathBuf>,
        /// A node inventory (`kubectl get nodes -o json` output); `-` reads standard input.
        #[arg(long, value_name = "FILE|-")]
        nodes: Option<PathBuf>,
        /// The output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// How a directory with a kustomization is read: `direct` follows its resources and reads each file
        /// (findings carry file:line); `kubectl` runs `kubectl kustomize DIR` and lints the rendered stream.
        #[arg(long, value_enum, default_value_t = RenderArg::Direct)]
        render: RenderArg,
        /// The site block whose size fixes the indices per machine: /26 (12, the default), /28 (11) or /29 (3).
        #[arg(long, value_name = "[ADDR]/LEN")]
        site_block: Option<String>,
        /// Print the rules and exit.
        #[arg(long)]
        list_rules: bool,
    },
    /// Bring a small cluster's pod networking up on this machine, in network namespaces, from the manifests (root).
    ///
    /// Nodes come from the topology (default: a /26 site with four physical machines, one virtual node and one
    /// unlabelled node); pods from the manifests' DaemonSets plus a plain pod per node. The real reference plugins
    /// and index2ip run every attachment; multus and flannel semantics are the lab's own.
    Up(LabOpts),
    /// Show every node and pod with its interfaces and addresses.
    Status {
        #[command(flatten)]
        name: Name,
        /// Also print each pod's k8s.v1.cni.cncf.io/network-status annotation, as multus would write it.
        #[arg(long)]
        network_status: bool,
    },
    /// Check the lab end to end: pod to pod over flannel, the internet to every public address over TCP, net1 only
    /// where asked for, every address as index2ip computes it. Exit 1 when a check fails.
    Check(Name),
    /// Run a command in a pod's network namespace (`netlab exec POD -- ip addr`), or with --node in a node's
    /// network and mount namespaces, where /proc/cmdline, /etc/cni/net.d, /var/lib/cni and /run/flannel are that
    /// node's (`netlab exec --node mlab1 -- cat /proc/cmdline`).
    Exec {
        #[command(flatten)]
        name: Name,
        /// TARGET is a node, not a pod.
        #[arg(long)]
        node: bool,
        /// The pod (`name` or `namespace/name`), or the node with --node.
        #[arg(value_name = "TARGET")]
        pod: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// DEL every attachment in reverse, remove everything the lab made, and report anything that leaked.
    /// Idempotent; works after a crash from the state file. Exit 1 when anything leaked.
    Down(Name),
    /// up, status, check and down in one; exits with the check's status (1 also when anything leaked).
    ///
    /// With --vm all of it runs inside a VM booted from Debian's stock kernel (built by scripts/vm-image.sh),
    /// where ipvlan is real.
    Run(RunOpts),
    /// Run a command inside the lab's VM (the image scripts/vm-image.sh builds), with files of this machine at
    /// their own paths: `netlab vm-exec --ship target/debug/deps/tests-HASH -- target/debug/deps/tests-HASH
    /// interop::ipvlan` runs a test binary's kernel-dependent tests on a kernel with ipvlan. Exits with the
    /// command's status.
    VmExec {
        #[command(flatten)]
        vm: VmOpts,
        /// A file to put into the VM at its own absolute path, with the shared libraries ldd names for it.
        #[arg(long, value_name = "PATH")]
        ship: Vec<PathBuf>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// (internal) a pod's TCP listener for `check`.
    #[command(name = "__listen", hide = true)]
    Listen { args: Vec<String> },
    /// (internal) the internet client's TCP probe for `check`.
    #[command(name = "__connect", hide = true)]
    Connect { args: Vec<String> },
}

#[derive(clap::Args)]
struct Name {
    /// The lab's name: its namespaces are NAME-..., its state /run/netlab/NAME.
    #[arg(long, default_value = "netlab")]
    name: String,
}

#[derive(clap::Args)]
struct LabOpts {
    #[command(flatten)]
    name: Name,
    /// A topology file (YAML): site block, nodes with labels and offsets, extra pods.
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// The manifests (a kustomize directory is followed through its resources).
    #[arg(long, value_name = "DIR", default_value = "k8s")]
    manifests: PathBuf,
    /// The index2ip binary (default: next to netlab, on PATH, or /opt/cni/bin).
    #[arg(long, value_name = "PATH")]
    index2ip: Option<PathBuf>,
    /// Debian's reference CNI plugins.
    #[arg(long, value_name = "DIR", default_value = "/usr/lib/cni")]
    plugins: PathBuf,
    /// Record every plugin call, delegated ones included, through cni-shim (found next to netlab, on PATH or in
    /// /opt/cni/bin, or given); `run` prints a pod's call tree, and `cni-shim tree --shim-dir
    /// /run/netlab/NAME/shim` reads them while the lab is up.
    #[arg(long, value_name = "CNI_SHIM", num_args = 0..=1, require_equals = true)]
    trace: Option<Option<PathBuf>>,
}

#[derive(clap::Args)]
struct RunOpts {
    #[command(flatten)]
    lab: LabOpts,
    /// Run inside a VM booted under qemu from the image scripts/vm-image.sh builds: Debian's stock kernel, whose
    /// ipvlan the index networks then use as written.
    #[arg(long)]
    vm: bool,
    #[command(flatten)]
    vm_opts: VmOpts,
}

#[derive(clap::Args)]
struct VmOpts {
    /// The VM image (default: vm/current in the cargo target directory holding netlab, or target/vm/current).
    #[arg(long, value_name = "DIR")]
    vm_image: Option<PathBuf>,
    /// The VM's accelerator: kvm where it boots (tried first for --vm-boot-timeout seconds), else tcg.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    vm_accel: AccelArg,
    /// Seconds a KVM guest may take to reach its init before software emulation is tried.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    vm_boot_timeout: u64,
    /// Seconds the whole VM run may take.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    vm_timeout: u64,
}

impl VmOpts {
    fn options(self) -> netlab::lab::vm::VmOptions {
        netlab::lab::vm::VmOptions {
            image: self.vm_image,
            accel: match self.vm_accel {
                AccelArg::Auto => Accel::Auto,
                AccelArg::Kvm => Accel::Kvm,
                AccelArg::Tcg => Accel::Tcg,
            },
            boot_timeout: Duration::from_secs(self.vm_boot_timeout),
            timeout: Duration::from_secs(self.vm_timeout),
            ..Default::default()
        }
    }

    fn given(&self) -> bool {
        self.vm_image.is_some()
            || !matches!(self.vm_accel, AccelArg::Auto)
            || self.vm_boot_timeout != 10
            || self.vm_timeout != 900
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

impl LabOpts {
    fn args(self) -> netlab::lab::cli::LabArgs {
        netlab::lab::cli::LabArgs {
            name: self.name.name,
            topology: self.topology,
            manifests: self.manifests,
            index2ip: self.index2ip,
            reference_dir: self.plugins,
            trace: self.trace,
        }
    }
}

fn verdict(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum RenderArg {
    Direct,
    Kubectl,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netlab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Gen { root, check } => {
            if !root.join("Cargo.toml").is_file() || !root.join("crates").is_dir() {
                bail!(
                    "{} is not the repository root (no Cargo.toml and crates/): pass --root",
                    root.display()
                );
            }
            if check {
                let drift = gen::check(&root).context("checking generated files")?;
                for d in &drift {
                    println!("{d}");
                }
                if drift.is_empty() {
                    println!(
                        "netlab gen --check: {} generated files are current",
                        gen::files().len()
                    );
                    Ok(ExitCode::SUCCESS)
                } else {
                    println!("netlab gen --check: {} files differ; run `netlab gen` and commit the result", drift.len());
                    Ok(ExitCode::from(1))
                }
            } else {
                let drift = gen::write(&root).context("writing generated files")?;
                for d in &drift {
                    println!("updated {d}");
                }
                println!(
                    "netlab gen: {} files written, {} generated files in all",
                    drift.len(),
                    gen::files().len()
                );
                Ok(ExitCode::SUCCESS)
            }
        }
        Command::Lint {
            paths,
            nodes,
            format,
            render,
            site_block,
            list_rules,
        } => {
            if list_rules {
                print!("{}", netlab::lint::rules_table());
                return Ok(ExitCode::SUCCESS);
            }
            let site_block = match site_block {
                Some(s) => SiteBlock::parse(&s)?,
                None => SiteBlock::default(),
            };
            let nodes = nodes.map(|p| {
                if p.as_os_str() == "-" {
                    NodesFrom::Stdin
                } else {
                    NodesFrom::File(p)
                }
            });
            if matches!(nodes, Some(NodesFrom::Stdin)) && paths.iter().any(|p| p.as_os_str() == "-")
            {
                bail!("standard input cannot hold both the manifests and the node inventory");
            }
            let render = match render {
                RenderArg::Direct => Render::Direct,
                RenderArg::Kubectl => Render::Kubectl,
            };
            let report = netlab::run_lint(&paths, render, nodes, Options { site_block })?;
            match format {
                Format::Text => print!("{}", report.to_text()),
                Format::Json => println!("{}", report.to_json()),
            }
            Ok(if report.failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Up(opts) => {
            lab::up(&opts.args(), &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            name,
            network_status,
        } => {
            lab::status(&name.name, network_status, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(n) => Ok(verdict(lab::check(&n.name, &mut std::io::stdout())?)),
        Command::Exec {
            name,
            node,
            pod,
            cmd,
        } => Ok(lab::exec(&name.name, node, &pod, &cmd)?),
        Command::Down(n) => Ok(verdict(lab::down(&n.name, &mut std::io::stdout())?)),
        Command::Run(opts) if opts.vm => {
            let outcome = netlab::lab::vm::run(
                &opts.lab.args(),
                &opts.vm_opts.options(),
                &mut std::io::stdout(),
            )?;
            Ok(ExitCode::from(outcome.status))
        }
        Command::Run(opts) if opts.vm_opts.given() => {
            bail!("the --vm-* options need --vm")
        }
        Command::VmExec { vm, ship, cmd } => {
            let outcome =
                netlab::lab::vm::exec(&ship, &cmd, &vm.options(), &mut std::io::stdout())?;
            Ok(ExitCode::from(outcome.status))
        }
        Command::Run(opts) => Ok(verdict(lab::run(&opts.lab.args(), &mut std::io::stdout())?)),
        Command::Listen { args } => Ok(netlab::lab::check::listen_main(&args)),
        Command::Connect { args } => Ok(netlab::lab::check::connect_main(&args)),
    }
}
