//! Rules about the pods workloads make: their network annotations, their nodes, their indices.

use serde_json::Value;

use crate::{Finding, Nads, Rule};
use netlab_model::annotation::{
    parse_default_network, parse_networks, NetworkRef, DEFAULT_NETWORK, NETWORKS,
};
use netlab_model::facts::SYSTEM_NAMESPACE;
use netlab_model::manifest::Object;
use netlab_model::workload::{index_in_name, workload, Workload};

/// A workload and the indices it asks for.
struct OnIndex {
    workload: Workload,
    indices: Vec<u64>,
}

pub(crate) fn check(objects: &[Object], nads: &Nads<'_>, findings: &mut Vec<Finding>) {
    let mut on_index: Vec<OnIndex> = Vec::new();
    for o in objects {
        let w = match workload(o) {
            None => continue,
            Some(Ok(w)) => w,
            Some(Err(e)) => {
                findings.push(Finding::new(Rule::YamlParse, e).on(o, &["spec"]));
                continue;
            }
        };
        let networks = annotation(&w, NETWORKS, findings)
            .and_then(|v| report(&w, NETWORKS, parse_networks(v), findings))
            .unwrap_or_default();
        let default = annotation(&w, DEFAULT_NETWORK, findings)
            .and_then(|v| report(&w, DEFAULT_NETWORK, parse_default_network(v), findings));
        let mut indices = Vec::new();
        for r in &networks {
            if let Some(nad) = resolve(&w, NETWORKS, r, w.namespace(), nads, findings) {
                indices.extend(nad.index);
            }
        }
        let default_nad = default
            .as_ref()
            .and_then(|r| resolve(&w, DEFAULT_NETWORK, r, SYSTEM_NAMESPACE, nads, findings));
        if indices.is_empty() {
            continue;
        }
        index_workload(&w, &indices, default.is_some(), default_nad, findings);
        on_index.push(OnIndex {
            workload: w,
            indices,
        });
    }
    shared(&on_index, findings);
}

fn annotation<'w>(w: &'w Workload, key: &str, findings: &mut Vec<Finding>) -> Option<&'w str> {
    match w.annotations.get(key)? {
        Value::String(s) => Some(s),
        _ => {
            findings.push(
                Finding::new(
                    Rule::AnnotationSyntax,
                    format!("{key}: annotation values are strings: quote the value"),
                )
                .on(&w.object, &w.path(&["metadata", "annotations", key])),
            );
            None
        }
    }
}

fn report<T>(
    w: &Workload,
    key: &str,
    parsed: Result<T, String>,
    findings: &mut Vec<Finding>,
) -> Option<T> {
    parsed
        .map_err(|e| {
            findings.push(
                Finding::new(Rule::AnnotationSyntax, format!("{key}: {e}"))
                    .on(&w.object, &w.path(&["metadata", "annotations", key])),
            )
        })
        .ok()
}

fn resolve<'n, 'a>(
    w: &Workload,
    key: &str,
    r: &NetworkRef,
    default_namespace: &str,
    nads: &'n Nads<'a>,
    findings: &mut Vec<Finding>,
) -> Option<&'n crate::Nad<'a>> {
    let (ns, name) = r.qualified(default_namespace);
    let nad = nads.get(&(ns.clone(), name.clone()));
    if nad.is_none() {
        let why = match (&r.namespace, key == DEFAULT_NETWORK) {
            (Some(_), _) => String::new(),
            (None, true) => format!(" (a default network without a namespace is looked up in multus's namespace, {SYSTEM_NAMESPACE})"),
            (None, false) => " (a network without a namespace is looked up in the pod's namespace)".into(),
        };
        findings.push(
            Finding::new(
                Rule::AnnotationUnknownNetwork,
                format!("{key}: no NetworkAttachmentDefinition {ns}/{name}{why}: the pod would not start"),
            )
            .on(&w.object, &w.path(&["metadata", "annotations", key])),
        );
    }
    nad
}

fn index_workload(
    w: &Workload,
    indices: &[u64],
    has_default: bool,
    default_nad: Option<&crate::Nad<'_>>,
    findings: &mut Vec<Finding>,
) {
    let list = indices
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let annotations = w.path(&["metadata", "annotations", NETWORKS]);
    if !w.only_physical() {
        findings.push(
            Finding::new(
                Rule::IndexPlacement,
                format!("asks for index network {list} but does not select only mlab/type=physical nodes (nodeSelector or required node affinity): elsewhere there is no multus and no public eth0"),
            )
            .on(&w.object, &w.path(&["spec", "nodeSelector"])),
        );
    }
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    if let Some(pair) = sorted.windows(2).find(|p| p[0] == p[1]) {
        findings.push(
            Finding::new(
                Rule::IndexShared,
                format!(
                    "asks for index {} twice: the second ipvlan ADD fails",
                    pair[0]
                ),
            )
            .on(&w.object, &annotations),
        );
    }
    if replicas_can_meet(w) {
        findings.push(
            Finding::new(
                Rule::IndexShared,
                format!("asks for index {list} with more than one replica and nothing keeping two on different nodes (a required podAntiAffinity on kubernetes.io/hostname): the second on a node gets no address"),
            )
            .on(&w.object, &["spec", "replicas"]),
        );
    }
    if let Some(n) = index_in_name(&w.object.name) {
        if !indices.contains(&n) {
            findings.push(
                Finding::new(
                    Rule::IndexPodName,
                    format!("the name carries index{n} but the pods ask for index {list}: index2ip's pod-name fallback would disagree with the network"),
                )
                .on(&w.object, &["metadata", "name"]),
            );
        }
    }
    let has_servers = w
        .spec
        .dns_config
        .as_ref()
        .is_some_and(|d| !d.nameservers.is_empty());
    if w.spec.dns_policy.as_deref() != Some("None") || !has_servers {
        findings.push(
            Finding::new(
                Rule::IndexDns,
                "on an index network without dnsPolicy None and dnsConfig.nameservers: traffic leaves by the public interface and bypasses kube-proxy, so the cluster DNS service is out of reach",
            )
            .on(&w.object, &w.path(&["spec", "dnsPolicy"])),
        );
    }
    let default_path = w.path(&["metadata", "annotations", DEFAULT_NETWORK]);
    if !has_default {
        findings.push(
            Finding::new(
                Rule::IndexDefaultNetwork,
                format!("on an index network without {DEFAULT_NETWORK}: flannel's default route stays beside the public one, and router advertisements stay on until after the public interface is up"),
            )
            .on(&w.object, &annotations),
        );
    } else if let Some(c) = default_nad.and_then(|n| n.config.as_ref()) {
        let gateway = c.plugins.iter().any(|p| {
            p.extra.get("isDefaultGateway") == Some(&Value::Bool(true))
                || p.extra
                    .get("delegate")
                    .and_then(|d| d.get("isDefaultGateway"))
                    == Some(&Value::Bool(true))
        });
        let ra_off = c.plugins.iter().any(|p| {
            p.plugin_type == "tuning"
                && p.extra
                    .get("sysctl")
                    .and_then(|s| s.get("net.ipv6.conf.default.accept_ra"))
                    .and_then(Value::as_str)
                    == Some("0")
        });
        if gateway || !ra_off {
            findings.push(
                Finding::new(
                    Rule::IndexDefaultNetwork,
                    "the default network should have no default gateway and end with tuning setting net.ipv6.conf.default.accept_ra=0, as flannel-experiment-conf does",
                )
                .on(&w.object, &default_path),
            );
        }
    }
}

/// Whether two pods of one workload can land on one node: more than one replica of a kind that does not place
/// one per node, without a required anti-affinity on the host name.
fn replicas_can_meet(w: &Workload) -> bool {
    let spec = w.object.value.get("spec");
    let replicas = match w.object.kind.as_str() {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "ReplicationController" => spec
            .and_then(|s| s.get("replicas"))
            .and_then(Value::as_u64)
            .unwrap_or(1),
        "Job" | "CronJob" => {
            let job = if w.object.kind == "CronJob" {
                spec.and_then(|s| s.get("jobTemplate"))
                    .and_then(|j| j.get("spec"))
            } else {
                spec
            };
            job.and_then(|j| j.get("parallelism"))
                .and_then(Value::as_u64)
                .unwrap_or(1)
        }
        _ => 1,
    };
    if replicas <= 1 {
        return false;
    }
    let mut template = &w.object.value;
    for key in w.template_path {
        template = template.get(*key).unwrap_or(&Value::Null);
    }
    let terms = template
        .pointer("/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array);
    !terms
        .into_iter()
        .flatten()
        .any(|t| t.get("topologyKey").and_then(Value::as_str) == Some("kubernetes.io/hostname"))
}

fn shared(on_index: &[OnIndex], findings: &mut Vec<Finding>) {
    for (i, b) in on_index.iter().enumerate() {
        for a in &on_index[..i] {
            let Some(index) = b.indices.iter().find(|x| a.indices.contains(x)) else {
                continue;
            };
            if a.workload.can_share_node_with(&b.workload) {
                findings.push(
                    Finding::new(
                        Rule::IndexShared,
                        format!(
                            "uses index {index}, as {} does, and both can run on one node: the second pod gets no address (ipvlan ADD fails)",
                            a.workload.object.describe()
                        ),
                    )
                    .on(&b.workload.object, &b.workload.path(&["metadata", "annotations", NETWORKS])),
                );
            }
        }
    }
}
