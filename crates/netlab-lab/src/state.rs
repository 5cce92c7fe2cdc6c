//! The lab's state file: everything `up` made, written before each step takes effect, so that `down` can undo
//! it after a crash.

use std::path::{Path, PathBuf};

use cni::CniResult;
use netlab_model::cniconf::NetworkConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// Where labs keep their state: one directory per lab name.
pub const RUN_DIR: &str = "/run/netlab";

/// Something the lab created on the host, to remove at `down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Resource {
    /// A network namespace (its links go with it).
    Netns {
        /// Its name.
        name: String,
    },
    /// A mount point (a persistent mount namespace, or the private bind that holds them).
    Mount {
        /// Where.
        path: PathBuf,
    },
    /// A directory that did not exist on the host before (removed only when empty).
    Dir {
        /// Where.
        path: PathBuf,
    },
    /// A process started in the background (the control plane's), killed at `down` if it is still the program
    /// named (its pid may have been reused).
    Process {
        /// Its process id.
        pid: u32,
        /// Its program's name, as `/proc/PID/comm` shows it.
        comm: String,
    },
}

/// A node as brought up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Its name.
    pub name: String,
    /// `mlab/type`, if labelled.
    pub node_type: Option<String>,
    /// Its network namespace.
    pub netns: String,
    /// Its persistent mount namespace (a file bound to it).
    pub mnt: PathBuf,
    /// Its own files: cmdline, net.d, CNI state.
    pub dir: PathBuf,
    /// Its address on the site switch.
    pub address: String,
    /// Its flannel subnet, where flannel runs there.
    pub subnet: Option<String>,
    /// The CNI configuration files the manifests install there, by file name.
    pub cni_configs: Vec<(String, String)>,
    /// The node's own CNI bin dir (its `/opt/cni/bin`), on the real control plane, where the DaemonSets install
    /// the plugins; the emulation runs every node's plugins from the lab's one directory.
    #[serde(default)]
    pub cni_bin: Option<PathBuf>,
}

/// One network attachment of a pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network as the pod named it (`namespace/name` of its NAD), or the node's cluster network.
    pub network: String,
    /// The interface in the pod.
    pub ifname: String,
    /// Whether it is the pod's default network.
    pub default: bool,
    /// The configuration as executed (after the lab's flannel and ipvlan substitutions), once it could be read.
    pub conflist: Option<NetworkConfig>,
    /// The index2ip index its IPAM asked for, if any.
    pub index: Option<u32>,
    /// The chain's result, once ADD succeeded (kept in the newest shape, as `cni` models it).
    pub result: Option<CniResult>,
    /// Why ADD failed.
    pub error: Option<String>,
    /// How long the chain's plugin processes took for ADD, in microseconds (for the lab's own overhead).
    #[serde(default)]
    pub add_us: u64,
}

/// A pod as brought up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its node.
    pub node: String,
    /// What made it (a DaemonSet, or the lab's plain pod).
    pub owner: String,
    /// Its network namespace.
    pub netns: String,
    /// Its attachments, in the order they were made.
    pub attachments: Vec<Attachment>,
    /// Why it got no network at all.
    pub error: Option<String>,
    /// The `k8s.v1.cni.cncf.io/network-status` annotation multus would write, from the results.
    #[serde(default)]
    pub network_status: Value,
    /// The pod's uid, on the real control plane.
    #[serde(default)]
    pub uid: Option<String>,
    /// Whether it runs in its node's network namespace (`hostNetwork`).
    #[serde(default)]
    pub host_network: bool,
    /// Its sandbox's container id, given to every CNI call of the sandbox, on the real control plane (the
    /// emulation derives one from the pod's name).
    #[serde(default)]
    pub sandbox: Option<String>,
}

impl PodState {
    /// Whether `other` is a record of the same pod: the same uid on the real control plane (a pod keeps it
    /// through new sandboxes), else the same network namespace.
    pub fn same_pod(&self, other: &PodState) -> bool {
        match (&self.uid, &other.uid) {
            (Some(a), Some(b)) => a == b,
            _ => self.netns == other.netns,
        }
    }
}

/// The whole lab.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The lab's name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The manifests it was built from.
    pub manifests: String,
    /// What it created, in order.
    pub created: Vec<Resource>,
    /// The nodes.
    pub nodes: Vec<NodeState>,
    /// The pods.
    pub pods: Vec<PodState>,
    /// The site switch's namespace.
    pub site_netns: String,
    /// The site router's namespace: it holds the block's gateway addresses and routes to the internet client
    /// (and, on the real control plane, to the control plane).
    pub inet_netns: String,
    /// The site router's addresses on the site.
    pub inet_addresses: Vec<String>,
    /// The internet client's namespace: off-link, behind the site router, as the internet is.
    #[serde(default)]
    pub wan_netns: String,
    /// The internet client's addresses.
    #[serde(default)]
    pub wan_addresses: Vec<String>,
    /// What the lab had to change to run here (ipvlan swapped for macvlan), said in every output.
    pub substitutions: Vec<String>,
    /// Whether `up` finished.
    pub complete: bool,
}

/// One line of the pod journal: a pod, and the state file it was saved after.
#[derive(Debug, Serialize, Deserialize)]
struct JournalLine {
    after: String,
    pod: PodState,
}

/// What tells one state file from the next: each whole save is a new file renamed into place.
fn state_tag(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "{}:{}:{}.{}",
        m.dev(),
        m.ino(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// The pod journal in a lab's directory: one JSON line a pod save, since the last whole save.
pub const POD_JOURNAL: &str = "pods.jsonl";

impl State {
    /// The state file of lab `name`.
    pub fn path(name: &str) -> PathBuf {
        Path::new(RUN_DIR).join(name).join("state.json")
    }

    /// Reads lab `name`'s state; `None` when there is no such lab. A pod saved on its own since the last whole
    /// save ([`State::save_pod`]) is taken from the pod journal: its last whole line for that pod.
    pub fn load(name: &str) -> Result<Option<State>, Error> {
        let path = State::path(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut state: State =
                    serde_json::from_slice(&bytes).map_err(|e| Error::State {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                let journal = std::fs::read(state.dir.join(POD_JOURNAL)).unwrap_or_default();
                // Only lines written after this state file: older ones (a crash between the whole save and the
                // journal's emptying) would put back what the whole save superseded. A line cut short by a crash
                // does not parse and is skipped; the pod's previous line stands.
                let current = state_tag(&path);
                for line in journal
                    .split(|&b| b == b'\n')
                    .filter_map(|line| serde_json::from_slice::<JournalLine>(line).ok())
                    .filter(|line| Some(&line.after) == current.as_ref())
                {
                    let newer = line.pod;
                    if let Some(pod) = state.pods.iter_mut().find(|p| p.same_pod(&newer)) {
                        *pod = newer;
                    }
                }
                Ok(Some(state))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::State {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// Writes the state atomically (temp file, then rename), so a crash leaves the old or the new one whole.
    pub fn save(&self) -> Result<(), Error> {
        let path = State::path(&self.name);
        let err = |reason: String| Error::State {
            path: path.clone(),
            reason,
        };
        let text = serde_json::to_vec(self).map_err(|e| err(e.to_string()))?;
        crate::sys::replace_file(&path, &text).map_err(|e| err(e.to_string()))?;
        // The whole state now holds every pod: the journal's lines would only shadow it with older copies. Emptied
        // rather than removed, so that the next pod's line needs no new file.
        if let Ok(journal) = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join(POD_JOURNAL))
        {
            let _ = journal.set_len(0);
        }
        Ok(())
    }

    /// Saves one pod on its own: a line appended to the pod journal. What `up` does after each step of a pod, so
    /// that the cost per pod does not grow with the lab (the whole state is rewritten only at the start and the end
    /// of the pods), and makes no new file per save: on a disk file system a new file can cost far more than
    /// writing its bytes (ext4, soon after many files were removed: 0.3 ms here).
    pub fn save_pod(&self, pod: &PodState) -> Result<(), Error> {
        let path = self.dir.join(POD_JOURNAL);
        let err = |e: String| Error::State {
            path: path.clone(),
            reason: e,
        };
        let after = state_tag(&State::path(&self.name))
            .ok_or_else(|| err("the lab's state file is missing".into()))?;
        // Each line starts a line of its own: one cut short by a failed write cannot swallow the next.
        let mut line = b"\n".to_vec();
        serde_json::to_writer(
            &mut line,
            &JournalLine {
                after,
                pod: pod.clone(),
            },
        )
        .map_err(|e| err(e.to_string()))?;
        let mut journal = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| err(e.to_string()))?;
        std::io::Write::write_all(&mut journal, &line).map_err(|e| err(e.to_string()))
    }

    /// Records a resource and saves, before the caller creates it: a crash in between leaves an entry for something
    /// that may not exist, which `down` tolerates, never the reverse.
    pub fn record(&mut self, r: Resource) -> Result<(), Error> {
        self.created.push(r);
        self.save()
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// A pod by name (`name` or `namespace/name`).
    pub fn pod(&self, name: &str) -> Option<&PodState> {
        self.pods
            .iter()
            .find(|p| p.name == name || format!("{}/{}", p.namespace, p.name) == name)
    }
}
