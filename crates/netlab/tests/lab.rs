//! The lab, run for real: network namespaces, the reference plugins and index2ip. Root only; each test uses a lab
//! name of its own and checks that nothing is left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{root, skip};

fn netlab() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_netlab"))
}

/// index2ip as the workspace builds it, beside netlab.
fn index2ip() -> PathBuf {
    netlab().with_file_name("index2ip")
}

fn ready(test: &str) -> bool {
    if !crate::util::is_root() {
        skip(
            test,
            "needs root: the lab creates network namespaces and mounts",
        );
        return false;
    }
    for (path, how) in [
        (index2ip(), "cargo build -p index2ip"),
        (
            netlab().with_file_name("cni-shim"),
            "cargo build -p cni-shim",
        ),
        (
            netlab().with_file_name("cni-shim-passthrough"),
            "cargo build -p cni-shim",
        ),
        (
            PathBuf::from("/usr/lib/cni/macvlan"),
            "apt-get install containernetworking-plugins",
        ),
        (
            PathBuf::from("/usr/bin/ping"),
            "apt-get install iputils-ping",
        ),
    ] {
        if !path.is_file() {
            skip(test, &format!("{} is missing ({how})", path.display()));
            return false;
        }
    }
    true
}

/// Runs netlab with a lab name and the repository's manifests.
fn lab(name: &str, verb: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(netlab());
    cmd.current_dir(root()).arg(verb).args(["--name", name]);
    if matches!(verb, "up" | "run") {
        cmd.args(["--emulate", "--manifests", "k8s", "--index2ip"])
            .arg(index2ip());
    }
    cmd.args(extra).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Takes the lab down (also when the test failed) and asserts nothing of it remains.
struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        let out = lab(&self.0, "down", &[]);
        let left = crate::util::namespaces_of(&self.0);
        if !std::thread::panicking() {
            assert!(out.status.success(), "down: {}", text(&out));
            assert!(left.is_empty(), "namespaces left: {left:?}");
            assert!(
                !Path::new("/run/netlab").join(&self.0).exists(),
                "state directory left"
            );
        }
    }
}

/// A topology file of one test's own, its directory removed on drop (tests run side by side in one process).
struct TopologyFile {
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for TopologyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn topology_file(tag: &str, yaml: &str) -> TopologyFile {
    let dir = std::env::temp_dir().join(format!("netlab-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    TopologyFile { dir, path }
}

fn name(tag: &str) -> String {
    format!("nl{tag}{}", std::process::id())
}

#[test]
fn the_default_lab_comes_up_checks_out_and_leaves_nothing() {
    if !ready("lab::default") {
        return;
    }
    let n = name("d");
    let _guard = Guard(n.clone());
    // With every plugin call recorded through cni-shim, built beside netlab.
    let out = lab(&n, "run", &["--trace"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for expected in [
        // Physical nodes run multus with flannel as the cluster network; the virtual node plain flannel.
        "node mlab1    mlab/type=physical     192.0.2.9        CNI config 00-multus.conf",
        "node virt1    mlab/type=virtual",
        // ndt-index2 gets index 2 on each machine: 9 + 2, 22 + 2, with the IPv6 convention.
        "net1 192.0.2.11/26 2001:db8:1::11/64",
        "net1 192.0.2.24/26 2001:db8:1::24/64",
        // The unlabelled node is reported as the operator must hear it.
        "node bare1 has no mlab/type label",
        "WARN plain-bare1",
        "==> check passed",
        // The trace: the main plugin delegating to index2ip, as cni-shim recorded it.
        "   └─ index2ip ADD net1  ok",
        "nothing left behind",
    ] {
        assert!(t.contains(expected), "missing {expected:?} in:\n{t}");
    }
    // The check really looked: TCP to every public address, flannel across nodes.
    assert_eq!(t.matches("tcp ok").count(), 16, "{t}");
    assert!(t.contains("10/10"), "{t}");
    // A second down has nothing to do and says so.
    let again = lab(&n, "down", &[]);
    assert!(
        again.status.success() && text(&again).contains("no lab"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_namespace_named_as_the_labs_would_be_is_refused_and_left_alone() {
    if !ready("lab::foreign-netns") {
        return;
    }
    /// Someone else's namespace, removed however the test ends.
    struct Foreign(String);
    impl Drop for Foreign {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    /// `down` however the test ends; what it says is checked below when the test gets there.
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = lab(&self.0, "down", &[]);
        }
    }
    let n = name("f");
    let foreign = Foreign(format!("{n}-site"));
    let _down = Down(n.clone());
    let made = Command::new("ip")
        .args(["netns", "add", &foreign.0])
        .status()
        .unwrap();
    assert!(made.success());
    let up = lab(&n, "up", &[]);
    assert!(!up.status.success(), "{}", text(&up));
    assert!(
        text(&up).contains(&format!(
            "a network namespace named {} exists already and is not this lab's",
            foreign.0
        )),
        "{}",
        text(&up)
    );
    // `down` removes what the lab made and leaves the other namespace, which its leak report still names.
    let down = lab(&n, "down", &[]);
    assert!(text(&down).contains(&foreign.0), "{}", text(&down));
    assert!(
        netlab_lab::sys::netns_path(&foreign.0).exists(),
        "down removed a namespace that was not the lab's"
    );
    assert!(
        !Path::new("/run/netlab").join(&n).exists(),
        "state directory left"
    );
    // Made from under the check (someone else's, made meanwhile): the making itself says so, and touches nothing.
    let made = netlab_lab::sys::add_netns(std::slice::from_ref(&foreign.0), &[]);
    assert!(
        matches!(&made, Err(netlab_lab::Error::NetnsTaken(name)) if *name == foreign.0),
        "{made:?}"
    );
    assert!(netlab_lab::sys::netns_path(&foreign.0).exists());
}

#[test]
fn a_node_whose_namespace_would_be_the_switchs_is_refused_before_anything_is_made() {
    if !ready("lab::duplicate-netns") {
        return;
    }
    let topo = topology_file(
        "site",
        "site: {ipv4: 192.0.2.0/26, gateway4: 192.0.2.1}\n\
         nodes:\n  - {name: site, offset: 9, labels: {mlab/type: physical}}\n",
    );
    let n = name("u");
    let guard = Guard(n.clone());
    let up = lab(&n, "up", &["--topology", topo.path.to_str().unwrap()]);
    let t = text(&up);
    assert!(!up.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "the site switch and node site would both have the network namespace {n}-site"
        )),
        "{t}"
    );
    assert!(!netlab_lab::sys::netns_path(&format!("{n}-site")).exists());
    drop(guard);
}

#[test]
fn an_index_beyond_a_small_site_is_refused_against_its_pod() {
    if !ready("lab::small-site") {
        return;
    }
    let topo = topology_file(
        "site29",
        "site: {ipv4: 192.0.2.0/29, gateway4: 192.0.2.1, dns: [198.51.100.53]}\n\
         nodes:\n  - {name: mlab1, offset: 3, labels: {mlab/type: physical}}\n",
    );
    let n = name("s");
    let guard = Guard(n.clone());
    let up = lab(&n, "up", &["--topology", topo.path.to_str().unwrap()]);
    let t = text(&up);
    assert!(up.status.success(), "{t}");
    // Index 2 fits a /29 with the machine at +3; index 5 (wehe) does not, and index2ip says why and what fits.
    assert!(
        t.contains("pod ndt-index2-mlab1       on mlab1  eth0 192.168.0.66/26, net1 192.0.2.5/29"),
        "{t}"
    );
    let wehe = t
        .lines()
        .find(|l| l.contains("pod wehe-index5-mlab1"))
        .unwrap_or_default();
    assert!(
        wehe.contains("FAILED: net1 (default/index2ip-index-5-conf)"),
        "{wehe}"
    );
    assert!(wehe.contains("index 5 gives 192.0.2.8, outside the subnet of node block 192.0.2.3/29; indices 1 to 3 fit"), "{wehe}");
    let check = lab(&n, "check", &[]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    drop(guard);
}

#[test]
fn two_pods_with_one_index_on_one_node_are_both_reported() {
    if !ready("lab::duplicate") {
        return;
    }
    let topo = topology_file(
        "dup",
        "site: {ipv4: 192.0.2.0/26, gateway4: 192.0.2.1}\n\
         nodes:\n  - {name: mlab1, offset: 9, labels: {mlab/type: physical}}\n\
         pods:\n  - name: other-ndt\n    node: mlab1\n    annotations:\n\
         \x20     k8s.v1.cni.cncf.io/networks: index2ip-index-2-conf\n\
         \x20     v1.multus-cni.io/default-network: flannel-experiment-conf\n",
    );
    let n = name("x");
    let guard = Guard(n.clone());
    let up = lab(&n, "up", &["--topology", topo.path.to_str().unwrap()]);
    assert!(up.status.success(), "{}", text(&up));
    // The node's own view: its command line and its CNI configuration, where a real node keeps them.
    let node = lab(
        &n,
        "exec",
        &[
            "--node",
            "mlab1",
            "--",
            "sh",
            "-c",
            "cat /proc/cmdline; ls /etc/cni/net.d",
        ],
    );
    let seen = text(&node);
    assert!(
        seen.contains("epoxy.ipv4=192.0.2.9/26") && seen.contains("00-multus.conf"),
        "{seen}"
    );
    let check = lab(&n, "check", &[]);
    let t = text(&check);
    assert_eq!(check.status.code(), Some(1), "{t}");
    for pod in ["ndt-index2-mlab1", "other-ndt"] {
        let line = t
            .lines()
            .find(|l| l.starts_with(&format!("FAIL {pod}:")) && l.contains("index 2"))
            .unwrap_or_default();
        assert!(!line.is_empty(), "no failure against {pod}:\n{t}");
    }
    assert!(
        t.contains("already held on node mlab1 by pod ndt-index2-mlab1") || t.contains("in use"),
        "{t}"
    );
    drop(guard);
}

#[test]
fn a_lab_killed_during_up_is_fully_removed_by_down() {
    if !ready("lab::killed") {
        return;
    }
    let n = name("k");
    let _guard = Guard(n.clone());
    let mut child = Command::new(netlab())
        .current_dir(root())
        .args(["up", "--name", &n, "--manifests", "k8s", "--index2ip"])
        .arg(index2ip())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Somewhere in the middle: after the site and some nodes or pods exist.
    std::thread::sleep(std::time::Duration::from_millis(250));
    let _ = child.kill();
    let _ = child.wait();
    // The guard's down must leave nothing, wherever up was stopped.
}

#[test]
fn a_pod_saved_on_its_own_is_read_back_and_a_line_cut_short_is_skipped() {
    use netlab_lab::state::{PodState, State, POD_JOURNAL};
    if !crate::util::is_root() {
        skip(
            "lab::pod-journal",
            "needs root: lab state lives under /run/netlab",
        );
        return;
    }
    let n = name("j");
    let dir = Path::new("/run/netlab").join(&n);
    /// The state directory, removed however the test ends.
    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    std::fs::create_dir_all(&dir).unwrap();
    let _dir = Dir(dir.clone());
    let pod = |netns: &str, error: Option<&str>| PodState {
        name: netns.into(),
        netns: netns.into(),
        error: error.map(str::to_owned),
        ..PodState::default()
    };
    let state = State {
        name: n.clone(),
        dir: dir.clone(),
        pods: vec![pod("a", None), pod("b", None)],
        ..State::default()
    };
    state.save().unwrap();
    state.save_pod(&pod("a", Some("first"))).unwrap();
    state.save_pod(&pod("b", Some("second"))).unwrap();
    // A save of b cut short (a full disk, a crash): half a line, as save_pod starts one.
    let journal = dir.join(POD_JOURNAL);
    let whole = std::fs::read(&journal).unwrap();
    let last = whole[1..]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let mut cut = whole[last..].to_vec();
    cut.truncate(cut.len() / 2);
    let mut bytes = whole.clone();
    bytes.extend_from_slice(&cut);
    std::fs::write(&journal, bytes).unwrap();
    // The next save is not swallowed by it.
    state.save_pod(&pod("a", Some("third"))).unwrap();
    let loaded = State::load(&n).unwrap().unwrap();
    let errors: Vec<_> = loaded.pods.iter().map(|p| p.error.as_deref()).collect();
    assert_eq!(errors, [Some("third"), Some("second")]);
    // A whole save supersedes the journal, which it empties.
    let before = std::fs::read(&journal).unwrap();
    state.save().unwrap();
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0);
    let loaded = State::load(&n).unwrap().unwrap();
    assert!(loaded.pods.iter().all(|p| p.error.is_none()));
    // Lines from before it that are still there (a crash between the two) do not put back what it superseded;
    // a line saved after it does count.
    std::fs::write(&journal, before).unwrap();
    state.save_pod(&pod("b", Some("fourth"))).unwrap();
    let loaded = State::load(&n).unwrap().unwrap();
    let errors: Vec<_> = loaded.pods.iter().map(|p| p.error.as_deref()).collect();
    assert_eq!(errors, [None, Some("fourth")]);
}
