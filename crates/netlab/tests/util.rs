//! Helpers shared by the test modules: the repository root, and test-support's root check and skip.

use std::path::PathBuf;

pub use test_support::{is_root, skip};

/// The repository root.
pub fn root() -> PathBuf {
    test_support::workspace_root()
}
