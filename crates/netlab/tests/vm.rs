//! The lab inside a VM booted from Debian's stock kernel, where ipvlan is real (issue 8). Root, qemu and Debian's
//! kernel package are needed: without qemu or the package the tests say loudly that they did not run; without
//! root (which they could have had) they fail under CI=true. Each test builds the image with the binaries under
//! test (`scripts/vm-image.sh --bin-dir`, cached between runs) and runs `netlab run --vm` once; the VM's
//! namespaces die with it, so nothing of the host is touched but the image cache and a temporary initrd.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use netlab_lab::runtime::{IPVLAN_REAL, MACVLAN_FOR_IPVLAN};

use crate::util::{root, skip};

/// One VM at a time: two would share two cores.
static ONE_VM: Mutex<()> = Mutex::new(());

fn netlab() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_netlab"))
}

/// Says loudly that a test could not run here, for want of something this machine does not have.
fn unavailable(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why} (the VM cannot run here; not a failure)"
    );
}

/// One VM at a time (held until the guard drops) and the image for `test`; `None` after saying why there is none.
fn vm(test: &str) -> Option<(std::sync::MutexGuard<'static, ()>, PathBuf)> {
    let one = ONE_VM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Some((one, image(test)?))
}

/// The image for this test run, or `None` after saying why there is none.
fn image(test: &str) -> Option<PathBuf> {
    if !crate::util::is_root() {
        skip(test, "needs root: the image's files belong to root");
        return None;
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    if !on_path("qemu-system-x86_64") {
        // scripts/setup.sh installs it: missing, the test could have run, so under CI=true this fails.
        skip(
            test,
            "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)",
        );
        return None;
    }
    let candidate = Command::new("apt-cache")
        .args(["policy", "linux-image-amd64"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !candidate.lines().any(|l| {
        l.trim()
            .strip_prefix("Candidate:")
            .is_some_and(|c| c.trim() != "(none)")
    }) {
        unavailable(
            test,
            "apt knows no linux-image-amd64 (Debian's kernel package)",
        );
        return None;
    }
    for (path, how) in [
        (
            netlab().with_file_name("index2ip"),
            "cargo build -p index2ip",
        ),
        (
            netlab().with_file_name("cni-shim"),
            "cargo build -p cni-shim",
        ),
        (
            netlab().with_file_name("cni-shim-passthrough"),
            "cargo build -p cni-shim",
        ),
        (
            PathBuf::from("/usr/lib/cni/ipvlan"),
            "apt-get install containernetworking-plugins",
        ),
        (
            PathBuf::from("/bin/busybox"),
            "apt-get install busybox-static",
        ),
        (PathBuf::from("/sbin/depmod"), "apt-get install kmod"),
        (PathBuf::from("/usr/bin/cpio"), "apt-get install cpio"),
        (
            PathBuf::from("/usr/bin/ping"),
            "apt-get install iputils-ping",
        ),
    ] {
        if !path.is_file() {
            skip(test, &format!("{} is missing ({how})", path.display()));
            return None;
        }
    }
    // The binaries under test go into the image; the cache sits in their target directory.
    let bin_dir = netlab().parent().unwrap();
    let target = bin_dir.parent().unwrap();
    let out = Command::new("bash")
        .arg(root().join("scripts/vm-image.sh"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(target.join("vm"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("apt-get download") {
        unavailable(
            test,
            &format!(
                "Debian's kernel package cannot be fetched: {}",
                stderr.trim()
            ),
        );
        return None;
    }
    assert!(
        out.status.success(),
        "scripts/vm-image.sh failed:\n{stdout}{stderr}"
    );
    Some(PathBuf::from(stdout.lines().last().unwrap().trim()))
}

fn run_vm(image: &Path, extra: &[&str]) -> (Output, String) {
    let out = Command::new(netlab())
        .current_dir(root())
        .args(["run", "--vm", "--vm-image"])
        .arg(image)
        .args(["--manifests", "k8s"])
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The timings, for whoever reads the test's output.
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("==> VM: kernel") && l.contains("done after"))
    {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{line}");
    }
    (out, text)
}

/// The status table's rows for public interfaces: (pod, kind, addresses).
fn net1_rows(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6 && f[3] == "net1").then(|| {
                (
                    f[2].to_owned(),
                    format!("{} {}", f[4], f[5]),
                    f[6..].join(" "),
                )
            })
        })
        .collect()
}

#[test]
fn the_default_lab_runs_in_a_vm_with_real_ipvlan_and_leaves_nothing() {
    let Some((_one, image)) = vm("vm::default") else {
        return;
    };
    let (out, t) = run_vm(&image, &[]);
    assert!(out.status.success(), "{t}");
    // Which kernel ran, and that its ipvlan ran the index networks as written.
    assert!(
        t.contains("==> VM: kernel ") && t.contains("Linux version"),
        "{t}"
    );
    the_default_lab_passed_on_ipvlan(&t);
}

/// What the default lab's run printed when it passed with the kernel's ipvlan: every public interface `ipvlan l2`,
/// the check's TCP to all 16 public addresses and flannel across nodes, nothing left behind.
fn the_default_lab_passed_on_ipvlan(t: &str) {
    assert!(t.contains(IPVLAN_REAL), "{t}");
    assert!(!t.contains(MACVLAN_FOR_IPVLAN), "{t}");
    let rows = net1_rows(t);
    assert_eq!(
        rows.len(),
        8,
        "two public interfaces on each of four machines:\n{t}"
    );
    for (pod, kind, _) in &rows {
        assert_eq!(kind, "ipvlan l2", "{pod}:\n{t}");
    }
    assert_eq!(t.matches("tcp ok").count(), 16, "{t}");
    assert!(t.contains("10/10"), "{t}");
    assert!(t.contains("==> check passed"), "{t}");
    assert!(
        t.contains("nothing left behind") && !t.contains("LEAK:"),
        "{t}"
    );
}

#[test]
fn the_nodes_run_the_real_peers_in_a_vm_against_a_control_plane_on_this_machine() {
    let test = "vm::control_plane_here";
    let Some((_one, image)) = vm(test) else {
        return;
    };
    let peers = match test_support::upstream_bin()
        .ok_or_else(|| "the upstream peers are not built: run scripts/upstream.sh".to_owned())
        .and_then(|d| netlab_lab::real::peers_ready(&d, true).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(why) => return skip(test, &why),
    };
    let name = format!("nlvm{}", std::process::id());
    let (out, t) = run_vm(
        &image,
        &["--name", &name, "--peers", &peers.display().to_string()],
    );
    assert!(out.status.success(), "{t}");
    // Where each half ran: the control plane here, the relay to it and the nodes in the VM.
    assert!(t.contains("==> control plane on this machine"), "{t}");
    assert!(t.contains("control plane: outside, at 10.0.2.2:"), "{t}");
    assert!(t.contains("26 of 26 pods running"), "{t}");
    // The DaemonSets' pods ran on the nodes: multus and flanneld from the peers, not the lab's emulation.
    assert!(
        t.lines()
            .any(|l| l.contains(" multus-") && l.contains("hostNetwork")),
        "{t}"
    );
    the_default_lab_passed_on_ipvlan(&t);
    assert!(
        t.contains("masq ok"),
        "flannel egress through flanneld's masquerading:\n{t}"
    );
    // Nothing of the control plane stays on this machine.
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&format!("{name}-vmcp")),
        "the control plane's namespace is left"
    );
    let scratch = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("netlab-vm-{name}-"))
        })
        .count();
    assert_eq!(scratch, 0, "the control plane's files are left");
}

#[test]
fn every_index_network_runs_as_ipvlan_and_a_duplicate_fails_in_the_kernel() {
    let Some((_one, image)) = vm("vm::indices") else {
        return;
    };
    // One machine: the example DaemonSets put ndt (index 2) and wehe (index 5) on it; a pod for every other index
    // of k8s/networks; and a second pod asking for index 2.
    let indices: Vec<u32> = std::fs::read_dir(root().join("k8s/networks"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("index2ip-index-")?
                .strip_suffix("-conf.yaml")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(indices.len(), 12, "{indices:?}");
    let pod = |name: &str, i: u32| {
        format!(
            "  - name: {name}\n    node: mlab1\n    annotations:\n      k8s.v1.cni.cncf.io/networks: index2ip-index-{i}-conf\n      v1.multus-cni.io/default-network: flannel-experiment-conf\n"
        )
    };
    let mut topo = String::from(
        "site: {ipv4: 192.0.2.0/26, gateway4: 192.0.2.1, ipv6: '2001:db8:1::/64', gateway6: '2001:db8:1::1'}\n\
         nodes:\n  - {name: mlab1, offset: 9, labels: {mlab/type: physical}}\npods:\n",
    );
    for &i in indices.iter().filter(|i| ![2, 5].contains(*i)) {
        topo.push_str(&pod(&format!("idx{i}"), i));
    }
    topo.push_str(&pod("dup-ndt", 2));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("indices.yaml");
    std::fs::write(&file, &topo).unwrap();
    let (out, t) = run_vm(&image, &["--topology", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the duplicate must fail the check:\n{t}"
    );
    assert!(
        t.contains(IPVLAN_REAL) && !t.contains(MACVLAN_FOR_IPVLAN),
        "{t}"
    );

    // Every index network ran as ipvlan L2 on the one machine, each pod with its own address (9 + index).
    let rows = net1_rows(&t);
    let mut got: Vec<u32> = Vec::new();
    for (pod, kind, addrs) in &rows {
        if pod == "dup-ndt" {
            // The reference ipvlan plugin (1.1.1) leaves the link it made when the kernel refuses the address;
            // DEL removes it (down reports nothing left). It holds no address.
            assert!(addrs.is_empty(), "{pod} {addrs}:\n{t}");
            continue;
        }
        assert_eq!(kind, "ipvlan l2", "{pod}:\n{t}");
        let last: u32 = addrs
            .split_whitespace()
            .next()
            .and_then(|a| a.strip_prefix("192.0.2."))
            .and_then(|a| a.strip_suffix("/26"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{pod} {addrs}:\n{t}"));
        got.push(last - 9);
    }
    got.sort_unstable();
    let mut want = indices.clone();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "one ipvlan interface per index, distinct addresses:\n{t}"
    );
    // The internet client reached each of them over TCP, v4 and v6.
    assert_eq!(t.matches("tcp ok").count(), 2 * indices.len(), "{t}");

    // The duplicate: the kernel refused the second address on the master, and both pods hear of it.
    let kernel_error = "address already in use";
    let dup = t
        .lines()
        .find(|l| l.contains("pod dup-ndt") && l.contains("FAILED"))
        .unwrap_or_default();
    assert!(
        dup.contains(kernel_error),
        "the kernel's own error, not the lab's:\n{t}"
    );
    for pod in ["ndt-index2-mlab1", "dup-ndt"] {
        assert!(
            t.lines()
                .any(|l| l.starts_with(&format!("FAIL {pod}:")) && l.contains(kernel_error)),
            "no kernel error against {pod}:\n{t}"
        );
    }
    assert!(
        !t.contains("already held on node"),
        "the lab refused in the kernel's place:\n{t}"
    );
    assert!(
        t.contains("nothing left behind") && !t.contains("LEAK:"),
        "{t}"
    );
}

#[test]
fn vm_exec_runs_a_shipped_file_on_a_kernel_with_ipvlan_and_returns_its_status() {
    let Some((_one, image)) = vm("vm::exec") else {
        return;
    };
    // A script of this machine's, shipped at its own path: it makes an ipvlan link and exits with a status of
    // its own, which must come back as netlab's.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("probe.sh");
    std::fs::write(
        &script,
        // Debian's ip by its path: the image's busybox sh prefers its own applets to PATH.
        "set -e\nip=/usr/bin/ip\n$ip link add v0 type veth peer name v1\n\
         $ip link add i0 link v0 type ipvlan mode l2\n$ip -d link show i0\nexit 3\n",
    )
    .unwrap();
    let out = Command::new(netlab())
        .args(["vm-exec", "--vm-image"])
        .arg(&image)
        .arg("--ship")
        .arg(&script)
        .args(["--", "sh"])
        .arg(&script)
        .output()
        .unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.lines()
            .any(|l| l.trim_start().starts_with("ipvlan") && l.contains("mode l2")),
        "the kernel's ipvlan link, in ip's details:\n{t}"
    );
}

/// The workspace's test executable that lists `test` (cargo names every crate's `tests/tests.rs` binary
/// `tests-HASH`), found beside netlab's own.
fn test_executable(test: &str) -> Option<PathBuf> {
    let deps = netlab().parent()?.join("deps");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&deps)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with("tests-") && !name.contains('.')
        })
        .collect();
    // The newest first: an older build of the same crate may linger.
    candidates.sort_by_key(|p| std::cmp::Reverse(p.metadata().and_then(|m| m.modified()).ok()));
    candidates.into_iter().find(|exe| {
        Command::new(exe)
            .args(["--list", "--exact", test])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{test}: test")))
    })
}

/// Runs one test of another crate inside the VM, with the binaries it needs shipped at their own paths, and
/// asserts it passed there without a skip or a stand-in.
fn run_in_vm(name: &str, test: &str) {
    let Some((_one, image)) = vm(name) else {
        return;
    };
    let Some(exe) = test_executable(test) else {
        skip(
            name,
            &format!("no built test executable lists {test} (cargo test --workspace builds it)"),
        );
        return;
    };
    let out = Command::new(netlab())
        .args(["vm-exec", "--vm-image"])
        .arg(&image)
        .arg("--ship")
        .arg(&exe)
        .arg("--ship")
        .arg(netlab().with_file_name("index2ip"))
        .arg("--ship")
        .arg(netlab().with_file_name("cni-shim"))
        .arg("--ship")
        .arg(netlab().with_file_name("cni-shim-passthrough"))
        .arg("--")
        .arg(&exe)
        .args([test, "--exact", "--test-threads=1"])
        .output()
        .unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("test result: ok. 1 passed"), "{t}");
    assert!(
        !t.contains("SKIPPED") && !t.contains("no ipvlan"),
        "the test must run with real ipvlan in the VM:\n{t}"
    );
}

#[test]
fn index2ips_ipvlan_interop_test_runs_for_real_in_the_vm() {
    run_in_vm(
        "vm::index2ip-interop",
        "interop::ipvlan_uses_index2ip_at_every_shared_version",
    );
}

#[test]
fn cni_shims_netns_test_runs_with_ipvlan_in_the_vm() {
    run_in_vm(
        "vm::cni-shim-netns",
        "netns::main_plugin_and_index2ip_through_the_shim_give_a_two_level_tree",
    );
}
