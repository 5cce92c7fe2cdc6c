//! `netlab lint`: manifests and a node inventory checked before they are applied; exit 1 on errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::ValueEnum;

use netlab_lint::input::Render;
use netlab_lint::{NodesFrom, Options};
use netlab_model::site::SiteBlock;

/// `lint`'s flags.
#[derive(clap::Args)]
pub struct Lint {
    /// Manifest files or directories (a directory with a kustomization follows its resources); `-` reads
    /// standard input, such as `kubectl kustomize k8s` output. Each is an apply unit of its own (one
    /// `kubectl apply`); the default is the two of scripts/apply.sh.
    #[arg(default_values = ["k8s/crds", "k8s"])]
    paths: Vec<PathBuf>,
    /// A node inventory (`kubectl get nodes -o json` output); `-` reads standard input.
    #[arg(long, value_name = "FILE|-")]
    nodes: Option<PathBuf>,
    /// The output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// How a directory with a kustomization is read: `direct` follows its resources and reads each file
    /// (findings carry file:line); `kubectl` runs `kubectl kustomize DIR` and lints the rendered stream.
    #[arg(long, value_enum, default_value_t = RenderArg::Direct)]
    render: RenderArg,
    /// The site block whose size fixes the indices per machine: /26 (12, the default), /28 (11) or /29 (3).
    #[arg(long, value_name = "[ADDR]/LEN", value_parser = SiteBlock::parse)]
    site_block: Option<SiteBlock>,
    /// Print the rules and exit.
    #[arg(long)]
    list_rules: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum RenderArg {
    Direct,
    Kubectl,
}

impl Lint {
    /// Lints and prints the report.
    pub fn run(self) -> Result<ExitCode> {
        if self.list_rules {
            print!("{}", netlab_lint::rules_table());
            return Ok(ExitCode::SUCCESS);
        }
        let nodes = self.nodes.map(|p| {
            if p.as_os_str() == "-" {
                NodesFrom::Stdin
            } else {
                NodesFrom::File(p)
            }
        });
        if matches!(nodes, Some(NodesFrom::Stdin))
            && self.paths.iter().any(|p| p.as_os_str() == "-")
        {
            bail!("standard input cannot hold both the manifests and the node inventory");
        }
        let render = match self.render {
            RenderArg::Direct => Render::Direct,
            RenderArg::Kubectl => Render::Kubectl,
        };
        let options = Options {
            site_block: self.site_block.unwrap_or_default(),
        };
        let report = netlab_lint::run_lint(&self.paths, render, nodes, options)?;
        match self.format {
            Format::Text => print!("{}", report.to_text()),
            Format::Json => println!("{}", report.to_json()),
        }
        Ok(if report.failed() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }
}
