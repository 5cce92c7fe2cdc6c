//! Rules about applying the objects and running their pods as written: a CRD and its custom resources in one apply
//! unit, and images that name no registry.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Finding, Rule};
use netlab_model::manifest::Object;

pub(crate) fn check(objects: &[Object], findings: &mut Vec<Finding>) {
    crd_apply_unit(objects, findings);
    for o in objects {
        images(o, findings);
    }
}

/// kubectl maps the kind of every object of an apply before it sends any, so on a cluster without the CRD every
/// custom resource of the same apply fails ("resource mapping not found ... ensure CRDs are installed first").
fn crd_apply_unit(objects: &[Object], findings: &mut Vec<Finding>) {
    for crd in objects
        .iter()
        .filter(|o| o.kind == "CustomResourceDefinition")
    {
        let (Some(group), Some(kind)) = (
            crd.value.pointer("/spec/group").and_then(Value::as_str),
            crd.value
                .pointer("/spec/names/kind")
                .and_then(Value::as_str),
        ) else {
            continue;
        };
        let resources: Vec<&Object> = objects
            .iter()
            .filter(|o| {
                o.unit == crd.unit
                    && o.kind == kind
                    && o.api_version.split_once('/').map(|(g, _)| g) == Some(group)
            })
            .collect();
        let Some(first) = resources.first() else {
            continue;
        };
        findings.push(
            Finding::new(
                Rule::CrdApplyUnit,
                format!(
                    "{} {kind}{} of {} (the first at {}:{}) are applied together with the CRD that defines them: on a cluster without the CRD, kubectl fails on every one of them (\"ensure CRDs are installed first\") and exits 1; give the CRD a kustomization of its own, apply it first and wait for it (`kubectl wait --for=condition=Established crd/{}`), as scripts/apply.sh does",
                    resources.len(),
                    if resources.len() == 1 { "" } else { "s" },
                    crd.unit,
                    first.file,
                    first.line,
                    crd.name
                ),
            )
            .on(crd, &["spec", "names", "kind"]),
        );
    }
}

/// Where a kind keeps its pod spec.
fn pod_spec(o: &Object) -> Option<&Value> {
    match o.kind.as_str() {
        "Pod" => o.value.get("spec"),
        "CronJob" => o.value.pointer("/spec/jobTemplate/spec/template/spec"),
        _ => o.value.pointer("/spec/template/spec"),
    }
}

/// An image reference names its registry when its first component has a `.` or a `:`, or is `localhost`.
fn has_registry(image: &str) -> bool {
    image
        .split_once('/')
        .is_some_and(|(first, _)| first.contains(['.', ':']) || first == "localhost")
}

fn images(o: &Object, findings: &mut Vec<Finding>) {
    let Some(spec) = pod_spec(o) else { return };
    let mut seen = BTreeMap::new();
    for list in ["initContainers", "containers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(image) = c.get("image").and_then(Value::as_str) else {
                continue;
            };
            if has_registry(image) || seen.insert(image, ()).is_some() {
                continue;
            }
            let full = if image.contains('/') {
                format!("docker.io/{image}")
            } else {
                format!("docker.io/library/{image}")
            };
            let mut path = match o.kind.as_str() {
                "Pod" => vec!["spec"],
                "CronJob" => vec!["spec", "jobTemplate", "spec", "template", "spec"],
                _ => vec!["spec", "template", "spec"],
            };
            path.extend([list, "image"]);
            findings.push(
                Finding::new(
                    Rule::ImageRegistry,
                    format!(
                        "image {image:?} names no registry: containerd pulls it as {full:?}, CRI-O may refuse a short name, and an image built here and imported into the node (podman keeps it as localhost/...) does not match it; write the registry: {full:?}, \"localhost/{image}\" for an image imported into the node, or your registry's"
                    ),
                )
                .on(o, &path),
            );
        }
    }
}
