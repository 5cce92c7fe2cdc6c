//! netlab-lint's integration tests.
//!
//! - `rules`: one test per lint rule, each with a small broken manifest that must fail (and the repository's own
//!   networks as the world it lives in);
//! - `repo`: the repository's k8s/ passes lint, read directly and rendered by kubectl; the plugin table agrees
//!   with the installed reference plugins; the image tags agree with upstream/versions.env.

// A failed unwrap or panic here is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod repo;
mod rules;
mod util;
