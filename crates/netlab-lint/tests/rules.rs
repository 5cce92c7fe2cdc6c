//! One test per lint rule: a small broken manifest that must fail it, beside the repository's own k8s/ (which
//! gives the networks the workloads refer to), and where it matters the fixed manifest that must pass.

use netlab_lint::input::{load, Render, Source};
use netlab_lint::{Options, Rule, Severity};
use netlab_model::site::SiteBlock;

use crate::util::*;

#[test]
fn yaml_parse() {
    let found = fires(&fixture("yaml-parse/unclosed-flow.yaml"), Rule::YamlParse);
    assert_eq!(found[0].file.as_deref(), Some("extra.yaml"));
    assert!(found[0].line.is_some_and(|l| l >= 5), "{found:?}");
    fires(&fixture("yaml-parse/no-kind.yaml"), Rule::YamlParse);
    fires(&fixture("yaml-parse/selector-list.yaml"), Rule::YamlParse);
}

#[test]
fn kustomize_unapplied() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kustomize-unapplied");
    let (sources, findings) = load(&[dir], Render::Direct)?;
    assert_eq!(sources.len(), 1);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(
        (findings[0].rule, findings[0].line),
        (Rule::KustomizeUnapplied, Some(3))
    );
    assert_eq!(findings[0].severity, Severity::Warning);
    Ok(())
}

#[test]
fn duplicate_object() {
    let found = fires(
        &nad(
            "default",
            "index2ip-index-2-conf",
            &index_config("1.0.0", "2"),
        ),
        Rule::DuplicateObject,
    );
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .message
            .contains("k8s/networks/index2ip-index-2-conf.yaml"),
        "{found:?}"
    );
}

#[test]
fn nad_config() {
    let found = fires(&fixture("nad-config/trailing-commas.yaml"), Rule::NadConfig);
    // The JSON error is on the config's third line, line 11 of the file.
    assert_eq!(found[0].line, Some(11), "{found:?}");
    fires(&fixture("nad-config/no-config.yaml"), Rule::NadConfig);
    fires(
        &nad(
            "default",
            "x",
            r#"{"cniVersion": "1.0.0", "name": "x", "plugins": []}"#,
        ),
        Rule::NadConfig,
    );
    fires(
        &nad(
            "default",
            "x",
            r#"{"cniVersion": "1.0.0", "name": "x", "master": "eth0"}"#,
        ),
        Rule::NadConfig,
    );
}

#[test]
fn nad_plugin_type() {
    fires(
        &nad(
            "default",
            "x",
            r#"{"cniVersion": "1.0.0", "name": "x", "type": "ipvlam"}"#,
        ),
        Rule::NadPluginType,
    );
    fires(
        &nad(
            "default",
            "x",
            r#"{"cniVersion": "1.0.0", "name": "x", "type": "host-local"}"#,
        ),
        Rule::NadPluginType,
    );
    fires(
        &nad(
            "default",
            "x",
            r#"{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "tuning"}, {"type": "ipvlan"}]}"#,
        ),
        Rule::NadPluginType,
    );
    fires(
        &nad(
            "default",
            "x",
            r#"{"cniVersion": "1.0.0", "name": "x", "type": "ipvlan", "ipam": {"type": "bridge"}}"#,
        ),
        Rule::NadPluginType,
    );
    clean(&nad(
        "default",
        "x",
        r#"{"cniVersion": "1.0.0", "name": "x", "type": "macvlan", "ipam": {"type": "host-local"}}"#,
    ));
}

#[test]
fn nad_cni_version() {
    // index2ip speaks 1.1.0 but the reference ipvlan 1.1.1 does not: the chain's version must suit both.
    let found = fires_alone(
        &nad(
            "default",
            "index2ip-index-2-conf",
            &index_config("1.1.0", "2"),
        ),
        Rule::NadCniVersion,
    );
    assert!(
        found
            .iter()
            .any(|f| f.message.contains("ipvlan does not speak cniVersion 1.1.0")),
        "{found:?}"
    );
    fires(
        &nad(
            "default",
            "x",
            r#"{"cniVersion": "0.5.0", "name": "x", "type": "macvlan"}"#,
        ),
        Rule::NadCniVersion,
    );
    fires(
        &nad("default", "x", r#"{"name": "x", "type": "macvlan"}"#),
        Rule::NadCniVersion,
    );
    fires(
        &nad(
            "default",
            "x",
            r#"{"cniVersion": "0.2.0", "name": "x", "plugins": [{"type": "macvlan"}, {"type": "tuning"}]}"#,
        ),
        Rule::NadCniVersion,
    );
    fires(
        &nad(
            "default",
            "x",
            r#"{"cniVersion": "0.2.0", "name": "x", "plugins": [{"type": "macvlan"}, {"type": "bandwidth"}]}"#,
        ),
        Rule::NadCniVersion,
    );
}

#[test]
fn flannel_name() {
    let nameless = r#"{"cniVersion": "1.0.0", "plugins": [{"type": "flannel", "delegate": {"isDefaultGateway": false}}]}"#;
    let found = fires(
        &nad("kube-system", "flannel-other-conf", nameless),
        Rule::FlannelName,
    );
    assert!(found[0].message.contains("leak"), "{found:?}");
    let renamed = r#"{"cniVersion": "1.0.0", "name": "flannel2", "type": "flannel"}"#;
    let found = fires(
        &nad("kube-system", "flannel-other-conf", renamed),
        Rule::FlannelName,
    );
    assert!(found[0].message.contains("one address"), "{found:?}");
    clean(&nad(
        "kube-system",
        "flannel-other-conf",
        r#"{"cniVersion": "1.0.0", "name": "flannel", "type": "flannel"}"#,
    ));
}

#[test]
fn index_name() {
    let found = fires_alone(
        &nad(
            "other",
            "index2ip-index-3-conf",
            &index_config("1.0.0", "4"),
        ),
        Rule::IndexName,
    );
    assert!(
        found.iter().any(|f| f
            .message
            .contains("the name says index 3 but ipam.index is 4")),
        "{found:?}"
    );
    fires_alone(
        &nad("other", "public-conf", &index_config("1.0.0", "4")),
        Rule::IndexName,
    );
    fires(
        &nad(
            "other",
            "public-index-3-conf",
            &index_config("1.0.0", "\"3\""),
        ),
        Rule::IndexName,
    );
    fires(
        &nad("other", "public-index-3-conf", &index_config("1.0.0", "0")),
        Rule::IndexName,
    );
    fires(
        &nad(
            "other",
            "public-index-3-conf",
            r#"{"cniVersion": "1.0.0", "name": "x", "type": "ipvlan", "ipam": {"type": "index2ip"}}"#,
        ),
        Rule::IndexName,
    );
    fires(
        &nad(
            "other",
            "public-index-3-conf",
            r#"{"cniVersion": "1.0.0", "name": "x", "type": "ipvlan", "ipam": {"type": "host-local"}}"#,
        ),
        Rule::IndexName,
    );
}

#[test]
fn index_duplicate() {
    let found = fires(
        &nad("other", "public-index-2-conf", &index_config("1.0.0", "2")),
        Rule::IndexDuplicate,
    );
    assert_eq!(found.len(), 1);
    assert!(
        found[0].message.contains("index2ip-index-2-conf"),
        "{found:?}"
    );
}

#[test]
fn index_range() {
    let found = fires(
        &nad(
            "default",
            "index2ip-index-13-conf",
            &index_config("1.0.0", "13"),
        ),
        Rule::IndexRange,
    );
    assert!(found[0].message.contains("M-Lab layout of 12"), "{found:?}");
    // A /29 site has three indices per machine: the repository's own index networks 4 to 12 do not fit.
    let options = Options {
        site_block: SiteBlock::parse("192.0.2.0/29").unwrap_or_default(),
    };
    let report = lint_with("", options, None);
    let found = only(&report, Rule::IndexRange);
    assert_eq!(found.len(), 9, "{found:#?}");
    assert!(SiteBlock::parse("/27").is_err());
}

#[test]
fn multus_cluster_network() {
    let conf = fixture("multus/configmap.yaml");
    let cluster = r#""clusterNetwork": "flannel-conf""#;
    clean(&conf);
    let found = fires(
        &edit(&conf, cluster, r#""clusterNetwork": "flannel-conff""#),
        Rule::MultusClusterNetwork,
    );
    assert_eq!(found[0].line, Some(8));
    clean(&edit(
        &conf,
        cluster,
        r#""clusterNetwork": "/etc/cni/net.d/10-flannel.conflist""#,
    ));
    fires(
        &edit(
            &conf,
            r#""type""#,
            r#""multusNamespace": "default", "type""#,
        ),
        Rule::MultusClusterNetwork,
    );
}

#[test]
fn annotation_syntax() {
    for bad in [
        "index2ip-index-2-conf,,x",
        "{\"name\": \"index2ip-index-2-conf\"}",
        "[{\"name\": \"index2ip-index-2-conf\"}",
        "Index2ip",
        "a@b@c",
    ] {
        let found = fires(&index_workload("exp-index2", bad), Rule::AnnotationSyntax);
        assert_eq!(found[0].line, Some(16), "{bad}: {found:?}");
    }
    // An unquoted JSON list is YAML, not a string.
    let unquoted = edit(
        &index_workload("exp-index2", "index2ip-index-2-conf"),
        "'index2ip-index-2-conf'",
        "[{name: index2ip-index-2-conf}]",
    );
    fires(
        &without_line(&unquoted, "v1.multus-cni.io/default-network"),
        Rule::AnnotationSyntax,
    );
    let two_defaults = edit(
        &plain_workload("exp"),
        "default-network: flannel-experiment-conf",
        "default-network: flannel-conf,flannel-experiment-conf",
    );
    fires(&two_defaults, Rule::AnnotationSyntax);
}

#[test]
fn annotation_unknown_network() {
    let found = fires(
        &index_workload("exp-index2", "index2ip-index-20-conf"),
        Rule::AnnotationUnknownNetwork,
    );
    assert!(
        found[0].message.contains("default/index2ip-index-20-conf"),
        "{found:?}"
    );
    // Without a namespace a default network is looked up in multus's namespace, not the pod's.
    let wrong_ns = edit(
        &plain_workload("plain"),
        "default-network: flannel-experiment-conf",
        "default-network: default/flannel-experiment-conf",
    );
    fires(&wrong_ns, Rule::AnnotationUnknownNetwork);
    fires(
        &without_line(
            &index_workload("plain", "kube-system/index2ip-index-2-conf"),
            "v1.multus-cni.io/default-network",
        ),
        Rule::AnnotationUnknownNetwork,
    );
    // Every form of a good reference passes.
    clean(&index_workload("ndt-index3", "index2ip-index-3-conf"));
    clean(&index_workload(
        "ndt-index3",
        "default/index2ip-index-3-conf@net1",
    ));
    clean(&index_workload(
        "ndt-index3",
        r#"[{"name": "index2ip-index-3-conf", "namespace": "default", "interface": "pub0"}]"#,
    ));
}

#[test]
fn index_placement() {
    let good = index_workload("exp-index3", "index2ip-index-3-conf");
    clean(&good);
    let found = fires(&without_line(&good, "nodeSelector:"), Rule::IndexPlacement);
    assert!(found[0].message.contains("mlab/type=physical"), "{found:?}");
    fires(
        &edit(&good, "mlab/type: physical", "mlab/type: virtual"),
        Rule::IndexPlacement,
    );
    let either = fixture("workloads/affinity-either.yaml");
    fires(&either, Rule::IndexPlacement);
    clean(&edit(&either, "[physical, virtual]", "[physical]"));
}

#[test]
fn index_shared() {
    // ndt-index2 in k8s/ already uses index 2 on every physical node.
    let found = fires(
        &index_workload("other-index2", "index2ip-index-2-conf"),
        Rule::IndexShared,
    );
    assert!(found[0].message.contains("ndt-index2"), "{found:?}");
    fires(
        &index_workload(
            "twice-index3",
            "index2ip-index-3-conf,index2ip-index-3-conf@net2",
        ),
        Rule::IndexShared,
    );
    // Two replicas of one Deployment can meet on a node, unless anti-affinity keeps them apart.
    let deployment = fixture("workloads/deployment.yaml");
    let found = fires(&deployment, Rule::IndexShared);
    assert_eq!(found[0].line, Some(8));
    clean(&fixture("workloads/deployment-apart.yaml"));
    clean(&edit(&deployment, "replicas: 2", "replicas: 1"));
    // Two workloads pinned to different nodes cannot meet.
    let pinned = fixture("workloads/pinned.yaml");
    clean(&pinned);
    fires(
        &edit(
            &pinned,
            "kubernetes.io/hostname: mlab2",
            "kubernetes.io/hostname: mlab1",
        ),
        Rule::IndexShared,
    );
}

#[test]
fn index_pod_name() {
    let found = fires(
        &index_workload("ndt-index3", "index2ip-index-4-conf"),
        Rule::IndexPodName,
    );
    assert_eq!(found[0].severity, Severity::Warning);
    assert_eq!(found[0].line, Some(5));
}

#[test]
fn index_dns() {
    let policy_only = without_line(
        &index_workload("exp-index3", "index2ip-index-3-conf"),
        "dnsConfig:",
    );
    fires(&policy_only, Rule::IndexDns);
    fires(
        &without_line(&policy_only, "dnsPolicy: None"),
        Rule::IndexDns,
    );
}

#[test]
fn index_default_network() {
    let good = index_workload("exp-index3", "index2ip-index-3-conf");
    fires(
        &without_line(&good, "v1.multus-cni.io/default-network"),
        Rule::IndexDefaultNetwork,
    );
    let with_gateway = edit(
        &good,
        "default-network: flannel-experiment-conf",
        "default-network: flannel-conf",
    );
    let found = fires(&with_gateway, Rule::IndexDefaultNetwork);
    assert_eq!(found[0].line, Some(17));
}

#[test]
fn node_label() {
    let report = lint_with("", Options::default(), Some(&fixture("nodes/labels.json")));
    let found = only(&report, Rule::NodeLabel);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].message.contains("mlab2-abc01") && found[0].message.contains("will not work"),
        "{found:?}"
    );
    assert_eq!(
        (found[0].file.as_deref(), found[0].line),
        (Some("nodes.json"), Some(9))
    );
    assert!(found[1].message.contains("\"Physical\""), "{found:?}");
    assert!(report.failed());
}

/// The inventory of a cluster set up as k8s/README.md says: no node rule fires.
#[test]
fn a_good_node_inventory_passes_every_node_rule() {
    let report = lint_with("", Options::default(), Some(&fixture("nodes/good.yaml")));
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert_eq!(report.summary.nodes, 3);
}

/// Lints the repository's k8s/ with the inventory `nodes` (a fixture): only `rule` fires, once per entry of
/// `wanted`, each message containing its entry.
fn inventory_fires(nodes: &str, rule: Rule, wanted: &[&str]) -> Vec<netlab_lint::Finding> {
    let report = lint_with("", Options::default(), Some(&fixture(nodes)));
    let found = only(&report, rule);
    let messages: Vec<&str> = found.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(found.len(), wanted.len(), "{messages:#?}");
    for (message, want) in messages.iter().zip(wanted) {
        assert!(message.contains(want), "{want:?} not in {message:?}");
    }
    found
}

#[test]
fn node_pod_cidr() {
    let found = inventory_fires(
        "nodes/pod-cidr.yaml",
        Rule::NodePodCidr,
        &[
            "vm1 has no spec.podCIDR: flanneld (--kube-subnet-mgr) takes the node's subnet from it and exits with \"pod cidr not assigned\"; kube-controller-manager needs --allocate-node-cidrs --cluster-cidr=192.168.0.0/16 --node-cidr-mask-size-ipv4=26",
            "is a /24, not the /26",
            "outside flannel's network",
            "not an IPv4 prefix",
        ],
    );
    assert_eq!(found[1].object.as_deref(), Some("Node vm2"));
    assert_eq!(found[1].line, Some(12));
}

#[test]
fn node_address() {
    inventory_fires(
        "nodes/addresses.yaml",
        Rule::NodeAddress,
        &[
            "mlab1-abc01 is labelled mlab/type=physical but has no public IPv4 address (InternalIP or ExternalIP: 10.1.2.3)",
            "ExternalIP: none",
            "192.168.7.7",
            "machine mlab2, which sits at +22 of its site's /26, but its address 192.0.2.35 is at +35",
        ],
    );
    // On a single-machine /29 site mlab1 sits at +3; mlab2 does not exist there, so its name says nothing.
    let block = Options {
        site_block: SiteBlock::parse("/29").unwrap_or_else(|e| panic!("{e}")),
    };
    // (The repository's index networks 4 to 12 do not fit a /29 either: index-range says so.)
    let of_rule = |nodes: &str| -> Vec<String> {
        lint_with("", block, Some(&fixture(nodes)))
            .findings
            .into_iter()
            .filter(|f| f.rule == Rule::NodeAddress)
            .map(|f| f.message)
            .collect()
    };
    assert_eq!(of_rule("nodes/addresses.yaml").len(), 3);
    let good = of_rule("nodes/good.yaml");
    assert_eq!(good.len(), 1, "{good:?}");
    assert!(
        good[0].contains(
            "mlab1, which sits at +3 of its site's /29, but its address 192.0.2.9 is at +1"
        ),
        "{good:?}"
    );
}

#[test]
fn crd_apply_unit() -> Result<(), Box<dyn std::error::Error>> {
    // The old layout: one kustomization holding the CRD and the networks.
    let dir = root().join("crates/netlab-lint/tests/fixtures/crd-together");
    let (sources, early) = load(std::slice::from_ref(&dir), Render::Direct)?;
    let report = netlab_lint::lint_sources(&sources, None, Options::default(), early)?;
    let found = only(&report, Rule::CrdApplyUnit);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].object.as_deref(),
        Some("CustomResourceDefinition network-attachment-definitions.k8s.cni.cncf.io")
    );
    assert!(
        found[0]
            .message
            .contains("1 NetworkAttachmentDefinition of ")
            && found[0].message.contains("ensure CRDs are installed first")
            && found[0].message.contains("scripts/apply.sh"),
        "{found:?}"
    );
    // The same files as two applies, the CRD first: nothing fires.
    let (sources, early) = load(&[dir.join("crds"), dir.join("networks")], Render::Direct)?;
    let report = netlab_lint::lint_sources(&sources, None, Options::default(), early)?;
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    // Rendered into one stream, it is one apply again.
    let text: String = sources
        .iter()
        .map(|s| format!("{}\n---\n", s.text))
        .collect();
    let report = netlab_lint::lint_sources(
        &[Source::new("<stdin>", text)],
        None,
        Options::default(),
        Vec::new(),
    )?;
    assert_eq!(only(&report, Rule::CrdApplyUnit).len(), 1);
    Ok(())
}

#[test]
fn image_registry() {
    let report = lint_alone(&fixture("images.yaml"));
    let found = only(&report, Rule::ImageRegistry);
    let messages: Vec<&str> = found.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(found.len(), 3, "{messages:#?}");
    assert!(
        messages[0].contains("\"busybox:1.36\" names no registry")
            && messages[0].contains("docker.io/library/busybox:1.36"),
        "{messages:?}"
    );
    assert_eq!(found[0].line, Some(16));
    assert!(
        messages[1].contains("docker.io/measurementlab/ndt-server:v0.20.20"),
        "{messages:?}"
    );
    assert!(
        messages[2].contains("\"localhost/index2ip-installer:0.1.0\""),
        "{messages:?}"
    );
    assert_eq!(found[2].object.as_deref(), Some("CronJob default/nightly"));
}

/// Every rule has its test above, named after its id.
#[test]
fn every_rule_has_a_test() {
    let source = include_str!("rules.rs");
    for rule in Rule::ALL {
        let name = format!("fn {}()", rule.id().replace('-', "_"));
        assert!(source.contains(&name), "no test for {}", rule.id());
    }
}
