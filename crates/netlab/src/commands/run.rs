//! `netlab run`: up, status, check and down in one, here or (`--vm`) inside a VM whose kernel has ipvlan.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::ArgGroup;

use super::args::{read_inputs, LabOpts, VmOpts};
use super::verdict;

/// `run`'s flags. The `--vm-*` settings need `--vm`, and `--vm` runs the VM image's plugins and index2ip, so
/// `--plugins` and `--index2ip` conflict with it: clap refuses either mix.
#[derive(clap::Args)]
#[command(group(
    ArgGroup::new("vm_settings")
        .args(["vm_image", "vm_accel", "vm_boot_timeout", "vm_timeout", "vm_memory"])
        .multiple(true)
        .requires("vm")
))]
pub struct Run {
    #[command(flatten)]
    lab: LabOpts,
    /// Run inside a VM booted under qemu from the image scripts/vm-image.sh builds: Debian's stock kernel, whose
    /// ipvlan the index networks then use as written. The VM runs the emulated lab (about a minute under
    /// software emulation); with --peers, the control plane runs on this machine and the VM runs the nodes with
    /// the real flanneld, multus and flannel, reaching the API server through qemu's user network (several
    /// minutes: every Go program in the VM is emulated; crates/netlab/README.md).
    #[arg(long, conflicts_with_all = ["plugins", "index2ip"])]
    vm: bool,
    #[command(flatten)]
    vm_opts: VmOpts,
}

impl Run {
    /// Runs the lab; the check's status (1 also when anything leaked).
    pub fn run(self, out: &mut dyn Write) -> Result<ExitCode> {
        let peers_given = self.lab.peers.is_some();
        let mut args = self.lab.args();
        if self.vm {
            // In the VM the control plane is the choice of --peers, not the default.
            if !peers_given {
                args.control_plane = None;
            }
            let outcome = netlab_lab::vm::run(&args, &self.vm_opts.options(), out)?;
            return Ok(ExitCode::from(outcome.status));
        }
        let (topology, cluster) = read_inputs(&args)?;
        Ok(verdict(netlab_lab::verbs::run(
            &args, &topology, &cluster, out,
        )?))
    }
}
