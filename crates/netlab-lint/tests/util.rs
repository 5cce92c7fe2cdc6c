//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};

use netlab_lint::input::{load, Render, Source};
use netlab_lint::{Finding, Options, Report, Rule};

/// The repository root.
pub fn root() -> PathBuf {
    test_support::workspace_root()
}

/// A file of tests/fixtures, as text.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The repository's own k8s/ sources, read directly as scripts/apply.sh applies them: k8s/crds, then k8s.
pub fn repo_sources() -> Vec<Source> {
    let (sources, findings) = load(
        &[root().join("k8s/crds"), root().join("k8s")],
        Render::Direct,
    )
    .unwrap_or_else(|e| panic!("reading k8s/: {e}"));
    assert!(findings.is_empty(), "{findings:?}");
    sources
}

/// Lints the repository's k8s/ plus `extra` (as the file `extra.yaml`) with `options` and an inventory.
pub fn lint_with(extra: &str, options: Options, nodes: Option<&str>) -> Report {
    let mut sources = repo_sources();
    sources.push(Source::new("extra.yaml", extra));
    netlab_lint::lint_sources(
        &sources,
        nodes.map(|n| ("nodes.json".to_owned(), n.to_owned())),
        options,
        Vec::new(),
    )
    .unwrap_or_else(|e| panic!("lint: {e}"))
}

/// Lints `extra` alone.
pub fn lint_alone(extra: &str) -> Report {
    let sources = [Source::new("extra.yaml", extra)];
    netlab_lint::lint_sources(&sources, None, Options::default(), Vec::new())
        .unwrap_or_else(|e| panic!("lint: {e}"))
}

/// Asserts `rule` fired on `extra` alone (and nothing else), returning its findings.
pub fn fires_alone(extra: &str, rule: Rule) -> Vec<Finding> {
    let report = lint_alone(extra);
    let found = only(&report, rule);
    assert!(!found.is_empty(), "{} did not fire on:\n{extra}", rule.id());
    found
}

/// Lints the repository's k8s/ plus `extra`.
pub fn lint(extra: &str) -> Report {
    lint_with(extra, Options::default(), None)
}

/// The findings of `rule`, after checking that no other rule fired.
pub fn only(report: &Report, rule: Rule) -> Vec<Finding> {
    let others: Vec<&Finding> = report.findings.iter().filter(|f| f.rule != rule).collect();
    assert!(
        others.is_empty(),
        "other rules fired besides {}: {others:#?}",
        rule.id()
    );
    report.findings.clone()
}

/// Asserts `rule` fired at least once (and nothing else), returning its findings.
pub fn fires(extra: &str, rule: Rule) -> Vec<Finding> {
    let report = lint(extra);
    let found = only(&report, rule);
    assert!(!found.is_empty(), "{} did not fire on:\n{extra}", rule.id());
    found
}

/// Asserts nothing fires.
pub fn clean(extra: &str) {
    let report = lint(extra);
    assert!(
        report.findings.is_empty(),
        "unexpected findings on:\n{extra}\n{:#?}",
        report.findings
    );
}

/// A NetworkAttachmentDefinition with `config` (a JSON text) as a block scalar.
pub fn nad(namespace: &str, name: &str, config: &str) -> String {
    let body: String = config.lines().map(|l| format!("    {l}\n")).collect();
    format!("apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  config: |\n{body}")
}

/// An index network chain at `version` with `index`.
pub fn index_config(version: &str, index: &str) -> String {
    format!(
        r#"{{"cniVersion": "{version}", "name": "n", "plugins": [{{"type": "ipvlan", "master": "eth0", "mode": "l2", "ipam": {{"type": "index2ip", "index": {index}}}}}, {{"type": "tuning", "sysctl": {{"net.ipv6.conf.IFNAME.accept_ra": "0"}}}}]}}"#
    )
}

/// A DaemonSet named `name` whose pod template has the given annotations (YAML lines, already indented for the
/// annotations mapping) and spec lines (indented for the pod spec). `None` leaves out the annotations mapping.
pub fn daemonset(name: &str, annotations: &str, spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n      annotations:\n{annotations}    spec:\n{spec}      containers:\n        - name: c\n          image: registry.example.org/c:1\n"
    )
}

/// Pod spec lines of a well-behaved index workload: physical nodes, DNS by hand.
pub const GOOD_SPEC: &str = "      nodeSelector:\n        mlab/type: physical\n      dnsPolicy: None\n      dnsConfig:\n        nameservers: [8.8.8.8]\n";

/// Annotation lines asking for `networks` with flannel-experiment-conf as the default network.
pub fn good_annotations(networks: &str) -> String {
    format!("        k8s.v1.cni.cncf.io/networks: '{networks}'\n        v1.multus-cni.io/default-network: flannel-experiment-conf\n")
}

pub use test_support::skip;
