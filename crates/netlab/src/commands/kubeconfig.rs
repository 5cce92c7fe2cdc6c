//! `netlab kubeconfig`: where an administrator's kubeconfig for the lab's API server is.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::args::Name;

/// Prints the path, for `kubectl --kubeconfig "$(netlab kubeconfig)"`.
pub fn run(name: Name, out: &mut dyn Write) -> Result<ExitCode> {
    let path = netlab_lab::verbs::kubeconfig(&name.name)?;
    writeln!(out, "{}", path.display())?;
    Ok(ExitCode::SUCCESS)
}
