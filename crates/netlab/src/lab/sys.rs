//! Running the system tools the lab drives: `ip`, `nsenter`, `unshare`, `mount`.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::lab::Error;

/// Runs a program and returns its stdout; a non-zero exit is an error carrying the command and its stderr.
pub fn run<I, S>(program: &str, args: I) -> Result<String, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let shown = || {
        let mut s = program.to_owned();
        for a in &args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    };
    let out = Command::new(program)
        .args(&args)
        .output()
        .map_err(|e| Error::Command {
            command: shown(),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: shown(),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<String, Error> {
    run("ip", args)
}

/// `ip -n NS ARGS`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String, Error> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", all)
}

/// Runs `ip [-n NS] -batch -` with one command a line: one process for many changes.
pub fn ip_batch(ns: Option<&str>, lines: &[String]) -> Result<(), Error> {
    batch("ip", ns, lines)
}

/// Runs `bridge [-n NS] -batch -`.
pub fn bridge_batch(ns: Option<&str>, lines: &[String]) -> Result<(), Error> {
    batch("bridge", ns, lines)
}

fn batch(program: &str, ns: Option<&str>, lines: &[String]) -> Result<(), Error> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    let shown = || format!("{program} {} <<< {}", args.join(" "), lines.join("; "));
    let failed = |reason: String| Error::Command {
        command: shown(),
        reason,
    };
    let mut child = Command::new(program)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(lines.join("\n").as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Sets sysctls inside each of some network namespaces, and brings their loopback up where asked: one process
/// from here for all of them. Keys are dotted and name no interface (`net.ipv4.ip_forward`).
pub fn prepare_netns(
    namespaces: &[String],
    settings: &[(&str, &str)],
    loopback: bool,
) -> Result<(), Error> {
    if namespaces.is_empty() {
        return Ok(());
    }
    let mut inner: Vec<String> = settings
        .iter()
        .map(|(k, v)| format!("echo {v} > /proc/sys/{}", k.replace('.', "/")))
        .collect();
    if loopback {
        inner.insert(0, "ip link set lo up".into());
    }
    let script = format!(
        "for ns do nsenter --net=/var/run/netns/\"$ns\" -- sh -c '{}' || exit 1; done",
        inner.join(" && ")
    );
    let mut args = vec!["-c".to_owned(), script, "sh".to_owned()];
    args.extend(namespaces.iter().cloned());
    run("sh", args).map(|_| ())
}

/// The network namespaces that exist.
pub fn netns_list() -> Vec<String> {
    run("ip", ["netns", "list"])
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().any(|l| {
            l.strip_prefix("Uid:")
                .and_then(|u| u.split_whitespace().nth(1))
                == Some("0")
        })
    })
}

/// Whether the kernel can make ipvlan links, probed in a throw-away namespace.
pub fn kernel_has_ipvlan(probe_ns: &str) -> bool {
    let made = ip(&["netns", "add", probe_ns]).is_ok();
    let ok = made
        && ip_in(
            probe_ns,
            &[
                "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
            ],
        )
        .is_ok()
        && ip_in(
            probe_ns,
            &[
                "link", "add", "probe2", "link", "probe0", "type", "ipvlan", "mode", "l2",
            ],
        )
        .is_ok();
    if made {
        let _ = ip(&["netns", "del", probe_ns]);
    }
    ok
}

/// Paths of mount points below `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut found: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.len()));
    found.dedup();
    found
}
