//! netlab: the operator tool of index2ip's cluster network.
//!
//! - `netlab gen` writes the manifests that repeat themselves (the twelve index networks, the flannel and multus
//!   configurations) from one source, [`gen`]; `netlab gen --check` fails when the checked-in files differ.
//! - `netlab lint [PATH]... [--nodes FILE|-]` checks manifests and a node inventory before they are applied, with
//!   the rules of [`lint::Rule`].
//!
//! # Quick start
//!
//! ```text
//! netlab gen --check                      # are the generated manifests current?
//! netlab lint                             # lint k8s/ (kustomize resources followed, files read directly)
//! kubectl kustomize k8s | netlab lint -   # lint the rendered tree
//! kubectl get nodes -o json | netlab lint k8s --nodes -
//! ```
//!
//! As a library: [`run_lint`] reads paths and returns a [`lint::Report`].

pub mod annotation;
pub mod cniconf;
mod error;
pub mod gen;
pub mod input;
pub mod lab;
pub mod lint;
pub mod manifest;
pub mod nodes;
pub mod site;
pub mod workload;

use std::io::Read;
use std::path::PathBuf;

pub use error::Error;

/// Where the node inventory comes from.
#[derive(Debug, Clone)]
pub enum NodesFrom {
    /// A file.
    File(PathBuf),
    /// Standard input.
    Stdin,
}

/// Reads the manifests at `paths` and the node inventory, and runs every lint rule.
pub fn run_lint(
    paths: &[PathBuf],
    render: input::Render,
    nodes: Option<NodesFrom>,
    options: lint::Options,
) -> Result<lint::Report, Error> {
    let (sources, early) = input::load(paths, render)?;
    let nodes = match nodes {
        None => None,
        Some(from) => {
            let (name, text) = match from {
                NodesFrom::Stdin => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .map_err(|e| Error::io(std::path::Path::new("<stdin>"), e))?;
                    ("<stdin>".to_owned(), text)
                }
                NodesFrom::File(p) => {
                    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
                    (p.display().to_string(), text)
                }
            };
            Some((name, text))
        }
    };
    lint_sources(&sources, nodes, options, early)
}

/// Lints texts already read: the manifests, and a node inventory as (name, text). `early` are findings from
/// reading them.
pub fn lint_sources(
    sources: &[input::Source],
    nodes: Option<(String, String)>,
    options: lint::Options,
    mut early: Vec<lint::Finding>,
) -> Result<lint::Report, Error> {
    let (objects, parse_findings) = manifest::parse(sources);
    early.extend(parse_findings);
    let nodes = match nodes {
        Some((name, text)) => {
            let parsed = nodes::parse(&name, &text)?;
            Some((name, parsed))
        }
        None => None,
    };
    let inputs = lint::Inputs {
        objects,
        nodes,
        sources: sources.len(),
    };
    Ok(lint::lint(&inputs, options, early))
}
