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
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netlab_lint::input::{load, Render};

use crate::util::{root, skip};

const TEST: &str = "apply::documented_sequence_on_a_real_api_server";
const ADMIN_TOKEN: &str = "netlab-apply-admin";
const CRD: &str = "network-attachment-definitions.k8s.cni.cncf.io";
const FLANNEL: &str = "system:serviceaccount:kube-system:flannel";
const MULTUS: &str = "system:serviceaccount:kube-system:multus";

/// The directory holding etcd, kube-apiserver and kubectl: `UPSTREAM_BIN`, else what `scripts/upstream.sh --bin-dir`
/// prints. `Err` says why there is none and how to get one.
fn peers() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("UPSTREAM_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let out = Command::new(root().join("scripts/upstream.sh"))
                .arg("--bin-dir")
                .output()
                .map_err(|e| format!("scripts/upstream.sh: {e}"))?;
            if !out.status.success() {
                return Err(
                    "the upstream peers are not built: run scripts/upstream.sh (or set UPSTREAM_BIN)"
                        .into(),
                );
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    for bin in ["etcd", "kube-apiserver", "kubectl"] {
        if !dir.join(bin).is_file() {
            return Err(format!(
                "{} has no {bin}: run scripts/upstream.sh",
                dir.display()
            ));
        }
    }
    Ok(dir)
}

/// etcd and kube-apiserver in a network namespace of their own; everything goes when it is dropped.
struct ControlPlane {
    netns: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
    children: Vec<Child>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
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

impl ControlPlane {
    fn start(bin: &Path) -> ControlPlane {
        static N: AtomicUsize = AtomicUsize::new(0);
        let netns = format!(
            "netlab-apply-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().unwrap();
        let ok = run(Command::new("ip").args(["netns", "add", &netns]));
        assert!(ok.status.success(), "ip netns add: {}", text(&ok));
        let mut cp = ControlPlane {
            netns,
            dir,
            bin: bin.to_owned(),
            children: Vec::new(),
        };
        let up = run(Command::new("ip").args(["-n", &cp.netns, "link", "set", "lo", "up"]));
        assert!(up.status.success(), "lo up: {}", text(&up));
        let d = cp.dir.path().to_owned();
        // The service-account signing key pair, and a static token for an administrator (group system:masters).
        let key = run(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(d.join("sa.key"))
            .arg("2048"));
        assert!(key.status.success(), "openssl genrsa: {}", text(&key));
        let public = run(Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(d.join("sa.key"))
            .arg("-out")
            .arg(d.join("sa.pub")));
        assert!(public.status.success(), "openssl rsa: {}", text(&public));
        fs::write(
            d.join("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin,\"system:masters\"\n"),
        )
        .unwrap();
        fs::write(
            d.join("kubeconfig"),
            format!("apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\ncontexts:\n- name: test\n  context: {{cluster: test, user: admin}}\ncurrent-context: test\n", d.join("certs/apiserver.crt").display()),
        )
        .unwrap();
        let p = |name: &str| d.join(name).display().to_string();
        cp.spawn(
            "etcd",
            &[
                format!("--data-dir={}", p("etcd")),
                "--listen-client-urls=http://127.0.0.1:2379".into(),
                "--advertise-client-urls=http://127.0.0.1:2379".into(),
                "--listen-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-cluster=default=http://127.0.0.1:2380".into(),
            ],
        );
        cp.spawn(
            "kube-apiserver",
            &[
                "--etcd-servers=http://127.0.0.1:2379".into(),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                // Loopback is no address for the kubernetes service's endpoints; nothing here needs them.
                "--endpoint-reconciler-type=none".into(),
                "--secure-port=6443".into(),
                // A self-signed serving certificate, made by kube-apiserver into this directory.
                format!("--cert-dir={}", p("certs")),
                "--service-cluster-ip-range=10.96.0.0/12".into(),
                format!("--token-auth-file={}", p("tokens.csv")),
                // As kubeadm runs it.
                "--authorization-mode=Node,RBAC".into(),
                "--enable-admission-plugins=NodeRestriction".into(),
                "--allow-privileged=true".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
            ],
        );
        cp.wait_ready();
        cp
    }

    fn spawn(&mut self, name: &str, args: &[String]) {
        let log = fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(self.bin.join(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.children.push(child);
    }

    fn log(&self, name: &str) -> String {
        let all =
            fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Until `/readyz` answers ok and the system namespaces exist.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.kubectl(&["get", "--raw=/readyz"]);
            let ns = self.kubectl(&["get", "namespace", "kube-system", "default", "-o", "name"]);
            if ready.status.success() && ns.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready in 30 s: {}\n--- kube-apiserver.log\n{}\n--- etcd.log\n{}",
                text(&ready),
                self.log("kube-apiserver"),
                self.log("etcd")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A command in the namespace with kubectl's environment: this cluster's kubeconfig, the peers' kubectl first
    /// on PATH, and a discovery cache of this cluster's own (a cache that already knows the CRD's kind would hide
    /// the failure the sequence prevents).
    fn in_netns(&self, program: &Path) -> Command {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns])
            .arg(program)
            .env("PATH", path)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .current_dir(root());
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        run(self.in_netns(&self.bin.join("kubectl")).args(args))
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
    if !crate::util::is_root() {
        skip(
            TEST,
            "needs root: the control plane runs in a network namespace of its own",
        );
        return;
    }
    let bin = match peers() {
        Ok(bin) => bin,
        Err(why) => {
            skip(TEST, &why);
            return;
        }
    };
    if Command::new("openssl").arg("version").output().is_err() {
        skip(TEST, "openssl is missing (apt-get install openssl)");
        return;
    }
    let started = Instant::now();

    // k8s/README.md tells the operator to run this script; the test runs what it says.
    let readme = fs::read_to_string(root().join("k8s/README.md")).unwrap();
    assert!(
        readme.contains("\nscripts/apply.sh\n"),
        "k8s/README.md no longer shows `scripts/apply.sh` as the apply command"
    );
    let cp = ControlPlane::start(&bin);
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
    let cp = ControlPlane::start(&bin);
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
