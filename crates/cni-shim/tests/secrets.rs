//! Secrets: a configuration carrying a password, a token and an embedded kubeconfig leaves no copy of them that
//! another user can read: the records are private (and checked as another user when root), and the secrets are
//! not in them anyway.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::util::{is_root, skip, text, Lab};

const PASSWORD: &str = "hunter2-Pa55w0rd";
const TOKEN: &str = "tok-7f3a9c1e5b";
const CLIENT_KEY: &str = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2Z0lCQURBTkJna3Fo";
const KUBE_TOKEN: &str = "kube-sa-token-e91b2c";

/// Every secret string the configurations below carry.
const SECRETS: [&str; 4] = [PASSWORD, TOKEN, CLIENT_KEY, KUBE_TOKEN];

/// A multus-like configuration with the secrets: a password, a token, a kubeconfig embedded as YAML text and one
/// embedded as an object.
fn config(pretty: bool) -> String {
    let kubeconfig_yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: https://10.0.0.1:6443}}\nusers:\n- name: u\n  user:\n    client-key-data: {CLIENT_KEY}\n    token: {KUBE_TOKEN}\n"
    );
    let v = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "multus",
        "type": "fake",
        "kubeconfig": kubeconfig_yaml,
        "delegates": [{
            "type": "fake",
            "registry": {"username": "bob", "password": PASSWORD},
            "apiToken": TOKEN,
            "kubeconfig": {"apiVersion": "v1", "clusters": [], "users": [{"name": "u", "user": {"token": KUBE_TOKEN}}]}
        }]
    });
    if pretty {
        serde_json::to_string_pretty(&v).unwrap()
    } else {
        v.to_string()
    }
}

/// Every byte under the log directory, with base64 payloads decoded, so an encoded copy counts too.
fn everything_in(dir: &Path) -> String {
    let mut all = String::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let raw = fs::read(e.path()).unwrap();
        all.push_str(&text(&raw));
        if let Ok(r) = serde_json::from_slice::<cni_shim::Record>(&raw) {
            for p in [&r.stdin, &r.stdout, &r.stderr] {
                all.push_str(&text(&p.bytes()));
            }
        }
    }
    all
}

#[test]
fn secrets_in_a_config_leave_no_copy_readable_by_others() {
    // The plugin echoes its config on stdout and logs it on stderr, as careless plugins do.
    let lab = Lab::new(&[("fake", "tee /dev/stderr")]);
    for pretty in [false, true] {
        let conf = config(pretty);
        let mut c = lab.command("fake");
        c.env("CNI_ARGS", format!("K8S_POD_NAME=p;AUTH_TOKEN={TOKEN}"));
        let out = lab.run(c, conf.as_bytes());
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(text(&out.stdout), conf, "the caller gets the real bytes");
        assert_eq!(text(&out.stderr), conf);
    }
    let dir_meta = fs::metadata(&lab.logs).unwrap();
    assert_eq!(dir_meta.mode() & 0o777, 0o700);
    let entries: Vec<_> = fs::read_dir(&lab.logs).unwrap().flatten().collect();
    assert_eq!(entries.len(), 2);
    for e in &entries {
        let m = e.metadata().unwrap();
        assert_eq!(m.mode() & 0o777, 0o600, "{}", e.path().display());
        assert_eq!(m.uid(), dir_meta.uid());
    }
    let all = everything_in(&lab.logs);
    for secret in SECRETS {
        assert!(!all.contains(secret), "{secret} is in the log directory");
    }
    assert!(all.contains("[REDACTED]"));
    for r in lab.records() {
        for place in ["stdin:", "stdout:", "stderr", "CNI_ARGS:AUTH_TOKEN"] {
            assert!(
                r.redacted.iter().any(|p| p.starts_with(place)),
                "{place} not listed in {:?}",
                r.redacted
            );
        }
    }

    // Another user cannot read the records, nor even list them.
    if !is_root() {
        return skip(
            "secrets_in_a_config_leave_no_copy_readable_by_others (as another user)",
            "switching to another user needs root",
        );
    }
    let as_nobody = |args: &[&Path]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(args)
            .output()
            .unwrap()
    };
    let probe = as_nobody(&[Path::new("/bin/true")]);
    assert!(probe.status.success(), "setpriv: {}", text(&probe.stderr));
    // The temp directory above the log directory lets anyone through: only the log directory's own mode stops them.
    let ls = as_nobody(&[Path::new("/bin/ls"), &lab.logs]);
    assert!(
        !ls.status.success(),
        "another user listed the log directory"
    );
    for e in &entries {
        let cat = as_nobody(&[Path::new("/bin/cat"), &e.path()]);
        assert!(
            !cat.status.success() && cat.stdout.is_empty(),
            "another user read {}",
            e.path().display()
        );
    }
}

/// Configs the redactor cannot parse as JSON: longer than `captureBytes` (the kept prefix is cut), not valid
/// JSON, or holding a byte that is not UTF-8 (the capture is kept as base64): the string values of secret keys
/// are masked where they stand, so no copy reaches the record, in clear text or in base64.
#[test]
fn secrets_in_configs_the_redactor_cannot_parse_stay_out_of_records() {
    let lab = Lab::with_args(&[("fake", "cat")], &["--capture-bytes", "4096"]);
    let pad = "x".repeat(8000);
    let configs: [Vec<u8>; 4] = [
        format!(r#"{{"cniVersion":"1.0.0","auth":{{"password":"{PASSWORD}"}},"pad":"{pad}"}}"#).into_bytes(),
        format!("{{\n  \"cniVersion\": \"1.0.0\",\n  \"apiToken\": \"{TOKEN}\",\n  \"pad\": \"{pad}\"\n}}\n")
            .into_bytes(),
        format!("{{\n  \"password\": \"{PASSWORD}\",\n}}\n").into_bytes(),
        [
            format!(r#"{{"cniVersion":"1.0.0","password":"{PASSWORD}","x":""#).as_bytes(),
            b"\xff\"}",
        ]
        .concat(),
    ];
    for conf in &configs {
        let out = lab.run(lab.command("fake"), conf);
        assert!(out.stdout == *conf, "the caller gets the real bytes");
    }
    let all = everything_in(&lab.logs);
    for secret in [PASSWORD, TOKEN] {
        assert!(!all.contains(secret), "{secret} is in the log directory");
    }
}
