//! Helpers shared by the test modules: the repository root, and test-support's root check and skip.

use std::path::PathBuf;

pub use test_support::{is_root, skip};

/// The repository root.
pub fn root() -> PathBuf {
    test_support::workspace_root()
}

/// The network namespaces whose names start with `lab-`: what a lab named `lab` left.
pub fn namespaces_of(lab: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter(|l| l.starts_with(&format!("{lab}-")))
        .map(|l| l.split_whitespace().next().unwrap_or(l).to_owned())
        .collect()
}
