//! Running the system tools the lab drives: `ip`, `nsenter`, `unshare`, `mount`.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};

use rustix::io::Errno;
use rustix::mount::{unmount, UnmountFlags};
use rustix::net::{
    recv, send, socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType,
};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

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

/// Sets sysctls inside each of some network namespaces, and brings their loopback up where asked, from this
/// process. A thread of its own enters each namespace in turn (setns(2) moves only the calling thread), writes the
/// namespace's own `/proc/sys/net` files and asks the kernel over rtnetlink to bring `lo` up; it ends with the loop,
/// so nothing else ever runs in a pod's namespace by accident. Keys are dotted and name no interface
/// (`net.ipv4.ip_forward`). Three processes a namespace (nsenter, sh, ip) cost 4 ms; this costs tens of µs.
pub fn prepare_netns(
    namespaces: &[String],
    settings: &[(&str, &str)],
    loopback: bool,
) -> Result<(), Error> {
    let work = || -> Result<(), Error> {
        for ns in namespaces {
            let path = Path::new(NETNS_DIR).join(ns);
            let fd = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network)).map_err(
                |e| Error::Command {
                    command: format!("setns {}", path.display()),
                    reason: e.to_string(),
                },
            )?;
            for (key, value) in settings {
                let file = Path::new("/proc/sys").join(key.replace('.', "/"));
                std::fs::write(&file, value).map_err(|e| Error::Command {
                    command: format!(
                        "echo {value} > {} in network namespace {ns}",
                        file.display()
                    ),
                    reason: e.to_string(),
                })?;
            }
            if loopback {
                loopback_up().map_err(|e| Error::Command {
                    command: format!("ip -n {ns} link set lo up"),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(())
    };
    std::thread::scope(
        |s| match std::thread::Builder::new().spawn_scoped(s, work) {
            Ok(worker) => worker.join().unwrap_or_else(|_| {
                Err(Error::Lab(
                    "setting up the pods' network namespaces failed unexpectedly".into(),
                ))
            }),
            Err(e) => Err(Error::Lab(format!(
                "cannot start a thread to set up network namespaces: {e}"
            ))),
        },
    )
}

/// Removes a network namespace `ip netns add` made: every mount on its file (a killed `up` can leave an `ip`
/// running that mounts it a second time), then the file. What `ip netns del` does, but it unmounts only once and
/// then fails with EBUSY on a file still mounted. A namespace already gone is not an error.
pub fn remove_netns(name: &str) -> Result<(), Error> {
    let path = Path::new(NETNS_DIR).join(name);
    let failed = |e: std::io::Error| Error::Command {
        command: format!("ip netns del {name}"),
        reason: e.to_string(),
    };
    // Bounded: each round removes one mount; more than a few stacked on one file would be someone else's doing.
    for _ in 0..16 {
        match unmount(&path, UnmountFlags::DETACH) {
            Ok(()) => {}
            // Not (or no longer) a mount point, or no file at all.
            Err(Errno::INVAL | Errno::NOENT) => break,
            Err(e) => return Err(failed(e.into())),
        }
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(e)),
        _ => Ok(()),
    }
}

/// Where `ip netns` keeps its namespaces (iproute2's compiled-in path).
pub const NETNS_DIR: &str = "/var/run/netns";

/// Brings up the loopback interface of the calling thread's network namespace: one rtnetlink request
/// (RTM_NEWLINK on interface 1, which is `lo` in every namespace, with IFF_UP) and its acknowledgement.
fn loopback_up() -> std::io::Result<()> {
    const RTM_NEWLINK: u16 = 16;
    const NLMSG_ERROR: u16 = 2;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const LOOPBACK_IFINDEX: i32 = 1;
    const IFF_UP: u32 = 1;
    let socket = socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None, // NETLINK_ROUTE
    )?;
    // struct nlmsghdr, then struct ifinfomsg: 16 + 16 bytes, native byte order.
    let mut request = Vec::with_capacity(32);
    request.extend(32u32.to_ne_bytes());
    request.extend(RTM_NEWLINK.to_ne_bytes());
    request.extend((NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    request.extend(1u32.to_ne_bytes()); // sequence number
    request.extend(0u32.to_ne_bytes()); // port id: the kernel
    request.extend([0u8, 0u8]); // AF_UNSPEC, padding
    request.extend(0u16.to_ne_bytes()); // device type
    request.extend(LOOPBACK_IFINDEX.to_ne_bytes());
    request.extend(IFF_UP.to_ne_bytes()); // flags
    request.extend(IFF_UP.to_ne_bytes()); // which flags change
    send(&socket, &request, SendFlags::empty())?;
    let mut reply = [0u8; 512];
    let (len, _) = recv(&socket, &mut reply[..], RecvFlags::empty())?;
    // The acknowledgement: a header of type NLMSG_ERROR followed by the error number, 0 for success.
    let field = |at: usize| reply.get(at..at + 4).filter(|_| at + 4 <= len);
    let kind = reply
        .get(4..6)
        .filter(|_| len >= 6)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let errno = field(16).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, errno) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(e)) => Err(std::io::Error::from_raw_os_error(-e)),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected rtnetlink reply of {len} bytes"),
        )),
    }
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
        let _ = remove_netns(probe_ns);
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
