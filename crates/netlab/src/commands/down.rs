//! `netlab down`: every attachment deleted, everything the lab made removed; exit 1 when anything leaked.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::args::Name;
use super::verdict;

/// Takes the lab down and reports what was left.
pub fn run(name: Name, out: &mut dyn Write) -> Result<ExitCode> {
    Ok(verdict(netlab_lab::verbs::down(&name.name, out)?))
}
