//! `netlab vm-exec`: a command inside the lab's VM, with files of this machine shipped at their own paths.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::args::VmOpts;

/// `vm-exec`'s flags.
#[derive(clap::Args)]
pub struct VmExec {
    #[command(flatten)]
    vm: VmOpts,
    /// A file to put into the VM at its own absolute path, with the shared libraries ldd names for it.
    #[arg(long, value_name = "PATH")]
    ship: Vec<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    cmd: Vec<String>,
}

impl VmExec {
    /// Boots the VM, runs the command; its exit status.
    pub fn run(self, out: &mut dyn Write) -> Result<ExitCode> {
        let outcome = netlab_lab::vm::exec(&self.ship, &self.cmd, &self.vm.options(), out)?;
        Ok(ExitCode::from(outcome.status))
    }
}
