//! `netlab gen`: the generated manifests written below the repository root (`--check`: compared, nothing changed).
//!
//! What they hold is rendered by [`netlab_model::gen`]; this file writes and compares them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use netlab_model::gen;

/// `gen`'s flags.
#[derive(clap::Args)]
pub struct Gen {
    /// The repository root.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Change nothing; exit 1 and name the files that differ from what would be written.
    #[arg(long)]
    check: bool,
}

impl Gen {
    /// Writes (or with `--check` compares) the generated files.
    pub fn run(self) -> Result<ExitCode> {
        let root = self.root;
        if !root.join("Cargo.toml").is_file() || !root.join("crates").is_dir() {
            bail!(
                "{} is not the repository root (no Cargo.toml and crates/): pass --root",
                root.display()
            );
        }
        if self.check {
            let drift = check(&root).context("checking generated files")?;
            for d in &drift {
                println!("{d}");
            }
            if drift.is_empty() {
                println!(
                    "netlab gen --check: {} generated files are current",
                    gen::files().len()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "netlab gen --check: {} files differ; run `netlab gen` and commit the result",
                    drift.len()
                );
                Ok(ExitCode::from(1))
            }
        } else {
            let drift = write(&root).context("writing generated files")?;
            for d in &drift {
                println!("updated {d}");
            }
            println!(
                "netlab gen: {} files written, {} generated files in all",
                drift.len(),
                gen::files().len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How a checked-in tree differs from what the generator writes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Drift {
    /// A generated file is not there.
    Missing(String),
    /// A generated file is there with other contents.
    Changed(String),
    /// A file carrying the generated header that the generator no longer writes.
    Stale(String),
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Missing(p) => write!(f, "{p}: missing"),
            Drift::Changed(p) => write!(f, "{p}: differs from what `netlab gen` writes"),
            Drift::Stale(p) => write!(f, "{p}: generated earlier but no longer generated"),
        }
    }
}

/// Writes every generated file below `root` and removes generated files the generator no longer writes.
/// A file is only rewritten when its contents change. Returns what changed.
fn write(root: &Path) -> Result<Vec<Drift>> {
    let drift = check(root)?;
    for d in &drift {
        match d {
            Drift::Missing(p) | Drift::Changed(p) => {
                let contents = gen::files()
                    .into_iter()
                    .find(|f| &f.path == p)
                    .map(|f| f.contents)
                    .unwrap_or_default();
                let path = root.join(p);
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
                }
                write_atomic(&path, &contents)?;
            }
            Drift::Stale(p) => {
                let path = root.join(p);
                fs::remove_file(&path).with_context(|| path.display().to_string())?;
            }
        }
    }
    Ok(drift)
}

/// Compares the tree below `root` with what the generator writes, without changing anything.
fn check(root: &Path) -> Result<Vec<Drift>> {
    let wanted = gen::files();
    let mut drift = Vec::new();
    for f in &wanted {
        let path = root.join(&f.path);
        match fs::read_to_string(&path) {
            Ok(text) if text == f.contents => {}
            Ok(_) => drift.push(Drift::Changed(f.path.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                drift.push(Drift::Missing(f.path.clone()))
            }
            Err(e) => return Err(e).with_context(|| path.display().to_string()),
        }
    }
    let mut dirs: Vec<&str> = wanted
        .iter()
        .filter_map(|f| f.path.rsplit_once('/').map(|(d, _)| d))
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    for dir in dirs {
        let path = root.join(dir);
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| path.display().to_string()),
        };
        let mut stale = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| path.display().to_string())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{dir}/{name}");
            if wanted.iter().any(|f| f.path == rel) || !entry.path().is_file() {
                continue;
            }
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            if text.starts_with(gen::HEADER) {
                stale.push(Drift::Stale(rel));
            }
        }
        stale.sort_by_key(|d| d.to_string());
        drift.extend(stale);
    }
    Ok(drift)
}

/// Writes to a temporary file beside `path` and renames it into place, so no reader sees half a file.
fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{file_name}.netlab-tmp"));
    fs::write(&tmp, contents).with_context(|| tmp.display().to_string())?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::Error::new(e).context(path.display().to_string())
    })
}
