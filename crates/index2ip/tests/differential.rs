//! index2ip beside the original Go plugin it replaces (`github.com/m-lab/index2ip` v1.2.0), on a generated corpus.
//!
//! Both run with the same environment and the same stdin: ours reads the node's keys from the file `ipam.cmdline`
//! names, the original from `PROC_CMDLINE_FOR_TESTING` (it ignores the `cmdline` key). Each case must end the same
//! (exit status, and stdout compared as parsed JSON) or in a divergence named in the table "Differences from the
//! original Go plugin" in crates/index2ip/README.md, recognised by a rule below that looks at both outcomes. Anything
//! else fails the test with the case printed; so does a row of the table that no case shows.
//!
//! The Go module proxy refuses the original at every version, so `scripts/upstream.sh` cannot build it: the test runs
//! when `INDEX2IP_ORIGINAL` names a build of it, and says that it did not run otherwise.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::util::run_with;

/// Every version the corpus asks for: what the original answers (0.1.0 to 0.4.0 through its library) and beyond.
const VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// A site layout: the block's gateway and the machines' offsets in it, both families numbered alike.
struct Layout {
    /// The IPv4 block, e.g. `4.14.159.64/26`.
    block: &'static str,
    /// The IPv6 /64 the machines number the same way.
    block6: &'static str,
    /// Host offsets of the machines from the block's start.
    machines: &'static [u8],
}

const LAYOUTS: [Layout; 5] = [
    // A /24 with machines low, in the middle and near the top, where indices run past the last octet.
    Layout {
        block: "203.0.113.0/24",
        block6: "2001:db8:24::",
        machines: &[10, 100, 240],
    },
    // M-Lab's /26 site: mlab1 to mlab4 at (N-1)*13 + 9.
    Layout {
        block: "4.14.159.64/26",
        block6: "2001:1900:2100:2d::",
        machines: &[9, 22, 35, 48],
    },
    // The same layout at the top of the address space's last octet.
    Layout {
        block: "192.0.2.192/26",
        block6: "2001:db8:c0::",
        machines: &[9, 22, 35, 48],
    },
    // Single-machine sites: the machine at +3, room for 11 and 3 indices.
    Layout {
        block: "198.51.100.16/28",
        block6: "2001:db8:28::",
        machines: &[3],
    },
    Layout {
        block: "198.51.100.8/29",
        block6: "2001:db8:29::",
        machines: &[3],
    },
];

/// How a node declares IPv6.
#[derive(Clone, Copy)]
enum V6 {
    Absent,
    Dual,
    Empty,
}

/// One input to both plugins.
struct Case {
    label: String,
    command: String,
    /// The config's version, where the stdin is a config with one.
    version: Option<String>,
    stdin: String,
    cmdline: String,
    pod: String,
    /// Whether the config carries `ipam.index`.
    has_index: bool,
    /// Whether the config carries `prevResult`.
    has_prev: bool,
}

/// What one plugin did.
struct Run {
    ok: bool,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            ok: out.status.success(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn silent(&self) -> bool {
        self.stdout.iter().all(u8::is_ascii_whitespace)
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.stdout).ok()
    }

    /// The code of a CNI error reply: non-zero exit and `{"code":N,"msg":...}` on stdout.
    fn error_code(&self) -> Option<u64> {
        let reply = self.json().filter(|_| !self.ok)?;
        reply["msg"].as_str().filter(|m| !m.is_empty())?;
        reply["code"].as_u64()
    }

    /// A result (not an error, not VERSION's answer) on a successful exit.
    fn result(&self) -> Option<Value> {
        self.json()
            .filter(|v| self.ok && v.get("code").is_none() && v.get("supportedVersions").is_none())
    }

    fn describe(&self) -> String {
        format!(
            "exit {}, stdout {:?}, stderr {:?}",
            if self.ok { "0" } else { "non-zero" },
            String::from_utf8_lossy(&self.stdout),
            self.stderr.trim()
        )
    }
}

/// The kernel command line of a machine at `offset` in `layout`, in one of the forms /proc/cmdline takes.
fn cmdline(layout: &Layout, offset: u8, v6: V6, form: usize) -> String {
    let (base, plen) = layout.block.split_once('/').unwrap();
    let base: std::net::Ipv4Addr = base.parse().unwrap();
    let [a, b, c, d] = base.octets();
    let v4 = format!(
        "epoxy.ipv4={a}.{b}.{c}.{}/{plen},{a}.{b}.{c}.{},8.8.8.8,8.8.4.4",
        d + offset,
        d + 1
    );
    // The IPv6 group carries the IPv4 octet's decimal digits, as the site convention numbers machines.
    let six = format!(
        "epoxy.ipv6={}{}/64,{}1,2001:4860:4860::8888,2001:4860:4860::8844",
        layout.block6,
        d + offset,
        layout.block6
    );
    let keys = match v6 {
        V6::Absent => v4,
        V6::Dual => format!("{v4} {six}"),
        V6::Empty => format!("{v4} epoxy.ipv6="),
    };
    match form % 4 {
        // The usual: the keys among other parameters, the newline the kernel ends the file with.
        0 | 1 => format!("BOOT_IMAGE=/boot/vmlinuz ro {keys} console=ttyS0 net.ifnames=0\n"),
        // The keys last, right before that newline.
        2 => format!("BOOT_IMAGE=/boot/vmlinuz ro {keys}\n"),
        // No newline at all, as a test harness passes it.
        _ => keys,
    }
}

fn config(version: Option<&str>, ipam: Value) -> Value {
    let mut config = json!({
        "name": "index2ip-index-conf",
        "type": "ipvlan",
        "master": "eth0",
        "ipam": ipam,
    });
    if let Some(v) = version {
        config["cniVersion"] = json!(v);
    }
    config
}

/// The generated corpus. `original_add` runs the original's ADD, whose result a CHECK case carries as `prevResult`
/// the way a runtime cached it before the plugin was replaced.
fn corpus(original_add: &dyn Fn(&Case) -> Run) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut n = 0usize;
    let case = |label: String,
                command: &str,
                version: Option<&str>,
                stdin: String,
                cmdline: String,
                pod: &str| Case {
        label,
        command: command.to_owned(),
        version: version.map(str::to_owned),
        has_index: stdin.contains("\"index\":"),
        has_prev: stdin.contains("\"prevResult\""),
        stdin,
        cmdline,
        pod: pod.to_owned(),
    };
    let pod = "experiment-x7k2p";
    for layout in &LAYOUTS {
        for &offset in layout.machines {
            for (v6, v6_name) in [(V6::Absent, "v4"), (V6::Dual, "dual"), (V6::Empty, "v6=")] {
                let node = format!("{}+{offset}/{v6_name}", layout.block);
                // ADD over every index from 0 to 64, the version and command-line form turning with the case.
                for index in 0..=64u64 {
                    let version = VERSIONS[n % VERSIONS.len()];
                    let line = cmdline(layout, offset, v6, n / VERSIONS.len());
                    n += 1;
                    let stdin = config(Some(version), json!({"type": "index2ip", "index": index}));
                    cases.push(case(
                        format!("ADD {node} index {index} at {version}"),
                        "ADD",
                        Some(version),
                        stdin.to_string(),
                        line,
                        pod,
                    ));
                }
                // Every other verb at every version, and commands that are not verbs.
                for version in VERSIONS {
                    let line = cmdline(layout, offset, v6, n);
                    n += 1;
                    let add = config(Some(version), json!({"type": "index2ip", "index": 2}));
                    for command in ["DEL", "CHECK", "VERSION", "GC", "STATUS", "FOO", "add", ""] {
                        cases.push(case(
                            format!("{command:?} {node} index 2 at {version}"),
                            command,
                            Some(version),
                            add.to_string(),
                            line.clone(),
                            pod,
                        ));
                    }
                    // CHECK against the result the original gave for ADD.
                    let probe = case(
                        String::new(),
                        "ADD",
                        Some(version),
                        add.to_string(),
                        line.clone(),
                        pod,
                    );
                    if let Some(prev) = original_add(&probe).result() {
                        let mut check = add.clone();
                        check["prevResult"] = prev;
                        cases.push(case(
                            format!(
                                "CHECK {node} index 2 at {version} with the original's ADD result"
                            ),
                            "CHECK",
                            Some(version),
                            check.to_string(),
                            line.clone(),
                            pod,
                        ));
                    }
                    // No index in the config: only the pod's name has one.
                    let bare = config(Some(version), json!({"type": "index2ip"}));
                    cases.push(case(
                        format!("ADD {node} no ipam.index, pod ndt-index3 at {version}"),
                        "ADD",
                        Some(version),
                        bare.to_string(),
                        line,
                        "ndt-index3-x7k2p",
                    ));
                }
            }
        }
    }
    cases.extend(malformed(&case));
    cases
}

type MakeCase<'a> = dyn Fn(String, &str, Option<&str>, String, String, &str) -> Case + 'a;

/// Configs and command lines that are wrong in the ways a node or a runtime gets them wrong.
fn malformed(case: &MakeCase) -> Vec<Case> {
    let good = "ro epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 \
                epoxy.ipv6=2001:1900:2100:2d::112/64,2001:1900:2100:2d::1,2001:4860:4860::8888,2001:4860:4860::8844 \
                console=ttyS0\n";
    let index =
        |v: Value| config(Some("0.3.1"), json!({"type": "index2ip", "index": v})).to_string();
    let configs: Vec<(&str, String)> = vec![
        ("empty stdin", String::new()),
        (
            "truncated JSON",
            "{\"cniVersion\":\"0.3.1\",\"ipam\":{\"index\":".into(),
        ),
        ("not an object", "[1,2,3]".into()),
        ("null", "null".into()),
        (
            "no ipam",
            json!({"cniVersion": "0.3.1", "name": "n", "type": "ipvlan"}).to_string(),
        ),
        (
            "ipam not an object",
            json!({"cniVersion": "0.3.1", "ipam": 5}).to_string(),
        ),
        ("index as a string", index(json!("5"))),
        ("index negative", index(json!(-1))),
        ("index fractional", index(json!(2.5))),
        ("index 2.0", index(json!(2.0))),
        ("index huge", index(json!(1e20))),
        ("index 2^32+1", index(json!(4_294_967_297u64))),
        ("index null", index(Value::Null)),
        ("index true", index(json!(true))),
        (
            "no cniVersion",
            json!({"ipam": {"type": "index2ip", "index": 5}}).to_string(),
        ),
        (
            "cniVersion 0.5.0",
            config(Some("0.5.0"), json!({"type": "index2ip", "index": 5})).to_string(),
        ),
        (
            "cniVersion 2.0.0",
            config(Some("2.0.0"), json!({"type": "index2ip", "index": 5})).to_string(),
        ),
        (
            "cniVersion a number",
            json!({"cniVersion": 1, "ipam": {"type": "index2ip", "index": 5}}).to_string(),
        ),
        ("trailing garbage", format!("{} x", index(json!(5)))),
    ];
    let mut cases = Vec::new();
    for (what, stdin) in configs {
        for command in ["ADD", "DEL"] {
            cases.push(case(
                format!("{command} with {what}"),
                command,
                None,
                stdin.clone(),
                good.into(),
                "p",
            ));
        }
    }
    let lines: Vec<(&str, &str)> = vec![
        ("an empty command line", ""),
        ("no epoxy.ipv4", "ro console=ttyS0\n"),
        ("empty epoxy.ipv4", "epoxy.ipv4= ro\n"),
        (
            "three fields",
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8 ro\n",
        ),
        (
            "five fields",
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4,1.1.1.1 ro\n",
        ),
        (
            "no prefix length",
            "epoxy.ipv4=4.14.159.112,4.14.159.65,8.8.8.8,8.8.4.4 ro\n",
        ),
        (
            "a bad address",
            "epoxy.ipv4=4.14.159.312/26,4.14.159.65,8.8.8.8,8.8.4.4 ro\n",
        ),
        (
            "a bad gateway",
            "epoxy.ipv4=4.14.159.112/26,gateway,8.8.8.8,8.8.4.4 ro\n",
        ),
        (
            "a bad name server",
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,dns,8.8.4.4 ro\n",
        ),
        (
            "empty name servers",
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,, ro\n",
        ),
        (
            "prefix 33",
            "epoxy.ipv4=4.14.159.112/33,4.14.159.65,8.8.8.8,8.8.4.4 ro\n",
        ),
        (
            "an IPv6 address for IPv4",
            "epoxy.ipv4=2001:db8::112/64,2001:db8::1,8.8.8.8,8.8.4.4 ro\n",
        ),
        (
            "a bad IPv6 value",
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 epoxy.ipv6=nonsense ro\n",
        ),
        (
            "an IPv6 group with hex letters",
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 \
             epoxy.ipv6=2001:db8::a12/64,2001:db8::1,2001:db8::53,2001:db8::54 ro\n",
        ),
        (
            "an IPv6 group past 7999",
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 \
             epoxy.ipv6=2001:db8::7998/64,2001:db8::1,2001:db8::53,2001:db8::54 ro\n",
        ),
        (
            "an IPv6 group past 9999",
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 \
             epoxy.ipv6=2001:db8::9998/64,2001:db8::1,2001:db8::53,2001:db8::54 ro\n",
        ),
        (
            "epoxy.ipv4 twice, different",
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 \
             epoxy.ipv4=4.14.159.73/26,4.14.159.65,8.8.8.8,8.8.4.4 ro\n",
        ),
        (
            "epoxy.ipv4 twice, the same",
            "epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 \
             epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 ro\n",
        ),
        (
            "the keys quoted",
            "ro \"epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4\" console=ttyS0\n",
        ),
        (
            "the keys after --",
            "ro -- epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4\n",
        ),
        (
            "a key that only ends like ours",
            "xepoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 ro\n",
        ),
        (
            "tabs between parameters",
            "ro\tepoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4\tconsole=ttyS0\n",
        ),
    ];
    let add = config(Some("0.3.1"), json!({"type": "index2ip", "index": 5})).to_string();
    for (what, line) in lines {
        cases.push(case(
            format!("ADD with {what}"),
            "ADD",
            Some("0.3.1"),
            add.clone(),
            line.into(),
            "p",
        ));
    }
    cases
}

/// Runs one plugin on a case; ours finds the command line through `ipam.cmdline`, the original through the
/// environment, and each is given both.
fn run(plugin: &Path, case: &Case, cmdline_file: &Path) -> Run {
    let stdin = match serde_json::from_str::<Value>(&case.stdin) {
        Ok(mut v) if v.get("ipam").is_some_and(Value::is_object) => {
            v["ipam"]["cmdline"] = json!(cmdline_file);
            v.to_string()
        }
        _ => case.stdin.clone(),
    };
    let env = [
        ("CNI_COMMAND", case.command.clone()),
        ("CNI_CONTAINERID", "0123456789abcdef".to_owned()),
        ("CNI_NETNS", "/var/run/netns/pod".to_owned()),
        ("CNI_IFNAME", "net1".to_owned()),
        ("CNI_PATH", "/opt/cni/bin".to_owned()),
        (
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}",
                case.pod
            ),
        ),
        ("PROC_CMDLINE_FOR_TESTING", case.cmdline.clone()),
    ];
    Run::from(run_with(plugin, &env, stdin.as_bytes()))
}

/// The value of a key on a command line, read as the original reads it: the first `KEY=` and what follows up to a
/// space.
fn key<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    let at = cmdline.find(&format!("{key}="))? + key.len() + 1;
    let rest = &cmdline[at..];
    Some(&rest[..rest.find(' ').unwrap_or(rest.len())])
}

/// Whether `address` (with its prefix) is no address a pod can use in the node's block: outside it, its network or
/// broadcast address, or the gateway.
fn unusable(address: &str, node_field: &str, gateway: &str) -> bool {
    let (Ok(addr), Ok(node), Ok(gw)) = (
        address.parse::<IpNet>(),
        node_field.trim().parse::<IpNet>(),
        gateway.trim().parse::<IpAddr>(),
    ) else {
        return false;
    };
    let ip = addr.addr();
    !node.contains(&ip)
        || ip == gw
        || ip == node.network()
        || (matches!(ip, IpAddr::V4(_)) && ip == node.broadcast())
}

/// Every address in a result of any version.
fn addresses(result: &Value) -> Vec<String> {
    let mut all = Vec::new();
    if let Some(ips) = result["ips"].as_array() {
        all.extend(
            ips.iter()
                .filter_map(|ip| ip["address"].as_str().map(str::to_owned)),
        );
    }
    for family in ["ip4", "ip6"] {
        if let Some(ip) = result[family]["ip"].as_str() {
            all.push(ip.to_owned());
        }
    }
    all
}

/// A result with every string's trailing white space removed, and empty strings and whatever that leaves empty
/// (a `dns` holding only empty name servers) dropped.
fn tidied(v: &Value) -> Value {
    let empty = |x: &Value| match x {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    match v {
        Value::String(s) => json!(s.trim_end()),
        Value::Array(a) => Value::Array(a.iter().map(tidied).filter(|x| !empty(x)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), tidied(x)))
                .filter(|(_, x)| !empty(x))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The divergence a case shows, by the name the README's table gives it; `Ok(None)` when both did the same, `Err`
/// with the reason when no rule explains the difference.
fn classify(case: &Case, ours: &Run, original: &Run) -> Result<Option<&'static str>, String> {
    let same_json = match (ours.json(), original.json()) {
        (Some(a), Some(b)) => a == b,
        _ => ours.silent() && original.silent(),
    };
    if ours.ok == original.ok && same_json {
        return Ok(None);
    }
    let verb = ["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"].contains(&case.command.as_str());
    if !verb {
        return match ours.error_code() {
            Some(4) => Ok(Some("unknown-command")),
            _ => Err("ours did not refuse a command that is no verb with code 4".into()),
        };
    }
    let version_before = |v: &str| case.version.as_deref().is_some_and(|have| have < v);
    match case.command.as_str() {
        "VERSION" => {
            let theirs = original.json().map(|v| v["supportedVersions"].clone());
            let ours_list = ours.json().map(|v| v["supportedVersions"].clone());
            let subset = match (
                theirs.as_ref().and_then(Value::as_array),
                ours_list.as_ref().and_then(Value::as_array),
            ) {
                (Some(t), Some(o)) => {
                    t.iter().all(|v| o.contains(v)) && o.contains(&json!("1.1.0"))
                }
                _ => false,
            };
            return if subset && ours.ok && original.ok {
                Ok(Some("version-list"))
            } else {
                Err("VERSION answers differ other than by ours listing more".into())
            };
        }
        "CHECK" if original.ok && original.silent() => {
            // A prevResult the original gave for ADD must pass ours: code 102 (a mismatch) is never expected here.
            let expected = match ours.error_code() {
                Some(1) => version_before("0.4.0"),
                Some(7) => !case.has_prev && !version_before("0.4.0"),
                _ => false,
            };
            return if expected {
                Ok(Some("check-verifies"))
            } else {
                Err("CHECK: ours did not refuse as its rules say".into())
            };
        }
        // The original runs them as ADD, as it runs any command it does not know.
        "GC" | "STATUS" => {
            let served = if version_before("1.1.0") {
                ours.error_code() == Some(1)
            } else {
                ours.ok
            };
            return if served {
                Ok(Some("gc-status"))
            } else {
                Err("GC or STATUS: ours neither served it at 1.1.0 nor refused it below".into())
            };
        }
        "DEL" if original.ok && original.silent() => {
            return if matches!(ours.error_code(), Some(1 | 6 | 7)) {
                Ok(Some("del-reads-config"))
            } else {
                Err("DEL: ours failed other than by refusing the config".into())
            };
        }
        _ => {}
    }
    let mut values = serde_json::Deserializer::from_str(&case.stdin).into_iter::<Value>();
    let trailing = values.next().is_some_and(|v| v.is_ok()) && values.next().is_some();
    if trailing && ours.error_code() == Some(6) && original.ok {
        return Ok(Some("trailing-data"));
    }
    let cmdline = case.cmdline.as_str();
    if cmdline.contains('"')
        || cmdline.contains(" -- ")
        || cmdline.contains('\t')
        || cmdline.contains("xepoxy")
    {
        return Ok(Some("kernel-syntax"));
    }
    let repeated = |k: &str| cmdline.matches(&format!("{k}=")).count() > 1;
    if (repeated("epoxy.ipv4") || repeated("epoxy.ipv6"))
        && original.ok
        && ours.error_code() == Some(100)
    {
        return Ok(Some("repeated-key"));
    }
    if case.command == "ADD" && original.ok && original.silent() {
        let answered = ours.error_code().is_some()
            || ours.result().is_some_and(|r| {
                Some(r["cniVersion"].as_str().unwrap_or_default()) == case.version.as_deref()
            });
        return if answered {
            Ok(Some("add-exits-0-silently"))
        } else {
            Err("the original exited 0 silently and ours neither answered nor refused".into())
        };
    }
    // The original keeps the newline that ends /proc/cmdline in the last field of a key that ends the line.
    let last_is_key = cmdline.ends_with('\n')
        && cmdline
            .split(' ')
            .next_back()
            .is_some_and(|p| p.starts_with("epoxy.ipv"));
    if last_is_key && ours.ok {
        let explained = match (ours.result(), original.result()) {
            (Some(a), Some(b)) => tidied(&a) == tidied(&b),
            (Some(_), None) => !original.ok && original.silent(),
            _ => false,
        };
        if explained {
            return Ok(Some("newline-in-last-field"));
        }
    }
    if let (Some(a), Some(b)) = (ours.result(), original.result()) {
        return if tidied(&a) == tidied(&b) && tidied(&b) != b {
            Ok(Some("empty-name-server"))
        } else {
            Err("both gave a result, and they differ".into())
        };
    }
    let not_addresses = ["epoxy.ipv4", "epoxy.ipv6"].iter().any(|k| {
        key(cmdline, k).is_some_and(|v| {
            v.split(',')
                .skip(1)
                .any(|f| !f.trim().is_empty() && f.trim().parse::<IpAddr>().is_err())
        })
    });
    if not_addresses && ours.error_code() == Some(100) && original.result().is_some() {
        return Ok(Some("unchecked-fields"));
    }
    if case.command == "ADD" && ours.error_code() == Some(101) {
        if let Some(result) = original.result() {
            let v4 = key(cmdline, "epoxy.ipv4").unwrap_or_default();
            let v6 = key(cmdline, "epoxy.ipv6").unwrap_or_default();
            let field = |v: &str, i: usize| v.split(',').nth(i).unwrap_or_default().to_owned();
            let bad = addresses(&result).iter().any(|a| {
                let kv = if a.contains(':') { v6 } else { v4 };
                unusable(a, &field(kv, 0), &field(kv, 1))
            });
            return if bad {
                Ok(Some("outside-subnet"))
            } else {
                Err("ours refused with 101 an address the original gave and that is usable".into())
            };
        }
    }
    if case.command == "ADD" && !case.has_index && ours.ok && !original.ok {
        return Ok(Some("pod-name-index"));
    }
    if case.command == "ADD" && ours.ok && !original.ok && original.stderr.contains("out of range")
    {
        let group_past_7fff = ours.result().is_some_and(|r| {
            addresses(&r).iter().any(|a| {
                a.parse::<IpNet>().is_ok_and(|n| match n.addr() {
                    IpAddr::V6(v6) => v6.segments()[7] >= 0x8000,
                    IpAddr::V4(_) => false,
                })
            })
        });
        if group_past_7fff {
            return Ok(Some("ipv6-group-past-7999"));
        }
    }
    if !original.ok && original.silent() && ours.error_code().is_some() {
        return Ok(Some("error-json"));
    }
    Err("no rule explains the difference".into())
}

/// The divergence names in the first column of the README's table of differences.
fn table() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Differences from the original Go plugin"))
        .expect("README.md has a section \"Differences from the original Go plugin\"");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

#[test]
fn index2ip_against_the_original() {
    const TEST: &str = "differential::index2ip_against_the_original";
    let Some(original) = std::env::var_os("INDEX2IP_ORIGINAL").map(PathBuf::from) else {
        test_support::skip_unavoidable(
            TEST,
            "the original index2ip is not built: the Go module proxy refuses github.com/m-lab/index2ip, so \
             scripts/upstream.sh cannot build it; set INDEX2IP_ORIGINAL to a build of v1.2.0 to run this test",
        );
        return;
    };
    assert!(
        original.is_file(),
        "INDEX2IP_ORIGINAL={} is no file",
        original.display()
    );
    let ours = crate::util::bin();
    let files = test_support::temp_dir("index2ip-differential");
    let mut paths: HashMap<String, PathBuf> = HashMap::new();
    let mut file_for = |cmdline: &str| -> PathBuf {
        let n = paths.len();
        paths
            .entry(cmdline.to_owned())
            .or_insert_with(|| test_support::write(files.path(), &format!("cmdline-{n}"), cmdline))
            .clone()
    };
    let probe_file = test_support::write(files.path(), "probe", "");
    let cases = corpus(&|case: &Case| {
        std::fs::write(&probe_file, &case.cmdline).unwrap();
        run(&original, case, &probe_file)
    });
    assert!(
        cases.len() >= 2000,
        "the corpus has only {} cases",
        cases.len()
    );
    let inputs: Vec<(&Case, PathBuf)> = cases.iter().map(|c| (c, file_for(&c.cmdline))).collect();

    // Two workers, one per core: the original takes a few milliseconds a call.
    let outcomes: Vec<(Run, Run)> = std::thread::scope(|s| {
        let half = inputs.len().div_ceil(2);
        let workers: Vec<_> = inputs
            .chunks(half)
            .map(|chunk| {
                let original = &original;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(case, file)| (run(ours, case, file), run(original, case, file)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let listed = table();
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut same = 0;
    let mut failures = Vec::new();
    for (case, (ours, theirs)) in cases.iter().zip(&outcomes) {
        match classify(case, ours, theirs) {
            Ok(None) => same += 1,
            Ok(Some(name)) if listed.iter().any(|l| l == name) => *seen.entry(name).or_default() += 1,
            Ok(Some(name)) => failures.push(format!(
                "{}: divergence `{name}` is not in README.md's table\n  ours:     {}\n  original: {}",
                case.label,
                ours.describe(),
                theirs.describe()
            )),
            Err(why) => failures.push(format!(
                "{}: {why}\n  cmdline:  {:?}\n  stdin:    {}\n  ours:     {}\n  original: {}",
                case.label,
                case.cmdline,
                case.stdin,
                ours.describe(),
                theirs.describe()
            )),
        }
    }
    let report = seen
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let line = format!(
        "\ndifferential: {} cases: {same} the same; divergences: {report}\n",
        cases.len()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    assert!(
        failures.is_empty(),
        "{} unexplained:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let unseen: Vec<&String> = listed
        .iter()
        .filter(|l| !seen.contains_key(l.as_str()))
        .collect();
    assert!(
        unseen.is_empty(),
        "README.md lists divergences no case shows: {unseen:?}"
    );
}
