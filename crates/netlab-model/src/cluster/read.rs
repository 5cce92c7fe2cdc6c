//! Reading the lab's [`Cluster`] out of the manifests: the same objects `netlab lint` reads.
//!
//! - A DaemonSet that mounts the host's `/etc/cni/net.d` installs the CNI configurations in the ConfigMaps it
//!   mounts (entries that are CNI network configurations; file names from the volume's `items`, else the key).
//! - A DaemonSet that mounts a ConfigMap holding `net-conf.json` runs flanneld; that file gives the network.
//! - A DaemonSet that does not use `hostNetwork` makes pods that need the pod network.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Cluster, Flannel, Installer};
use crate::manifest::Object;
use crate::workload::workload;
use crate::Error;

/// Where runtimes read CNI configurations on a node.
const NET_D: &str = "/etc/cni/net.d";

/// The cluster the manifests describe.
pub fn from_objects(objects: &[Object]) -> Result<Cluster, Error> {
    let mut c = Cluster::default();
    let config_maps: BTreeMap<(String, String), &Value> = objects
        .iter()
        .filter(|o| o.kind == "ConfigMap")
        .map(|o| {
            (
                (o.namespace_or_default().to_owned(), o.name.clone()),
                &o.value,
            )
        })
        .collect();
    for o in objects {
        if o.kind == "NetworkAttachmentDefinition" {
            if let Some(config) = o.value.pointer("/spec/config").and_then(Value::as_str) {
                c.nads.insert(
                    (o.namespace_or_default().to_owned(), o.name.clone()),
                    config.to_owned(),
                );
            }
            continue;
        }
        if o.kind != "DaemonSet" {
            continue;
        }
        let w = match workload(o) {
            Some(Ok(w)) => w,
            Some(Err(reason)) => {
                return Err(Error::Template {
                    object: o.describe(),
                    reason,
                })
            }
            None => continue,
        };
        let selector = w.spec.selector();
        let pod_spec = o
            .value
            .pointer("/spec/template/spec")
            .cloned()
            .unwrap_or(Value::Null);
        let volumes: Vec<&Value> = pod_spec
            .get("volumes")
            .and_then(Value::as_array)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let writes_net_d = volumes.iter().any(|v| {
            v.pointer("/hostPath/path")
                .and_then(Value::as_str)
                .map(|p| p.trim_end_matches('/'))
                == Some(NET_D)
        });
        let source = format!("DaemonSet {}/{}", o.namespace_or_default(), o.name);
        let mut installs = Vec::new();
        for v in &volumes {
            let Some(cm_name) = v.pointer("/configMap/name").and_then(Value::as_str) else {
                continue;
            };
            let Some(cm) =
                config_maps.get(&(o.namespace_or_default().to_owned(), cm_name.to_owned()))
            else {
                continue;
            };
            let data = cm
                .get("data")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(net_conf) = data.get("net-conf.json").and_then(Value::as_str) {
                let (network, subnet_len) =
                    net_conf_of(net_conf).map_err(|reason| Error::NetConf {
                        config_map: cm_name.to_owned(),
                        reason,
                    })?;
                let f = c.flannel.get_or_insert_with(|| Flannel {
                    daemonsets: Vec::new(),
                    network,
                    subnet_len,
                });
                f.daemonsets.push((source.clone(), selector.clone()));
            }
            if !writes_net_d {
                continue;
            }
            let renames: BTreeMap<&str, &str> = v
                .pointer("/configMap/items")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| Some((i.get("key")?.as_str()?, i.get("path")?.as_str()?)))
                        .collect()
                })
                .unwrap_or_default();
            for (key, text) in &data {
                let Some(text) = text.as_str() else { continue };
                if is_network_config(text) {
                    let file = renames.get(key.as_str()).copied().unwrap_or(key);
                    installs.push((file.to_owned(), text.to_owned()));
                }
            }
        }
        if !installs.is_empty() {
            c.installers.push(Installer {
                source: source.clone(),
                selector: selector.clone(),
                configs: installs,
            });
        }
        if pod_spec.get("hostNetwork").and_then(Value::as_bool) != Some(true) {
            c.workloads.push(w);
        }
    }
    Ok(c)
}

/// A CNI network configuration has a `type` (one plugin) or `plugins` (a list).
fn is_network_config(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .is_ok_and(|v| v.get("type").is_some() || v.get("plugins").is_some())
}

fn net_conf_of(text: &str) -> Result<(ipnet::Ipv4Net, u8), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let network = v
        .get("Network")
        .and_then(Value::as_str)
        .ok_or("no \"Network\"")?;
    let network: ipnet::Ipv4Net = network
        .parse()
        .map_err(|_| format!("Network {network:?} is not an IPv4 prefix"))?;
    let len = v.get("SubnetLen").and_then(Value::as_u64).unwrap_or(24);
    let len = u8::try_from(len)
        .ok()
        .filter(|l| *l >= network.prefix_len() && *l <= 30)
        .ok_or(format!("SubnetLen {len} does not fit {network}"))?;
    Ok((network, len))
}
