//! What an operator gets when running `index2ip` by hand: help, version, and `plan`, which shows the addresses
//! each index gives on a node.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::plugin::{read_keys, DEFAULT_CMDLINE};
use crate::{allocate, capacity, Index, NodeKeys};

const HELP: &str = "\
index2ip: CNI IPAM plugin that gives a pod a public address from its node's block and an index

As a CNI plugin (how container runtimes run it; CNI_COMMAND set, no arguments):
  network config:  \"ipam\": {\"type\": \"index2ip\", \"index\": 2}
                   optional \"cmdline\": \"/etc/index2ip/cmdline\" (default /proc/cmdline)
  node keys:       epoxy.ipv4=ADDR/PLEN,GATEWAY,DNS1,DNS2 (required)
                   epoxy.ipv6=ADDR/PLEN,GATEWAY,DNS1,DNS2 (optional; empty means none)
  index:           ipam.index, else the number after \"index\" in the pod name (K8S_POD_NAME in CNI_ARGS)
  IPv4 adds the index to the node address's last octet; IPv6 reads the last group's hex digits as
  decimal, adds the index and writes the sum back as hex digits (::112 + 5 = ::117).
  Verbs: ADD, DEL, CHECK, GC, STATUS, VERSION; spec versions 0.1.0 to 1.1.0.

By hand:
  index2ip plan [--cmdline FILE] [--index N]
      show the node's keys, how many indices fit, and the addresses of each index (or of index N)
  index2ip --help | --version

Example:
  echo '{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"ipvlan\",\"ipam\":{\"type\":\"index2ip\",\"index\":5}}' |
    CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/run/netns/pod CNI_IFNAME=net1 CNI_PATH=/opt/cni/bin index2ip
";

/// Runs the operator command line; `args` excludes the program name.
pub fn run(args: &[OsString]) -> ExitCode {
    let args: Vec<&str> = match args.iter().map(|a| a.to_str()).collect::<Option<_>>() {
        Some(a) => a,
        None => return usage("arguments must be UTF-8"),
    };
    match args.as_slice() {
        ["-h" | "--help" | "help"] => print(HELP),
        ["-V" | "--version"] => print(&format!(
            "index2ip {} (CNI spec 0.1.0 to 1.1.0)\n",
            env!("CARGO_PKG_VERSION")
        )),
        ["plan", rest @ ..] => match plan_args(rest) {
            Ok((path, index)) => plan(path, index),
            Err(msg) => usage(&msg),
        },
        [first, ..] => usage(&format!("unknown command {first:?}")),
        [] => usage("no command"),
    }
}

fn plan_args(mut rest: &[&str]) -> Result<(PathBuf, Option<Index>), String> {
    let mut path = PathBuf::from(DEFAULT_CMDLINE);
    let mut index = None;
    while let [flag, tail @ ..] = rest {
        let (value, tail) = match tail {
            [value, tail @ ..] => (*value, tail),
            [] => return Err(format!("{flag} needs a value")),
        };
        match *flag {
            "--cmdline" => path = PathBuf::from(value),
            "--index" => {
                let n = value.parse().ok().and_then(Index::new);
                index =
                    Some(n.ok_or_else(|| {
                        format!("--index takes a positive integer, got {value:?}")
                    })?);
            }
            other => return Err(format!("unknown option {other:?}")),
        }
        rest = tail;
    }
    Ok((path, index))
}

fn plan(path: PathBuf, index: Option<Index>) -> ExitCode {
    let keys = match read_keys(&path) {
        Ok(k) => k,
        Err(e) => return fail(&e.to_string()),
    };
    let room = capacity(&keys);
    let mut out = describe(&path, &keys, room);
    let indices: Vec<Index> = match index {
        Some(i) => vec![i],
        None => (1..=u64::from(room)).filter_map(Index::new).collect(),
    };
    let mut failed = false;
    for i in indices {
        // Writing to a String cannot fail.
        let _ = match allocate(&keys, i) {
            Ok(a) => {
                let v6 = a.v6.map(|n| n.to_string()).unwrap_or_default();
                writeln!(out, "{i:>5}  {:<18}  {v6}", a.v4.to_string())
            }
            Err(e) => {
                failed = true;
                writeln!(out, "{i:>5}  refused: {e}")
            }
        };
    }
    match (print(&out), failed) {
        (code, false) => code,
        (_, true) => ExitCode::FAILURE,
    }
}

fn describe(path: &std::path::Path, keys: &NodeKeys, room: u32) -> String {
    fn line<N: std::fmt::Display, A: std::fmt::Display>(
        family: &str,
        k: &crate::cmdline::Family<N, A>,
    ) -> String {
        let dns: Vec<String> = k.dns.iter().map(ToString::to_string).collect();
        format!(
            "  {family}  {}  gateway {}  dns {}\n",
            k.node,
            k.gateway,
            dns.join(", ")
        )
    }
    let mut s = format!("node keys from {}\n", path.display());
    s += &line("IPv4", &keys.v4);
    s += &keys
        .v6
        .as_ref()
        .map_or_else(|| "  IPv6  none\n".to_owned(), |k| line("IPv6", k));
    s += &match room {
        0 => "no index fits this node\n".to_owned(),
        n => format!("indices 1 to {n} fit\n"),
    };
    s.push_str("\nindex  IPv4                IPv6\n");
    s
}

fn print(text: &str) -> ExitCode {
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn fail(msg: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "index2ip: {msg}");
    ExitCode::FAILURE
}

fn usage(msg: &str) -> ExitCode {
    let _ = writeln!(
        std::io::stderr(),
        "index2ip: {msg}\nrun `index2ip --help` for usage"
    );
    ExitCode::from(2)
}
