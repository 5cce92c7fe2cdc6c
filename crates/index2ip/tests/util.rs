//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The plugin under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_index2ip"))
}

/// The example node from the project's documentation.
pub const EXAMPLE_CMDLINE: &str = "BOOT_IMAGE=/boot/vmlinuz ro epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 epoxy.ipv6=2001:1900:2100:2d::112/64,2001:1900:2100:2d::1,2001:4860:4860::8888,2001:4860:4860::8844 console=ttyS0\n";

/// A node: a temp dir holding a command-line file.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub cmdline: PathBuf,
}

impl Node {
    pub fn new(cmdline: &str) -> Node {
        let dir = test_support::temp_dir("index2ip-node");
        let cmdline = test_support::write(dir.path(), "cmdline", cmdline);
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
