//! `__listen` and `__connect`: the lab's own helpers for `check`, run inside a pod's or the client's namespace.

/// Their arguments, passed through as `check` wrote them.
#[derive(clap::Args)]
pub struct Args {
    pub args: Vec<String>,
}
