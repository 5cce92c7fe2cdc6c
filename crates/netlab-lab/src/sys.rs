//! The lab's system work: network and mount namespaces made and entered from threads of this process, the ipvlan
//! probe, and the few tools still run as processes (`ip` for tests and `netns list`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{open, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{
    mount_bind, mount_bind_recursive, mount_change, unmount, MountPropagationFlags, UnmountFlags,
};
use rustix::thread::{gettid, UnshareFlags};

use crate::netlink::{Netlink, LOOPBACK};
use crate::Error;

/// The environment variable that stretches the lab's waits: `run --vm` sets it inside its VM, where under
/// software emulation every program runs about ten times slower than here.
pub const TIME_SCALE: &str = "NETLAB_TIME_SCALE";

/// `wait`, stretched [`TIME_SCALE`] times (a whole number from 1 to 100; 1 when unset or anything else). Only
/// deadlines are stretched: a lab that is on time is not slowed.
pub fn patience(wait: std::time::Duration) -> std::time::Duration {
    static SCALE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let scale = *SCALE.get_or_init(|| {
        std::env::var(TIME_SCALE)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|k| (1..=100).contains(k))
            .unwrap_or(1)
    });
    wait * scale
}

/// Replaces `path` whole: `bytes` go to `NAME.tmp` beside it, renamed over it, so a reader (or a crash) sees the
/// old file or the new one, never half of one. The lab's files are not flushed: a lab does not outlive a reboot.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

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
    stdout_of(shown(), &out)
}

/// A finished command's stdout; its stderr in the error when it failed.
pub fn stdout_of(command: String, out: &std::process::Output) -> Result<String, Error> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command,
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

/// `ip netns add` for each name, then its sysctls (dotted keys naming no interface, `net.ipv4.ip_forward`) and
/// `lo` up, from one thread of this process: it makes each namespace by leaving for a new one (unshare(2)) and
/// binding it onto its file under [`NETNS_DIR`], as `ip` does, then writes the namespace's own `/proc/sys/net`
/// files and brings `lo` up over rtnetlink while it is in it. The thread ends with the loop, so nothing else ever
/// runs in a pod's namespace by accident. The file is made first, so a name already taken stops there with nothing
/// made for it ([`Error::NetnsTaken`]).
pub fn add_netns(namespaces: &[String], settings: &[(&str, &str)]) -> Result<(), Error> {
    make_namespaces(namespaces, settings, false).map(drop)
}

/// [`add_netns`], keeping the rtnetlink socket opened in each namespace, in order, for more changes there.
pub fn add_netns_for_links(
    namespaces: &[String],
    settings: &[(&str, &str)],
) -> Result<Vec<Netlink>, Error> {
    make_namespaces(namespaces, settings, true)
}

fn make_namespaces(
    namespaces: &[String],
    settings: &[(&str, &str)],
    keep: bool,
) -> Result<Vec<Netlink>, Error> {
    on_a_thread_of_its_own("setting up network namespaces", || {
        netns_dir_ready()?;
        let mut kept = Vec::new();
        for ns in namespaces {
            new_netns(&netns_path(ns))?;
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
            let mut netlink = Netlink::here(ns)?;
            netlink.set_up(LOOPBACK, None, None)?;
            if keep {
                kept.push(netlink);
            }
        }
        Ok(kept)
    })
}

/// Runs `work` on a thread of its own and waits for it: the thread may change its namespaces, which the caller's
/// never sees. `what` names the work in the errors of a thread that could not start or panicked.
pub(crate) fn on_a_thread_of_its_own<T: Send>(
    what: &str,
    work: impl FnOnce() -> Result<T, Error> + Send,
) -> Result<T, Error> {
    std::thread::scope(
        |s| match std::thread::Builder::new().spawn_scoped(s, work) {
            Ok(worker) => worker
                .join()
                .unwrap_or_else(|_| Err(Error::ThreadPanicked { what: what.into() })),
            Err(source) => Err(Error::ThreadStart {
                what: what.into(),
                source,
            }),
        },
    )
}

/// Moves the calling thread into network namespace `name`; threads and processes it starts afterwards are born
/// there. For a process that works from one namespace (the lab's kubelet, which reaches the API server only from
/// the control plane's).
pub fn enter_netns(name: &str) -> Result<(), Error> {
    let path = netns_path(name);
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&file),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| Error::Command {
        command: format!("setns {}", path.display()),
        reason: std::io::Error::from(e).to_string(),
    })
}

/// The file a named network namespace is bound to.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// [`NETNS_DIR`] as `ip netns add` leaves it: a shared mount point of its own, so that a namespace bound there
/// shows in mount namespaces made afterwards (the nodes').
fn netns_dir_ready() -> Result<(), Error> {
    let failed = |what: &str, e: Errno| Error::Command {
        command: format!("{what} {NETNS_DIR}"),
        reason: std::io::Error::from(e).to_string(),
    };
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| Error::io(Path::new(NETNS_DIR), e))?;
    let shared = MountPropagationFlags::SHARED | MountPropagationFlags::REC;
    match mount_change(NETNS_DIR, shared) {
        Ok(()) => Ok(()),
        // Not a mount point yet: made one, as `ip` does.
        Err(Errno::INVAL) => {
            mount_bind_recursive(NETNS_DIR, NETNS_DIR).map_err(|e| failed("mount --rbind", e))?;
            mount_change(NETNS_DIR, shared).map_err(|e| failed("mount --make-rshared", e))
        }
        Err(e) => Err(failed("mount --make-rshared", e)),
    }
}

/// Moves the calling thread into a new network namespace and binds it onto `path`, made here (it must not exist).
fn new_netns(path: &Path) -> Result<(), Error> {
    let failed = |what: String, e: std::io::Error| Error::Command {
        command: what,
        reason: e.to_string(),
    };
    let add = || format!("ip netns add {}", path.display());
    match open(
        path,
        OFlags::RDONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(file) => drop(file),
        Err(Errno::EXIST) => {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            return Err(Error::NetnsTaken(name.unwrap_or_default()));
        }
        Err(e) => return Err(failed(add(), e.into())),
    }
    let made = crate::exec::unshare_thread(UnshareFlags::NEWNET)
        .and_then(|()| mount_bind("/proc/thread-self/ns/net", path).map_err(Into::into));
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(failed(add(), e));
    }
    Ok(())
}

/// `mount --bind DIR DIR` then `mount --make-private DIR`: a mount point of its own for what is mounted below it,
/// which no other mount namespace sees. From this process: two system calls where two `mount` processes ran.
pub fn private_mount(dir: &Path) -> Result<(), Error> {
    let failed = |what: &str, e: Errno| Error::Command {
        command: format!("mount {what} {}", dir.display()),
        reason: std::io::Error::from(e).to_string(),
    };
    mount_bind(dir, dir).map_err(|e| failed("--bind", e))?;
    mount_change(dir, MountPropagationFlags::PRIVATE).map_err(|e| failed("--make-private", e))
}

/// What `unshare --mount=FILE --propagation slave mount --all --fstab TABLE` does for a table of bind mounts, from
/// this process: a thread of its own leaves for a new mount namespace, makes every mount there a slave of the one
/// it came from (so that what is mounted afterwards, such as pods' namespaces under /run/netns, shows through) and
/// makes the bind mounts, each `(source, target)`; the calling thread then binds the new namespace onto `file`,
/// which keeps it after the thread has ended. `file` must be on a mount that is not shared ([`private_mount`]).
pub fn mount_namespace(file: &Path, binds: &[(PathBuf, &str)]) -> Result<(), Error> {
    let failed = |what: String, e: std::io::Error| Error::Command {
        command: what,
        reason: e.to_string(),
    };
    std::thread::scope(|s| {
        let (made, wait_made) = std::sync::mpsc::channel();
        let (bound, wait_bound) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::Builder::new()
            .spawn_scoped(s, move || -> Result<(), Error> {
                let setup = || -> Result<(), Error> {
                    crate::exec::unshare_thread(UnshareFlags::NEWNS)
                        .map_err(|e| failed("unshare --mount".into(), e))?;
                    mount_change(
                        "/",
                        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
                    )
                    .map_err(|e| failed("mount --make-rslave /".into(), e.into()))?;
                    for (from, to) in binds {
                        mount_bind(from, *to).map_err(|e| {
                            failed(format!("mount --bind {} {to}", from.display()), e.into())
                        })?;
                    }
                    Ok(())
                };
                let result = setup();
                // Told either way; on success it waits, holding the namespace, until it is bound.
                let ok = result.is_ok();
                let _ = made.send(ok.then(gettid));
                if ok {
                    let _ = wait_bound.recv();
                }
                result
            })
            .map_err(|source| Error::ThreadStart {
                what: "a mount namespace".into(),
                source,
            })?;
        let binding = match wait_made.recv() {
            Ok(Some(tid)) => {
                let ns = format!("/proc/self/task/{}/ns/mnt", tid.as_raw_nonzero());
                mount_bind(ns.as_str(), file)
                    .map_err(|e| failed(format!("mount --bind {ns} {}", file.display()), e.into()))
            }
            _ => Ok(()),
        };
        drop(bound);
        let setup = worker.join().unwrap_or_else(|_| {
            Err(Error::ThreadPanicked {
                what: "making a mount namespace".into(),
            })
        });
        setup.and(binding)
    })
}

/// Removes a network namespace `ip netns add` made: every mount on its file (a killed `up` can leave an `ip`
/// running that mounts it a second time), then the file. What `ip netns del` does, but it unmounts only once and
/// then fails with EBUSY on a file still mounted. A namespace already gone is not an error.
pub fn remove_netns(name: &str) -> Result<(), Error> {
    let path = netns_path(name);
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

/// Whether the kernel can make ipvlan links, probed from a thread in a network namespace of its own that nothing
/// names: a veth pair and an ipvlan link on it. The namespace goes with the thread and its socket.
pub fn kernel_has_ipvlan() -> bool {
    on_a_thread_of_its_own("the ipvlan probe", || {
        crate::exec::unshare_thread(UnshareFlags::NEWNET).map_err(|e| Error::Command {
            command: "unshare --net".into(),
            reason: e.to_string(),
        })?;
        let mut links = Netlink::here("(the ipvlan probe's)")?;
        links.add_veth("probe0", "probe1", None)?;
        let lower = links.index("probe0")?;
        links.add_ipvlan("probe2", lower)
    })
    .is_ok()
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
