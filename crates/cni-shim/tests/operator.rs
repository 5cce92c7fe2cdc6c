//! The operator commands.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::util::{path, text, Lab, CONF, SHIM};

#[test]
fn install_is_idempotent_and_follows_the_real_directory() {
    let lab = Lab::new(&[("bridge", "exit 0"), ("host-local", "exit 0")]);
    fs::write(lab.real.join("README"), "not a plugin").unwrap();
    let links = |lab: &Lab| {
        let mut v: Vec<String> = fs::read_dir(&lab.shim)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_symlink())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(links(&lab), ["bridge", "host-local"]);
    let again = lab.operator(&["install", "--real-dir", path(&lab.real)]);
    assert!(
        text(&again.stdout).contains("is up to date"),
        "{}",
        text(&again.stdout)
    );

    lab.plugin("macvlan", "exit 0");
    fs::remove_file(lab.real.join("bridge")).unwrap();
    fs::write(lab.shim.join("static"), "someone else's file").unwrap();
    lab.plugin("static", "exit 0");
    let out = lab.operator(&["install", "--real-dir", path(&lab.real)]);
    let said = text(&out.stdout);
    assert!(
        said.contains("linked   macvlan")
            && said.contains("unlinked bridge")
            && said.contains("skipped  static"),
        "{said}"
    );
    assert_eq!(links(&lab), ["host-local", "macvlan"]);
    assert_eq!(
        fs::read_to_string(lab.shim.join("static")).unwrap(),
        "someone else's file"
    );

    let same = lab.operator(&["install", "--real-dir", path(&lab.shim)]);
    assert!(
        !same.status.success(),
        "a real directory equal to the shim directory is refused"
    );

    fs::remove_file(lab.shim.join("static")).unwrap();
    let out = lab.operator(&["uninstall"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!lab.shim.exists(), "uninstall removes everything it made");
}

#[test]
fn install_links_the_pass_through_and_upgrades_an_earlier_install() {
    let lab = Lab::new(&[("bridge", "echo '{\"cniVersion\":\"1.0.0\"}'")]);
    let target = |name: &str| fs::read_link(lab.shim.join(name)).unwrap();
    assert_eq!(target("bridge"), Path::new("cni-shim-passthrough"));
    assert!(
        !lab.shim.join("cni-shim").exists(),
        "the operator tool is not copied"
    );

    // An earlier version's install: the links pointed at a copy of the whole cni-shim.
    fs::remove_file(lab.shim.join("bridge")).unwrap();
    fs::copy(SHIM, lab.shim.join("cni-shim")).unwrap();
    std::os::unix::fs::symlink("cni-shim", lab.shim.join("bridge")).unwrap();
    let out = lab.operator(&["install", "--real-dir", path(&lab.real)]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        said.contains("linked   bridge") && said.contains("updated  the pass-through binary"),
        "{said}"
    );
    assert_eq!(target("bridge"), Path::new("cni-shim-passthrough"));
    assert!(
        !lab.shim.join("cni-shim").exists(),
        "the old copy is removed"
    );
    let mut c = lab.command("bridge");
    c.env("CNI_COMMAND", "VERSION");
    let call = lab.run(c, b"{}");
    assert!(call.status.success(), "{}", text(&call.stderr));
    assert_eq!(text(&call.stdout).trim(), r#"{"cniVersion":"1.0.0"}"#);

    // An old link left behind by an interrupted upgrade is still ours to remove.
    std::os::unix::fs::symlink("cni-shim", lab.shim.join("gone")).unwrap();
    let out = lab.operator(&["install", "--real-dir", path(&lab.real)]);
    assert!(
        text(&out.stdout).contains("unlinked gone"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn install_without_the_pass_through_beside_it_says_so_and_changes_nothing() {
    let lab = Lab::new(&[("bridge", "exit 0")]);
    let alone = lab.tmp.path().join("alone");
    fs::create_dir(&alone).unwrap();
    fs::copy(SHIM, alone.join("cni-shim")).unwrap();
    let fresh = lab.tmp.path().join("fresh-shim");
    let out = Command::new(alone.join("cni-shim"))
        .args([
            "install",
            "--real-dir",
            path(&lab.real),
            "--shim-dir",
            path(&fresh),
            "--no-log",
        ])
        .output()
        .unwrap();
    let said = text(&out.stderr);
    assert!(!out.status.success(), "installed without the pass-through");
    assert!(
        said.contains("find the pass-through binary")
            && said.contains("alone/cni-shim-passthrough"),
        "{said}"
    );
    assert!(!fresh.exists(), "made {} all the same", fresh.display());
}

fn add_and_del(lab: &Lab) {
    let add = r#"{"cniVersion":"0.4.0","name":"pub","type":"ipvlan","master":"eth0","ipam":{"type":"index2ip","index":2}}"#;
    let del = r#"{"cniVersion":"0.4.0","name":"pub","type":"ipvlan","master":"eth0","ipam":{"type":"index2ip"}}"#;
    for (verb, conf, pod) in [("ADD", add, "ndt-index2-a"), ("DEL", del, "ndt-index2-a")] {
        let mut c = lab.command("ipvlan");
        c.env("CNI_COMMAND", verb).env(
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE=exp;K8S_POD_NAME={pod}"),
        );
        lab.run(c, conf.as_bytes());
    }
    let mut c = lab.command("ipvlan");
    c.env("CNI_CONTAINERID", "other-ctr").env("FAIL", "1");
    lab.run(c, add.as_bytes());
}

const IPVLAN: &str = "cat >/dev/null; touch \"$0.ran\"; [ -z \"$FAIL\" ] || exit 7; echo '{}'";

#[test]
fn logs_filter_and_print_json() {
    let lab = Lab::new(&[("ipvlan", IPVLAN)]);
    add_and_del(&lab);
    let lines = |args: &[&str]| {
        let out = lab.operator(&[&["logs"], args].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&[]).len(), 3);
    assert!(lines(&[])[0].contains("other-ctr"), "newest first");
    assert_eq!(lines(&["--failed"]).len(), 1);
    assert!(lines(&["--failed"])[0].contains("exit 7"));
    assert_eq!(lines(&["--verb", "del"]).len(), 1);
    assert_eq!(lines(&["--pod", "exp/ndt"]).len(), 2);
    assert_eq!(lines(&["--container", "ctr-"]).len(), 2);
    assert_eq!(lines(&["--plugin", "bridge"]).len(), 0);
    assert_eq!(lines(&["--since", "1h"]).len(), 3);
    assert_eq!(lines(&["--since", "2999-01-01T00:00:00Z"]).len(), 0);
    assert_eq!(lines(&["-n", "2"]).len(), 2);
    let json = lines(&["--json", "--verb", "ADD"]);
    assert_eq!(json.len(), 2);
    for l in json {
        let r: cni_shim::Record = serde_json::from_str(&l).unwrap();
        assert_eq!(r.command.as_deref(), Some("ADD"));
    }
    assert!(!lab
        .operator(&["logs", "--since", "yesterday"])
        .status
        .success());
}

#[test]
fn show_prints_one_call_in_full() {
    let lab = Lab::new(&[("ipvlan", IPVLAN)]);
    add_and_del(&lab);
    let r = lab.records().remove(0);
    let out = lab.operator(&["show", &r.id[..8]]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("id         {}", r.id))
            && shown.contains("\"index\": 2")
            && shown.contains("pod        exp/ndt-index2-a"),
        "{shown}"
    );
    let out = lab.operator(&["show", "ffffffffffffffff"]);
    assert!(!out.status.success() && text(&out.stderr).contains("no record"));
}

#[test]
fn diff_finds_the_lossy_del() {
    let lab = Lab::new(&[("ipvlan", IPVLAN)]);
    add_and_del(&lab);
    let out = lab.operator(&["diff", "ctr-1"]);
    let said = text(&out.stdout);
    assert!(
        said.contains("ipvlan eth0: ADD [") && said.contains("- /ipam/index: 2   (missing in DEL)"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 2, "{said}");
    let out = lab.operator(&["diff", "other-ctr"]);
    assert!(text(&out.stdout).contains("no DEL recorded"));
}

#[test]
fn replay_prints_unless_told_and_then_runs_the_real_plugin() {
    let lab = Lab::new(&[("ipvlan", IPVLAN)]);
    add_and_del(&lab);
    let failed = lab
        .records()
        .into_iter()
        .find(|r| r.exit.code == 7)
        .unwrap();
    let marker = lab.real.join("ipvlan.ran");
    fs::remove_file(&marker).unwrap();
    let dry = lab.operator(&["replay", &failed.id]);
    let said = text(&dry.stdout);
    assert!(
        dry.status.success()
            && said.contains(path(&lab.real.join("ipvlan")))
            && !said.contains("FAIL"),
        "{said}"
    );
    assert!(said.contains("CNI_CONTAINERID=other-ctr"), "{said}");
    assert!(!marker.exists(), "a dry run runs nothing");
    let real = lab.operator(&["replay", &failed.id, "--yes"]);
    assert!(marker.exists(), "--yes runs the real plugin");
    // FAIL is not a CNI variable, so it is not recorded: the replay succeeds where the call failed.
    assert_eq!(real.status.code(), Some(0));
    assert!(
        text(&real.stderr).contains("exit 0 (recorded 7)"),
        "{}",
        text(&real.stderr)
    );
    let calls_before = lab.records().len();
    assert_eq!(
        calls_before, 3,
        "a replay runs the real plugin, not the shim"
    );
}

#[test]
fn enable_and_disable_containerd_are_reversible() {
    let lab = Lab::new(&[("bridge", "exit 0")]);
    let file = lab.tmp.path().join("config.toml");
    let original = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/opt/cni/bin\"\n  conf_dir = \"/etc/cni/net.d\"\n";
    fs::write(&file, original).unwrap();
    let run = |verb: &str| {
        let out = lab.operator(&[verb, "containerd", "--config", path(&file)]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let said = run("enable");
    assert!(said.contains("systemctl restart containerd"), "{said}");
    let on = fs::read_to_string(&file).unwrap();
    assert!(
        on.contains(&format!("bin_dir = \"{}\"", lab.shim.display())),
        "{on}"
    );
    assert!(run("enable").contains("already points"));
    assert_eq!(fs::read_to_string(&file).unwrap(), on);
    assert_eq!(
        fs::read_to_string(lab.tmp.path().join("config.toml.cni-shim.bak")).unwrap(),
        original
    );
    run("disable");
    assert_eq!(fs::read_to_string(&file).unwrap(), original);
    assert!(
        !lab.tmp.path().join("config.toml.cni-shim.bak").exists(),
        "the backup goes once restored"
    );
    assert!(run("disable").contains("nothing to undo"));
}

#[test]
fn enable_and_disable_multus() {
    let lab = Lab::new(&[("bridge", "exit 0")]);
    let file = lab.tmp.path().join("00-multus.conf");
    let original = r#"{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus","kubeconfig":"/etc/cni/net.d/multus.d/multus.kubeconfig","delegates":[{"type":"flannel"}]}"#;
    fs::write(&file, original).unwrap();
    let out = lab.operator(&["enable", "multus", "--config", path(&file)]);
    assert!(
        text(&out.stdout).contains("no restart needed"),
        "{}",
        text(&out.stdout)
    );
    let on: serde_json::Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(on["binDir"], path(&lab.shim));
    lab.operator(&["disable", "multus", "--config", path(&file)]);
    assert_eq!(fs::read_to_string(&file).unwrap(), original);
}

#[test]
fn enable_needs_an_installed_shim() {
    let lab = Lab::new(&[("bridge", "exit 0")]);
    let file = lab.tmp.path().join("crio.conf");
    fs::write(&file, "[crio.network]\n").unwrap();
    let out = crate::util::Lab::operator(
        &lab,
        &[
            "enable",
            "crio",
            "--config",
            path(&file),
            "--shim-dir",
            "/nonexistent",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(fs::read_to_string(&file).unwrap(), "[crio.network]\n");
    let _ = CONF;
}

#[test]
fn logs_follow_prints_new_calls_as_they_come() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let lab = Lab::new(&[("ipvlan", IPVLAN)]);
    lab.call("ipvlan", CONF);
    let mut follower = Command::new(crate::util::SHIM)
        .args([
            "logs",
            "--follow",
            "--verb",
            "DEL",
            "--log-dir",
            path(&lab.logs),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut c = lab.command("ipvlan");
    c.env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", "followed");
    lab.run(c, CONF.as_bytes());
    // A guard against a hang, not a timing: the line comes within a poll interval.
    let line = rx.recv_timeout(Duration::from_secs(30));
    let _ = follower.kill();
    let _ = follower.wait();
    let line = line.unwrap_or_else(|e| panic!("no line from logs --follow: {e}"));
    assert!(line.contains("DEL") && line.contains("followed"), "{line}");
    assert!(
        rx.try_recv().is_err(),
        "the earlier ADD does not pass the filter"
    );
}
