//! Helpers: a lab of temp directories with fake plugins, the shim installed over them, and ways to call it.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cni_shim::Record;

/// The built binary.
pub const SHIM: &str = env!("CARGO_BIN_EXE_cni-shim");

pub use test_support::{is_root, skip};

/// A temp directory of the shim's tests, removed on drop, also when a test fails.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    test_support::temp_dir(&format!("cni-shim-test-{tag}"))
}

/// Real dir, shim dir, log dir.
pub struct Lab {
    pub tmp: tempfile::TempDir,
    pub real: PathBuf,
    pub shim: PathBuf,
    pub logs: PathBuf,
}

impl Lab {
    /// A lab with the given fake plugins (name, shell script body), installed.
    pub fn new(plugins: &[(&str, &str)]) -> Lab {
        Lab::with_args(plugins, &[])
    }

    pub fn with_args(plugins: &[(&str, &str)], install_args: &[&str]) -> Lab {
        let tmp = temp_dir("lab");
        let lab = Lab {
            real: tmp.path().join("real"),
            shim: tmp.path().join("shim"),
            logs: tmp.path().join("logs"),
            tmp,
        };
        fs::create_dir_all(&lab.real).unwrap_or_else(|e| panic!("{e}"));
        for (name, body) in plugins {
            lab.plugin(name, body);
        }
        let out =
            lab.operator(&[&["install", "--real-dir", path(&lab.real)], install_args].concat());
        assert!(out.status.success(), "install: {}", text(&out.stderr));
        lab
    }

    /// Writes a fake plugin: a shell script.
    pub fn plugin(&self, name: &str, body: &str) {
        let p = self.real.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `cni-shim ARGS --shim-dir S --log-dir L`.
    pub fn operator(&self, args: &[&str]) -> Output {
        Command::new(SHIM)
            .args(args)
            .args([
                "--shim-dir",
                path(&self.shim),
                "--log-dir",
                path(&self.logs),
            ])
            .output()
            .unwrap_or_else(|e| panic!("run {SHIM}: {e}"))
    }

    /// A command that runs the plugin through the shim, with ADD-ish defaults.
    pub fn command(&self, plugin: &str) -> Command {
        let mut c = Command::new(self.shim.join(plugin));
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "ctr-1")
            .env("CNI_NETNS", "/var/run/netns/none")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.shim);
        c
    }

    /// Runs a command with the given stdin, feeding it from a thread (so a plugin that does not read cannot
    /// dead-lock the test).
    pub fn run(&self, c: Command, stdin: &[u8]) -> Output {
        Lab::run_detached(c, stdin.to_vec())
    }

    /// [`Lab::run`] without a lab, for threads.
    pub fn run_detached(mut c: Command, stdin: Vec<u8>) -> Output {
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let mut input = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        let bytes = stdin;
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&bytes);
        });
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait: {e}"));
        let _ = feeder.join();
        out
    }

    /// Calls a plugin through the shim.
    pub fn call(&self, plugin: &str, stdin: &str) -> Output {
        self.run(self.command(plugin), stdin.as_bytes())
    }

    /// Every record, oldest first.
    pub fn records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = match fs::read_dir(&self.logs) {
            Err(_) => return Vec::new(),
            Ok(d) => d
                .flatten()
                // Records only: a hidden `.tmp-` file is one being written (or left by a killed shim).
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.ends_with(".json") && !name.starts_with('.')
                })
                .map(|e| {
                    let bytes = fs::read(e.path()).unwrap_or_else(|err| panic!("{err}"));
                    serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                        panic!("{} is not an intact record: {err}", e.path().display())
                    })
                })
                .collect(),
        };
        out.sort_by_key(|r: &Record| r.start_unix_ns);
        out
    }

    /// Rewrites the shim configuration.
    pub fn configure(&self, f: impl FnOnce(&mut cni_shim::ShimConfig)) {
        let mut c = cni_shim::ShimConfig::load(&self.shim).unwrap_or_else(|e| panic!("{e}"));
        f(&mut c);
        c.store(&self.shim).unwrap_or_else(|e| panic!("{e}"));
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path"))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Deterministic pseudo-random bytes (every value 0..=255 appears).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"fake"}"#;

/// A failed call's CNI error reply: non-zero exit, nothing on stderr (the shim writes none), JSON on stdout.
pub fn error_reply(out: &std::process::Output) -> serde_json::Value {
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not an error reply ({e}): {}", text(&out.stdout)))
}
