//! The real reference main plugin with index2ip as its IPAM, both through the shim, in network namespaces of the
//! test's own: the pod gets index2ip's address and the shim's records form a two-level tree. The plugin is ipvlan
//! L2, as the NADs have it, where the kernel has ipvlan (in the VM of `netlab vm-exec`), else macvlan, said loudly.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use crate::util::{is_root, path, skip, temp_dir, text, SHIM};

const REFERENCE: &str = "/usr/lib/cni";

/// Network namespaces removed on drop (their links go with them), also when the test fails.
struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "delete", n]).status();
        }
    }
}

fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
    out
}

fn call(node: &str, shim: &Path, plugin: &str, verb: &str, pod: &str, conf: &str) -> Output {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", node, path(&shim.join(plugin))])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", "netns-test-ctr")
        .env("CNI_NETNS", format!("/var/run/netns/{pod}"))
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", shim);
    crate::util::Lab::run_detached(c, conf.as_bytes().to_vec())
}

#[test]
fn main_plugin_and_index2ip_through_the_shim_give_a_two_level_tree() {
    let test = "netns::main_plugin_and_index2ip_through_the_shim_give_a_two_level_tree";
    if !is_root() {
        return skip(test, "network namespaces need root");
    }
    if !Path::new(REFERENCE).join("macvlan").exists() {
        return skip(test, "the reference plugins are not in /usr/lib/cni (apt-get install containernetworking-plugins)");
    }
    // index2ip as the workspace builds it, beside this crate's binary.
    let index2ip = Path::new(SHIM).with_file_name("index2ip");
    if !index2ip.is_file() {
        return skip(
            test,
            "index2ip is not built beside cni-shim (cargo build -p index2ip)",
        );
    }
    let tmp = temp_dir("netns");
    let (shim, logs, real) = (
        tmp.path().join("shim"),
        tmp.path().join("logs"),
        tmp.path().join("real"),
    );
    // The node's plugin directory: the reference macvlan and index2ip.
    fs::create_dir_all(&real).unwrap();
    for plugin in ["macvlan", "ipvlan"] {
        std::os::unix::fs::symlink(Path::new(REFERENCE).join(plugin), real.join(plugin)).unwrap();
    }
    std::os::unix::fs::symlink(&index2ip, real.join("index2ip")).unwrap();
    let cmdline = tmp.path().join("cmdline");
    fs::write(
        &cmdline,
        "ro epoxy.ipv4=192.0.2.9/24,192.0.2.1,192.0.2.53, epoxy.ipv6=\n",
    )
    .unwrap();
    let out = Command::new(SHIM)
        .args([
            "install",
            "--real-dir",
            path(&real),
            "--shim-dir",
            path(&shim),
            "--log-dir",
            path(&logs),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let pid = std::process::id();
    let (node, pod) = (format!("cnishim-node-{pid}"), format!("cnishim-pod-{pid}"));
    let _guard = Netns(vec![node.clone(), pod.clone()]);
    ip(&["netns", "add", &node]);
    ip(&["netns", "add", &pod]);
    ip(&[
        "-n", &node, "link", "add", "m0", "type", "veth", "peer", "name", "m1",
    ]);
    ip(&["-n", &node, "link", "set", "m0", "up"]);
    ip(&["-n", &node, "link", "set", "m1", "up"]);

    // ipvlan L2 as the NADs have it where the kernel can make it, else macvlan on the same master.
    let has_ipvlan = Command::new("ip")
        .args([
            "-n", &node, "link", "add", "probe0", "link", "m0", "type", "ipvlan", "mode", "l2",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    let (plugin, mode) = if has_ipvlan {
        ip(&["-n", &node, "link", "del", "probe0"]);
        ("ipvlan", "l2")
    } else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "\nNOTE {test}: this kernel has no ipvlan; macvlan on the same master stands in\n"
            )
            .as_bytes(),
        );
        ("macvlan", "bridge")
    };
    // Index 1 on a node at 192.0.2.9/24 is 192.0.2.10/24.
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"index2ip-index-1-conf","type":"{plugin}","master":"m0","mode":"{mode}","ipam":{{"type":"index2ip","index":1,"cmdline":"{}"}}}}"#,
        cmdline.display()
    );
    let add = call(&node, &shim, plugin, "ADD", &pod, &conf);
    assert_eq!(
        add.status.code(),
        Some(0),
        "{}{}",
        text(&add.stdout),
        text(&add.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&add.stdout).unwrap();
    assert_eq!(result["ips"][0]["address"], "192.0.2.10/24", "{result}");
    let addr = text(&ip(&["-n", &pod, "-o", "addr", "show", "dev", "net1"]).stdout);
    assert!(addr.contains("inet 192.0.2.10/24"), "{addr}");

    let tree = Command::new(SHIM)
        .args(["tree", "netns-test-ctr", "--log-dir", path(&logs)])
        .output()
        .unwrap();
    let lines: Vec<String> = text(&tree.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[1].starts_with(&format!("└─ {plugin} ADD net1  ok")),
        "{lines:#?}"
    );
    assert!(
        lines[2].starts_with("   └─ index2ip ADD net1  ok"),
        "{lines:#?}"
    );

    let del = call(&node, &shim, plugin, "DEL", &pod, &conf);
    assert_eq!(
        del.status.code(),
        Some(0),
        "{}{}",
        text(&del.stdout),
        text(&del.stderr)
    );
    let links = text(&ip(&["-n", &pod, "-o", "link", "show"]).stdout);
    assert!(
        !links.contains("net1"),
        "DEL removed the interface: {links}"
    );
    assert_eq!(
        fs::read_dir(&logs).unwrap().count(),
        4,
        "ADD and DEL, each with its IPAM call"
    );
}
