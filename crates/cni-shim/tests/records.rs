//! One intact record per call; the log directory's safety; nothing about logging reaches the caller.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::util::{is_root, noise, path, skip, temp_dir, text, Lab, CONF};

#[test]
fn sixty_four_concurrent_calls_give_sixty_four_intact_records() {
    let lab = Lab::new(&[("fake", "cat; echo \"$CNI_CONTAINERID\" >&2")]);
    let children: Vec<_> = (0..64)
        .map(|i| {
            let mut c = lab.command("fake");
            c.env("CNI_CONTAINERID", format!("ctr-{i}"));
            let conf = format!(
                r#"{{"cniVersion":"1.0.0","name":"n{i}","type":"fake","pad":"{}"}}"#,
                "x".repeat(20_000)
            );
            std::thread::spawn({
                let lab_c = c;
                move || {
                    (
                        i,
                        conf.clone(),
                        crate::util::Lab::run_detached(lab_c, conf.into_bytes()),
                    )
                }
            })
        })
        .collect();
    for child in children {
        let (i, conf, out) = child.join().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(text(&out.stdout), conf);
        assert_eq!(text(&out.stderr), format!("ctr-{i}\n"));
    }
    let records = lab.records();
    assert_eq!(records.len(), 64);
    let ids: BTreeSet<_> = records
        .iter()
        .map(|r| r.container_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), 64);
    for r in &records {
        let n = r
            .container_id
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches("ctr-");
        assert!(
            r.stdin
                .text
                .as_deref()
                .unwrap_or_default()
                .contains(&format!("\"n{n}\"")),
            "{r:?}"
        );
        assert_eq!(r.stdin.text, r.stdout.text);
    }
    let leftovers: Vec<_> = fs::read_dir(&lab.logs)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

/// outer calls inner and leaf through CNI_PATH; inner calls leaf: one tree of four calls.
const OUTER: &str = r#"in=$(cat); d=${CNI_PATH%%:*}
printf '%s' "$in" | CNI_IFNAME=net1 "$d/inner" >/dev/null || exit 1
printf '%s' "$in" | "$d/leaf" >/dev/null || exit 2
echo '{"cniVersion":"1.0.0"}'"#;
const INNER: &str = r#"in=$(cat); printf '%s' "$in" | "${CNI_PATH%%:*}/leaf""#;
const LEAF: &str = "cat >/dev/null; echo '{}'";

#[test]
fn nested_calls_through_cni_path_form_one_tree() {
    let lab = Lab::new(&[("outer", OUTER), ("inner", INNER), ("leaf", LEAF)]);
    let mut c = lab.command("outer");
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    c.env("TRACEPARENT", tp);
    let out = lab.run(c, CONF.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let records = lab.records();
    let by = |p: &str| records.iter().filter(|r| r.plugin == p).collect::<Vec<_>>();
    let (outer, inner, leaves) = (by("outer"), by("inner"), by("leaf"));
    assert_eq!((outer.len(), inner.len(), leaves.len()), (1, 1, 2));
    assert!(
        records
            .iter()
            .all(|r| r.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"),
        "the runtime's trace id is honoured"
    );
    assert_eq!(outer[0].parent_id.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(outer[0].parent_source.as_deref(), Some("traceparent"));
    assert_eq!(inner[0].parent_id.as_ref(), Some(&outer[0].id));
    assert_eq!(inner[0].parent_source.as_deref(), Some("shim"));
    let leaf_parents: BTreeSet<_> = leaves
        .iter()
        .map(|l| l.parent_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        leaf_parents,
        BTreeSet::from([outer[0].id.clone(), inner[0].id.clone()])
    );

    let tree = lab.operator(&["tree", "ctr-1"]);
    assert!(tree.status.success(), "{}", text(&tree.stderr));
    let lines: Vec<String> = text(&tree.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(lines[1].starts_with("└─ outer ADD eth0  ok"), "{lines:#?}");
    assert!(
        lines[2].starts_with("   ├─ inner ADD net1  ok"),
        "{lines:#?}"
    );
    assert!(
        lines[3].starts_with("   │  └─ leaf ADD net1  ok"),
        "{lines:#?}"
    );
    assert!(
        lines[4].starts_with("   └─ leaf ADD eth0  ok"),
        "{lines:#?}"
    );

    let json = lab.operator(&["tree", "ctr-1", "--json"]);
    let forest: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(forest.as_array().map(Vec::len), Some(1));
    assert_eq!(forest[0]["record"]["id"], outer[0].id.as_str());
    assert_eq!(
        forest[0]["children"][0]["children"][0]["record"]["plugin"],
        "leaf"
    );
}

#[test]
fn records_are_private() {
    let lab = Lab::new(&[("fake", "echo hi")]);
    lab.call("fake", CONF);
    assert_eq!(fs::metadata(&lab.logs).unwrap().mode() & 0o777, 0o700);
    let files: Vec<_> = fs::read_dir(&lab.logs).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].metadata().unwrap().mode() & 0o777, 0o600);
    // A loose directory is tightened, since it is ours.
    fs::set_permissions(&lab.logs, fs::Permissions::from_mode(0o755)).unwrap();
    lab.call("fake", CONF);
    assert_eq!(fs::metadata(&lab.logs).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn secrets_are_redacted() {
    let lab = Lab::new(&[("fake", "cat")]);
    let conf = r#"{"cniVersion":"1.0.0","name":"n","type":"fake","kubeconfig":"/etc/k.conf","auth":{"password":"hunter2"},"x":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijk"}"#;
    let mut c = lab.command("fake");
    c.env("CNI_ARGS", "K8S_POD_NAME=p;API_TOKEN=s3cr3t");
    let out = lab.run(c, conf.as_bytes());
    assert_eq!(text(&out.stdout), conf, "the caller gets the real bytes");
    let raw = fs::read_dir(&lab.logs)
        .unwrap()
        .flatten()
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    for secret in ["hunter2", "s3cr3t", "eyJhbGciOiJIUzI1NiJ9"] {
        assert!(!raw.contains(secret), "{secret} is in the record: {raw}");
    }
    assert!(
        raw.contains("/etc/k.conf"),
        "a kubeconfig path is not a secret"
    );
    let r = &lab.records()[0];
    assert!(
        r.redacted.contains(&"stdin:/auth".to_owned())
            && r.redacted.contains(&"CNI_ARGS:API_TOKEN".to_owned()),
        "{:?}",
        r.redacted
    );
}

#[test]
fn the_size_bound_drops_the_oldest_first() {
    let lab = Lab::with_args(&[("fake", "cat")], &["--max-bytes", "20000"]);
    lab.configure(|c| c.prune_every = 1);
    for i in 0..30 {
        let mut c = lab.command("fake");
        c.env("CNI_CONTAINERID", format!("c{i:02}"));
        lab.run(c, format!(r#"{{"pad":"{}"}}"#, "y".repeat(1000)).as_bytes());
    }
    let total: u64 = fs::read_dir(&lab.logs)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(total <= 20_000, "{total} bytes kept");
    let kept: Vec<String> = lab
        .records()
        .iter()
        .filter_map(|r| r.container_id.clone())
        .collect();
    assert!(kept.len() >= 3, "{kept:?}");
    let expected: Vec<String> = (30 - kept.len()..30).map(|i| format!("c{i:02}")).collect();
    assert_eq!(kept, expected, "the newest are kept, contiguous");
}

/// The caller's outcome with a given (broken) log directory equals the outcome without any logging.
fn assert_unchanged(lab: &Lab) {
    let input = noise(300_000, 11);
    let out = lab.run(lab.command("fake"), &input);
    assert_eq!(out.status.code(), Some(42));
    assert!(out.stdout == input, "stdout changed");
    assert_eq!(text(&out.stderr), "to stderr\n");
}

const FAKE: &str = "cat; echo to stderr >&2; exit 42";

#[test]
fn an_unusable_log_directory_changes_nothing_for_the_caller() {
    let lab = Lab::new(&[("fake", FAKE)]);
    let file = lab.tmp.path().join("a-file");
    fs::write(&file, "not a directory").unwrap();
    for log_dir in [file.clone(), file.join("below")] {
        lab.configure(|c| c.log_dir = Some(log_dir.clone()));
        assert_unchanged(&lab);
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "not a directory");
}

#[test]
fn a_symlinked_log_directory_is_refused() {
    let lab = Lab::new(&[("fake", FAKE)]);
    let target = lab.tmp.path().join("elsewhere");
    fs::create_dir(&target).unwrap();
    let link = lab.tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    lab.configure(|c| c.log_dir = Some(link.clone()));
    assert_unchanged(&lab);
    assert_eq!(
        fs::read_dir(&target).unwrap().count(),
        0,
        "nothing written through the link"
    );
    let out = Command::new(crate::util::SHIM)
        .args([
            "install",
            "--real-dir",
            path(&lab.real),
            "--shim-dir",
            path(&lab.shim),
            "--log-dir",
            path(&link),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("symbolic link"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_foreign_log_directory_is_refused() {
    if !is_root() {
        return skip("a_foreign_log_directory_is_refused", "chown needs root");
    }
    let lab = Lab::new(&[("fake", FAKE)]);
    let foreign = lab.tmp.path().join("foreign");
    fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    lab.configure(|c| c.log_dir = Some(foreign.clone()));
    assert_unchanged(&lab);
    assert_eq!(fs::read_dir(&foreign).unwrap().count(), 0);
}

/// Unmounts on drop, also when the test fails.
struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_log_directory_changes_nothing_for_the_caller() {
    if !is_root() {
        return skip(
            "a_full_log_directory_changes_nothing_for_the_caller",
            "mounting a tmpfs needs root",
        );
    }
    let lab = Lab::new(&[("fake", FAKE)]);
    let small = temp_dir("tmpfs");
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=64k,mode=0700",
            "tmpfs",
            path(small.path()),
        ])
        .status();
    if !ok.is_ok_and(|s| s.success()) {
        return skip(
            "a_full_log_directory_changes_nothing_for_the_caller",
            "mount -t tmpfs failed",
        );
    }
    let _mount = Mount(small.path());
    // Fill it up.
    let _ = fs::write(small.path().join("filler"), vec![0u8; 1 << 20]);
    lab.configure(|c| c.log_dir = Some(small.path().to_path_buf()));
    assert_unchanged(&lab);
    let names: Vec<String> = fs::read_dir(small.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["filler"],
        "no partial record or temp file is left behind"
    );
}
