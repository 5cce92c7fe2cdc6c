//! index2ip as the IPAM of Debian's reference main plugins, in network namespaces this test creates.
//!
//! Layout: a "node" namespace whose `eth0` is one end of a veth pair; the other end sits in an "uplink" namespace
//! holding the block's gateway addresses. The main plugin runs inside the node namespace, builds its interface on
//! `eth0` and moves it into a "pod" namespace as `net1`, with index2ip computing the address. The test then checks
//! the address and default route in the pod, pings the gateway across the node's `eth0`, runs CHECK and DEL, and
//! removes everything it made, also when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use test_support::{ip, need_root, skip, skip_unavoidable, Netns};

use crate::util::{json, ok, run_command, run_with, Node};

const REFERENCE: &str = "/usr/lib/cni";
const CMDLINE: &str = "epoxy.ipv4=192.0.2.112/26,192.0.2.65,192.0.2.53,192.0.2.54 \
                       epoxy.ipv6=2001:db8:2d::112/64,2001:db8:2d::1,2001:db8::53,2001:db8::54\n";

/// Namespaces and links made by one test, removed on drop with everything in them.
struct Lab {
    ns: Netns,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let lab = Lab {
            ns: Netns::new(&format!("i2ip-{tag}"), &["node", "pod", "up"]),
        };
        let (node, pod, up) = (lab.node(), lab.pod(), lab.up());
        ip(&[
            "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", "uplink", "netns",
            up,
        ]);
        for (ns, sysctl) in [
            (pod, "net.ipv6.conf.default.accept_dad=0"),
            (up, "net.ipv6.conf.default.accept_dad=0"),
        ] {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw", sysctl])
                .output()
                .unwrap();
            assert!(out.status.success(), "sysctl in {ns}");
        }
        ip(&["-n", up, "addr", "add", "192.0.2.65/26", "dev", "uplink"]);
        ip(&[
            "-n",
            up,
            "addr",
            "add",
            "2001:db8:2d::1/64",
            "dev",
            "uplink",
            "nodad",
        ]);
        for (ns, dev) in [
            (node, "eth0"),
            (up, "uplink"),
            (node, "lo"),
            (pod, "lo"),
            (up, "lo"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }

    fn node(&self) -> &str {
        self.ns.name(0)
    }
    fn pod(&self) -> &str {
        self.ns.name(1)
    }
    fn up(&self) -> &str {
        self.ns.name(2)
    }
    fn pod_path(&self) -> PathBuf {
        self.ns.path(1)
    }

    /// Runs a main plugin inside the node namespace, as a runtime on that node would.
    fn plugin(&self, plugin: &str, command: &str, config: &Value) -> Output {
        let cni_path = crate::util::bin().parent().unwrap().display().to_string();
        let env = [
            ("CNI_COMMAND", command.to_owned()),
            ("CNI_CONTAINERID", format!("interop-{}", std::process::id())),
            ("CNI_NETNS", self.pod_path().display().to_string()),
            ("CNI_IFNAME", "net1".to_owned()),
            ("CNI_PATH", cni_path),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_owned()),
        ];
        // `ip netns exec` hands its environment on to the plugin.
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            self.node(),
            &format!("{REFERENCE}/{plugin}"),
        ]);
        run_command(&mut cmd, &env, config.to_string().as_bytes())
    }

    /// Checks a successful ADD for `index`: its result, and the pod's `net1` address and IPv4 default route.
    /// Returns the result.
    fn assert_attached(&self, add: &Output, version: &str, index: u64) -> Value {
        ok(add);
        let result = json(add);
        let expected = format!("192.0.2.{}/26", 112 + index);
        assert!(
            result.to_string().contains(&expected),
            "{version}: {result}"
        );
        let addrs = ip(&["-n", self.pod(), "-o", "addr", "show", "dev", "net1"]);
        assert!(
            addrs.contains(&format!("inet {expected}")),
            "{version}: {addrs}"
        );
        let route = ip(&["-n", self.pod(), "route", "show", "default"]);
        assert!(
            route.contains("default via 192.0.2.65 dev net1"),
            "{version}: {route}"
        );
        result
    }

    /// Runs cnitool inside the node namespace for the network `network` in `netconf`, attaching `net1` to the pod
    /// namespace: libcni finds, runs and chains the plugins itself, as a runtime does.
    fn cnitool(&self, cnitool: &Path, verb: &str, netconf: &Path, network: &str) -> Output {
        let cni_path = format!(
            "{REFERENCE}:{}",
            crate::util::bin().parent().unwrap().display()
        );
        let env = [
            ("CNI_PATH", cni_path),
            ("NETCONFPATH", netconf.display().to_string()),
            ("CNI_IFNAME", "net1".to_owned()),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_owned()),
        ];
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.node()])
            .arg(cnitool)
            .args([verb, network])
            .arg(self.pod_path());
        run_command(&mut cmd, &env, b"")
    }
}

/// The versions both the reference plugin and index2ip speak.
fn shared_versions(plugin: &str) -> Vec<String> {
    let out = run_with(
        &Path::new(REFERENCE).join(plugin),
        &[("CNI_COMMAND", "VERSION".to_owned())],
        b"",
    );
    let theirs = json(&out);
    let ours = json(&run_with(
        crate::util::bin(),
        &[("CNI_COMMAND", "VERSION".to_owned())],
        b"",
    ));
    let ours: Vec<&Value> = ours["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    theirs["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| ours.contains(v))
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Whether the tools the test needs are here; reports and returns false otherwise.
fn ready(test: &str, plugin: &str) -> bool {
    if !need_root(test) {
        return false;
    }
    for tool in [format!("{REFERENCE}/{plugin}"), "/usr/bin/ping".to_owned()] {
        if !Path::new(&tool).exists() {
            skip(
                test,
                &format!(
                    "{tool} is missing (apt-get install containernetworking-plugins iputils-ping)"
                ),
            );
            return false;
        }
    }
    true
}

/// ADD, CHECK and DEL through `plugin` at every shared version, with `mode` for its config.
fn attach_detach(tag: &str, plugin: &str, mode: &str) {
    let lab = Lab::new(tag);
    let node = Node::new(CMDLINE);
    let versions = shared_versions(plugin);
    assert!(versions.len() >= 6, "{plugin} shares only {versions:?}");
    for (n, version) in versions.iter().enumerate() {
        let index = n as u64 + 1;
        let expected6 = format!("2001:db8:2d::{}/64", 112 + index);
        let mut config = json!({
            "cniVersion": version,
            "name": format!("index2ip-index-{index}-conf"),
            "type": plugin,
            "master": "eth0",
            "mode": mode,
            "ipam": {"type": "index2ip", "index": index, "cmdline": node.cmdline}
        });

        let result = lab.assert_attached(&lab.plugin(plugin, "ADD", &config), version, index);
        let addrs = ip(&["-n", lab.pod(), "-o", "addr", "show", "dev", "net1"]);
        assert!(
            addrs.contains(&format!("inet6 {expected6}")),
            "{version}: {addrs}"
        );
        let route6 = ip(&["-n", lab.pod(), "-6", "route", "show", "default"]);
        assert!(
            route6.contains("default via 2001:db8:2d::1 dev net1"),
            "{version}: {route6}"
        );

        // Traffic leaves the pod through the node's eth0 and reaches the gateway.
        let ping = Command::new("ip")
            .args([
                "netns",
                "exec",
                lab.pod(),
                "ping",
                "-c1",
                "-W2",
                "192.0.2.65",
            ])
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "{version}: ping: {}",
            String::from_utf8_lossy(&ping.stdout)
        );

        if version.as_str() >= "0.4.0" {
            config["prevResult"] = result;
            assert_eq!(
                ok(&lab.plugin(plugin, "CHECK", &config)),
                "",
                "CHECK at {version}"
            );
        }
        for _ in 0..2 {
            ok(&lab.plugin(plugin, "DEL", &config));
        }
        let left = ip(&["-n", lab.pod(), "-o", "link", "show"]);
        assert!(
            !left.contains("net1"),
            "{version}: net1 left behind: {left}"
        );
    }
    drop(lab);
    let all = ip(&["netns", "list"]);
    assert!(
        !all.contains(&format!("i2ip-{tag}-{}", std::process::id())),
        "namespaces left behind: {all}"
    );
}

/// libcni's cached result for a cnitool attachment: `/var/lib/cni/results/NETWORK-CONTAINERID-IFNAME`, the
/// container ID being cnitool's hash of the namespace path.
fn cached_results(network: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/var/lib/cni/results")
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{network}-cnitool-")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the cached results of a network on drop, whatever happened.
struct CachedResults(String);

impl Drop for CachedResults {
    fn drop(&mut self) {
        for file in cached_results(&self.0) {
            let _ = std::fs::remove_file(file);
        }
    }
}

#[test]
fn cnitool_drives_index2ip_through_macvlan() {
    const TEST: &str = "interop::cnitool";
    if !ready(TEST, "macvlan") {
        return;
    }
    let Some(cnitool) = test_support::upstream_bin().map(|d| d.join("cnitool")) else {
        skip(
            TEST,
            "cnitool is not built: run scripts/upstream.sh (the test command does)",
        );
        return;
    };
    let lab = Lab::new("tool");
    let node = Node::new(CMDLINE);
    let netconf = test_support::temp_dir("index2ip-netconf");
    let versions = shared_versions("macvlan");
    assert!(versions.len() >= 6, "macvlan shares only {versions:?}");
    for (n, version) in versions.iter().enumerate() {
        let index = n as u64 + 1;
        let network = format!("i2ip-tool-{}-{index}", std::process::id());
        let _cache = CachedResults(network.clone());
        // A network list of one plugin, as a NetworkAttachmentDefinition would hold it.
        let list = json!({
            "cniVersion": version,
            "name": network,
            "plugins": [{
                "type": "macvlan",
                "master": "eth0",
                "mode": "bridge",
                "ipam": {"type": "index2ip", "index": index, "cmdline": node.cmdline}
            }]
        });
        test_support::write(netconf.path(), &format!("{n}.conflist"), list.to_string());

        lab.assert_attached(
            &lab.cnitool(&cnitool, "add", netconf.path(), &network),
            version,
            index,
        );
        assert_eq!(
            cached_results(&network).len(),
            1,
            "{version}: libcni cached no result for ADD"
        );

        // libcni runs CHECK from its cached result, and refuses it below 0.4.0 before any plugin runs.
        let check = lab.cnitool(&cnitool, "check", netconf.path(), &network);
        if version.as_str() >= "0.4.0" {
            ok(&check);
        } else {
            assert!(!check.status.success(), "CHECK at {version} passed libcni");
            let said = String::from_utf8_lossy(&check.stderr);
            assert!(said.contains("CHECK"), "{version}: {said}");
        }

        for _ in 0..2 {
            ok(&lab.cnitool(&cnitool, "del", netconf.path(), &network));
        }
        let left = ip(&["-n", lab.pod(), "-o", "link", "show"]);
        assert!(
            !left.contains("net1"),
            "{version}: net1 left behind: {left}"
        );
        assert!(
            cached_results(&network).is_empty(),
            "{version}: DEL left libcni's cached result"
        );
    }
}

#[test]
fn macvlan_uses_index2ip_at_every_shared_version() {
    if ready("interop::macvlan", "macvlan") {
        attach_detach("mv", "macvlan", "bridge");
    }
}

#[test]
fn ipvlan_uses_index2ip_at_every_shared_version() {
    if !ready("interop::ipvlan", "ipvlan") {
        return;
    }
    // The NADs use ipvlan, which this kernel may lack; probe in a namespace of our own.
    let probe = Lab::new("probe");
    let has_ipvlan = Command::new("ip")
        .args([
            "-n",
            probe.node(),
            "link",
            "add",
            "probe0",
            "link",
            "eth0",
            "type",
            "ipvlan",
            "mode",
            "l2",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    drop(probe);
    if has_ipvlan {
        attach_detach("iv", "ipvlan", "l2");
    } else {
        skip_unavoidable(
            "interop::ipvlan",
            "this kernel has no ipvlan; the macvlan test covers the same IPAM path",
        );
    }
}
