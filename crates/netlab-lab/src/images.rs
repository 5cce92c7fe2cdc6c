//! The images the manifests name, mapped to the programs that stand for them here: the table below is the one
//! place that says which file of which image is which binary. No image is pulled; a container runs in a root of
//! its own holding its image's files from this table over the machine's `/usr` (its shell, `cp`, `iptables` and
//! libraries). A container of an image not listed runs nothing; its pod still gets its network.

use std::path::{Path, PathBuf};

/// Where a file of an image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A program of the upstream peers (`scripts/upstream.sh`).
    Peer(&'static str),
    /// One of this project's binaries, as the lab installs them (`index2ip`, `cni-shim`).
    Project(&'static str),
    /// A program of this machine.
    Host(&'static str),
    /// The installer's script, built into netlab.
    InstallScript,
}

/// An image: its repository (the name without the tag) and its files.
#[derive(Debug)]
pub struct Image {
    /// `ghcr.io/flannel-io/flannel`.
    pub repository: &'static str,
    /// Each file's path in the image and where it comes from.
    pub files: &'static [(&'static str, Source)],
}

/// Every image the lab can run.
pub const IMAGES: &[Image] = &[
    Image {
        repository: "ghcr.io/flannel-io/flannel",
        files: &[
            ("/opt/bin/flanneld", Source::Peer("flanneld")),
            ("/opt/bin/install-conf", Source::Peer("install-conf")),
        ],
    },
    Image {
        repository: "ghcr.io/flannel-io/flannel-cni-plugin",
        files: &[("/flannel", Source::Peer("flannel"))],
    },
    Image {
        repository: "ghcr.io/k8snetworkplumbingwg/multus-cni",
        files: &[
            ("/thin_entrypoint", Source::Peer("thin_entrypoint")),
            ("/usr/src/multus-cni/bin/multus", Source::Peer("multus")),
        ],
    },
    Image {
        repository: "localhost/index2ip-installer",
        files: &[
            ("/bin/busybox", Source::Host("/usr/bin/busybox")),
            ("/install.sh", Source::InstallScript),
            ("/opt/cni/bin/index2ip", Source::Project("index2ip")),
            ("/opt/cni/bin/cni-shim", Source::Project("cni-shim")),
            (
                "/opt/cni/bin/cni-shim-passthrough",
                Source::Project("cni-shim-passthrough"),
            ),
        ],
    },
];

/// The installer's script, as its image holds it.
pub const INSTALL_SCRIPT: &str = include_str!("../../../images/install.sh");

/// The image `reference` names (`repository[:tag][@digest]`), if the lab knows it.
pub fn lookup(reference: &str) -> Option<&'static Image> {
    let name = reference.split('@').next().unwrap_or(reference);
    // A colon after the last slash starts the tag; one before it belongs to a registry's port.
    let repository = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    IMAGES.iter().find(|i| i.repository == repository)
}

/// Where each source is on this machine: the peers' directory, the lab's own binaries by name, and the file the
/// install script was written to.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Sources {
    /// The upstream peers.
    pub peers: PathBuf,
    /// This project's binaries, by name.
    pub project: Vec<(String, PathBuf)>,
    /// The install script, written out.
    pub install_script: PathBuf,
}

impl Sources {
    /// The file `source` stands for, if there is one.
    pub fn resolve(&self, source: Source) -> Option<PathBuf> {
        let path = match source {
            Source::Peer(name) => self.peers.join(name),
            Source::Project(name) => self.project.iter().find(|(n, _)| n == name)?.1.clone(),
            Source::Host(path) => Path::new(path).to_owned(),
            Source::InstallScript => self.install_script.clone(),
        };
        path.is_file().then_some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_digests_and_registry_ports_are_told_apart() {
        let flannel = lookup("ghcr.io/flannel-io/flannel:v0.28.10").map(|i| i.repository);
        assert_eq!(flannel, Some("ghcr.io/flannel-io/flannel"));
        assert!(lookup("ghcr.io/flannel-io/flannel@sha256:00").is_some());
        assert!(lookup("localhost/index2ip-installer:0.1.0").is_some());
        assert!(lookup("localhost:5000/index2ip-installer:0.1.0").is_none());
        assert!(lookup("docker.io/library/busybox:1").is_none());
    }

    #[test]
    fn every_image_of_the_cluster_components_is_in_the_table() {
        // The experiments' images (k8s/daemonsets) run nothing in the lab: only their network is under test.
        let k8s = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s");
        let mut seen = 0;
        for component in ["flannel", "multus", "installer"] {
            for file in std::fs::read_dir(k8s.join(component)).unwrap().flatten() {
                let text = std::fs::read_to_string(file.path()).unwrap();
                for image in text
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("image: "))
                {
                    assert!(lookup(image).is_some(), "{image} is not in the table");
                    seen += 1;
                }
            }
        }
        assert!(
            seen >= 4,
            "only {seen} images found under {}",
            k8s.display()
        );
    }
}
