//! `netlab exec`: a command in a pod's network namespace, or in a node's network and mount namespaces.

use std::process::ExitCode;

use anyhow::Result;

use super::args::Name;

/// `exec`'s flags.
#[derive(clap::Args)]
pub struct Exec {
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
}

impl Exec {
    /// Runs the command there; its exit status.
    pub fn run(self) -> Result<ExitCode> {
        Ok(netlab_lab::verbs::exec(
            &self.name.name,
            self.node,
            &self.pod,
            &self.cmd,
        )?)
    }
}
