//! The plugin as a runtime sees it: every verb at every spec version.

use serde_json::{json, Value};

use crate::util::{call, cni_env, err, json, ok, run, Node};

const VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The exact ADD result for the example node and index 5 at `version`.
fn expected_add(version: &str) -> Value {
    let dns = json!({"nameservers": ["8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844"]});
    match version {
        "0.1.0" | "0.2.0" => json!({
            "cniVersion": version,
            "ip4": {"ip": "4.14.159.117/26", "gateway": "4.14.159.65",
                    "routes": [{"dst": "0.0.0.0/0", "gw": "4.14.159.65"}]},
            "ip6": {"ip": "2001:1900:2100:2d::117/64", "gateway": "2001:1900:2100:2d::1",
                    "routes": [{"dst": "::/0", "gw": "2001:1900:2100:2d::1"}]},
            "dns": dns
        }),
        "0.3.0" | "0.3.1" | "0.4.0" => json!({
            "cniVersion": version,
            "ips": [
                {"version": "4", "address": "4.14.159.117/26", "gateway": "4.14.159.65"},
                {"version": "6", "address": "2001:1900:2100:2d::117/64", "gateway": "2001:1900:2100:2d::1"}
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "4.14.159.65"}, {"dst": "::/0", "gw": "2001:1900:2100:2d::1"}],
            "dns": dns
        }),
        _ => json!({
            "cniVersion": version,
            "ips": [
                {"address": "4.14.159.117/26", "gateway": "4.14.159.65"},
                {"address": "2001:1900:2100:2d::117/64", "gateway": "2001:1900:2100:2d::1"}
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "4.14.159.65"}, {"dst": "::/0", "gw": "2001:1900:2100:2d::1"}],
            "dns": dns
        }),
    }
}

#[test]
fn add_answers_each_version_in_its_exact_shape() {
    let node = Node::example();
    for v in VERSIONS {
        let out = call("ADD", &node.config(v, json!({"index": 5})));
        ok(&out);
        assert_eq!(json(&out), expected_add(v), "ADD at {v}");
    }
}

#[test]
fn add_falls_back_to_the_pod_name_and_prefers_ipam_index() {
    let node = Node::example();
    // cni_env names the pod ndt-index2-x7k2p.
    let by_name = call("ADD", &node.config("1.0.0", json!({})));
    assert_eq!(json(&by_name)["ips"][0]["address"], "4.14.159.114/26");
    let by_config = call("ADD", &node.config("1.0.0", json!({"index": 7})));
    assert_eq!(json(&by_config)["ips"][0]["address"], "4.14.159.119/26");
}

#[test]
fn version_lists_exactly_the_supported_versions() {
    for stdin in [&b""[..], br#"{"cniVersion":"0.4.0"}"#, b"not json"] {
        let out = run(&[("CNI_COMMAND", "VERSION".to_owned())], stdin);
        ok(&out);
        assert_eq!(
            json(&out),
            json!({"cniVersion": "1.1.0", "supportedVersions": VERSIONS})
        );
    }
}

#[test]
fn del_always_succeeds_and_prints_nothing() {
    let node = Node::example();
    let mut no_netns = cni_env("DEL");
    no_netns.retain(|(k, _)| *k != "CNI_NETNS");
    for v in VERSIONS {
        let configs = [
            node.config(v, json!({"index": 5})),
            // ipam stripped to its type, as multus has sent.
            json!({"cniVersion": v, "name": "n", "type": "ipvlan", "ipam": {"type": "index2ip"}}),
            json!({"cniVersion": v, "name": "n", "type": "ipvlan"}),
            // An index that ADD would refuse, and a node file that does not exist.
            json!({"cniVersion": v, "type": "ipvlan", "ipam": {"type": "index2ip", "index": -3, "cmdline": "/nonexistent"}}),
        ];
        for config in &configs {
            for _ in 0..2 {
                assert_eq!(ok(&call("DEL", config)), "", "DEL {config}");
            }
            assert_eq!(ok(&run(&no_netns, config.to_string().as_bytes())), "");
        }
    }
}

#[test]
fn check_compares_with_prev_result() {
    let node = Node::example();
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        let add = json(&call("ADD", &node.config(v, json!({"index": 5}))));
        let mut config = node.config(v, json!({"index": 5}));
        config["prevResult"] = add.clone();
        assert_eq!(ok(&call("CHECK", &config)), "", "CHECK at {v}");

        // A main plugin adds interfaces and links addresses to them: still a match.
        let mut with_iface = add.clone();
        with_iface["interfaces"] = json!([{"name": "net1", "sandbox": "/var/run/netns/pod"}]);
        with_iface["ips"][0]["interface"] = json!(0);
        config["prevResult"] = with_iface;
        assert_eq!(ok(&call("CHECK", &config)), "");

        let mut wrong = add.clone();
        wrong["ips"][0]["address"] = json!("4.14.159.118/26");
        config["prevResult"] = wrong;
        let msg = err(&call("CHECK", &config), 102);
        assert_eq!(
            msg,
            "prevResult lacks 4.14.159.117/26 via 4.14.159.65, which index 5 gives on this node"
        );

        let mut no_route = add.clone();
        no_route["routes"] = json!([{"dst": "0.0.0.0/0", "gw": "4.14.159.65"}]);
        config["prevResult"] = no_route;
        let msg = err(&call("CHECK", &config), 102);
        assert!(msg.contains("route ::/0 via 2001:1900:2100:2d::1"), "{msg}");

        config["prevResult"] = json!({"ips": "nope"});
        err(&call("CHECK", &config), 7);
        config.as_object_mut().map(|c| c.remove("prevResult"));
        assert!(err(&call("CHECK", &config), 7).contains("CHECK needs prevResult"));
    }
    for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1"] {
        let msg = err(&call("CHECK", &node.config(v, json!({"index": 5}))), 1);
        assert!(msg.contains("needs 0.4.0 or later"), "{msg}");
    }
}

#[test]
fn gc_and_status_exist_from_1_1_0() {
    let node = Node::example();
    let good = node.config("1.1.0", json!({"index": 5}));
    assert_eq!(ok(&call("GC", &good)), "");
    assert_eq!(ok(&call("STATUS", &good)), "");
    // STATUS needs no index, only the node's keys.
    assert_eq!(ok(&call("STATUS", &node.config("1.1.0", json!({})))), "");
    let broken = Node::new("ro quiet\n");
    let msg = err(&call("STATUS", &broken.config("1.1.0", json!({}))), 50);
    assert!(msg.contains("epoxy.ipv4= is missing"), "{msg}");
    for v in ["0.4.0", "1.0.0"] {
        err(&call("GC", &node.config(v, json!({}))), 1);
        err(&call("STATUS", &node.config(v, json!({}))), 1);
    }
}

#[test]
fn refusals_carry_the_spec_codes() {
    let node = Node::example();
    let good = node.config("1.0.0", json!({"index": 5}));
    let stdin = good.to_string();

    // Environment: code 4.
    let unknown = run(&cni_env("ADDD"), stdin.as_bytes());
    assert!(err(&unknown, 4).contains("unknown CNI_COMMAND \"ADDD\""));
    let mut missing = cni_env("ADD");
    missing.retain(|(k, _)| *k != "CNI_COMMAND");
    err(&run(&missing, stdin.as_bytes()), 4);
    for name in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let mut env = cni_env("ADD");
        env.retain(|(k, _)| *k != name);
        assert!(err(&run(&env, stdin.as_bytes()), 4).contains(name));
    }

    // Decoding: 6; versions: 1.
    err(&run(&cni_env("ADD"), b"{\"cniVersion\":"), 6);
    let msg = err(&call("ADD", &node.config("0.5.0", json!({"index": 5}))), 1);
    assert!(msg.contains("\"0.5.0\" is not supported"), "{msg}");

    // Config: 7, with the limit named where it applies.
    let msg = err(&call("ADD", &node.config("1.0.0", json!({"index": 0}))), 7);
    assert_eq!(
        msg,
        "ipam.index must be a positive integer below 2^32, got 0"
    );
    let mut anonymous = cni_env("ADD");
    anonymous.retain(|(k, _)| *k != "CNI_ARGS");
    let msg = err(
        &run(
            &anonymous,
            node.config("1.0.0", json!({})).to_string().as_bytes(),
        ),
        7,
    );
    assert!(msg.starts_with("no index: set ipam.index"), "{msg}");

    // The index beyond the node block: 101, naming block, index and limit.
    let msg = err(
        &call("ADD", &node.config("0.3.1", json!({"index": 16}))),
        101,
    );
    assert_eq!(
        msg,
        "index 16 gives 4.14.159.128, outside the subnet of node block 4.14.159.112/26; indices 1 to 14 fit"
    );

    // Node keys: 100 when malformed, 5 when unreadable.
    let bare = Node::new("epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8\n");
    let msg = err(
        &call("ADD", &bare.config("1.0.0", json!({"index": 5}))),
        100,
    );
    assert!(
        msg.contains("has 3 comma-separated fields, expected 4"),
        "{msg}"
    );
    assert!(
        msg.contains(&bare.cmdline.display().to_string()),
        "names the file: {msg}"
    );
    let gone = json!({"cniVersion": "1.0.0", "ipam": {"type": "index2ip", "index": 5, "cmdline": "/nonexistent/cmdline"}});
    assert!(err(&call("ADD", &gone), 5).contains("/nonexistent/cmdline"));
}

#[test]
fn diagnostics_stay_off_stdout() {
    let node = Node::example();
    let out = call("ADD", &node.config("1.0.0", json!({"index": 5})));
    let text = ok(&out);
    assert_eq!(text.lines().count(), 1, "one line of JSON: {text:?}");
    assert!(
        out.stderr.is_empty(),
        "ADD wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
