//! Containers run for real, as a kubelet and a container runtime would run them, without images: each is a
//! process in the pod's network namespace (the node's, for `hostNetwork` pods) and a mount namespace of its own,
//! whose root is a tmpfs holding the image's files (the [`crate::images`] table), the machine's `/usr` read-only,
//! `/proc`, `/dev`, `/sys`, a few files of `/etc`, and the pod's volumes where the container mounts them.
//!
//! The root is put together by `sh` in the new mount namespace (`nsenter` into the network namespace, `unshare`
//! for the mounts, then `chroot`), so each mount is one line of a script the tests can read; every mount goes with
//! the namespace when the container's last process ends. The container's securityContext is not applied: it runs
//! as root with every capability, as a privileged container would.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::Error;

/// Where a file or directory of the container comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Its path in the container.
    pub target: String,
    /// Its path on this machine.
    pub source: PathBuf,
}

/// One container to start.
#[derive(Debug, Clone, Default)]
pub struct ContainerPlan {
    /// The network namespace it joins (a file under /run/netns).
    pub netns: PathBuf,
    /// An empty directory to build its root on.
    pub root: PathBuf,
    /// The image's files, then the volumes, in mount order.
    pub binds: Vec<Bind>,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

/// The files of /etc a container shares with the machine (users, name resolution, the `alternatives` links
/// Debian's iptables goes through, the CA certificates).
const ETC: [&str; 7] = [
    "passwd",
    "group",
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "alternatives",
    "ssl",
];

/// The top-level directories that are links into /usr on this machine: in the container they are links too,
/// unless the image has files of its own there.
const MERGED: [&str; 4] = ["bin", "sbin", "lib", "lib64"];

/// Quotes a word for `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

impl ContainerPlan {
    /// The script that builds the root and execs the command in it.
    pub fn script(&self) -> String {
        let mut s = String::from("set -e\n");
        let root = quote(&self.root.display().to_string());
        let _ = writeln!(s, "mount -t tmpfs -o mode=0755 netlab-root {root}");
        let _ = writeln!(s, "cd {root}");
        s.push_str("mkdir -p usr etc proc dev sys tmp run\n");
        for dir in MERGED {
            let own = self.binds.iter().any(|b| {
                b.target
                    .trim_start_matches('/')
                    .starts_with(&format!("{dir}/"))
            });
            if own {
                let _ = writeln!(s, "mkdir {dir}");
            } else {
                let _ = writeln!(s, "[ ! -e /usr/{dir} ] || ln -s usr/{dir} {dir}");
            }
        }
        // /usr is a tmpfs holding the machine's /usr entries, each bound read-only, except those the image has
        // files under (multus's /usr/src/multus-cni): those are the image's alone.
        let own: Vec<&str> = self
            .binds
            .iter()
            .filter_map(|b| b.target.trim_start_matches('/').strip_prefix("usr/"))
            .filter_map(|rest| rest.split('/').next())
            .collect();
        let _ = writeln!(
            s,
            "for d in /usr/*; do n=${{d##*/}}; case '|{}|' in *\"|$n|\"*) continue;; esac; \
             if [ -L \"$d\" ]; then cp -P \"$d\" usr/; elif [ -d \"$d\" ]; then mkdir \"usr/$n\"; \
             mount --rbind \"$d\" \"usr/$n\"; mount -o remount,bind,ro \"usr/$n\"; fi; done",
            own.join("|")
        );
        s.push_str("mount --rbind /dev dev\nmount --rbind /sys sys\nmount -t proc proc proc\n");
        for name in ETC {
            let _ = writeln!(
                s,
                "if [ -d /etc/{name} ]; then mkdir etc/{name}; mount --rbind /etc/{name} etc/{name}; \
                 elif [ -e /etc/{name} ]; then : > etc/{name}; mount --bind /etc/{name} etc/{name}; fi"
            );
        }
        for b in &self.binds {
            let target = quote(&format!("./{}", b.target.trim_start_matches('/')));
            let source = quote(&b.source.display().to_string());
            if b.source.is_dir() {
                let _ = writeln!(s, "mkdir -p {target}");
            } else {
                let _ = writeln!(s, "mkdir -p \"$(dirname {target})\"; : > {target}");
            }
            let _ = writeln!(s, "mount --bind {source} {target}");
        }
        s.push_str("cd /\n");
        let mut exec = format!("exec chroot {root} /usr/bin/env -i --");
        for (k, v) in &self.env {
            let _ = write!(exec, " {}", quote(&format!("{k}={v}")));
        }
        for a in &self.argv {
            let _ = write!(exec, " {}", quote(a));
        }
        s.push_str(&exec);
        s.push('\n');
        s
    }

    /// Starts it: the returned process is the container's own once the script has exec'd.
    pub fn spawn(&self) -> Result<Child, Error> {
        fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        if let Some(dir) = self.log.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| Error::io(&self.log, e))?;
        let err = log.try_clone().map_err(|e| Error::io(&self.log, e))?;
        Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .args(["--", "unshare", "--mount", "--propagation", "private", "--"])
            .args(["/bin/sh", "-c", &self.script()])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::Run {
                program: "nsenter".into(),
                source: e,
            })
    }
}

/// Where a host path of a pod's `hostPath` volume is on a node: under the node's directory, in the directory that
/// the node's mount namespace binds over that path when there is one (so that the pod and the node's plugins see
/// the same files), else in `host/` mirroring the path.
pub fn node_path(node_dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    for (own, host) in crate::build::NODE_DIRS {
        if let Ok(rest) = path.strip_prefix(host) {
            return node_dir.join(own).join(rest);
        }
    }
    node_dir
        .join("host")
        .join(path.strip_prefix("/").unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_quotes_every_word_and_binds_in_order() {
        let plan = ContainerPlan {
            netns: "/run/netns/lab-mlab1".into(),
            root: "/run/netlab/lab/containers/x/root".into(),
            binds: vec![
                Bind {
                    target: "/bin/busybox".into(),
                    source: "/usr/bin/busybox".into(),
                },
                Bind {
                    target: "/etc/kube-flannel/".into(),
                    source: "/nonexistent/cfg".into(),
                },
            ],
            argv: vec!["sh".into(), "-c".into(), "echo 'hi' && cp a b".into()],
            env: vec![("POD_NAME".into(), "it's".into())],
            log: "/dev/null".into(),
        };
        let s = plan.script();
        assert!(s.contains("mkdir bin\n"), "{s}");
        assert!(s.contains("ln -s usr/lib lib"), "{s}");
        assert!(
            s.contains("mount --bind '/usr/bin/busybox' './bin/busybox'"),
            "{s}"
        );
        assert!(s.contains(
            "/usr/bin/env -i -- 'POD_NAME=it'\\''s' 'sh' '-c' 'echo '\\''hi'\\'' && cp a b'"
        ));
        let busybox = s.find("./bin/busybox").unwrap();
        assert!(busybox < s.find("./etc/kube-flannel/").unwrap());
    }

    #[test]
    fn host_paths_land_in_the_node_directory() {
        let node = Path::new("/run/netlab/lab/nodes/mlab1");
        assert_eq!(node_path(node, "/run/flannel"), node.join("run-flannel"));
        assert_eq!(
            node_path(node, "/etc/cni/net.d/multus.d"),
            node.join("net.d/multus.d")
        );
        assert_eq!(
            node_path(node, "/run/xtables.lock"),
            node.join("host/run/xtables.lock")
        );
    }
}
