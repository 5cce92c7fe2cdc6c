//! A real Kubernetes control plane in a network namespace of its own, from the upstream peers
//! (`scripts/upstream.sh`): etcd and kube-apiserver, and on request kube-controller-manager and kube-scheduler.
//!
//! etcd and the controllers talk over the namespace's loopback; kube-apiserver serves there too, or on an address
//! of the namespace's that others reach (the lab's nodes do, through the site's router). It runs as a kubeadm
//! cluster runs it: Node and
//! RBAC authorization, the default admission plugins and NodeRestriction, privileged containers allowed,
//! service-account tokens signed with a key pair made here; its serving certificate is one it makes itself. The
//! administrator authenticates with a random static token (group `system:masters`); the controller manager
//! allocates each node a pod CIDR, a `/26` of the flannel network, as k8s/README.md prescribes, so flanneld's
//! `--kube-subnet-mgr` finds one. Dropping the [`ControlPlane`] kills every process and deletes the namespace; the
//! directory it worked in is the caller's.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use netlab_model::facts::{FLANNEL_NETWORK_CIDR, FLANNEL_SUBNET_LEN};

use crate::sys::run;
use crate::Error;

/// The port kube-apiserver serves on.
pub const API_PORT: u16 = 6443;

/// kube-controller-manager's own `--node-monitor-grace-period` default.
const NODE_MONITOR_GRACE: Duration = Duration::from_secs(50);
/// kube-controller-manager's own `--node-startup-grace-period` default.
const NODE_STARTUP_GRACE: Duration = Duration::from_secs(60);

/// How long kube-apiserver may take to answer `/readyz`.
const READY_WITHIN: Duration = Duration::from_secs(45);

/// What to run beside etcd and kube-apiserver, and where.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// kube-controller-manager (pod CIDRs, the DaemonSet and other controllers) and kube-scheduler.
    pub controllers: bool,
    /// The address kube-apiserver serves on and advertises, one the namespace holds; loopback when `None`.
    pub address: Option<Ipv4Addr>,
    /// Nodes to give kubelet credentials: each a static token in the group `system:nodes`, user
    /// `system:node:NAME`, and a kubeconfig using it at [`ControlPlane::node_kubeconfig`].
    pub nodes: Vec<String>,
    /// How many times slower than this machine the nodes' kubelets are (they run in a VM under software
    /// emulation): the node grace periods are stretched by it, on top of [`crate::sys::patience`]. 0 counts as 1.
    pub slow_nodes: u32,
}

/// A running control plane.
pub struct ControlPlane {
    netns: String,
    /// Whether the namespace was made here, and goes with the control plane.
    owns_netns: bool,
    dir: PathBuf,
    bin: PathBuf,
    server: String,
    children: Vec<(String, Child)>,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver (and the controllers when asked) in a new network namespace `netns`, with
    /// their data, keys, logs and the administrator's kubeconfig in `dir`, and waits until the API server is ready.
    /// `bin` holds the upstream peers.
    pub fn start(
        bin: &Path,
        dir: &Path,
        netns: &str,
        options: &Options,
    ) -> Result<ControlPlane, Error> {
        Self::launch(bin, dir, netns, true, options)
    }

    /// [`ControlPlane::start`] in a network namespace that exists and stays: the caller made it (with the address
    /// of `options`) and removes it.
    pub fn start_in(
        bin: &Path,
        dir: &Path,
        netns: &str,
        options: &Options,
    ) -> Result<ControlPlane, Error> {
        Self::launch(bin, dir, netns, false, options)
    }

    fn launch(
        bin: &Path,
        dir: &Path,
        netns: &str,
        make_netns: bool,
        options: &Options,
    ) -> Result<ControlPlane, Error> {
        for program in [
            "etcd",
            "kube-apiserver",
            "kubectl",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            if !bin.join(program).is_file() {
                return Err(Error::Command {
                    command: bin.join(program).display().to_string(),
                    reason: "not built: run scripts/upstream.sh".into(),
                });
            }
        }
        fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        if make_netns {
            run("ip", ["netns", "add", netns])?;
        }
        let address = options.address.unwrap_or(Ipv4Addr::LOCALHOST);
        // From here on, Drop removes the namespace (when made here) and every process, whatever fails next.
        let mut cp = ControlPlane {
            netns: netns.to_owned(),
            owns_netns: make_netns,
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            server: format!("https://{address}:{API_PORT}"),
            children: Vec::new(),
        };
        run("ip", ["-n", netns, "link", "set", "lo", "up"])?;
        // A namespace made here has nothing but its loopback: the address goes there.
        if make_netns && !address.is_loopback() {
            run(
                "ip",
                [
                    "-n",
                    netns,
                    "addr",
                    "add",
                    &format!("{address}/32"),
                    "dev",
                    "lo",
                ],
            )?;
        }
        cp.write_credentials(&options.nodes)?;
        let p = |name: &str| dir.join(name).display().to_string();
        cp.spawn(
            "etcd",
            &[
                format!("--data-dir={}", p("etcd")),
                "--listen-client-urls=http://127.0.0.1:2379".into(),
                "--advertise-client-urls=http://127.0.0.1:2379".into(),
                "--listen-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-cluster=default=http://127.0.0.1:2380".into(),
                "--log-level=warn".into(),
            ],
        )?;
        cp.spawn(
            "kube-apiserver",
            &[
                "--etcd-servers=http://127.0.0.1:2379".into(),
                format!("--bind-address={address}"),
                format!("--advertise-address={address}"),
                // Loopback is no address for the kubernetes service's endpoints, and nothing here runs the
                // service proxy that would use them: pods are given the API server's own address.
                "--endpoint-reconciler-type=none".into(),
                format!("--secure-port={API_PORT}"),
                format!("--cert-dir={}", p("certs")),
                "--service-cluster-ip-range=10.96.0.0/12".into(),
                format!("--token-auth-file={}", p("tokens.csv")),
                "--authorization-mode=Node,RBAC".into(),
                "--enable-admission-plugins=NodeRestriction".into(),
                "--allow-privileged=true".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
            ],
        )?;
        cp.wait_ready()?;
        if options.controllers {
            cp.spawn(
                "kube-controller-manager",
                &[
                    format!("--kubeconfig={}", p("kubeconfig")),
                    "--bind-address=127.0.0.1".into(),
                    "--leader-elect=false".into(),
                    "--allocate-node-cidrs=true".into(),
                    format!("--cluster-cidr={FLANNEL_NETWORK_CIDR}"),
                    format!("--node-cidr-mask-size-ipv4={FLANNEL_SUBNET_LEN}"),
                    "--service-cluster-ip-range=10.96.0.0/12".into(),
                    format!("--service-account-private-key-file={}", p("sa.key")),
                    format!("--root-ca-file={}", p("certs/apiserver.crt")),
                    // How long a node may go without renewing its lease (or, new, without a first status)
                    // before it is NotReady and its pods are marked not ready: the defaults, stretched where
                    // the lab runs slower.
                    format!(
                        "--node-monitor-grace-period={}s",
                        (crate::sys::patience(NODE_MONITOR_GRACE) * options.slow_nodes.max(1))
                            .as_secs()
                    ),
                    format!(
                        "--node-startup-grace-period={}s",
                        (crate::sys::patience(NODE_STARTUP_GRACE) * options.slow_nodes.max(1))
                            .as_secs()
                    ),
                ],
            )?;
            cp.spawn(
                "kube-scheduler",
                &[
                    format!("--kubeconfig={}", p("kubeconfig")),
                    "--bind-address=127.0.0.1".into(),
                    "--leader-elect=false".into(),
                ],
            )?;
        }
        Ok(cp)
    }

    /// The service-account key pair, random tokens for the administrator and each node, and a kubeconfig for
    /// each that uses it.
    /// A control plane that runs elsewhere (on the machine a VM's lab was started from), reached at `address`
    /// from namespace `netns` (the caller's), with the credentials [`ControlPlane::export_credentials`] wrote into
    /// `dir`. Nothing runs here: dropping it stops nothing and removes nothing.
    pub fn remote(bin: &Path, dir: &Path, netns: &str, address: Ipv4Addr) -> ControlPlane {
        ControlPlane {
            netns: netns.to_owned(),
            owns_netns: false,
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            server: format!("https://{address}:{API_PORT}"),
            children: Vec::new(),
        }
    }

    /// Writes into `to` what [`ControlPlane::remote`] needs to reach this control plane from a VM that will see
    /// `to` at `seen_at`: the API server's certificate, the administrator's and every node's kubeconfig, naming
    /// the certificate where the VM sees it. No key leaves: the tokens are the lab's own, made at start.
    pub fn export_credentials(&self, to: &Path, seen_at: &Path) -> Result<(), Error> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        fs::create_dir_all(to.join("certs")).map_err(io(to))?;
        fs::create_dir_all(to.join("nodes")).map_err(io(to))?;
        let crt = to.join("certs/apiserver.crt");
        fs::copy(self.ca(), &crt).map_err(io(&crt))?;
        let ca = seen_at.join("certs/apiserver.crt");
        let mut kubeconfigs = vec![PathBuf::from("kubeconfig")];
        let nodes = fs::read_dir(self.dir.join("nodes")).map_err(io(&self.dir.join("nodes")))?;
        kubeconfigs.extend(
            nodes
                .flatten()
                .map(|e| Path::new("nodes").join(e.file_name())),
        );
        for rel in kubeconfigs {
            let from = self.dir.join(&rel);
            let text = fs::read_to_string(&from).map_err(io(&from))?;
            let user = user_of(&text).unwrap_or("admin");
            let token = token_of(&text).unwrap_or_default();
            let out = to.join(&rel);
            fs::write(&out, kubeconfig_text(&self.server, &ca, user, token, None))
                .map_err(io(&out))?;
        }
        Ok(())
    }

    fn write_credentials(&self, nodes: &[String]) -> Result<(), Error> {
        let key = self.dir.join("sa.key");
        let public = self.dir.join("sa.pub");
        run(
            "openssl",
            [
                OsStr::new("genrsa"),
                "-out".as_ref(),
                key.as_os_str(),
                "2048".as_ref(),
            ],
        )?;
        let pubout = ["rsa", "-pubout", "-in"].map(OsStr::new);
        run(
            "openssl",
            pubout
                .iter()
                .copied()
                .chain([key.as_os_str(), "-out".as_ref(), public.as_os_str()]),
        )?;
        let admin = random_token()?;
        let mut tokens = format!("{admin},admin,admin,\"system:masters\"\n");
        self.write(
            "kubeconfig",
            &self.kubeconfig_text(&self.server, "admin", &admin),
        )?;
        fs::create_dir_all(self.dir.join("nodes")).map_err(|source| Error::Io {
            path: self.dir.join("nodes"),
            source,
        })?;
        for node in nodes {
            let token = random_token()?;
            tokens.push_str(&format!(
                "{token},system:node:{node},node-{node},\"system:nodes\"\n"
            ));
            let text = self.kubeconfig_text(&self.server, &format!("system:node:{node}"), &token);
            self.write(&format!("nodes/{node}.kubeconfig"), &text)?;
        }
        self.write("tokens.csv", &tokens)
    }

    /// A kubeconfig of this control plane's for `server` as `user` with `token`.
    fn kubeconfig_text(&self, server: &str, user: &str, token: &str) -> String {
        kubeconfig_text(server, &self.ca(), user, token, None)
    }

    /// The certificate kube-apiserver serves with (its own, self-signed: the one to trust).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("certs/apiserver.crt")
    }

    /// The API server's URL, as the namespace's peers reach it.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Node `node`'s kubeconfig: its kubelet's credentials.
    pub fn node_kubeconfig(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(format!("{node}.kubeconfig"))
    }

    /// Leaves every process running and the namespace in place, and returns the processes' names and ids: the
    /// caller now owns them (the lab records them for `down`).
    pub fn detach(mut self) -> Vec<(String, u32)> {
        self.owns_netns = false;
        std::mem::take(&mut self.children)
            .into_iter()
            .map(|(name, child)| (name, child.id()))
            .collect()
    }

    fn write(&self, name: &str, text: &str) -> Result<(), Error> {
        let path = self.dir.join(name);
        fs::write(&path, text).map_err(|source| Error::Io { path, source })
    }

    fn spawn(&mut self, name: &str, args: &[String]) -> Result<(), Error> {
        let log_path = self.dir.join(format!("{name}.log"));
        let io = |source| Error::Io {
            path: log_path.clone(),
            source,
        };
        let log = fs::File::create(&log_path).map_err(io)?;
        let err = log.try_clone().map_err(io)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(self.bin.join(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::Command {
                command: format!("ip netns exec {} {name}", self.netns),
                reason: e.to_string(),
            })?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    /// The last lines a program of the control plane logged.
    pub fn log_tail(&self, name: &str) -> String {
        let all = fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Until `/readyz` answers and the system namespaces exist; a process that died is reported at once.
    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + crate::sys::patience(READY_WITHIN);
        loop {
            let ready = self.kubectl(&["get", "--raw=/readyz"]);
            let namespaces =
                self.kubectl(&["get", "namespace", "kube-system", "default", "-o", "name"]);
            if ready.as_ref().is_ok_and(|o| o.status.success())
                && namespaces.as_ref().is_ok_and(|o| o.status.success())
            {
                return Ok(());
            }
            let exited =
                self.children
                    .iter_mut()
                    .find_map(|(name, child)| match child.try_wait() {
                        Ok(Some(status)) => Some((name.clone(), status)),
                        _ => None,
                    });
            if let Some((name, status)) = exited {
                return Err(Error::Command {
                    reason: format!(
                        "exited with {status} before the API server was ready:\n{}",
                        self.log_tail(&name)
                    ),
                    command: name,
                });
            }
            if Instant::now() > deadline {
                return Err(Error::Command {
                    command: "kube-apiserver".into(),
                    reason: format!(
                        "not ready within {} s:\n{}",
                        crate::sys::patience(READY_WITHIN).as_secs(),
                        self.log_tail("kube-apiserver")
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A command run inside the namespace with kubectl's environment: this cluster's kubeconfig, the peers first on
    /// `PATH`, and a discovery cache of this cluster's own (a cache that already knows a CRD's kind hides the
    /// failure of applying it with its resources).
    /// Waits at most `within` until the API server answers `/readyz` (a [`ControlPlane::remote`] one, whose
    /// processes are not here to watch).
    pub fn wait_reachable(&self, within: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + within;
        loop {
            let answer = self.kubectl(&["get", "--raw=/readyz"])?;
            if answer.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Command {
                    command: format!("kubectl get --raw=/readyz (API server {})", self.server),
                    reason: format!(
                        "no answer within {} s: {}",
                        within.as_secs(),
                        String::from_utf8_lossy(&answer.stderr).trim()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn in_netns(&self, program: &Path) -> Command {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns])
            .arg(program)
            .env("PATH", path)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.join("kube-cache"));
        cmd
    }

    /// Runs the peers' kubectl against this cluster as its administrator.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output, Error> {
        self.in_netns(&self.bin.join("kubectl"))
            .args(args)
            .output()
            .map_err(|e| Error::Command {
                command: format!("kubectl {}", args.join(" ")),
                reason: e.to_string(),
            })
    }

    /// The administrator's kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The network namespace the control plane runs in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The directory it works in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The scheduler and controllers first, etcd last: each stops while what it talks to is still there.
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.owns_netns {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A kubeconfig for `server`, trusting `ca`, as `user` with `token`; `tls_server_name` when the server's
/// certificate does not name the address dialled (a port forwarded to the host's loopback).
pub fn kubeconfig_text(
    server: &str,
    ca: &Path,
    user: &str,
    token: &str,
    tls_server_name: Option<&str>,
) -> String {
    let name = tls_server_name
        .map(|n| format!("\n    tls-server-name: {n}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: netlab\n  cluster:\n    server: {server}\n    \
         certificate-authority: {}{name}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: netlab\n  \
         context: {{cluster: netlab, user: \"{user}\"}}\ncurrent-context: netlab\n",
        ca.display()
    )
}

/// The administrator's token in a kubeconfig this module wrote.
/// The user a kubeconfig written by [`kubeconfig_text`] authenticates as.
fn user_of(kubeconfig: &str) -> Option<&str> {
    let line = kubeconfig
        .lines()
        .find(|l| l.contains("context: {cluster: netlab, user: "))?;
    line.split("user: \"").nth(1)?.split('"').next()
}

pub fn token_of(kubeconfig: &str) -> Option<&str> {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
}

/// 128 random bits, in hex.
fn random_token() -> Result<String, Error> {
    let mut random = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|source| Error::Io {
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_credentials_name_the_certificate_where_the_vm_sees_it_and_keep_each_token() {
        let here = tempfile::tempdir().unwrap();
        let dir = here.path().join("cp");
        fs::create_dir_all(dir.join("certs")).unwrap();
        fs::create_dir_all(dir.join("nodes")).unwrap();
        fs::write(dir.join("certs/apiserver.crt"), "CERT").unwrap();
        let ca = dir.join("certs/apiserver.crt");
        let server = "https://198.18.0.2:6443";
        fs::write(
            dir.join("kubeconfig"),
            kubeconfig_text(server, &ca, "admin", "t-admin", None),
        )
        .unwrap();
        fs::write(
            dir.join("nodes/mlab1.kubeconfig"),
            kubeconfig_text(server, &ca, "system:node:mlab1", "t-mlab1", None),
        )
        .unwrap();
        let cp = ControlPlane::remote(
            Path::new("/peers"),
            &dir,
            "x-cp",
            Ipv4Addr::new(198, 18, 0, 2),
        );
        let out = here.path().join("export");
        cp.export_credentials(&out, Path::new("/vm/cp")).unwrap();

        assert_eq!(
            fs::read_to_string(out.join("certs/apiserver.crt")).unwrap(),
            "CERT"
        );
        let admin = fs::read_to_string(out.join("kubeconfig")).unwrap();
        let node = fs::read_to_string(out.join("nodes/mlab1.kubeconfig")).unwrap();
        for (text, user, token) in [
            (&admin, "admin", "t-admin"),
            (&node, "system:node:mlab1", "t-mlab1"),
        ] {
            assert!(
                text.contains("certificate-authority: /vm/cp/certs/apiserver.crt"),
                "{text}"
            );
            assert!(!text.contains(&here.path().display().to_string()), "{text}");
            assert_eq!(user_of(text), Some(user), "{text}");
            assert_eq!(token_of(text), Some(token), "{text}");
            assert!(text.contains(server), "{text}");
        }
        // No key leaves.
        let mut files: Vec<String> = Vec::new();
        for d in [out.clone(), out.join("certs"), out.join("nodes")] {
            files.extend(
                fs::read_dir(d)
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        assert!(
            files
                .iter()
                .all(|f| !f.contains("key") && f != "tokens.csv"),
            "{files:?}"
        );
    }
}
