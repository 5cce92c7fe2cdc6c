//! `netlab up`: the lab brought up from the topology and the manifests.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::args::{read_inputs, LabOpts};

/// Reads the topology and manifests, and brings the lab up.
pub fn run(opts: LabOpts, out: &mut dyn Write) -> Result<ExitCode> {
    let args = opts.args();
    let (topology, cluster) = read_inputs(&args)?;
    netlab_lab::verbs::up(&args, &topology, &cluster, out)?;
    Ok(ExitCode::SUCCESS)
}
