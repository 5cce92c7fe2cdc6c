//! The lab on the real control plane (root, the upstream peers): etcd, kube-apiserver, the controller manager and
//! the scheduler from `scripts/upstream.sh`; the DaemonSets' pods run the real flanneld, multus's thin_entrypoint
//! and the installer; every other pod gets its network through the real multus and flannel plugins. netlab plays
//! only each node's kubelet and container runtime.
//!
//! One lab, brought up once, answers every question: what the API says (each pod running with the address the
//! pod's namespace holds, each multus pod's network-status annotation written by multus, each node's /26 pod CIDR
//! given by the controller manager), what `check` says, and that `down` leaves no namespace, file or process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{root, skip};

const TEST: &str = "control_plane::the_lab_on_the_real_control_plane";

fn netlab() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_netlab"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The peers' directory, or why there is none (what `netlab up` itself says when one is missing).
fn peers() -> Result<PathBuf, String> {
    let dir = test_support::upstream_bin()
        .ok_or("the upstream peers are not built: run scripts/upstream.sh (or set UPSTREAM_BIN)")?;
    netlab_lab::real::peers_ready(&dir, true).map_err(|e| e.to_string())
}

fn lab(name: &str, args: &[&str]) -> Output {
    Command::new(netlab())
        .current_dir(root())
        .args(args)
        .args(["--name", name])
        .output()
        .unwrap()
}

/// Processes whose command line names the lab's directory or the peers (the control plane, flanneld, multus).
fn processes_of(name: &str, peers: &Path) -> Vec<String> {
    let dir = format!("/run/netlab/{name}/");
    let peers = peers.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains(&dir) || cmdline.contains(&peers)).then_some(cmdline)
        })
        .collect()
}

/// Takes the lab down however the test ends, and says what it left.
struct Guard {
    name: String,
    peers: PathBuf,
}

impl Guard {
    fn down(&self) -> (Output, Vec<String>) {
        let out = lab(&self.name, &["down"]);
        let mut left = crate::util::namespaces_of(&self.name);
        left.extend(processes_of(&self.name, &self.peers));
        if Path::new("/run/netlab").join(&self.name).exists() {
            left.push(format!("/run/netlab/{}", self.name));
        }
        (out, left)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let (_, left) = self.down();
        if !left.is_empty() {
            eprintln!("left behind: {left:?}");
        }
    }
}

/// The files of libcni's result cache on a node.
fn cached_results(name: &str, node: &str) -> Vec<String> {
    let dir = Path::new("/run/netlab")
        .join(name)
        .join("nodes")
        .join(node)
        .join("cni-state/results");
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes in network namespace `netns` whose command line holds `what`.
fn pids_in(netns: &str, what: &str) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = std::fs::metadata(format!("/run/netns/{netns}")) else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::metadata(e.path().join("ns/net")).is_ok_and(|m| m.ino() == ns.ino()))
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(what))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// flanneld killed on mlab2: the kubelet starts it again, and it keeps the node's subnet (the node's podCIDR).
fn flanneld_restarted(name: &str) {
    let netns = format!("{name}-mlab2");
    let subnet = Path::new("/run/netlab")
        .join(name)
        .join("nodes/mlab2/run-flannel/subnet.env");
    let before = std::fs::read_to_string(&subnet).unwrap();
    let old = pids_in(&netns, "/opt/bin/flanneld");
    assert_eq!(old.len(), 1, "{old:?}");
    let killed = Command::new("kill")
        .args(["-KILL", &old[0]])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_until(
        "flanneld runs again on mlab2",
        Duration::from_secs(30),
        || {
            let now = pids_in(&netns, "/opt/bin/flanneld");
            now.len() == 1 && now != old
        },
    );
    wait_until(
        "flanneld rewrites subnet.env",
        Duration::from_secs(10),
        || std::fs::read_to_string(&subnet).is_ok_and(|t| t == before),
    );
    // It rewrites the file once it has its lease again; the routes to the other nodes follow.
    std::thread::sleep(Duration::from_secs(2));
}

/// The API server killed while a pod is being set up: multus's ADD fails, the kubelet tries again in a new
/// sandbox, and once the API server is back the pod runs. The kubelet is stopped while the pod is created and the
/// API server killed, so that its ADD meets the API server gone, every time.
fn api_server_restarted_during_set_up(
    name: &str,
    peers: &Path,
    kubectl: &dyn Fn(&[&str]) -> Value,
) -> std::process::Child {
    let dir = Path::new("/run/netlab").join(name);
    let kubelet = std::fs::read_to_string(dir.join("kubelet.pid")).unwrap();
    let kubelet = kubelet.trim();
    let cp = format!("{name}-cp");
    let api = pids_in(&cp, "kube-apiserver");
    assert_eq!(api.len(), 1, "{api:?}");
    let argv: Vec<String> = std::fs::read(format!("/proc/{}/cmdline", api[0]))
        .unwrap()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let pod = r#"{"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "after-restart", "namespace": "default", "annotations": {
            "v1.multus-cni.io/default-network": "flannel-experiment-conf",
            "k8s.v1.cni.cncf.io/networks": "[{\"name\": \"index2ip-index-6-conf\"}]"}},
        "spec": {"nodeName": "mlab3", "containers": [{"name": "main", "image": "netlab.invalid/none:0"}]}}"#;
    assert!(Command::new("kill")
        .args(["-STOP", kubelet])
        .status()
        .unwrap()
        .success());
    // From the control plane's namespace: the host's port is the stopped kubelet's.
    let created = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{cp}"))
        .arg("--")
        .arg(peers.join("kubectl"))
        .arg("--kubeconfig")
        .arg(dir.join("cp/kubeconfig"))
        .args(["create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(pod.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", &api[0]])
        .status()
        .unwrap();
    assert!(Command::new("kill")
        .args(["-CONT", kubelet])
        .status()
        .unwrap()
        .success());
    assert!(created.status.success(), "{}", text(&created));
    assert!(killed.success());
    let log = dir.join("kubelet.log");
    wait_until(
        "multus fails the ADD without the API server",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&log).is_ok_and(|l| {
                l.lines().any(|l| {
                    l.contains("pod default/after-restart: sandbox failed") && l.contains("multus")
                })
            })
        },
    );
    let out = std::fs::File::options()
        .append(true)
        .open(dir.join("cp/kube-apiserver.log"))
        .unwrap();
    let api_server = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{cp}"))
        .arg("--")
        .args(&argv)
        .current_dir(dir.join("cp"))
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    wait_until(
        "the pod runs once the API server is back",
        Duration::from_secs(90),
        || {
            let pods = kubectl(&["get", "pods", "-n", "default"]);
            pods["items"].as_array().unwrap().iter().any(|p| {
                p["metadata"]["name"] == "after-restart" && p["status"]["phase"] == "Running"
            })
        },
    );
    api_server
}

/// mlab1 as the controller manager leaves a node whose lease was late: the node's Ready condition Unknown, its
/// pod's Ready False. The lab's kubelet writes both back, as a kubelet does when the API's status differs from its
/// own; without that, the node and the pod stay not ready for good.
fn marked_not_ready(
    name: &str,
    peers: &Path,
    kubeconfig: &str,
    kubectl: &dyn Fn(&[&str]) -> Value,
) {
    let ready = |object: &Value| -> String {
        object["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let set_ready = |path: &str, mut object: Value, to: &str| {
        for c in object["status"]["conditions"].as_array_mut().unwrap() {
            if c["type"] == "Ready" {
                c["status"] = to.into();
            }
        }
        let mut child = Command::new(peers.join("kubectl"))
            .args([
                "--kubeconfig",
                kubeconfig,
                "replace",
                "--raw",
                path,
                "-f",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(object.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "replace {path}: {}", text(&out));
    };
    let pod = ["pod", "plain-mlab1", "-n", "default"];
    set_ready(
        "/api/v1/nodes/mlab1/status",
        kubectl(&["get", "node", "mlab1"]),
        "Unknown",
    );
    set_ready(
        "/api/v1/namespaces/default/pods/plain-mlab1/status",
        kubectl(&[&["get"][..], &pod].concat()),
        "False",
    );
    wait_until(
        "mlab1 and plain-mlab1 Ready again",
        Duration::from_secs(30),
        || {
            ready(&kubectl(&["get", "node", "mlab1"])) == "True"
                && ready(&kubectl(&[&["get"][..], &pod].concat())) == "True"
        },
    );
    // Written back by the lab's kubelet, which says so.
    let log =
        std::fs::read_to_string(Path::new("/run/netlab").join(name).join("kubelet.log")).unwrap();
    assert!(
        log.contains("node mlab1: Ready is Unknown in the API; posting status"),
        "{log}"
    );
    assert!(
        log.contains("pod default/plain-mlab1: not ready in the API; status written again"),
        "{log}"
    );
}

/// mlab4 relabelled virtual: its physical DaemonSets' pods go, multus's removes its configuration as it stops,
/// flannel's virtual DaemonSet installs flannel's, and a new pod there gets flannel alone, in the node's own
/// subnet, whatever networks it asks for (k8s/README.md, "Multus's credentials").
fn relabelled_virtual(name: &str, kubectl: &dyn Fn(&[&str]) -> Value) {
    let node = kubectl(&["get", "node", "mlab4"]);
    let cidr = node["spec"]["podCIDR"].as_str().unwrap().to_owned();
    let relabel = kubectl(&["label", "node", "mlab4", "mlab/type=virtual", "--overwrite"]);
    assert_eq!(relabel["metadata"]["labels"]["mlab/type"], "virtual");
    let net_d = Path::new("/run/netlab")
        .join(name)
        .join("nodes/mlab4/net.d");
    wait_until(
        "mlab4's CNI configuration is flannel's alone",
        Duration::from_secs(60),
        || !net_d.join("00-multus.conf").exists() && net_d.join("10-flannel.conflist").exists(),
    );
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "after-relabel", "namespace": "default", "annotations": {
            "v1.multus-cni.io/default-network": "flannel-experiment-conf",
            "k8s.v1.cni.cncf.io/networks": "[{\"name\": \"index2ip-index-2-conf\"}]"}},
        "spec": {"nodeName": "mlab4", "containers": [{"name": "main", "image": "netlab.invalid/none:0"}]}});
    let file = std::env::temp_dir().join(format!("{name}-after-relabel.json"));
    std::fs::write(&file, pod.to_string()).unwrap();
    let made = kubectl(&["create", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(made["metadata"]["name"], "after-relabel");
    let mut last = Value::Null;
    wait_until("the new pod on mlab4 runs", Duration::from_secs(60), || {
        last = kubectl(&["get", "pod", "after-relabel"]);
        last["status"]["phase"] == "Running"
    });
    let ip: std::net::Ipv4Addr = last["status"]["podIP"].as_str().unwrap().parse().unwrap();
    let net: ipnet::Ipv4Net = cidr.parse().unwrap();
    assert!(net.contains(&ip), "{ip} not in mlab4's {cidr}");
    assert!(
        last["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"].is_null(),
        "multus attached it: {last}"
    );
    let links = Command::new("ip")
        .args(["-n", &format!("{name}-after-relabel"), "-br", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(links.contains("eth0") && !links.contains("net1"), "{links}");
}

#[test]
fn the_lab_on_the_real_control_plane() {
    if !crate::util::is_root() {
        return skip(
            TEST,
            "needs root: the lab creates network namespaces and mounts",
        );
    }
    let peers = match peers() {
        Ok(p) => p,
        Err(why) => return skip(TEST, &why),
    };
    let name = format!("cp{}", std::process::id() % 10_000);
    let guard = Guard {
        name: name.clone(),
        peers: peers.clone(),
    };
    let peers_arg = peers.display().to_string();
    let up = lab(&name, &["up", "--peers", &peers_arg]);
    let up_text = text(&up);
    assert!(up.status.success(), "{up_text}");
    assert!(up_text.contains("26 of 26 pods running"), "{up_text}");
    assert!(
        up_text.contains("node bare1 has no mlab/type label"),
        "{up_text}"
    );

    // What the API says, through the host's port, as an operator runs kubectl.
    let kubeconfig = lab(&name, &["kubeconfig"]);
    assert!(kubeconfig.status.success(), "{}", text(&kubeconfig));
    let kubeconfig = String::from_utf8_lossy(&kubeconfig.stdout)
        .trim()
        .to_owned();
    let kubectl = |args: &[&str]| -> Value {
        let out = Command::new(peers.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .args(["-o", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let nodes = kubectl(&["get", "nodes"]);
    let nodes = nodes["items"].as_array().unwrap();
    assert_eq!(nodes.len(), 6);
    let mut cidrs = Vec::new();
    for n in nodes {
        let cidr = n["spec"]["podCIDR"].as_str().unwrap_or_default();
        assert!(
            cidr.starts_with("192.168.") && cidr.ends_with("/26"),
            "{}: {cidr:?}",
            n["metadata"]["name"]
        );
        cidrs.push(cidr.to_owned());
    }
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 6, "{cidrs:?}");

    // Every pod on a labelled node runs with the address its namespace holds; each on a physical node carries
    // multus's network-status, with net1 exactly where it asked for an index network.
    let status = text(&lab(&name, &["status"]));
    let pods = kubectl(&["get", "pods", "-A"]);
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pods["items"].as_array().unwrap() {
        let pod = p["metadata"]["name"].as_str().unwrap();
        let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
        if node == "bare1" {
            assert_eq!(p["status"]["phase"], "Pending", "{pod}");
            continue;
        }
        assert_eq!(p["status"]["phase"], "Running", "{pod}");
        let ip = p["status"]["podIP"].as_str().unwrap();
        if p["spec"]["hostNetwork"] == true {
            *by_kind.entry("host network").or_default() += 1;
            continue;
        }
        let line = status
            .lines()
            .find(|l| l.contains(pod) && l.contains(" eth0 "))
            .unwrap_or_else(|| panic!("{pod} has no eth0 in status:\n{status}"));
        assert!(line.contains(&format!("{ip}/")), "{pod} {ip}: {line}");
        if !node.starts_with("mlab") {
            continue;
        }
        let annotations = &p["metadata"]["annotations"];
        let network_status: Value = serde_json::from_str(
            annotations["k8s.v1.cni.cncf.io/network-status"]
                .as_str()
                .unwrap_or_else(|| panic!("{pod}: no network-status annotation")),
        )
        .unwrap();
        let asked = annotations["k8s.v1.cni.cncf.io/networks"]
            .as_str()
            .is_some_and(|n| n.contains("index"));
        let has_net1 = network_status
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["interface"] == "net1");
        assert_eq!(asked, has_net1, "{pod}: {network_status}");
        *by_kind
            .entry(if asked {
                "index network"
            } else {
                "flannel only"
            })
            .or_default() += 1;
    }
    assert_eq!(by_kind.get("host network"), Some(&13), "{by_kind:?}");
    assert_eq!(by_kind.get("index network"), Some(&8), "{by_kind:?}");

    let check = lab(&name, &["check"]);
    assert!(check.status.success(), "{}", text(&check));
    // libcni's result cache, one file per sandbox, as containerd leaves it: ndt, wehe and the plain pod on mlab1.
    assert_eq!(
        cached_results(&name, "mlab1").len(),
        3,
        "{:?}",
        cached_results(&name, "mlab1")
    );

    flanneld_restarted(&name);
    let check = lab(&name, &["check"]);
    assert!(
        check.status.success(),
        "after flanneld's restart: {}",
        text(&check)
    );

    // The new API server's process: `down` stops it with every process in the lab's namespaces.
    let mut api_server = api_server_restarted_during_set_up(&name, &peers, &kubectl);

    // Each check fails where it must: pods of tests/fixtures/control-plane-faults.yaml.
    let faults = root().join("crates/netlab/tests/fixtures/control-plane-faults.yaml");
    let applied = Command::new(peers.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["apply", "-f"])
        .arg(&faults)
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", text(&applied));
    let faulty = ["ra-unguarded", "index2-again", "route-deleted"];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pods = kubectl(&["get", "pods", "-n", "default"]);
        let running = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| faulty.contains(&p["metadata"]["name"].as_str().unwrap_or_default()))
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        if running == faulty.len() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{pods}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // The lab records a pod once the kubelet has read multus's annotation; the route goes after that.
    let deleted = Command::new("ip")
        .args([
            "-n",
            &format!("{name}-route-deleted"),
            "route",
            "del",
            "default",
        ])
        .output()
        .unwrap();
    assert!(deleted.status.success(), "{}", text(&deleted));
    // Router advertisements come every second: let one reach the unguarded pod.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let check = lab(&name, &["check"]);
    let report = text(&check);
    assert_eq!(check.status.code(), Some(1), "{report}");
    let row = |pod: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{pod} ")))
            .unwrap_or_else(|| panic!("no row for {pod}:\n{report}"))
            .to_owned()
    };
    let note = |pod: &str, what: &str| {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("FAIL {pod}: ")) && l.contains(what)),
            "{pod}: no failure saying {what:?}:\n{report}"
        );
    };
    note("ra-unguarded", "routes from an RA");
    assert!(row("ra-unguarded").contains("FAIL"), "{report}");
    note("index2-again", "one index asked for twice");
    note("index2-again", "refused by DAD");
    let ndt = report
        .lines()
        .find(|l| l.starts_with("ndt-index2-") && l.contains(" mlab1 "))
        .unwrap_or_else(|| panic!("no ndt row on mlab1:\n{report}"));
    assert!(ndt.contains("DUPLICATE"), "{report}");
    note("route-deleted", "egress");
    assert!(row("route-deleted").contains("tcp FAIL"), "{report}");
    // Every other pod still passes.
    let failing: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("FAIL") && !l.starts_with("FAIL") && !l.starts_with("==>"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for pod in &failing {
        assert!(
            faulty.contains(pod) || pod.starts_with("ndt-index2-"),
            "{pod} failed too:\n{report}"
        );
    }

    marked_not_ready(&name, &peers, &kubeconfig, &kubectl);
    relabelled_virtual(&name, &kubectl);
    // status tells the label the API has now, not the one of `up`.
    let status = text(&lab(&name, &["status"]));
    let mlab4: Vec<&str> = status.lines().filter(|l| l.starts_with("mlab4 ")).collect();
    assert!(!mlab4.is_empty(), "{status}");
    for line in &mlab4 {
        assert!(line.contains("mlab/type=virtual"), "{status}");
    }
    // The physical DaemonSets' pods went from mlab4 with their cached results; the plain pod and the new one stay.
    assert_eq!(
        cached_results(&name, "mlab4").len(),
        2,
        "{:?}",
        cached_results(&name, "mlab4")
    );

    let (down, left) = guard.down();
    let _ = api_server.wait();
    assert!(down.status.success(), "{}", text(&down));
    assert!(left.is_empty(), "left behind: {left:?}\n{}", text(&down));
}
