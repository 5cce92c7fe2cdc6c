//! The repository's own manifests, and the plugin table against the installed plugins.

use std::process::Command;

use netlab_lint::input::{load, Render};
use netlab_lint::Options;
use netlab_model::cniconf::{known, Role};

use crate::util::*;

#[test]
fn repo_k8s_passes_lint_read_directly() {
    let report = lint("");
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert!(report.summary.objects >= 29, "{:?}", report.summary);
}

#[test]
fn repo_k8s_passes_lint_rendered_by_kubectl() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        skip(
            "repo_k8s_passes_lint_rendered_by_kubectl",
            "kubectl is not installed",
        );
        return;
    }
    let (sources, findings) = load(
        &[root().join("k8s/crds"), root().join("k8s")],
        Render::Kubectl,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(findings.is_empty());
    let report = netlab_lint::lint_sources(&sources, None, Options::default(), Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    // Kustomize renders the same objects lint reads directly.
    assert_eq!(report.summary.objects, lint("").summary.objects);
}

/// The table's versions are what the installed reference plugins answer to VERSION.
#[test]
fn plugin_table_matches_the_installed_reference_plugins() {
    let dir = std::path::Path::new("/usr/lib/cni");
    if !dir.join("ipvlan").is_file() {
        skip(
            "plugin_table_matches_the_installed_reference_plugins",
            "no reference plugins in /usr/lib/cni",
        );
        return;
    }
    let mut checked = 0;
    for name in [
        "bridge",
        "host-device",
        "ipvlan",
        "loopback",
        "macvlan",
        "ptp",
        "vlan",
        "bandwidth",
        "firewall",
        "portmap",
        "sbr",
        "tuning",
        "vrf",
        "dhcp",
        "host-local",
        "static",
    ] {
        let k = known(name).unwrap_or_else(|| panic!("{name} missing from the table"));
        let out = Command::new(dir.join(name))
            .env_clear()
            .env("CNI_COMMAND", "VERSION")
            .output()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let reply: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}"));
        let supported: Vec<&str> = reply["supportedVersions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let table: Vec<&str> = k.versions.iter().map(|v| v.as_str()).collect();
        assert_eq!(table, supported, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 16);
    assert_eq!(known("index2ip").map(|k| k.role), Some(Role::Ipam));
}

/// The images k8s/ runs are the releases upstream/versions.env pins, which the tests build and run (the flannel CNI
/// plugin aside: see k8s/README.md).
#[test]
fn image_tags_agree_with_the_pinned_upstream_releases() {
    let env = std::fs::read_to_string(root().join("upstream/versions.env"))
        .unwrap_or_else(|e| panic!("upstream/versions.env: {e}"));
    let pinned = |key: &str| -> String {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in upstream/versions.env"))
            .trim()
            .to_owned()
    };
    let images: Vec<String> = repo_sources()
        .iter()
        .flat_map(|s| {
            s.text
                .lines()
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| l.strip_prefix("image: ").map(str::to_owned))
        .collect();
    for (repo, key) in [
        ("ghcr.io/k8snetworkplumbingwg/multus-cni", "MULTUS_VERSION"),
        ("ghcr.io/flannel-io/flannel", "FLANNEL_VERSION"),
    ] {
        let tags: Vec<&str> = images
            .iter()
            .filter_map(|i| i.strip_prefix(&format!("{repo}:")))
            .collect();
        assert!(!tags.is_empty(), "k8s/ runs no {repo}");
        for tag in tags {
            assert_eq!(tag, pinned(key), "{repo} in k8s/ against {key}");
        }
    }
}
