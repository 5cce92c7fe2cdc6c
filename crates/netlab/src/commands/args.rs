//! Flags several commands share: the lab's name, what `up` and `run` read, the VM's settings; and reading the
//! topology and manifests they name into the model.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use netlab_lab::verbs::LabArgs;
use netlab_lab::vm::{Accel, VmOptions};
use netlab_lint::input::{self, Render};
use netlab_model::cluster::{self, Cluster};
use netlab_model::manifest;
use netlab_model::topology::Topology;

/// The lab's name.
#[derive(clap::Args)]
pub struct Name {
    /// The lab's name: its namespaces are NAME-..., its state /run/netlab/NAME.
    #[arg(long, default_value = "netlab")]
    pub name: String,
}

/// What `up` and `run` take.
#[derive(clap::Args)]
pub struct LabOpts {
    #[command(flatten)]
    pub name: Name,
    /// A topology file (YAML): site block, nodes with labels and offsets, extra pods.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// The manifests (a kustomize directory is followed through its resources).
    #[arg(long, value_name = "DIR", default_value = "k8s")]
    pub manifests: PathBuf,
    /// The index2ip binary (default: next to netlab, on PATH, or /opt/cni/bin).
    #[arg(long, value_name = "PATH")]
    pub index2ip: Option<PathBuf>,
    /// Debian's reference CNI plugins [default: /usr/lib/cni].
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Record every plugin call, delegated ones included, through cni-shim (found next to netlab, on PATH or in
    /// /opt/cni/bin, or given); `run` prints a pod's call tree, and `cni-shim tree --shim-dir
    /// /run/netlab/NAME/shim` reads them while the lab is up. With --emulate only: on the real control plane the
    /// installer DaemonSet puts cni-shim on the nodes.
    #[arg(
        long,
        value_name = "CNI_SHIM",
        num_args = 0..=1,
        require_equals = true,
        requires = "emulate"
    )]
    pub trace: Option<Option<PathBuf>>,
    /// The upstream peers: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, flanneld,
    /// flannel's plugin, multus (default: $UPSTREAM_BIN, else upstream/bin in the cargo target directory holding
    /// netlab; `scripts/upstream.sh` builds them, about 8 minutes the first time).
    #[arg(long, value_name = "DIR", conflicts_with = "emulate")]
    pub peers: Option<PathBuf>,
    /// No control plane: the lab's own multus and flannel semantics run the pods' chains with the same reference
    /// plugins and index2ip. Seconds instead of tens of seconds, and no peers to build; what `run --vm` runs
    /// inside its VM.
    #[arg(long)]
    pub emulate: bool,
    /// (internal) the control plane runs outside this machine: `run --vm --peers` passes its credentials to the
    /// VM's lab in this directory.
    #[arg(long, value_name = "DIR", hide = true, requires = "peers")]
    pub remote_control_plane: Option<PathBuf>,
}

impl LabOpts {
    /// The lab's arguments.
    pub fn args(self) -> LabArgs {
        LabArgs {
            name: self.name.name,
            topology: self.topology,
            manifests: self.manifests,
            index2ip: self.index2ip,
            reference_dir: self.plugins,
            trace: self.trace,
            control_plane: (!self.emulate).then(|| self.peers.unwrap_or_else(default_peers)),
            remote_control_plane: self.remote_control_plane,
        }
    }
}

/// Where the upstream peers are when not given: `$UPSTREAM_BIN`, else `upstream/bin` in the cargo target
/// directory holding netlab (target/debug/netlab → target/upstream/bin).
fn default_peers() -> PathBuf {
    if let Some(dir) = std::env::var_os("UPSTREAM_BIN") {
        return dir.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|t| t.join("upstream/bin")))
        .unwrap_or_else(|| PathBuf::from("target/upstream/bin"))
}

/// Reads the topology (the built-in default without a file) and the cluster the manifests describe.
pub fn read_inputs(args: &LabArgs) -> Result<(Topology, Cluster)> {
    let topology = match &args.topology {
        None => Topology::default(),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("topology {}", p.display()))?;
            Topology::from_text(&p.display().to_string(), &text)?
        }
    };
    let (sources, _) = input::load(std::slice::from_ref(&args.manifests), Render::Direct)?;
    let (objects, errors) = manifest::parse(&sources);
    if let Some(e) = errors.first() {
        bail!("the manifests do not parse: {e} (run `netlab lint` for every finding)");
    }
    Ok((topology, cluster::from_objects(&objects)?))
}

/// The VM's settings.
#[derive(clap::Args)]
pub struct VmOpts {
    /// The VM image (default: vm/current in the cargo target directory holding netlab, or target/vm/current).
    #[arg(long, value_name = "DIR")]
    pub vm_image: Option<PathBuf>,
    /// The VM's accelerator: kvm where it boots (tried first for --vm-boot-timeout seconds), else tcg.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub vm_accel: AccelArg,
    /// Seconds a KVM guest may take to reach its init before software emulation is tried.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub vm_boot_timeout: u64,
    /// Seconds the whole VM run may take.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub vm_timeout: u64,
    /// The VM's memory in MiB [default: 3072 with --peers, else 1024].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(256..=65536))]
    pub vm_memory: Option<u32>,
}

impl VmOpts {
    /// The lab's VM options.
    pub fn options(self) -> VmOptions {
        VmOptions {
            image: self.vm_image,
            accel: match self.vm_accel {
                AccelArg::Auto => Accel::Auto,
                AccelArg::Kvm => Accel::Kvm,
                AccelArg::Tcg => Accel::Tcg,
            },
            boot_timeout: Duration::from_secs(self.vm_boot_timeout),
            timeout: Duration::from_secs(self.vm_timeout),
            memory_mib: self.vm_memory,
            ..Default::default()
        }
    }
}

/// `--vm-accel`.
#[derive(Clone, Copy, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}
