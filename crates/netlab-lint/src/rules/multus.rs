//! Rules about multus's own configuration, where a ConfigMap carries it (as k8s/multus/configmap.yaml does).

use serde_json::Value;

use crate::{Finding, Nads, Rule};
use netlab_model::facts::SYSTEM_NAMESPACE;
use netlab_model::manifest::Object;

pub(crate) fn check(objects: &[Object], nads: &Nads<'_>, findings: &mut Vec<Finding>) {
    for o in objects.iter().filter(|o| o.kind == "ConfigMap") {
        let Some(data) = o.value.get("data").and_then(Value::as_object) else {
            continue;
        };
        for (key, text) in data {
            let Some(conf) = text
                .as_str()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
            else {
                continue;
            };
            if conf.get("type").and_then(Value::as_str) != Some("multus") {
                continue;
            }
            // Multus looks names up in its own namespace; a value with a '/' in it is a file, not a NAD.
            let namespace = conf
                .get("multusNamespace")
                .and_then(Value::as_str)
                .unwrap_or(SYSTEM_NAMESPACE);
            let cluster = conf
                .get("clusterNetwork")
                .and_then(Value::as_str)
                .map(|n| ("clusterNetwork", n));
            let defaults = conf
                .get("defaultNetworks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|n| ("defaultNetworks", n));
            for (field, name) in cluster.into_iter().chain(defaults) {
                if name.contains('/') || nads.contains_key(&(namespace.to_owned(), name.to_owned()))
                {
                    continue;
                }
                findings.push(
                    Finding::new(
                        Rule::MultusClusterNetwork,
                        format!("{key}: {field} {name:?} is no NetworkAttachmentDefinition in {namespace}, multus's namespace: every pod on these nodes would fail to start"),
                    )
                    .on(o, &["data", key]),
                );
            }
        }
    }
}
