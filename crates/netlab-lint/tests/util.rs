//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};

use netlab_lint::input::{load, Render, Source};
use netlab_lint::{Finding, Options, Report, Rule};

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

/// A file of tests/fixtures/templates with each `${key}` replaced by its value: every key must be in the file, and
/// no placeholder may be left.
pub fn template(name: &str, values: &[(&str, &str)]) -> String {
    let mut text = fixture(&format!("templates/{name}"));
    for (key, value) in values {
        let placeholder = format!("${{{key}}}");
        assert!(
            text.contains(&placeholder),
            "templates/{name} has no {placeholder}"
        );
        text = text.replace(&placeholder, value);
    }
    assert!(
        !text.contains("${"),
        "templates/{name} left unfilled:\n{text}"
    );
    text
}

/// `text` with every `from` replaced by `to`; `from` must be there, so that a test cannot check the unedited text
/// by mistake.
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in:\n{text}");
    text.replace(from, to)
}

/// `text` without its one line containing `containing`.
pub fn without_line(text: &str, containing: &str) -> String {
    let lines = text.lines().filter(|l| l.contains(containing)).count();
    assert_eq!(lines, 1, "{containing:?} is on {lines} lines of:\n{text}");
    text.lines()
        .filter(|l| !l.contains(containing))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A NetworkAttachmentDefinition (templates/nad.yaml) with `config`, one line of JSON; its config is on line 9.
pub fn nad(namespace: &str, name: &str, config: &str) -> String {
    assert!(
        !config.contains('\n'),
        "a config of several lines is a fixture of its own"
    );
    template(
        "nad.yaml",
        &[("namespace", namespace), ("name", name), ("config", config)],
    )
}

/// An index network chain at `version` with `index`.
pub fn index_config(version: &str, index: &str) -> String {
    format!(
        r#"{{"cniVersion": "{version}", "name": "n", "plugins": [{{"type": "ipvlan", "master": "eth0", "mode": "l2", "ipam": {{"type": "index2ip", "index": {index}}}}}, {{"type": "tuning", "sysctl": {{"net.ipv6.conf.IFNAME.accept_ra": "0"}}}}]}}"#
    )
}

/// A well-behaved index workload (templates/index-workload.yaml): a DaemonSet named `name` (line 5) asking for
/// `networks` (line 16) with flannel-experiment-conf as its default network (line 17), on physical nodes, DNS by
/// hand.
pub fn index_workload(name: &str, networks: &str) -> String {
    template(
        "index-workload.yaml",
        &[("name", name), ("networks", networks)],
    )
}

/// The index workload without its networks annotation: a pod on the cluster network alone.
pub fn plain_workload(name: &str) -> String {
    without_line(&index_workload(name, ""), "k8s.v1.cni.cncf.io/networks:")
}

pub use test_support::skip;
