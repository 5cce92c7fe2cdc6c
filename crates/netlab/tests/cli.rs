//! The binary: exit codes, output formats, `--nodes`, `gen --check`.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use crate::util::*;

fn netlab(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netlab"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running netlab: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn lint_exits_0_on_the_repo_and_1_with_file_line_on_errors(
) -> Result<(), Box<dyn std::error::Error>> {
    let out = netlab(&["lint"], &root());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("netlab lint: 0 errors, 0 warnings"),
        "{}",
        text(&out.stdout)
    );

    let dir = tempfile::tempdir()?;
    // An index network whose name says 3 and whose ipam.index is 4; `index2ip-index-3-conf` at line 7.
    let broken = r#"apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: index2ip-index-3-conf
  namespace: default
spec:
  config: |
    {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "ipvlan", "master": "eth0", "mode": "l2", "ipam": {"type": "index2ip", "index": 4}}, {"type": "tuning", "sysctl": {"net.ipv6.conf.IFNAME.accept_ra": "0"}}]}
"#;
    fs::write(dir.path().join("bad.yaml"), broken)?;
    let out = netlab(&["lint", "bad.yaml"], dir.path());
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("bad.yaml:7: error[index-name]: NetworkAttachmentDefinition default/index2ip-index-3-conf: the name says index 3 but ipam.index is 4"), "{stdout}");
    assert!(stdout.contains("1 error, 0 warnings"), "{stdout}");

    let out = netlab(&["lint", "bad.yaml", "--format", "json"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["summary"]["errors"], 1);
    assert_eq!(v["findings"][0]["rule"], "index-name");
    assert_eq!(v["findings"][0]["line"], 7);
    assert_eq!(out.status.code(), Some(1));
    Ok(())
}

#[test]
fn lint_reads_a_node_inventory_and_refuses_a_bad_one() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    fs::write(
        dir.path().join("nodes.json"),
        r#"{"kind": "List", "items": [{"kind": "Node", "metadata": {"name": "n1"}}]}"#,
    )?;
    let k8s = root().join("k8s");
    let k8s = k8s.to_str().unwrap_or_default();
    let out = netlab(&["lint", k8s, "--nodes", "nodes.json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("error[node-label]: Node n1: node n1 has no mlab/type label"),
        "{}",
        text(&out.stdout)
    );
    fs::write(dir.path().join("pods.json"), r#"{"kind": "Pod"}"#)?;
    let out = netlab(&["lint", k8s, "--nodes", "pods.json"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a node list"),
        "{}",
        text(&out.stderr)
    );
    let out = netlab(&["lint", "missing.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    Ok(())
}

#[test]
fn gen_check_passes_on_the_checked_in_tree() {
    let out = netlab(&["gen", "--check"], &root());
    assert_eq!(
        out.status.code(),
        Some(0),
        "regenerating would change the checked-in files:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("generated files are current"));
}

#[test]
fn gen_check_names_changed_missing_and_stale_files_and_gen_repairs_them(
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let r = dir.path();
    fs::write(r.join("Cargo.toml"), "")?;
    fs::create_dir(r.join("crates"))?;
    let out = netlab(&["gen"], r);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(netlab(&["gen", "--check"], r).status.code(), Some(0));

    let changed = r.join("k8s/networks/index2ip-index-7-conf.yaml");
    fs::write(
        &changed,
        fs::read_to_string(&changed)?.replace("\"index\": 7", "\"index\": 8"),
    )?;
    fs::remove_file(r.join("k8s/multus/configmap.yaml"))?;
    fs::write(
        r.join("k8s/networks/index2ip-index-13-conf.yaml"),
        format!("{}\nkind: Old\n", netlab_model::gen::HEADER),
    )?;
    fs::write(r.join("k8s/networks/hand-written.yaml"), "kind: Mine\n")?;
    let before = fs::read_to_string(&changed)?;

    let out = netlab(&["gen", "--check"], r);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("k8s/networks/index2ip-index-7-conf.yaml: differs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("k8s/multus/configmap.yaml: missing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("k8s/networks/index2ip-index-13-conf.yaml: generated earlier"),
        "{stdout}"
    );
    assert!(!stdout.contains("hand-written"), "{stdout}");
    assert_eq!(
        fs::read_to_string(&changed)?,
        before,
        "--check changed a file"
    );

    assert_eq!(netlab(&["gen"], r).status.code(), Some(0));
    assert_eq!(netlab(&["gen", "--check"], r).status.code(), Some(0));
    assert!(!r.join("k8s/networks/index2ip-index-13-conf.yaml").exists());
    assert!(r.join("k8s/networks/hand-written.yaml").exists());
    let leftovers: Vec<_> = fs::read_dir(r.join("k8s/networks"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

#[test]
fn gen_refuses_a_directory_that_is_not_the_repository() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let out = netlab(&["gen"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not the repository root"));
    assert!(
        fs::read_dir(dir.path())?.next().is_none(),
        "wrote into a stranger's directory"
    );
    Ok(())
}

#[test]
fn run_refuses_flags_that_do_not_apply_with_or_without_vm() {
    for (args, names) in [
        (
            &["run", "--vm", "--plugins", "/usr/lib/cni"][..],
            "--plugins",
        ),
        (
            &["run", "--vm", "--index2ip", "/bin/true"][..],
            "--index2ip",
        ),
        (&["run", "--remote-control-plane", "/tmp"][..], "--peers"),
        (&["run", "--vm-timeout", "5"][..], "--vm"),
    ] {
        let out = netlab(args, &root());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot be used with")
                || stderr.contains("required arguments were not provided"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
}

#[test]
fn run_vm_refuses_a_memory_size_no_lab_fits_in() {
    let out = netlab(&["run", "--vm", "--vm-memory", "64"], &root());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--vm-memory"), "{stderr}");
    assert!(stderr.contains("256..=65536"), "{stderr}");
}

#[test]
fn up_without_the_peers_says_how_to_build_them_and_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let peers = dir.path().display().to_string();
    let out = netlab(&["up", "--name", "nopeers", "--peers", &peers], &root());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the upstream peers are not built"),
        "{stderr}"
    );
    assert!(stderr.contains("scripts/upstream.sh"), "{stderr}");
    assert!(stderr.contains("--emulate"), "{stderr}");
    assert!(!Path::new("/run/netlab/nopeers").exists());
    // --trace belongs to the emulation.
    let out = netlab(&["up", "--trace"], &root());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--emulate"),
        "{}",
        text(&out.stderr)
    );
}
