//! The lab's verbs as the `netlab` command runs them: inputs located and read, one library call each.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::lab::build::{self, UpOptions};
use crate::lab::state::State;
use crate::lab::topology::Topology;
use crate::lab::{check, manifests, status, teardown, Error};

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
    /// Debian's reference plugins.
    pub reference_dir: PathBuf,
}

/// Finds index2ip: as given, next to this executable, on PATH, or in /opt/cni/bin.
pub fn find_index2ip(given: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(Error::Lab(format!(
                "--index2ip {}: no such file",
                p.display()
            )))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("index2ip")));
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("index2ip"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    beside
        .into_iter()
        .chain(on_path)
        .chain([PathBuf::from("/opt/cni/bin/index2ip")])
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Lab("index2ip not found next to netlab, on PATH or in /opt/cni/bin: build it (cargo build -p index2ip) or pass --index2ip PATH".into())
        })
}

/// `up`.
pub fn up(args: &LabArgs, out: &mut dyn Write) -> Result<State, Error> {
    let topology = match &args.topology {
        None => Topology::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            Topology::from_text(&p.display().to_string(), &text)?
        }
    };
    let (sources, _) = crate::input::load(
        std::slice::from_ref(&args.manifests),
        crate::input::Render::Direct,
    )
    .map_err(|e| Error::Lab(e.to_string()))?;
    let (objects, findings) = crate::manifest::parse(&sources);
    if let Some(f) = findings.first() {
        return Err(Error::Lab(format!(
            "the manifests do not parse: {f:?} (run `netlab lint` for every finding)"
        )));
    }
    let cluster = manifests::cluster(&objects)?;
    let opts = UpOptions {
        name: args.name.clone(),
        manifests: args.manifests.display().to_string(),
        index2ip: find_index2ip(args.index2ip.as_deref())?,
        reference_dir: args.reference_dir.clone(),
        overrides: Default::default(),
    };
    build::up(&opts, &topology, &cluster, out)
}

fn loaded(name: &str) -> Result<State, Error> {
    State::load(name)?
        .ok_or_else(|| Error::Lab(format!("no lab {name} is up: run `netlab up` first")))
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

/// `check`: passes when no check failed.
pub fn check(name: &str, out: &mut dyn Write) -> Result<bool, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Lab(format!("cannot find netlab's own executable: {e}")))?;
    Ok(check::check(&loaded(name)?, &exe, out)?.failures() == 0)
}

/// `exec POD -- CMD`: runs CMD in the pod's network namespace and returns its exit status.
pub fn exec(name: &str, pod: &str, cmd: &[String]) -> Result<ExitCode, Error> {
    let state = loaded(name)?;
    let Some(p) = state.pod(pod) else {
        let names: Vec<&str> = state.pods.iter().map(|p| p.name.as_str()).collect();
        return Err(Error::Lab(format!(
            "no pod {pod} in lab {name}; pods: {}",
            names.join(", ")
        )));
    };
    let Some((program, rest)) = cmd.split_first() else {
        return Err(Error::Lab("exec needs a command after --".into()));
    };
    let status = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", p.netns))
        .arg("--")
        .arg(program)
        .args(rest)
        .status()
        .map_err(|e| Error::Lab(format!("cannot run {program}: {e}")))?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}

/// `down`: clean when nothing leaked.
pub fn down(name: &str, out: &mut dyn Write) -> Result<bool, Error> {
    Ok(teardown::down(name, out)?.clean())
}

/// `run`: up, status, check and down in one; passes when the check passed and nothing leaked. The lab comes down
/// also when `up` or `check` fails.
pub fn run(args: &LabArgs, out: &mut dyn Write) -> Result<bool, Error> {
    let outcome = up(args, out).and_then(|_| {
        status(&args.name, false, out)?;
        check(&args.name, out)
    });
    let clean = down(&args.name, out)?;
    Ok(outcome? && clean)
}
