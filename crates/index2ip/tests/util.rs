//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// The plugin under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_index2ip"))
}

/// The example node from the project's documentation.
pub const EXAMPLE_CMDLINE: &str = "BOOT_IMAGE=/boot/vmlinuz ro epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 epoxy.ipv6=2001:1900:2100:2d::112/64,2001:1900:2100:2d::1,2001:4860:4860::8888,2001:4860:4860::8844 console=ttyS0\n";

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("index2ip-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file in the directory and returns its path.
    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A node: a temp dir holding a command-line file.
pub struct Node {
    pub dir: TempDir,
    pub cmdline: PathBuf,
}

impl Node {
    pub fn new(cmdline: &str) -> Node {
        let dir = TempDir::new("node");
        let cmdline = dir.file("cmdline", cmdline.as_bytes());
        Node { dir, cmdline }
    }

    pub fn example() -> Node {
        Node::new(EXAMPLE_CMDLINE)
    }

    /// A delegated-IPAM config as ipvlan passes it, with `ipam` holding `ipam_extra` beside type and cmdline.
    pub fn config(&self, version: &str, ipam_extra: Value) -> Value {
        let mut ipam = serde_json::json!({"type": "index2ip", "cmdline": self.cmdline});
        if let (Some(ipam), Value::Object(extra)) = (ipam.as_object_mut(), ipam_extra) {
            ipam.extend(extra);
        }
        serde_json::json!({
            "cniVersion": version,
            "name": "index2ip-index-5-conf",
            "type": "ipvlan",
            "master": "eth0",
            "ipam": ipam
        })
    }
}

/// The environment a runtime passes for `command`.
pub fn cni_env(command: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", command.to_owned()),
        ("CNI_CONTAINERID", "0123456789abcdef".to_owned()),
        ("CNI_NETNS", "/var/run/netns/pod".to_owned()),
        ("CNI_IFNAME", "net1".to_owned()),
        ("CNI_PATH", "/opt/cni/bin".to_owned()),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=ndt-index2-x7k2p".to_owned(),
        ),
    ]
}

/// Runs a program with exactly `env` and `stdin`.
pub fn run_with(program: &Path, env: &[(&str, String)], stdin: &[u8]) -> Output {
    run_command(&mut Command::new(program), env, stdin)
}

/// Runs a prepared command with exactly `env` and `stdin`.
pub fn run_command(command: &mut Command, env: &[(&str, String)], stdin: &[u8]) -> Output {
    let mut child = command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A plugin may stop reading early (VERSION ignores stdin): a broken pipe here is not a failure.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs the plugin.
pub fn run(env: &[(&str, String)], stdin: &[u8]) -> Output {
    run_with(bin(), env, stdin)
}

/// Runs a verb with a JSON config.
pub fn call(command: &str, config: &Value) -> Output {
    run(&cni_env(command), config.to_string().as_bytes())
}

/// Stdout as JSON; fails the test with everything the plugin said when it is not.
pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts a success and returns stdout as text.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed with {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a CNI error reply with `code` and returns its message.
pub fn err(out: &Output, code: u64) -> String {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let reply = json(out);
    assert_eq!(reply["code"], code, "wrong code: {reply}");
    assert!(reply["cniVersion"].is_string(), "no cniVersion: {reply}");
    let msg = reply["msg"].as_str().unwrap_or_default().to_owned();
    assert!(!msg.is_empty(), "empty message: {reply}");
    assert!(!msg.ends_with('.'), "messages end without a period: {msg}");
    msg
}

/// Reports a test that did not run, straight to the terminal (libtest captures `eprintln!`). Under `CI=true` a skip
/// whose reason could have been avoided fails instead.
pub fn skip(test: &str, reason: &str, avoidable: bool) {
    let line = format!("\nSKIPPED {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if avoidable && std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} did not run under CI=true: {reason}");
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The directory of the upstream programs `scripts/upstream.sh` built (cnitool, the control plane...): `UPSTREAM_BIN`
/// when set, else what the script reports for this checkout. `None` when they are not built.
pub fn upstream_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("UPSTREAM_BIN") {
        return Some(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/upstream.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("--bin-dir")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !dir.trim().is_empty()).then(|| PathBuf::from(dir.trim()))
}
