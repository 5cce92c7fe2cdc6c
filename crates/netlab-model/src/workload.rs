//! Workloads: the objects that make pods, and what their pod templates say about networks and nodes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::facts::NODE_TYPE_LABEL;
use crate::manifest::Object;

/// A pod template, wherever its kind keeps it.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The object (a copy: the workload outlives the list it came from, as in a [`crate::cluster::Cluster`]).
    pub object: Object,
    /// The key path to the pod template's `metadata` and `spec` (empty for a Pod).
    pub template_path: &'static [&'static str],
    /// The template's annotations (values as written: a non-string is a mistake lint reports).
    pub annotations: BTreeMap<String, Value>,
    /// The template's spec, the parts lint reads.
    pub spec: PodSpec,
}

/// The parts of a PodSpec lint reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub affinity: Option<Affinity>,
    #[serde(default)]
    pub dns_policy: Option<String>,
    #[serde(default)]
    pub dns_config: Option<DnsConfig>,
}

impl PodSpec {
    /// The required node-affinity terms (any one must match), empty where there are none.
    pub fn required_terms(&self) -> &[NodeSelectorTerm] {
        self.affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.as_slice())
            .unwrap_or_default()
    }

    /// The nodes it selects.
    pub fn selector(&self) -> Selector {
        Selector {
            labels: self.node_selector.clone(),
            terms: self
                .required_terms()
                .iter()
                .map(|t| t.match_expressions.clone())
                .collect(),
        }
    }
}

/// Which nodes a pod template selects: its `nodeSelector` and required node affinity terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// `nodeSelector`: every pair must match.
    pub labels: BTreeMap<String, String>,
    /// Required node-affinity terms: any one term must match, each term's requirements all.
    pub terms: Vec<Vec<Requirement>>,
}

impl Selector {
    /// Whether a node with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let pairs = self.labels.iter().all(|(k, v)| labels.get(k) == Some(v));
        let term = |t: &Vec<Requirement>| {
            t.iter().all(|r| {
                let v = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => v.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => !v.is_some_and(|v| r.values.contains(v)),
                    "Exists" => v.is_some(),
                    "DoesNotExist" => v.is_none(),
                    // Gt and Lt compare integers; nothing here uses them, so they select nothing.
                    _ => false,
                }
            })
        };
        pairs && (self.terms.is_empty() || self.terms.iter().any(term))
    }
}

/// The part of a pod's `affinity` lint reads: node affinity.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Affinity {
    #[serde(default)]
    pub node_affinity: Option<NodeAffinity>,
}

/// The part of `nodeAffinity` lint reads: the constraint the scheduler must meet.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAffinity {
    /// The hard constraint.
    #[serde(default)]
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
}

/// A node selector: terms ORed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    #[serde(default)]
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// A term: requirements ANDed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    /// Label requirements.
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

/// One label requirement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Requirement {
    /// The label.
    pub key: String,
    /// In, NotIn, Exists, DoesNotExist, Gt, Lt.
    pub operator: String,
    /// For In and NotIn, the label values; for Gt and Lt, one integer; empty for Exists and DoesNotExist.
    #[serde(default)]
    pub values: Vec<String>,
}

/// The part of `dnsConfig` lint reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DnsConfig {
    #[serde(default)]
    pub nameservers: Vec<String>,
}

/// Why an object that makes pods could not be read as one.
pub type TemplateError = String;

/// The pod template of an object that makes pods; `None` for other kinds.
pub fn workload(object: &Object) -> Option<Result<Workload, TemplateError>> {
    let template_path: &'static [&'static str] = match object.kind.as_str() {
        "Pod" => &[],
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    };
    let mut template = &object.value;
    for key in template_path {
        template = template.get(*key).unwrap_or(&Value::Null);
    }
    Some(read(object, template_path, template))
}

fn read(
    object: &Object,
    template_path: &'static [&'static str],
    template: &Value,
) -> Result<Workload, TemplateError> {
    let annotations = match template.get("metadata").and_then(|m| m.get("annotations")) {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => return Err("pod template annotations are not a mapping".into()),
    };
    let spec = match template.get("spec") {
        None | Some(Value::Null) => PodSpec::default(),
        Some(s) => serde_json::from_value(s.clone()).map_err(|e| format!("pod spec: {e}"))?,
    };
    Ok(Workload {
        object: object.clone(),
        template_path,
        annotations,
        spec,
    })
}

impl Workload {
    /// The key path of something in the pod template, for [`Object::line_of`].
    pub fn path<'p>(&self, rest: &[&'p str]) -> Vec<&'p str> {
        self.template_path
            .iter()
            .copied()
            .chain(rest.iter().copied())
            .collect()
    }

    pub fn name(&self) -> &str {
        &self.object.name
    }

    /// The nodes its pods may run on.
    pub fn selector(&self) -> Selector {
        self.spec.selector()
    }

    /// The template's annotations whose values are strings, as a pod carries them.
    pub fn string_annotations(&self) -> BTreeMap<String, String> {
        self.annotations
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect()
    }

    /// The namespace the pods run in.
    pub fn namespace(&self) -> &str {
        self.object.namespace_or_default()
    }

    /// Whether every node this workload can land on carries `mlab/type=physical`.
    pub fn only_physical(&self) -> bool {
        if self
            .spec
            .node_selector
            .get(NODE_TYPE_LABEL)
            .map(String::as_str)
            == Some("physical")
        {
            return true;
        }
        let terms = self.spec.required_terms();
        !terms.is_empty()
            && terms.iter().all(|t| {
                t.match_expressions.iter().any(|r| {
                    r.key == NODE_TYPE_LABEL
                        && r.operator == "In"
                        && !r.values.is_empty()
                        && r.values.iter().all(|v| v == "physical")
                })
            })
    }

    /// Labels every node of this workload must carry with exactly these values (from `nodeSelector`, and from
    /// single-valued `In` requirements of a single required term), and a fixed node name if any.
    fn fixed_labels(&self) -> BTreeMap<String, String> {
        let mut fixed = self.spec.node_selector.clone();
        let terms = self.spec.required_terms();
        if let [term] = terms {
            for r in &term.match_expressions {
                if let ("In", [v]) = (r.operator.as_str(), r.values.as_slice()) {
                    fixed.entry(r.key.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        if let Some(node) = &self.spec.node_name {
            fixed.insert("kubernetes.io/hostname".into(), node.clone());
        }
        fixed
    }

    /// Whether a pod of this workload and one of `other` can run on the same node: yes unless their node
    /// constraints demand different values of one label.
    pub fn can_share_node_with(&self, other: &Workload) -> bool {
        let mine = self.fixed_labels();
        let theirs = other.fixed_labels();
        !mine
            .iter()
            .any(|(k, v)| theirs.get(k).is_some_and(|w| w != v))
    }
}

/// The first `index<N>` in a name, as index2ip's pod-name fallback reads it.
pub fn index_in_name(name: &str) -> Option<u64> {
    let mut rest = name;
    while let Some(at) = rest.find("index") {
        let after = &rest[at + "index".len()..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            return digits.parse().ok();
        }
        rest = after;
    }
    None
}

/// The index a NAD's name carries: `index-<N>` (as `index2ip-index-2-conf`) or `index<N>`; the plugin's own name
/// `index2ip` is not an index.
pub fn index_in_nad_name(name: &str) -> Option<u64> {
    index_in_name(&name.replace("index2ip", "").replace("index-", "index"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_index_in_names() {
        assert_eq!(index_in_name("ndt-index2-abcde"), Some(2));
        assert_eq!(index_in_name("reindex-index12"), Some(12));
        assert_eq!(index_in_name("ndt"), None);
        assert_eq!(index_in_nad_name("index2ip-index-2-conf"), Some(2));
        assert_eq!(index_in_nad_name("index2ip-index-11-conf"), Some(11));
        assert_eq!(index_in_nad_name("flannel-conf"), None);
        assert_eq!(index_in_nad_name("index2ip-conf"), None);
        assert_eq!(index_in_nad_name("index2ip-index-1-conf"), Some(1));
        assert_eq!(index_in_nad_name("public-index7"), Some(7));
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selectors_follow_kubernetes() {
        let physical = Selector {
            labels: labels(&[("mlab/type", "physical")]),
            terms: vec![],
        };
        assert!(physical.matches(&labels(&[("mlab/type", "physical"), ("x", "y")])));
        assert!(!physical.matches(&labels(&[("mlab/type", "virtual")])));
        assert!(!physical.matches(&labels(&[])));
        let typed = Selector {
            labels: BTreeMap::new(),
            terms: vec![vec![Requirement {
                key: "mlab/type".into(),
                operator: "In".into(),
                values: vec!["virtual".into(), "physical".into()],
            }]],
        };
        assert!(typed.matches(&labels(&[("mlab/type", "virtual")])));
        assert!(!typed.matches(&labels(&[])));
        assert!(Selector::default().matches(&labels(&[])));
    }
}
