//! The lab's verbs, one library call each for the `netlab` commands: `up` from a topology and a cluster already
//! read, then `status`, `check`, `exec`, `down` on the lab of a name, and `run`, all four in one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use netlab_model::cluster::Cluster;
use netlab_model::topology::Topology;

use crate::build::{self, UpOptions};
use crate::state::State;
use crate::{check, status, teardown, Error};

/// Where Debian's `containernetworking-plugins` installs the reference plugins.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// What `up` and `run` take.
#[derive(Debug, Clone)]
pub struct LabArgs {
    /// The lab's name.
    pub name: String,
    /// A topology file; the built-in default otherwise.
    pub topology: Option<PathBuf>,
    /// The manifests' directory (or file).
    pub manifests: PathBuf,
    /// The index2ip binary; found next to netlab, on PATH or in /opt/cni/bin otherwise.
    pub index2ip: Option<PathBuf>,
    /// Debian's reference plugins; [`REFERENCE_DIR`] when not given.
    pub reference_dir: Option<PathBuf>,
    /// Record every plugin call through cni-shim (found as index2ip is, or given).
    pub trace: Option<Option<PathBuf>>,
    /// Run on the real control plane, with the upstream peers of this directory (`scripts/upstream.sh
    /// --bin-dir`); `None`: the emulation.
    pub control_plane: Option<PathBuf>,
    /// With `control_plane`: the control plane runs outside (this is a VM's lab), reached with the credentials of
    /// this directory ([`crate::real::RealOptions::remote`]).
    pub remote_control_plane: Option<PathBuf>,
}

/// Finds one of the project's binaries: as given, next to this executable, on PATH, or in /opt/cni/bin.
pub fn find_binary(name: &str, given: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(Error::NoSuchBinary {
                name: name.to_owned(),
                path: p.to_owned(),
            })
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)));
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    beside
        .into_iter()
        .chain(on_path)
        .chain([Path::new("/opt/cni/bin").join(name)])
        .find(|p| p.is_file())
        .ok_or_else(|| Error::BinaryNotFound(name.to_owned()))
}

/// `up`: the lab of `args.name` from `topology` and `cluster` (read from `args.topology` and `args.manifests`).
pub fn up(
    args: &LabArgs,
    topology: &Topology,
    cluster: &Cluster,
    out: &mut dyn Write,
) -> Result<State, Error> {
    let opts = UpOptions {
        name: args.name.clone(),
        manifests: args.manifests.display().to_string(),
        index2ip: find_binary("index2ip", args.index2ip.as_deref())?,
        reference_dir: args
            .reference_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(REFERENCE_DIR)),
        shim: match &args.trace {
            None => None,
            Some(given) => Some(find_binary("cni-shim", given.as_deref())?),
        },
        control_plane: match &args.control_plane {
            None => None,
            Some(peers) => Some(crate::real::RealOptions {
                peers: crate::real::peers_ready(peers, args.remote_control_plane.is_none())?,
                shim: find_binary("cni-shim", None)?,
                remote: args.remote_control_plane.clone(),
            }),
        },
    };
    build::up(&opts, topology, cluster, out)
}

fn loaded(name: &str) -> Result<State, Error> {
    State::load(name)?.ok_or_else(|| Error::NotUp(name.to_owned()))
}

/// `status`, with each pod's network-status annotation when asked.
pub fn status(name: &str, network_status: bool, out: &mut dyn Write) -> Result<(), Error> {
    let state = loaded(name)?;
    status::print(&state, out);
    if network_status {
        status::print_network_status(&state, out);
    }
    Ok(())
}

/// `kubeconfig`: the path of an administrator's kubeconfig for lab `name`'s API server, as this machine reaches
/// it (a lab on the real control plane only).
pub fn kubeconfig(name: &str) -> Result<PathBuf, Error> {
    let state = loaded(name)?;
    let path = state.dir.join(crate::forward::HOST_KUBECONFIG);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::NoControlPlane(name.to_owned()))
    }
}

/// `check`: passes when no check failed.
pub fn check(name: &str, out: &mut dyn Write) -> Result<bool, Error> {
    let exe = std::env::current_exe().map_err(Error::OwnExecutable)?;
    Ok(check::check(&loaded(name)?, &exe, out)?.failures() == 0)
}

/// `exec [--node] TARGET -- CMD`: runs CMD in a pod's network namespace, or in a node's network and mount
/// namespaces, and returns its exit status.
pub fn exec(name: &str, node: bool, target: &str, cmd: &[String]) -> Result<ExitCode, Error> {
    let state = loaded(name)?;
    let mut namespaces = Vec::new();
    if node {
        let Some(n) = state.node(target) else {
            return Err(Error::NoTarget {
                kind: "node",
                target: target.to_owned(),
                lab: name.to_owned(),
                known: state.nodes.iter().map(|n| n.name.clone()).collect(),
            });
        };
        namespaces.push(format!("--mount={}", n.mnt.display()));
        namespaces.push(format!(
            "--net={}",
            crate::sys::netns_path(&n.netns).display()
        ));
    } else {
        let Some(p) = state.pod(target) else {
            return Err(Error::NoTarget {
                kind: "pod",
                target: target.to_owned(),
                lab: name.to_owned(),
                known: state.pods.iter().map(|p| p.name.clone()).collect(),
            });
        };
        namespaces.push(format!(
            "--net={}",
            crate::sys::netns_path(&p.netns).display()
        ));
    }
    let Some((program, rest)) = cmd.split_first() else {
        return Err(Error::NoCommand("exec"));
    };
    let status = Command::new("nsenter")
        .args(&namespaces)
        .arg("--")
        .arg(program)
        .args(rest)
        .status()
        .map_err(|source| Error::Run {
            program: program.clone(),
            source,
        })?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}

/// With `--trace`: the call tree of the first pod with a public interface, as cni-shim records it.
fn trace(name: &str, args: &LabArgs, out: &mut dyn Write) -> Result<(), Error> {
    let state = loaded(name)?;
    let Some(pod) = state.pods.iter().find(|p| {
        p.attachments
            .iter()
            .any(|a| a.index.is_some() && a.result.is_some())
    }) else {
        return Ok(());
    };
    let shim = find_binary("cni-shim", args.trace.clone().flatten().as_deref())?;
    let id = crate::runtime::container_id(pod);
    let tree = Command::new(&shim)
        .args(["tree", &id, "--shim-dir"])
        .arg(state.dir.join("shim"))
        .output()
        .map_err(|source| Error::Run {
            program: shim.display().to_string(),
            source,
        })?;
    let _ = writeln!(
        out,
        "==> the call tree of pod {} (cni-shim tree {id}):",
        pod.name
    );
    let _ = out.write_all(&tree.stdout);
    Ok(())
}

/// `down`: clean when nothing leaked.
pub fn down(name: &str, out: &mut dyn Write) -> Result<bool, Error> {
    Ok(teardown::down(name, out)?.clean())
}

/// `run`: up, status, check and down in one; passes when the check passed and nothing leaked. The lab comes down
/// also when `up` or `check` fails.
pub fn run(
    args: &LabArgs,
    topology: &Topology,
    cluster: &Cluster,
    out: &mut dyn Write,
) -> Result<bool, Error> {
    let outcome = up(args, topology, cluster, out).and_then(|_| {
        status(&args.name, false, out)?;
        let passed = check(&args.name, out)?;
        if args.trace.is_some() {
            trace(&args.name, args, out)?;
        }
        Ok(passed)
    });
    let clean = down(&args.name, out)?;
    Ok(outcome? && clean)
}
