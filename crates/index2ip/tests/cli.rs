//! `index2ip` run by hand.

use std::process::Command;

use crate::util::{bin, Node};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .env_remove("CNI_COMMAND")
        .output()
        .unwrap()
}

#[test]
fn help_teaches_the_config_and_the_arithmetic() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "\"index\"",
        "epoxy.ipv4=",
        "K8S_POD_NAME",
        "::112 + 5 = ::117",
        "index2ip plan",
    ] {
        assert!(text.contains(needle), "help lacks {needle}");
    }
}

#[test]
fn plan_shows_every_index_that_fits() {
    let node = Node::example();
    let path = node.cmdline.to_str().unwrap();
    let out = run(&["plan", "--cmdline", path]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("indices 1 to 14 fit"), "{text}");
    assert!(
        text.contains("    5  4.14.159.117/26     2001:1900:2100:2d::117/64"),
        "{text}"
    );
    let rows = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()));
    assert_eq!(rows.count(), 14, "{text}");

    let out = run(&["plan", "--cmdline", path, "--index", "15"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("refused: index 15 gives 4.14.159.127, the broadcast"));
}

#[test]
fn bad_arguments_say_what_is_wrong() {
    for (args, expected) in [
        (&["frobnicate"][..], "unknown command \"frobnicate\""),
        (&["plan", "--cmdline"][..], "--cmdline needs a value"),
        (
            &["plan", "--index", "-1"][..],
            "--index takes a positive integer",
        ),
        (
            &["plan", "--cmdline", "/nonexistent"][..],
            "cannot read the node's keys from /nonexistent",
        ),
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(expected), "{args:?}: {text}");
    }
}
