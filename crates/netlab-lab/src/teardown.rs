//! `down`: DEL every attachment in reverse, remove what the lab made, and report anything that would have leaked.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::runtime::Runtime;
use crate::state::{Resource, State, RUN_DIR};
use crate::sys;
use crate::Error;

/// What `down` found and did.
#[derive(Debug, Default)]
pub struct Report {
    /// DEL failures.
    pub del_failures: Vec<String>,
    /// host-local leases still held after DEL.
    pub leaked_leases: Vec<String>,
    /// Things still present after removal.
    pub leftovers: Vec<String>,
}

impl Report {
    /// Whether everything came down cleanly.
    pub fn clean(&self) -> bool {
        self.del_failures.is_empty() && self.leaked_leases.is_empty() && self.leftovers.is_empty()
    }
}

/// Takes lab `name` down. Idempotent: with no state file it only looks for leftovers.
pub fn down(name: &str, out: &mut dyn Write) -> Result<Report, Error> {
    if !sys::is_root() {
        return Err(Error::NotRoot {
            why: "it removes its namespaces and mounts",
        });
    }
    let mut report = Report::default();
    match State::load(name)? {
        None => {
            let _ = writeln!(
                out,
                "==> no lab {name} is up (no {})",
                State::path(name).display()
            );
            // An `up` killed between making the lab's directory and writing its first state leaves the directory
            // alone, empty (or with the state's temporary file): nothing else is made before that first write.
            let dir = Path::new(RUN_DIR).join(name);
            let only_begun = std::fs::read_dir(&dir)
                .is_ok_and(|d| d.flatten().all(|e| e.file_name() == "state.json.tmp"));
            if only_begun {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        Some(state) => {
            let _ = writeln!(
                out,
                "==> taking lab {name} down: {} pods, {} nodes",
                state.pods.len(),
                state.nodes.len()
            );
            let runtime = Runtime {
                cni_path: vec![state.dir.join("bin")],
                // DEL runs the list as it was executed, substitutions included.
                has_ipvlan: true,
                flannel_network: None,
            };
            // The lab's kubelet first, so that it starts nothing more (its pods' processes stay until after DEL:
            // flanneld and the API server answer the plugins' DEL).
            if stop_kubelet(&state) {
                let _ = writeln!(out, "    stopped the lab's kubelet");
            }
            // A lab killed mid-`up` may leave plugins running inside its nodes: they finish before DEL runs, or
            // they would add back what DEL removes.
            let stopped = stop_node_processes(&state);
            if stopped > 0 {
                let _ = writeln!(
                    out,
                    "    stopped {stopped} process(es) still running in the lab's nodes"
                );
            }
            for pod in state.pods.iter().rev() {
                let Some(node) = state.node(&pod.node) else {
                    continue;
                };
                let failures = runtime.detach(node, pod);
                if !pod.attachments.is_empty() {
                    let verdict = if failures.is_empty() {
                        "ok".to_owned()
                    } else {
                        failures.join("; ")
                    };
                    let _ = writeln!(
                        out,
                        "    DEL {:<24} {} attachment(s): {verdict}",
                        pod.name,
                        pod.attachments.len()
                    );
                }
                report.del_failures.extend(failures);
            }
            let stopped = stop_lab_processes(&state);
            if stopped > 0 {
                let _ = writeln!(
                    out,
                    "    stopped {stopped} process(es): the control plane and the pods' containers"
                );
            }
            for node in &state.nodes {
                report
                    .leaked_leases
                    .extend(leases(&node.dir.join("cni-state"), &node.name));
            }
            remove(&state, &mut report);
        }
    }
    for ns in sys::netns_list() {
        if ns.starts_with(&format!("{name}-")) {
            report.leftovers.push(format!("network namespace {ns}"));
        }
    }
    last_lab_out();
    let dir = Path::new(RUN_DIR).join(name);
    if dir.exists() {
        report
            .leftovers
            .push(format!("directory {}", dir.display()));
    }
    for line in report
        .del_failures
        .iter()
        .chain(&report.leaked_leases)
        .chain(&report.leftovers)
    {
        let _ = writeln!(out, "LEAK: {line}");
    }
    if report.clean() {
        let _ = writeln!(out, "==> lab {name} is down; nothing left behind (namespaces, links, mounts, leases, files)");
    }
    Ok(report)
}

/// When no lab is left, removes what labs share: the host directories labs made for their nodes, and /run/netlab.
fn last_lab_out() {
    let Ok(_lock) = crate::build::shared_lock() else {
        return;
    };
    let run = Path::new(RUN_DIR);
    let others = std::fs::read_dir(run)
        .map(|d| d.flatten().any(|e| e.path().is_dir()))
        .unwrap_or(false);
    if others {
        return;
    }
    let marker = run.join(crate::build::CREATED_MARKER);
    if let Ok(created) = std::fs::read_to_string(&marker) {
        // Children were listed after their parents: remove in reverse, and only what is empty.
        for dir in created.lines().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        let _ = std::fs::remove_file(&marker);
    }
    let _ = std::fs::remove_dir(run);
}

/// Kills the lab's kubelet, if it runs (its pid file names a process that is still netlab), and waits for it.
fn stop_kubelet(state: &State) -> bool {
    let pid_file = state.dir.join(crate::kubelet::PID_FILE);
    let Ok(pid) = std::fs::read_to_string(&pid_file) else {
        return false;
    };
    let pid = pid.trim().to_owned();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours = cmdline.split(|&b| b == 0).any(|arg| arg == b"kubelet")
        && cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == state.name.as_bytes());
    if !ours {
        return false;
    }
    let _ = sys::run("kill", ["-KILL", pid.as_str()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// Kills every process in one of the lab's network namespaces (the control plane, the pods' containers) and the
/// background processes it recorded, and waits for them. Returns how many there were.
fn stop_lab_processes(state: &State) -> usize {
    use std::os::unix::fs::MetadataExt;
    let netns: Vec<u64> = state
        .created
        .iter()
        .filter_map(|r| match r {
            Resource::Netns { name } => std::fs::metadata(sys::netns_path(name)).ok(),
            _ => None,
        })
        .map(|m| m.ino())
        .collect();
    let mut pids: Vec<String> = state
        .created
        .iter()
        .filter_map(|r| match r {
            Resource::Process { pid, comm } => {
                let now = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (now.trim() == comm).then(|| pid.to_string())
            }
            _ => None,
        })
        .collect();
    pids.extend(processes_in("net", &netns));
    // And what a killed `up` was running on the host for the lab (openssl making the control plane's keys), named
    // by the lab's directory on its command line.
    let dir = format!("{}/", state.dir.display());
    let naming = || -> Vec<String> {
        let own = std::process::id().to_string();
        std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()) && *pid != own)
                    .filter(|pid| {
                        std::fs::read(format!("/proc/{pid}/cmdline"))
                            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&dir))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    pids.extend(naming());
    stop(&pids, || {
        let mut left = processes_in("net", &netns);
        left.extend(naming());
        left
    })
}

/// Processes whose namespace of `kind` (`mnt`, `net`) is one of `inodes`.
fn processes_in(kind: &str, inodes: &[u64]) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::metadata(e.path().join("ns").join(kind))
                .is_ok_and(|m| inodes.contains(&m.ino()))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Kills `pids` and waits, two seconds at most, until `left` finds none. Returns how many there were.
fn stop(pids: &[String], left: impl Fn() -> Vec<String>) -> usize {
    for pid in pids {
        let _ = sys::run("kill", ["-KILL", pid.as_str()]);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !left().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    pids.len()
}

/// Kills the processes that live in one of the lab's node mount namespaces (plugins a killed `up` left running)
/// and waits, two seconds at most, until they are gone. Returns how many there were.
fn stop_node_processes(state: &State) -> usize {
    use std::os::unix::fs::MetadataExt;
    let inodes: Vec<u64> = state
        .nodes
        .iter()
        .filter_map(|n| std::fs::metadata(&n.mnt).ok().map(|m| m.ino()))
        .collect();
    let found = processes_in("mnt", &inodes);
    stop(&found, || processes_in("mnt", &inodes))
}

/// host-local's lease files under a node's CNI state: one file per address held.
fn leases(cni_state: &Path, node: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(networks) = std::fs::read_dir(cni_state.join("networks")) else {
        return found;
    };
    for net in networks.flatten() {
        let Ok(files) = std::fs::read_dir(net.path()) else {
            continue;
        };
        for f in files.flatten() {
            let file = f.file_name().to_string_lossy().into_owned();
            if file != "lock" && !file.starts_with("last_reserved_ip") {
                found.push(format!(
                    "host-local lease {file} in network {} on node {node}",
                    net.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// Removes every recorded resource in reverse order, then the lab's directory, never through a mount point. Network
/// namespaces are removed from this process, not by an `ip` each.
fn remove(state: &State, report: &mut Report) {
    for r in state.created.iter().rev() {
        match r {
            Resource::Netns { name } => {
                if let Err(e) = sys::remove_netns(name) {
                    report
                        .leftovers
                        .push(format!("network namespace {name}: {e}"));
                }
            }
            Resource::Mount { path } => {
                if !sys::mounts_below(path).is_empty() && sys::run("umount", [path]).is_err() {
                    let _ = sys::run("umount", [Path::new("-l"), path.as_path()]);
                }
            }
            // Killed with the lab's processes, before DEL.
            Resource::Process { .. } => {}
            Resource::Dir { path } => {
                if path == &state.dir {
                    remove_tree(path, report);
                } else if path.exists() && std::fs::remove_dir(path).is_err() {
                    // Not empty: something else uses it now; leave it, it was only a directory.
                }
            }
        }
    }
    if state.dir.exists() {
        remove_tree(&state.dir, report);
    }
}

fn remove_tree(dir: &PathBuf, report: &mut Report) {
    let mounted = sys::mounts_below(dir);
    if !mounted.is_empty() {
        report.leftovers.push(format!(
            "mounts under {}: {}",
            dir.display(),
            mounted.join(", ")
        ));
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        report
            .leftovers
            .push(format!("directory {}: {e}", dir.display()));
    }
}
