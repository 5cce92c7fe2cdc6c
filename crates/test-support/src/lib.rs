//! What every crate's tests share: the root check, loud skips, temporary directories, network namespaces and the
//! upstream peers. A dev-dependency only; see README.md.
//!
//! ```no_run
//! use test_support::{need_root, Netns};
//!
//! if need_root("interop::macvlan") {
//!     let ns = Netns::new("i2ip-demo", &["node", "pod"]);
//!     // ... `ns.name(0)` is the node's namespace; both are deleted when `ns` drops.
//! }
//! ```
#![warn(missing_docs)]
// Test support: a failed set-up is a failed test, and panicking says so with the reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether this process runs as root (its effective user).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether the tests run in CI, where a test that could have run must not be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports, straight to the terminal (libtest captures `println!`), that `test` did not run and why. Under
/// `CI=true` the test fails instead: CI runs as root on a machine that has what the tests need, so the reason was
/// avoidable there.
pub fn skip(test: &str, why: &str) {
    let _ = std::io::stderr().write_all(format!("\nSKIPPED {test}: {why}\n").as_bytes());
    assert!(!in_ci(), "{test} did not run under CI=true: {why}");
}

/// Reports that `test` did not run for a reason no machine of this kind can remove (a kernel without ipvlan, a
/// module the Go module proxy refuses). Never fails.
pub fn skip_unavoidable(test: &str, why: &str) {
    let _ = std::io::stderr().write_all(format!("\nSKIPPED {test}: {why}\n").as_bytes());
}

/// `true` when running as root; otherwise reports `test` as skipped (see [`skip`]) and returns `false`.
pub fn need_root(test: &str) -> bool {
    let root = is_root();
    if !root {
        skip(test, "needs root to create network namespaces");
    }
    root
}

/// A temporary directory, removed with what it holds when dropped.
///
/// # Panics
///
/// When the system's temporary directory cannot be written: no test can run then.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{tag}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot make a temporary directory: {e}"))
}

/// Writes `contents` to `name` in `dir` and returns the file's path.
///
/// # Panics
///
/// When the file cannot be written.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// Network namespaces a test made, each `PREFIX-PID-ROLE`; dropping the guard deletes them and, with them, every
/// link inside, whatever the test did.
pub struct Netns {
    names: Vec<String>,
}

impl Netns {
    /// Makes one namespace per role, with loopback up in each.
    ///
    /// # Panics
    ///
    /// When `ip netns add` fails; the namespaces made before are deleted.
    pub fn new(prefix: &str, roles: &[&str]) -> Netns {
        let pid = std::process::id();
        let mut made = Netns { names: Vec::new() };
        for role in roles {
            let name = format!("{prefix}-{pid}-{role}");
            ip(&["netns", "add", &name]);
            made.names.push(name);
            ip(&[
                "-n",
                made.names.last().map_or("", String::as_str),
                "link",
                "set",
                "lo",
                "up",
            ]);
        }
        made
    }

    /// The name of the namespace made for the `n`th role.
    pub fn name(&self, n: usize) -> &str {
        &self.names[n]
    }

    /// The path of the `n`th namespace, as `CNI_NETNS` takes it.
    pub fn path(&self, n: usize) -> PathBuf {
        Path::new("/var/run/netns").join(self.name(n))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `ip` with `args` and returns its output.
///
/// # Panics
///
/// When `ip` fails, with what it said.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The workspace's root directory, found from this crate's place in it (`crates/test-support`) at build time, not
/// from the current directory, which cargo sets to the package of each test.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory of the upstream peers `scripts/upstream.sh` built (the control plane, multus, flannel, cnitool):
/// `UPSTREAM_BIN` when set, else what the script reports for this checkout; `None` when they are not built.
pub fn upstream_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("UPSTREAM_BIN") {
        return Some(PathBuf::from(dir));
    }
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/upstream.sh"))
        .arg("--bin-dir")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !dir.trim().is_empty()).then(|| PathBuf::from(dir.trim()))
}
