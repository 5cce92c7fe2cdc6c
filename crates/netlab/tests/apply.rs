//! The documented apply sequence against the real control plane (root, the upstream peers).
//!
//! etcd and kube-apiserver (the releases of upstream/versions.env, built by `scripts/upstream.sh`) run in a network
//! namespace of their own, loopback only, with what a kubeadm cluster enables: Node and RBAC authorization, the
//! default admission plugins and NodeRestriction, privileged containers allowed, service-account tokens signed
//! with a key made here. Then, from a clean cluster:
//!
//! 1. `scripts/apply.sh`, the command k8s/README.md tells an operator to run, must have every object accepted the
//!    first time;
//! 2. each identity may do what its program calls: flanneld's service account, and the node identity multus's
//!    thin plugin runs as (the kubelet's credentials), including a real pod status update through
//!    NodeRestriction; multus's own service account may do nothing;
//! 3. a second apply changes nothing;
//! 4. on another clean cluster, the old way (one kustomization holding the CRD and the networks, one
//!    `kubectl apply -k`) fails as it did for operators: "ensure CRDs are installed first", exit status 1.
//!
//! Every process is killed and the namespace and files removed however the test ends.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netlab_lab::control_plane::{ControlPlane, Options};
use netlab_lint::input::{load, Render};

use crate::util::{root, skip};

const TEST: &str = "apply::documented_sequence_on_a_real_api_server";
const CRD: &str = "network-attachment-definitions.k8s.cni.cncf.io";
const FLANNEL: &str = "system:serviceaccount:kube-system:flannel";
const MULTUS: &str = "system:serviceaccount:kube-system:multus";

/// The directory holding etcd, kube-apiserver and kubectl (test-support's `upstream_bin`); `Err` says why there is
/// none and how to get one.
fn peers() -> Result<PathBuf, String> {
    let dir = test_support::upstream_bin()
        .ok_or("the upstream peers are not built: run scripts/upstream.sh (or set UPSTREAM_BIN)")?;
    match ["etcd", "kube-apiserver", "kubectl"]
        .iter()
        .find(|bin| !dir.join(bin).is_file())
    {
        Some(bin) => Err(format!(
            "{} has no {bin}: run scripts/upstream.sh",
            dir.display()
        )),
        None => Ok(dir),
    }
}

/// A control plane of the test's own: etcd and kube-apiserver (with the controllers when asked) in a network
/// namespace, in a temporary directory; the namespace, the processes and the directory go when it is dropped.
struct Cluster {
    // Dropped first: the processes stop before their directory goes.
    cp: ControlPlane,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start(bin: &Path, controllers: bool) -> Cluster {
        static N: AtomicUsize = AtomicUsize::new(0);
        let netns = format!(
            "netlab-apply-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::start(
            bin,
            dir.path(),
            &netns,
            &Options {
                controllers,
                ..Options::default()
            },
        )
        .unwrap_or_else(|e| panic!("the control plane did not start: {e}"));
        Cluster { cp, dir }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.cp.kubectl(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A program run in the namespace with kubectl's environment, from the repository's root.
    fn in_netns(&self, program: &Path) -> Command {
        let mut cmd = self.cp.in_netns(program);
        cmd.current_dir(root());
        cmd
    }

    /// `kubectl auth can-i` as `user` (and `groups`); true for "yes".
    fn can(&self, user: &str, groups: &[&str], what: &[&str]) -> bool {
        let mut args = vec!["auth", "can-i"];
        args.extend(what);
        let user = format!("--as={user}");
        args.push(&user);
        let groups: Vec<String> = groups.iter().map(|g| format!("--as-group={g}")).collect();
        args.extend(groups.iter().map(String::as_str));
        let out = self.kubectl(&args);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The peers' directory when the test can run: root, the peers built, openssl there; otherwise says why it did not
/// run (a failure under CI=true) and gives `None`.
fn ready(test: &str) -> Option<PathBuf> {
    if !crate::util::is_root() {
        skip(
            test,
            "needs root: the control plane runs in a network namespace of its own",
        );
        return None;
    }
    if Command::new("openssl").arg("version").output().is_err() {
        skip(test, "openssl is missing (apt-get install openssl)");
        return None;
    }
    peers().map_err(|why| skip(test, &why)).ok()
}

/// The repository's objects as scripts/apply.sh applies them.
fn object_count() -> usize {
    let (sources, _) = load(
        &[root().join("k8s/crds"), root().join("k8s")],
        Render::Direct,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    netlab_model::manifest::parse(&sources).0.len()
}

/// Each line kubectl printed for an object, with the wait's "condition met" left out.
fn object_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with(" condition met"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn documented_sequence_on_a_real_api_server() {
    let Some(bin) = ready(TEST) else {
        return;
    };
    let started = Instant::now();

    // k8s/README.md tells the operator to run this script; the test runs what it says.
    let readme = fs::read_to_string(root().join("k8s/README.md")).unwrap();
    assert!(
        readme.contains("\nscripts/apply.sh\n"),
        "k8s/README.md no longer shows `scripts/apply.sh` as the apply command"
    );
    let cp = Cluster::start(&bin, false);
    let ready = started.elapsed();

    // 1. Every object accepted the first time.
    let first = run(&mut cp.in_netns(&root().join("scripts/apply.sh")));
    let lines = object_lines(&first);
    assert!(
        first.status.success(),
        "first apply failed:\n{}",
        text(&first)
    );
    assert_eq!(lines.len(), object_count(), "{}", text(&first));
    assert!(
        lines.iter().all(|l| l.ends_with(" created")),
        "not every object was created the first time:\n{}",
        text(&first)
    );

    // 2. What each program calls. flanneld (--kube-subnet-mgr): its own pod, the nodes, its node's status.
    for what in [
        &["get", "pods", "-n", "kube-system"][..],
        &["get", "nodes"],
        &["list", "nodes"],
        &["watch", "nodes"],
        &["patch", "nodes", "--subresource=status"],
    ] {
        assert!(cp.can(FLANNEL, &[], what), "flannel cannot {what:?}");
    }
    // multus's thin plugin, as the node: the networks a pod names, the pod, its status (network-status) and events.
    // The Node authorizer answers for pods only about pods bound to the node, so there is one.
    let node = |n: &str| format!("system:node:{n}");
    let probe = cp.dir.path().join("probe.yaml");
    fs::write(&probe, "apiVersion: v1\nkind: Node\nmetadata:\n  name: mlab1\n  labels: {mlab/type: physical}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: default}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: probe, namespace: default}\nspec:\n  nodeName: mlab1\n  automountServiceAccountToken: false\n  containers: [{name: c, image: registry.example.org/c:1}]\n").unwrap();
    let made = cp.kubectl(&["apply", "-f", &probe.display().to_string()]);
    assert!(made.status.success(), "{}", text(&made));
    let nodes = ["system:nodes"];
    for ns in ["default", "kube-system"] {
        for verb in ["get", "list", "watch"] {
            assert!(
                cp.can(&node("mlab1"), &nodes, &[verb, CRD, "-n", ns]),
                "the node cannot {verb} NetworkAttachmentDefinitions in {ns}"
            );
        }
    }
    for what in [
        &["get", "pods/probe", "-n", "default"][..],
        &[
            "update",
            "pods/probe",
            "--subresource=status",
            "-n",
            "default",
        ],
        &["create", "events", "-n", "default"],
        &["patch", "events", "-n", "default"],
    ] {
        assert!(
            cp.can(&node("mlab1"), &nodes, what),
            "the node cannot {what:?}"
        );
    }
    assert!(
        !cp.can(
            &node("mlab2"),
            &nodes,
            &["get", "pods/probe", "-n", "default"]
        ),
        "another node reads a pod not bound to it"
    );
    // The token multus's installer writes grants nothing.
    for what in [
        &["get", CRD, "-n", "default"][..],
        &["get", "pods", "-n", "default"],
    ] {
        assert!(
            !cp.can(MULTUS, &[], what),
            "multus's own account can {what:?}"
        );
    }
    // The write multus makes, for real, through NodeRestriction: the pod's network-status, by its own node only.
    let pod = cp.kubectl(&["get", "pod", "probe", "-n", "default", "-o", "json"]);
    assert!(pod.status.success(), "{}", text(&pod));
    let mut pod: serde_json::Value = serde_json::from_slice(&pod.stdout).unwrap();
    pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"] =
        serde_json::Value::from(r#"[{"name":"kube-system/flannel-conf","interface":"eth0"}]"#);
    let status_file = cp.dir.path().join("pod.json");
    fs::write(&status_file, pod.to_string()).unwrap();
    let file = status_file.display().to_string();
    for (n, allowed) in [("mlab1", true), ("mlab2", false)] {
        let user = format!("--as={}", node(n));
        let out = cp.kubectl(&[
            "replace",
            "--subresource=status",
            "-f",
            &file,
            &user,
            "--as-group=system:nodes",
        ]);
        assert_eq!(out.status.success(), allowed, "{n}: {}", text(&out));
    }

    // 3. A second apply is a no-op.
    let second = run(&mut cp.in_netns(&root().join("scripts/apply.sh")));
    assert!(
        second.status.success(),
        "second apply failed:\n{}",
        text(&second)
    );
    let lines = object_lines(&second);
    assert_eq!(lines.len(), object_count(), "{}", text(&second));
    assert!(
        lines.iter().all(|l| l.ends_with(" unchanged")),
        "the second apply changed something:\n{}",
        text(&second)
    );
    drop(cp);

    // 4. The old way on another clean cluster: the CRD and the networks in one kustomization, one apply.
    let cp = Cluster::start(&bin, false);
    let old = cp.dir.path().join("old");
    fs::create_dir(&old).unwrap();
    // kustomize takes other kustomizations only by relative path.
    let up = "../".repeat(old.components().count() - 1);
    let repo = fs::canonicalize(root()).unwrap();
    let repo = repo.strip_prefix("/").unwrap().display().to_string();
    fs::write(
        old.join("kustomization.yaml"),
        format!("resources:\n  - {up}{repo}/k8s/crds\n  - {up}{repo}/k8s\n"),
    )
    .unwrap();
    let out = cp.kubectl(&["apply", "-k", &old.display().to_string()]);
    let all = text(&out);
    assert!(
        !out.status.success(),
        "the old single apply succeeded:\n{all}"
    );
    assert!(
        all.contains("resource mapping not found")
            && all.contains("ensure CRDs are installed first"),
        "{all}"
    );
    assert_eq!(
        all.matches("no matches for kind \"NetworkAttachmentDefinition\"")
            .count(),
        14,
        "{all}"
    );
    drop(cp);
    eprintln!(
        "apply: kube-apiserver ready in {:.1} s; the whole test {:.1} s",
        ready.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// The prerequisite k8s/README.md names for flanneld's `--kube-subnet-mgr`: kube-controller-manager with
/// `--allocate-node-cidrs`, the flannel network and a /26 mask gives every node its own /26 of 192.168.0.0/16.
#[test]
fn the_controller_manager_gives_each_node_a_26() {
    const TEST: &str = "apply::the_controller_manager_gives_each_node_a_26";
    let Some(bin) = ready(TEST) else {
        return;
    };
    let cluster = Cluster::start(&bin, true);
    let nodes = cluster.dir.path().join("nodes.yaml");
    fs::write(
        &nodes,
        "apiVersion: v1\nkind: Node\nmetadata: {name: mlab1, labels: {mlab/type: physical}}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: mlab2, labels: {mlab/type: virtual}}\n",
    )
    .unwrap();
    let made = cluster.kubectl(&["apply", "-f", &nodes.display().to_string()]);
    assert!(made.status.success(), "{}", text(&made));
    let network: ipnet::Ipv4Net = "192.168.0.0/16".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let cidrs = loop {
        let out = cluster.kubectl(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.spec.podCIDR}{\"\\n\"}{end}",
        ]);
        let cidrs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if cidrs.len() == 2 {
            break cidrs;
        }
        assert!(
            Instant::now() < deadline,
            "no pod CIDRs within 30 s: {cidrs:?}\n--- kube-controller-manager.log\n{}",
            cluster.cp.log_tail("kube-controller-manager")
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let nets: Vec<ipnet::Ipv4Net> = cidrs.iter().map(|c| c.parse().unwrap()).collect();
    for net in &nets {
        assert_eq!(net.prefix_len(), 26, "{cidrs:?}");
        assert!(network.contains(net), "{net} is outside {network}");
    }
    assert_ne!(nets[0], nets[1], "two nodes share a pod CIDR");
}
