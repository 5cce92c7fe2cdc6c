//! Hostile and broken inputs: each must give a CNI error on stdout and a non-zero exit, never a panic, an empty
//! stdout or a silent success.

use serde_json::json;

use crate::util::{cni_env, err, run, Node};

fn add_raw(stdin: &[u8]) -> std::process::Output {
    run(&cni_env("ADD"), stdin)
}

#[test]
fn broken_stdin() {
    let huge = vec![b' '; 17 << 20];
    let cases: [(&[u8], u64); 7] = [
        (b"", 6),
        (b"not json", 6),
        (b"\xff\xfe{}", 6),
        (b"{\"cniVersion\": \"1.0.0\", \"name\": \"\xff\"}", 6),
        (b"[]", 7),
        (b"{\"cniVersion\": 1}", 7),
        (&huge, 6),
    ];
    for (stdin, code) in cases {
        err(&add_raw(stdin), code);
    }
}

#[test]
fn wrong_types_in_the_config() {
    let node = Node::example();
    for (ipam, code) in [
        (json!({"index": "5"}), 7),
        (json!({"index": 5.5}), 7),
        (json!({"index": -1}), 7),
        (json!({"index": 9_223_372_036_854_775_808u64}), 7),
        (json!({"index": 5, "cmdline": 42}), 7),
        (json!({"index": 5, "cmdline": ["/proc/cmdline"]}), 7),
    ] {
        err(&crate::util::call("ADD", &node.config("1.0.0", ipam)), code);
    }
    err(
        &crate::util::call("ADD", &json!({"cniVersion": "1.0.0", "ipam": "index2ip"})),
        7,
    );
}

#[test]
fn hostile_node_files() {
    let cases: [(&str, u64, &str); 6] = [
        ("", 100, "epoxy.ipv4= is missing"),
        (
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8",
            100,
            "3 comma-separated fields",
        ),
        (
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,, epoxy.ipv4=4.14.159.113/26,4.14.159.65,,",
            100,
            "given twice",
        ),
        (
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,, epoxy.ipv6=2001:db8::1a2/64,2001:db8::1,,",
            101,
            "last group 1a2 holds hex letters",
        ),
        (
            "epoxy.ipv4=4.14.159.112/32,4.14.159.65,,",
            101,
            "no index fits this node",
        ),
        (
            "epoxy.ipv4=4.14.159.112/31,4.14.159.65,,",
            101,
            "index 2 gives 4.14.159.114, outside",
        ),
    ];
    for (cmdline, code, expected) in cases {
        let node = Node::new(cmdline);
        let index = if cmdline.contains("/31") { 2 } else { 1 };
        let msg = err(
            &crate::util::call("ADD", &node.config("1.0.0", json!({"index": index}))),
            code,
        );
        assert!(msg.contains(expected), "{cmdline:?}: {msg}");
    }
    // A trailing newline and unrelated parameters are normal.
    let node = Node::new("quiet\nepoxy.ipv4=4.14.159.112/31,4.14.159.65,,\n");
    crate::util::ok(&crate::util::call(
        "ADD",
        &node.config("1.0.0", json!({"index": 1})),
    ));
}

#[test]
fn unreadable_node_files() {
    let dir = test_support::temp_dir("index2ip-unreadable");
    let big = test_support::write(dir.path(), "big", vec![b'x'; (1 << 20) + 1]);
    for path in [dir.path().to_path_buf(), dir.path().join("missing"), big] {
        let config = json!({"cniVersion": "1.0.0", "ipam": {"type": "index2ip", "index": 1, "cmdline": path}});
        let msg = err(&crate::util::call("ADD", &config), 5);
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}

#[test]
fn hostile_bytes_and_repeats_in_the_node_file() {
    let dir = test_support::temp_dir("index2ip-bytes");
    let add = |name: &str, contents: &[u8]| {
        let path = test_support::write(dir.path(), name, contents);
        let config = json!({"cniVersion": "1.0.0", "ipam": {"type": "index2ip", "index": 1, "cmdline": path}});
        crate::util::call("ADD", &config)
    };
    // Bytes that are not UTF-8 in another parameter do not matter; in the key's own value they are refused.
    let elsewhere = add(
        "elsewhere",
        b"quiet x=\xff\xfe epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4\n",
    );
    crate::util::ok(&elsewhere);
    assert_eq!(json_address(&elsewhere), "4.14.159.113/26");
    for (name, contents) in [
        (
            "in-value",
            &b"epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.\xff.8,8.8.4.4\n"[..],
        ),
        (
            "nul",
            b"epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4\0epoxy.ipv6=\n",
        ),
    ] {
        let msg = err(&add(name, contents), 100);
        assert!(msg.contains("DNS"), "{name}: {msg}");
    }
    // A key repeated with the same value is one key; with another value, or empty the second time, it is refused.
    let same = add(
        "same",
        b"epoxy.ipv4=4.14.159.112/26,4.14.159.65,, epoxy.ipv4=4.14.159.112/26,4.14.159.65,,",
    );
    crate::util::ok(&same);
    for (name, contents) in [
        (
            "v6-twice",
            &b"epoxy.ipv4=4.14.159.112/26,4.14.159.65,, epoxy.ipv6=2001:db8::112/64,2001:db8::1,, epoxy.ipv6=2001:db8::200/64,2001:db8::1,,"[..],
        ),
        (
            "v6-then-empty",
            b"epoxy.ipv4=4.14.159.112/26,4.14.159.65,, epoxy.ipv6=2001:db8::112/64,2001:db8::1,, epoxy.ipv6=",
        ),
    ] {
        let msg = err(&add(name, contents), 100);
        assert!(msg.contains("epoxy.ipv6= is given twice"), "{name}: {msg}");
    }
}

fn json_address(out: &std::process::Output) -> String {
    crate::util::json(out)["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
