//! `netlab check`: the lab checked end to end; exit 1 when a check fails.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::args::Name;
use super::verdict;

/// Runs the checks and prints the matrix.
pub fn run(name: Name, out: &mut dyn Write) -> Result<ExitCode> {
    Ok(verdict(netlab_lab::verbs::check(&name.name, out)?))
}
