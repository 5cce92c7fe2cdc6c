//! The project's facts: the names, namespaces, versions and sizes that the generated manifests are written from and
//! that lint and the lab check against, in one place so that all three agree.

/// The spec version of every generated CNI configuration: index2ip speaks 0.1.0 to 1.1.0, the reference plugins
/// 1.1.1 (ipvlan, tuning, portmap) speak up to 1.0.0, and so does the flannel CNI plugin.
pub const CNI_VERSION: &str = "1.0.0";
/// The network name both flannel NADs carry. One name means one host-local store: ADD and DEL meet the same store,
/// and the two NADs cannot hand out the same address from the node's flannel subnet twice.
pub const FLANNEL_NETWORK: &str = "flannel";
/// How many index networks there are: a machine on a site's /26 has 12 experiment addresses.
pub const INDEX_COUNT: u32 = 12;
/// Where the index networks live: `k8s.v1.cni.cncf.io/networks` names without a namespace resolve in the pod's own.
pub const INDEX_NAMESPACE: &str = "default";
/// Where the cluster components and the flannel NADs live: multus resolves `clusterNetwork` and
/// `v1.multus-cni.io/default-network` names without a namespace in its own namespace, kube-system by default.
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// The NAD multus uses as every pod's cluster network on physical nodes.
pub const CLUSTER_NETWORK_NAD: &str = "flannel-conf";
/// The cluster network without a default route, for pods whose public interface carries it.
pub const EXPERIMENT_NETWORK_NAD: &str = "flannel-experiment-conf";
/// The node interface the index networks' ipvlan links hang off.
pub const MASTER: &str = "eth0";
/// flanneld, pinned to the release upstream/versions.env builds for the tests.
pub const FLANNEL_IMAGE: &str = "ghcr.io/flannel-io/flannel:v0.28.10";
/// The flannel CNI plugin, the tag flannel's own manifest of that release names.
pub const FLANNEL_CNI_IMAGE: &str = "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3";
/// Where flanneld answers `/healthz` and `/readyz`: loopback only, since flannel runs in the host's network and a
/// physical node's eth0 is on the internet.
pub const FLANNEL_HEALTHZ_PORT: u16 = 8081;
/// The file flanneld writes once it has the node's subnet; multus waits for it before any ADD.
pub const FLANNEL_SUBNET_ENV: &str = "/run/flannel/subnet.env";
/// The credentials multus's thin plugin uses: the kubelet's own (kubeadm's path), which the kubelet renews. The
/// node identity reads pods and writes their status through the Node authorizer; `multus/rbac.yaml` adds reading
/// NetworkAttachmentDefinitions for the group `system:nodes` (see k8s/README.md, "Multus's credentials").
pub const NODE_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
/// Flannel's network: the whole pod range, ...
pub const FLANNEL_NETWORK_CIDR: &str = "192.168.0.0/16";
/// ... a /26 per node, vxlan between nodes.
pub const FLANNEL_SUBNET_LEN: u64 = 26;

/// The name of index network `index`.
pub fn index_nad_name(index: u32) -> String {
    format!("index2ip-index-{index}-conf")
}

/// The node label that tells the two node classes apart.
pub const NODE_TYPE_LABEL: &str = "mlab/type";
/// The values [`NODE_TYPE_LABEL`] may take.
pub const NODE_TYPES: [&str; 2] = ["virtual", "physical"];
