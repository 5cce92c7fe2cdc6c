//! Reading what lint is given: files, directories, kustomize trees, standard input.
//!
//! A directory with a kustomization is read directly by default: lint follows its `resources` (files and
//! directories, recursively) and reads each file itself, so a finding points at the file and line an operator
//! edits. Kustomize's transformations (patches, generators, name prefixes, a namespace override) are not applied
//! that way; lint says so with a warning and names the other route, `--render kubectl`, which runs
//! `kubectl kustomize DIR` and lints the rendered stream (lines then point into that stream). Rendered output can
//! also be piped in: `kubectl kustomize k8s | netlab lint -`.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::Error;
use crate::{Finding, Rule};

pub use netlab_model::manifest::Source;

/// How a directory with a kustomization becomes YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Render {
    /// Follow `resources` and read each file (findings carry the file and line).
    #[default]
    Direct,
    /// Run `kubectl kustomize DIR` (kustomize's transformations applied; lines point into the rendered stream).
    Kubectl,
}

const KUSTOMIZATION_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
const KUSTOMIZATION_KEYS_APPLIED: [&str; 3] = ["apiVersion", "kind", "resources"];

/// Reads every path (`-` is standard input). Returns the sources and any findings about how they were read.
pub fn load(paths: &[PathBuf], render: Render) -> Result<(Vec<Source>, Vec<Finding>), Error> {
    let mut loader = Loader::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::io(Path::new("<stdin>"), e))?;
            loader.sources.push(Source::new("<stdin>", text));
        } else {
            loader.unit = display(path);
            loader.path(path, render)?;
        }
    }
    Ok((loader.sources, loader.findings))
}

#[derive(Default)]
struct Loader {
    sources: Vec<Source>,
    findings: Vec<Finding>,
    seen: BTreeSet<PathBuf>,
    /// The command-line path being read.
    unit: String,
}

impl Loader {
    fn path(&mut self, path: &Path, render: Render) -> Result<(), Error> {
        let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_dir() {
            return self.file(path);
        }
        match kustomization_in(path) {
            Some(k) if render == Render::Kubectl => self.kubectl(path, &k),
            Some(k) => self.kustomization(&k),
            None => self.plain_dir(path, render),
        }
    }

    fn file(&mut self, path: &Path) -> Result<(), Error> {
        let key = fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        if !self.seen.insert(key) {
            return Ok(());
        }
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        self.sources.push(Source {
            name: display(path),
            text,
            unit: self.unit.clone(),
        });
        Ok(())
    }

    fn plain_dir(&mut self, dir: &Path, render: Render) -> Result<(), Error> {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            if entry.is_dir() {
                self.path(&entry, render)?;
            } else if is_manifest(&entry) {
                self.file(&entry)?;
            }
        }
        Ok(())
    }

    fn kustomization(&mut self, file: &Path) -> Result<(), Error> {
        let key = fs::canonicalize(file).map_err(|e| Error::io(file, e))?;
        if !self.seen.insert(key) {
            return Ok(());
        }
        let text = fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        let not = |reason: String| Error::Kustomization {
            path: file.to_owned(),
            reason,
        };
        let value: Value = serde_norway::from_str(&text).map_err(|e| not(e.to_string()))?;
        let map = value
            .as_object()
            .ok_or_else(|| not("not a mapping".into()))?;
        let dir = file.parent().unwrap_or(Path::new("."));
        for key in map.keys() {
            if !KUSTOMIZATION_KEYS_APPLIED.contains(&key.as_str()) {
                self.findings.push(Finding::new(
                    Rule::KustomizeUnapplied,
                    format!(
                        "`{key}` is not applied when lint reads the files directly; lint the rendered tree with `--render kubectl` or `kubectl kustomize {} | netlab lint -`",
                        display(dir)
                    ),
                )
                .at(display(file), line_of_key(&text, key)));
            }
        }
        let resources = match map.get("resources") {
            None => return Ok(()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(not("`resources` is not a list".into())),
        };
        for item in resources {
            let rel = item
                .as_str()
                .ok_or_else(|| not("a resource is not a string".into()))?;
            if rel.contains("://") || rel.starts_with("github.com/") {
                self.findings.push(
                    Finding::new(
                        Rule::KustomizeUnapplied,
                        format!("remote resource {rel:?} is not read"),
                    )
                    .at(display(file), line_of_key(&text, "resources")),
                );
                continue;
            }
            self.path(&dir.join(rel), Render::Direct)?;
        }
        Ok(())
    }

    fn kubectl(&mut self, dir: &Path, _kustomization: &Path) -> Result<(), Error> {
        let fail = |reason: String| Error::Kustomize {
            dir: dir.to_owned(),
            reason,
        };
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(dir)
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    fail("kubectl is not on PATH: install it, or lint the files directly (without --render kubectl)".into())
                } else {
                    fail(e.to_string())
                }
            })?;
        if !out.status.success() {
            return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        let text = String::from_utf8(out.stdout).map_err(|e| fail(e.to_string()))?;
        self.sources.push(Source {
            name: format!("{} (kubectl kustomize)", display(dir)),
            text,
            unit: self.unit.clone(),
        });
        Ok(())
    }
}

fn kustomization_in(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

fn is_manifest(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    !name.starts_with('.')
        && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
}

fn display(path: &Path) -> String {
    let s = path.display().to_string();
    s.strip_prefix("./").map(str::to_owned).unwrap_or(s)
}

/// The 1-based line of a top-level key in a YAML text.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.starts_with(key) && l[key.len()..].trim_start().starts_with(':'))
        .map(|i| i + 1)
}
