//! The Kubernetes API as the lab's kubelet sees it: the fields of pods it reads, parsed once into types, and the
//! peers' kubectl to read and write objects, as the administrator or as a node.
//!
//! The types mirror the API's objects field for field (camelCase on the wire, absent fields defaulted); a field is
//! documented where the lab gives it a meaning of its own.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::Error;

/// A pod, as far as the kubelet needs it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pod {
    /// Name, namespace, uid, annotations, owner.
    pub metadata: ObjectMeta,
    /// What to run.
    pub spec: PodSpec,
}

/// An object's metadata.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: String,
    /// The object's identity, which a name reused by a new object does not share.
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
    /// The controllers that own it.
    pub owner_references: Vec<OwnerReference>,
    /// Set when the object is being deleted.
    pub deletion_timestamp: Option<String>,
}

/// An owner of an object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OwnerReference {
    /// `DaemonSet`, `ReplicaSet`, ...
    pub kind: String,
    pub name: String,
}

/// A pod's spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    /// The node it is bound to.
    pub node_name: Option<String>,
    /// Whether it runs in the node's network namespace.
    pub host_network: bool,
    /// Run to completion, in order, before `containers`.
    pub init_containers: Vec<Container>,
    /// Run for the pod's life.
    pub containers: Vec<Container>,
    /// What the containers mount.
    pub volumes: Vec<Volume>,
    /// The service account whose token the pod gets.
    pub service_account_name: Option<String>,
    /// How long its containers have between SIGTERM and SIGKILL when it stops (30 s when not set).
    pub termination_grace_period_seconds: Option<u64>,
}

/// A container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    pub image: String,
    /// The entrypoint (the image's when empty).
    pub command: Vec<String>,
    /// Its arguments.
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    /// Mounts of the pod's volumes.
    pub volume_mounts: Vec<VolumeMount>,
    /// Ports, some with a host port.
    pub ports: Vec<ContainerPort>,
}

/// An environment variable, given or taken from the pod.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVar {
    pub name: String,
    /// A literal value.
    pub value: Option<String>,
    /// Or where the value comes from.
    pub value_from: Option<EnvVarSource>,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVarSource {
    /// A field of the pod.
    pub field_ref: Option<FieldRef>,
}

/// A field of the pod (`metadata.name`, `spec.nodeName`, ...).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldRef {
    /// The field's path.
    pub field_path: String,
}

/// A mount of a volume in a container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeMount {
    pub name: String,
    /// Where in the container.
    pub mount_path: String,
    /// A file or directory of the volume instead of all of it.
    pub sub_path: Option<String>,
}

/// A container port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerPort {
    /// The port in the pod.
    pub container_port: u16,
    /// The node's port forwarded to it (CNI's `portMappings` capability).
    pub host_port: Option<u16>,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: Option<String>,
}

/// A pod's volume: the kinds the cluster's pods use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Volume {
    pub name: String,
    /// A path on the node.
    pub host_path: Option<HostPathSource>,
    /// A ConfigMap's keys as files.
    pub config_map: Option<ConfigMapSource>,
    /// Several sources in one directory: the service-account token, the cluster's CA, the namespace.
    pub projected: Option<ProjectedSource>,
    /// An empty directory for the pod's life.
    pub empty_dir: Option<serde_json::Value>,
}

/// `hostPath`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostPathSource {
    /// The path on the node.
    pub path: String,
    /// `Directory`, `FileOrCreate`, ...
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `configMap`, or a ConfigMap among `projected` sources.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMapSource {
    /// The ConfigMap.
    pub name: String,
    /// The keys to project, and where; all keys under their own names when empty.
    pub items: Vec<KeyToPath>,
}

/// A key and the file it becomes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyToPath {
    pub key: String,
    /// The file, relative to the volume.
    pub path: String,
}

/// `projected`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProjectedSource {
    pub sources: Vec<Projection>,
}

/// One source of a projected volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Projection {
    /// A token for the pod's service account.
    pub service_account_token: Option<TokenProjection>,
    /// A ConfigMap's keys.
    pub config_map: Option<ConfigMapSource>,
    /// Fields of the pod.
    pub downward_api: Option<DownwardApiProjection>,
}

/// A projected service-account token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TokenProjection {
    pub path: String,
    /// How long it is valid.
    pub expiration_seconds: Option<u64>,
}

/// Projected fields of the pod.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DownwardApiProjection {
    /// Each a file and a field.
    pub items: Vec<DownwardApiFile>,
}

/// A file holding a field of the pod.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DownwardApiFile {
    pub path: String,
    pub field_ref: Option<FieldRef>,
}

/// One event of a watch: `ADDED`, `MODIFIED`, `DELETED`, with the object.
#[derive(Debug, Clone, Deserialize)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub object: serde_json::Value,
}

impl Pod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }

    /// The value of a field a `fieldRef` names, given the node's name and address (the pod's own address is the
    /// node's where it is on the node's network).
    pub fn field(&self, path: &str, host_ip: &str, pod_ip: &str) -> Option<String> {
        Some(match path {
            "metadata.name" => self.metadata.name.clone(),
            "metadata.namespace" => self.metadata.namespace.clone(),
            "metadata.uid" => self.metadata.uid.clone(),
            "spec.nodeName" => self.spec.node_name.clone()?,
            "spec.serviceAccountName" => self.spec.service_account_name.clone()?,
            "status.hostIP" => host_ip.to_owned(),
            "status.podIP" => pod_ip.to_owned(),
            _ => return None,
        })
    }

    /// What made it: `DaemonSet kube-system/flannel-physical`, or `a bare pod`.
    pub fn owner(&self) -> String {
        match self.metadata.owner_references.first() {
            Some(o) => format!("{} {}/{}", o.kind, self.metadata.namespace, o.name),
            None => "a bare pod".into(),
        }
    }
}

/// The peers' kubectl with one identity's kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    /// kubectl's discovery cache, one per cluster.
    pub cache: PathBuf,
    /// The network namespace to run it in (the one the API server is reached from), when not this process's.
    pub netns: Option<String>,
}

impl Kubectl {
    /// kubectl with `kubeconfig`, its cache in `cache`.
    pub fn new(bin: &Path, kubeconfig: &Path, cache: &Path) -> Kubectl {
        Kubectl {
            bin: bin.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            cache: cache.to_owned(),
            netns: None,
        }
    }

    /// The same, run in network namespace `netns`.
    pub fn in_netns(mut self, netns: &str) -> Kubectl {
        self.netns = Some(netns.to_owned());
        self
    }

    /// The command, ready for its arguments.
    pub fn command(&self) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", crate::sys::netns_path(ns).display()))
                    .arg("--")
                    .arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        };
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", &self.cache)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl with `args` (and `stdin`), returning its stdout; a failure carries its stderr.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, Error> {
        let shown = || format!("kubectl {}", args.join(" "));
        let mut cmd = self.command();
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Error::Command {
            command: shown(),
            reason: e.to_string(),
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A kubectl that exits before reading all of it says why on stderr.
            let _ = pipe.write_all(text);
        }
        let out = child.wait_with_output().map_err(|e| Error::Command {
            command: shown(),
            reason: e.to_string(),
        })?;
        crate::sys::stdout_of(shown(), &out)
    }

    /// `kubectl get KIND NAME -n NAMESPACE -o json`, parsed.
    pub fn get_json(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let mut args = vec!["get", kind, name, "-o", "json"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        let text = self.run(&args, None)?;
        serde_json::from_str(&text).map_err(|e| Error::Command {
            command: format!("kubectl {}", args.join(" ")),
            reason: format!("not JSON: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemonset_pod_parses_with_its_volumes_and_env() {
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"flannel-x","namespace":"kube-system","uid":"u1",
                "ownerReferences":[{"kind":"DaemonSet","name":"flannel"}]},
               "spec":{"nodeName":"mlab1","hostNetwork":true,
                 "containers":[{"name":"c","image":"i:1","command":["/opt/bin/flanneld"],
                   "env":[{"name":"POD_NAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],
                   "volumeMounts":[{"name":"run","mountPath":"/run/flannel"}]}],
                 "volumes":[{"name":"run","hostPath":{"path":"/run/flannel"}},
                   {"name":"kube-api-access","projected":{"sources":[
                     {"serviceAccountToken":{"path":"token","expirationSeconds":3607}},
                     {"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},
                     {"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"fieldPath":"metadata.namespace"}}]}}]}}]}}"#,
        )
        .unwrap();
        assert_eq!(pod.key(), "kube-system/flannel-x");
        assert_eq!(pod.owner(), "DaemonSet kube-system/flannel");
        assert!(pod.spec.host_network);
        let env = &pod.spec.containers[0].env[0];
        let path = &env
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path;
        assert_eq!(pod.field(path, "", "").as_deref(), Some("flannel-x"));
        assert_eq!(
            pod.spec.volumes[1]
                .projected
                .as_ref()
                .unwrap()
                .sources
                .len(),
            3
        );
        assert_eq!(pod.field("status.phase", "", ""), None);
    }
}
