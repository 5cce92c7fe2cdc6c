//! Rules about NetworkAttachmentDefinitions: their CNI configuration, flannel's name, the index networks.

use std::collections::BTreeMap;

use cni::Version;
use serde_json::Value;

use crate::{Finding, Nad, Nads, Options, Rule};
use netlab_model::cniconf::{known, NetworkConfig, Role, KNOWN};
use netlab_model::manifest::Object;
use netlab_model::workload::index_in_nad_name;

const CONFIG: &[&str] = &["spec", "config"];

pub(crate) fn check<'a>(
    objects: &'a [Object],
    options: Options,
    findings: &mut Vec<Finding>,
) -> Nads<'a> {
    let mut nads = Nads::new();
    for o in objects
        .iter()
        .filter(|o| o.kind == "NetworkAttachmentDefinition")
    {
        let config = config(o, findings);
        if let Some(c) = &config {
            plugins(o, c, findings);
            version(o, c, findings);
        }
        let index = config.as_ref().and_then(|c| index(o, c, options, findings));
        nads.entry((o.namespace_or_default().to_owned(), o.name.clone()))
            .or_insert(Nad {
                object: o,
                config,
                index,
            });
    }
    flannel(&nads, findings);
    duplicate_indices(&nads, findings);
    nads
}

fn config(o: &Object, findings: &mut Vec<Finding>) -> Option<NetworkConfig> {
    let text = match o.value.get("spec").and_then(|s| s.get("config")) {
        Some(Value::String(s)) => s,
        Some(_) => {
            findings.push(
                Finding::new(Rule::NadConfig, "spec.config is not a string (a JSON text)")
                    .on(o, CONFIG),
            );
            return None;
        }
        None => {
            findings.push(Finding::new(Rule::NadConfig, "no spec.config").on(o, CONFIG));
            return None;
        }
    };
    match NetworkConfig::parse(text) {
        Ok(c) => Some(c),
        Err(e) => {
            let mut f =
                Finding::new(Rule::NadConfig, format!("spec.config: {}", e.message)).on(o, CONFIG);
            f.line = Some(o.line_in_block(CONFIG, e.line.unwrap_or(0)));
            findings.push(f);
            None
        }
    }
}

fn plugins(o: &Object, c: &NetworkConfig, findings: &mut Vec<Finding>) {
    let names = || KNOWN.iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
    for (i, p) in c.plugins.iter().enumerate() {
        let at = if c.is_chain {
            format!("plugin {} ({})", i + 1, p.plugin_type)
        } else {
            p.plugin_type.clone()
        };
        match known(&p.plugin_type) {
            None => findings.push(
                Finding::new(
                    Rule::NadPluginType,
                    format!("{at}: unknown plugin type (known: {})", names()),
                )
                .on(o, CONFIG),
            ),
            Some(k) if k.role == Role::Ipam => findings.push(
                Finding::new(
                    Rule::NadPluginType,
                    format!("{at}: an IPAM plugin cannot stand as a plugin; put it in `ipam`"),
                )
                .on(o, CONFIG),
            ),
            Some(k) if k.role == Role::Chained && i == 0 => findings.push(
                Finding::new(
                    Rule::NadPluginType,
                    format!("{at}: needs a previous result, so it cannot come first"),
                )
                .on(o, CONFIG),
            ),
            Some(_) => {}
        }
        if let Some(ipam) = &p.ipam {
            match known(&ipam.plugin_type) {
                Some(k) if k.role == Role::Ipam => {}
                Some(_) => findings.push(
                    Finding::new(
                        Rule::NadPluginType,
                        format!(
                            "{at}: ipam type {:?} is not an IPAM plugin",
                            ipam.plugin_type
                        ),
                    )
                    .on(o, CONFIG),
                ),
                None => findings.push(
                    Finding::new(
                        Rule::NadPluginType,
                        format!(
                            "{at}: unknown ipam type {:?} (known: {})",
                            ipam.plugin_type,
                            names()
                        ),
                    )
                    .on(o, CONFIG),
                ),
            }
        }
    }
}

fn version(o: &Object, c: &NetworkConfig, findings: &mut Vec<Finding>) {
    let Some(text) = &c.cni_version else {
        findings.push(
            Finding::new(
                Rule::NadCniVersion,
                "no cniVersion (libcni would read it as 0.1.0)",
            )
            .on(o, CONFIG),
        );
        return;
    };
    let Ok(v) = text.parse::<Version>() else {
        findings.push(
            Finding::new(
                Rule::NadCniVersion,
                format!("cniVersion {text:?} is not a released spec version"),
            )
            .on(o, CONFIG),
        );
        return;
    };
    if c.is_chain && c.plugins.len() > 1 && v < Version::V0_3_0 {
        findings.push(
            Finding::new(
                Rule::NadCniVersion,
                format!("a chain needs cniVersion 0.3.0 or later, not {v}"),
            )
            .on(o, CONFIG),
        );
    }
    let types = c.plugins.iter().flat_map(|p| {
        std::iter::once(p.plugin_type.as_str())
            .chain(p.ipam.as_ref().map(|i| i.plugin_type.as_str()))
    });
    for t in types {
        if let Some(k) = known(t) {
            if !k.versions.contains(&v) {
                let supported = k
                    .versions
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                findings.push(
                    Finding::new(
                        Rule::NadCniVersion,
                        format!("{t} does not speak cniVersion {v} (it speaks {supported})"),
                    )
                    .on(o, CONFIG),
                );
            }
        }
    }
}

fn index(
    o: &Object,
    c: &NetworkConfig,
    options: Options,
    findings: &mut Vec<Finding>,
) -> Option<u64> {
    let in_name = index_in_nad_name(&o.name);
    let Some(ipam) = c.index2ip() else {
        if let Some(n) = in_name {
            findings.push(
                Finding::new(
                    Rule::IndexName,
                    format!("the name carries index {n} but no plugin uses index2ip"),
                )
                .on(o, CONFIG),
            );
        }
        return None;
    };
    let index = match ipam.keys.get("index") {
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => n,
            _ => {
                findings.push(
                    Finding::new(
                        Rule::IndexName,
                        format!("ipam.index {v} is not a positive integer"),
                    )
                    .on(o, CONFIG),
                );
                return None;
            }
        },
        None => {
            findings.push(
                Finding::new(
                    Rule::IndexName,
                    "no ipam.index: index2ip would take the index from the pod's name",
                )
                .on(o, CONFIG),
            );
            return None;
        }
    };
    match in_name {
        Some(n) if n == index => {}
        Some(n) => findings.push(
            Finding::new(
                Rule::IndexName,
                format!("the name says index {n} but ipam.index is {index}"),
            )
            .on(o, CONFIG),
        ),
        None => findings.push(
            Finding::new(
                Rule::IndexName,
                format!("ipam.index is {index} but the name carries no index-{index}"),
            )
            .on(o, &["metadata", "name"]),
        ),
    }
    let cap = options.site_block.capacity().unwrap_or(0);
    if index > cap {
        findings.push(
            Finding::new(
                Rule::IndexRange,
                format!(
                    "index {index} does not fit: a machine has indices 1 to {cap}, assuming {}",
                    options.site_block.describe()
                ),
            )
            .on(o, CONFIG),
        );
    }
    Some(index)
}

fn flannel(nads: &Nads<'_>, findings: &mut Vec<Finding>) {
    let mut names: BTreeMap<&str, &Object> = BTreeMap::new();
    for nad in nads.values() {
        let Some(c) = nad.config.as_ref().filter(|c| c.is_flannel()) else {
            continue;
        };
        match &c.name {
            None => findings.push(
                Finding::new(
                    Rule::FlannelName,
                    "a flannel network without a config name: multus then names it after the NAD, ADD and DEL reach different host-local stores, and pod addresses leak",
                )
                .on(nad.object, CONFIG),
            ),
            Some(name) => {
                if let Some((first, other)) = names.iter().next().filter(|(n, _)| **n != name.as_str()) {
                    findings.push(
                        Finding::new(
                            Rule::FlannelName,
                            format!(
                                "network name {name:?} differs from {first:?} of {}: host-local keeps one store per name, so both would hand out the node's flannel subnet and give two pods one address",
                                other.describe()
                            ),
                        )
                        .on(nad.object, CONFIG),
                    );
                }
                names.entry(name.as_str()).or_insert(nad.object);
            }
        }
    }
}

fn duplicate_indices(nads: &Nads<'_>, findings: &mut Vec<Finding>) {
    let mut first: BTreeMap<u64, &Object> = BTreeMap::new();
    let mut ordered: Vec<&Nad<'_>> = nads.values().collect();
    ordered.sort_by_key(|n| (&n.object.file, n.object.line));
    for nad in ordered {
        let Some(index) = nad.index else { continue };
        match first.get(&index) {
            Some(other) => findings.push(
                Finding::new(
                    Rule::IndexDuplicate,
                    format!("index {index} is also defined by {}", other.describe()),
                )
                .on(nad.object, CONFIG),
            ),
            None => {
                first.insert(index, nad.object);
            }
        }
    }
}
