//! Reading paths and a node inventory, and linting them: what `netlab lint` does.

use std::io::Read;
use std::path::PathBuf;

use netlab_model::manifest::{self, Source};
use netlab_model::nodes;

use crate::{input, Error, Finding, Inputs, Options, Report, Rule};

/// Where the node inventory comes from.
#[derive(Debug, Clone)]
pub enum NodesFrom {
    File(PathBuf),
    Stdin,
}

/// Reads the manifests at `paths` and the node inventory, and runs every lint rule.
pub fn run_lint(
    paths: &[PathBuf],
    render: input::Render,
    nodes: Option<NodesFrom>,
    options: Options,
) -> Result<Report, Error> {
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
    sources: &[Source],
    nodes: Option<(String, String)>,
    options: Options,
    mut early: Vec<Finding>,
) -> Result<Report, Error> {
    let (objects, parse_errors) = manifest::parse(sources);
    early.extend(parse_errors.into_iter().map(Finding::from));
    let nodes = match nodes {
        Some((name, text)) => {
            let parsed = nodes::parse(&name, &text)?;
            Some((name, parsed))
        }
        None => None,
    };
    let inputs = Inputs {
        objects,
        nodes,
        sources: sources.len(),
    };
    Ok(crate::lint(&inputs, options, early))
}

impl From<manifest::ParseError> for Finding {
    fn from(e: manifest::ParseError) -> Finding {
        Finding::new(Rule::YamlParse, e.message).at(e.file, Some(e.line))
    }
}
