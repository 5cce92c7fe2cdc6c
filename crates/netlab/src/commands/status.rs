//! `netlab status`: every node and pod with its interfaces and addresses.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::args::Name;

/// `status`'s flags.
#[derive(clap::Args)]
pub struct Status {
    #[command(flatten)]
    name: Name,
    /// Also print each pod's k8s.v1.cni.cncf.io/network-status annotation, as multus would write it.
    #[arg(long)]
    network_status: bool,
}

impl Status {
    /// Prints the table (and the annotations).
    pub fn run(self, out: &mut dyn Write) -> Result<ExitCode> {
        netlab_lab::verbs::status(&self.name.name, self.network_status, out)?;
        Ok(ExitCode::SUCCESS)
    }
}
