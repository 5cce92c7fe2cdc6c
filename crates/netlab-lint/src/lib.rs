//! `netlab lint`: static checks an operator runs before applying, each with a rule id.
//!
//! The inputs are parsed once ([`netlab_model::manifest`], [`netlab_model::nodes`]) and every rule reads those types.

mod error;
pub mod input;
mod rules;
mod run;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use netlab_model::cniconf::NetworkConfig;
use netlab_model::manifest::Object;
use netlab_model::nodes::Node;
use netlab_model::site::SiteBlock;

pub use error::Error;
pub use run::{lint_sources, run_lint, NodesFrom};

/// How bad a finding is. Errors make lint exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; does not fail.
    Warning,
    /// Breaks the network; fails lint.
    Error,
}

macro_rules! rules {
    ($($variant:ident $id:literal $sev:ident $summary:literal;)*) => {
        /// Every rule lint applies.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Rule {
            $(#[doc = $summary] $variant,)*
        }

        impl Rule {
            /// Every rule, in the order of the documentation.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant,)*];

            /// The rule's id, as findings and `--format json` show it.
            pub const fn id(self) -> &'static str {
                match self { $(Rule::$variant => $id,)* }
            }

            /// How bad its findings are.
            pub const fn severity(self) -> Severity {
                match self { $(Rule::$variant => Severity::$sev,)* }
            }

            /// What it checks.
            pub const fn summary(self) -> &'static str {
                match self { $(Rule::$variant => $summary,)* }
            }
        }
    };
}

rules! {
    YamlParse "yaml-parse" Error "every document parses as YAML and is a Kubernetes object (kind, apiVersion)";
    KustomizeUnapplied "kustomize-unapplied" Warning "a kustomization uses something lint does not apply when it reads the files directly";
    DuplicateObject "duplicate-object" Error "no object (kind, namespace, name) is defined twice";
    NadConfig "nad-config" Error "every NetworkAttachmentDefinition has a spec.config that is CNI JSON: one plugin or a chain, each with a type";
    NadPluginType "nad-plugin-type" Error "every plugin type is known and stands where it can run (interface plugin first, chained plugins after, IPAM plugins only as ipam.type)";
    NadCniVersion "nad-cni-version" Error "every configuration's cniVersion is one all its plugins support (a chain needs 0.3.0 or later)";
    FlannelName "flannel-name" Error "flannel networks carry an explicit config name, the same one (ADD and DEL must meet the same host-local store)";
    IndexName "index-name" Error "an index network's name agrees with its ipam.index, which is a positive integer";
    IndexDuplicate "index-duplicate" Error "no index is defined by two networks";
    IndexRange "index-range" Error "every index fits a machine's share of the site's block";
    MultusClusterNetwork "multus-cluster-network" Error "the clusterNetwork and defaultNetworks of a multus configuration in a ConfigMap name NetworkAttachmentDefinitions that exist";
    AnnotationSyntax "annotation-syntax" Error "every k8s.v1.cni.cncf.io/networks and v1.multus-cni.io/default-network annotation is well formed";
    AnnotationUnknownNetwork "annotation-unknown-network" Error "every network an annotation names is a NetworkAttachmentDefinition that exists";
    IndexPlacement "index-placement" Error "a workload that asks for an index network runs only on mlab/type=physical nodes";
    IndexShared "index-shared" Error "no two pods that can share a node use the same index (two workloads, two replicas of one, one pod asking twice)";
    IndexPodName "index-pod-name" Warning "a workload whose name carries `index<N>` asks for index network N (index2ip's pod-name fallback agrees)";
    IndexDns "index-dns" Warning "a workload on an index network uses dnsPolicy None with nameservers (ipvlan traffic bypasses kube-proxy)";
    IndexDefaultNetwork "index-default-network" Warning "a workload on an index network replaces its default network with one that has no default route and turns router advertisements off";
    CrdApplyUnit "crd-apply-unit" Error "no CustomResourceDefinition is applied in one unit (one path, one kubectl apply) with custom resources of its kind";
    ImageRegistry "image-registry" Error "every container image names its registry (docker.io/..., localhost/..., REGISTRY/...)";
    NodeLabel "node-label" Error "every node in the inventory carries mlab/type=virtual or mlab/type=physical";
    NodePodCidr "node-pod-cidr" Error "every node in the inventory has a spec.podCIDR of flannel's SubnetLen inside flannel's network (flanneld takes the node's subnet from it)";
    NodeAddress "node-address" Error "every mlab/type=physical node has a public IPv4 address, at its machine's offset in the site block where its name is mlabN";
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule that found it, written as its id in JSON.
    #[serde(serialize_with = "ser_rule")]
    pub rule: Rule,
    /// Its rule's severity, copied so that the JSON output carries it.
    pub severity: Severity,
    /// The source (file, `<stdin>`, or rendered directory).
    pub file: Option<String>,
    /// The 1-based line, where the YAML gives one.
    pub line: Option<usize>,
    /// The object, as `Kind namespace/name`.
    pub object: Option<String>,
    /// What is wrong and why it matters.
    pub message: String,
}

fn ser_rule<S: serde::Serializer>(rule: &Rule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(rule.id())
}

impl Finding {
    /// A finding of `rule` with no place yet.
    pub fn new(rule: Rule, message: impl Into<String>) -> Finding {
        Finding {
            rule,
            severity: rule.severity(),
            file: None,
            line: None,
            object: None,
            message: message.into(),
        }
    }

    /// Places the finding in a source.
    pub fn at(mut self, file: String, line: Option<usize>) -> Finding {
        self.file = Some(file);
        self.line = line;
        self
    }

    /// Places the finding at a key path of an object.
    pub fn on(self, object: &Object, path: &[&str]) -> Finding {
        let mut f = self.at(object.file.clone(), Some(object.line_of(path)));
        f.object = Some(object.describe());
        f
    }
}

/// What lint was asked to check, already parsed.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Every object from the manifests.
    pub objects: Vec<Object>,
    /// The node inventory, if one was given: (source name, nodes).
    pub nodes: Option<(String, Vec<Node>)>,
    /// How many sources the objects came from.
    pub sources: usize,
}

/// Settings of the checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The site block that fixes how many indices a machine has.
    pub site_block: SiteBlock,
}

/// Everything lint found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The findings, in source order.
    pub findings: Vec<Finding>,
    pub summary: Summary,
}

/// Counts for the last line.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    /// Findings that fail lint.
    pub errors: usize,
    /// Findings that do not.
    pub warnings: usize,
    /// Objects read.
    pub objects: usize,
    /// Sources read.
    pub sources: usize,
    /// Nodes read from the inventory.
    pub nodes: usize,
}

/// A NetworkAttachmentDefinition as lint sees it.
#[derive(Debug)]
pub(crate) struct Nad<'a> {
    pub object: &'a Object,
    /// The parsed config, if it parses.
    pub config: Option<NetworkConfig>,
    /// `ipam.index` of an index2ip plugin, if it is a positive integer.
    pub index: Option<u64>,
}

/// NADs by (namespace, name).
pub(crate) type Nads<'a> = BTreeMap<(String, String), Nad<'a>>;

/// Runs every rule over the inputs. `early` are findings from reading and parsing, kept in front.
pub fn lint(inputs: &Inputs, options: Options, early: Vec<Finding>) -> Report {
    let mut findings = early;
    duplicates(&inputs.objects, &mut findings);
    let nads = rules::nads::check(&inputs.objects, options, &mut findings);
    rules::multus::check(&inputs.objects, &nads, &mut findings);
    rules::workloads::check(&inputs.objects, &nads, &mut findings);
    rules::apply::check(&inputs.objects, &mut findings);
    if let Some((name, nodes)) = &inputs.nodes {
        rules::nodes::check(name, nodes, &inputs.objects, options, &mut findings);
    }
    findings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    Report {
        summary: Summary {
            errors,
            warnings: findings.len() - errors,
            objects: inputs.objects.len(),
            sources: inputs.sources,
            nodes: inputs.nodes.as_ref().map_or(0, |(_, n)| n.len()),
        },
        findings,
    }
}

fn duplicates(objects: &[Object], findings: &mut Vec<Finding>) {
    let mut seen: BTreeMap<(String, String, &str), &Object> = BTreeMap::new();
    for o in objects {
        let ns = o.namespace.clone().unwrap_or_default();
        if let Some(first) = seen.get(&(o.kind.clone(), ns.clone(), o.name.as_str())) {
            findings.push(
                Finding::new(
                    Rule::DuplicateObject,
                    format!(
                        "also defined at {}:{}; the one applied last wins",
                        first.file, first.line
                    ),
                )
                .on(o, &["metadata", "name"]),
            );
        } else {
            seen.insert((o.kind.clone(), ns, o.name.as_str()), o);
        }
    }
}

impl Report {
    /// Whether lint should fail.
    pub fn failed(&self) -> bool {
        self.summary.errors > 0
    }

    /// `file:line: severity[rule]: object: message` lines and a summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{file}:{line}: "),
                (Some(file), None) => format!("{file}: "),
                _ => String::new(),
            };
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let object = f
                .object
                .as_ref()
                .map(|o| format!("{o}: "))
                .unwrap_or_default();
            let _ = writeln!(out, "{place}{sev}[{}]: {object}{}", f.rule.id(), f.message);
        }
        let s = self.summary;
        let nodes = if s.nodes > 0 {
            format!(", {} nodes", s.nodes)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "netlab lint: {} {}, {} {} ({} {} from {} {}{nodes})",
            s.errors,
            plural(s.errors, "error"),
            s.warnings,
            plural(s.warnings, "warning"),
            s.objects,
            plural(s.objects, "object"),
            s.sources,
            plural(s.sources, "source")
        );
        out
    }

    /// The report as one JSON object: `findings` and `summary`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// The rules as a table, for `netlab lint --list-rules`.
pub fn rules_table() -> String {
    let mut out = String::new();
    for r in Rule::ALL {
        let sev = match r.severity() {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{:<28} {:<8} {}", r.id(), sev, r.summary());
    }
    out
}
