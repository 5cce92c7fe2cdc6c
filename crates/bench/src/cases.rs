//! The cases, and running them round-robin.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::stats::Samples;
use crate::Options;

const REFERENCE: &str = "/usr/lib/cni";
/// The pause after each lab's `down`: the kernel finishes removing namespaces asynchronously.
pub const SETTLE: Duration = Duration::from_secs(1);
const CMDLINE: &str = "ro epoxy.ipv4=192.0.2.112/26,192.0.2.65,192.0.2.53,192.0.2.54 \
                       epoxy.ipv6=2001:db8:2d::112/64,2001:db8:2d::1,2001:db8::53,2001:db8::54\n";

/// The row of the C floor: a static program with no libc that exits at once (crates/bench/c/floor.c).
pub const C_FLOOR: &str = "floor (C, static, no libc)";
/// The row of the Rust floor: a static Rust `main` that does nothing, with the standard library's start-up.
pub const RUST_FLOOR: &str = "floor (Rust, static)";
/// The table of index2ip's ADD against the floors alone.
pub const ALONE: &str = "IPAM ADD against the floor, alone";
/// The row of the original Go index2ip.
pub const ORIGINAL: &str = "original index2ip (Go)";

/// One process call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    /// What runs.
    pub program: PathBuf,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment, and nothing else.
    pub env: Vec<(String, String)>,
    /// Its stdin.
    pub stdin: String,
}

/// A measured call, with untimed calls around it where the measured one needs state (host-local's lease).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    /// The row's name.
    pub name: String,
    /// The timed call.
    pub call: Call,
    /// Untimed, before each timed call.
    pub before: Option<Call>,
    /// Untimed, after each timed call.
    pub after: Option<Call>,
}

/// Cases measured together, with the one the others are compared to.
#[derive(Debug, Clone)]
pub struct Group {
    /// The section's title.
    pub title: String,
    /// What the section shows.
    pub note: String,
    /// The case ratios are taken against.
    pub baseline: String,
    /// Each case with its samples.
    pub rows: Vec<(String, Samples)>,
    /// Why cases were not measured.
    pub skipped: Vec<String>,
}

fn call(program: &Path, command: &str, stdin: &str) -> Call {
    Call {
        program: program.to_owned(),
        args: Vec::new(),
        env: vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_CONTAINERID".into(), "bench0123456789".into()),
            ("CNI_NETNS".into(), "/var/run/netns/bench".into()),
            ("CNI_IFNAME".into(), "net1".into()),
            ("CNI_PATH".into(), REFERENCE.into()),
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ],
        stdin: stdin.to_owned(),
    }
}

fn case(name: &str, call: Call) -> Case {
    Case {
        name: name.to_owned(),
        call,
        before: None,
        after: None,
    }
}

/// The three IPAM configs for the same request: index 5 on the example node, delegated by macvlan.
struct Ipams {
    index2ip: serde_json::Value,
    static_: serde_json::Value,
    host_local: serde_json::Value,
}

impl Ipams {
    fn new(dir: &Path) -> Ipams {
        let routes = json!([{"dst": "0.0.0.0/0", "gw": "192.0.2.65"}, {"dst": "::/0", "gw": "2001:db8:2d::1"}]);
        Ipams {
            index2ip: json!({"type": "index2ip", "index": 5, "cmdline": dir.join("cmdline")}),
            static_: json!({
                "type": "static",
                "addresses": [{"address": "192.0.2.117/26", "gateway": "192.0.2.65"},
                              {"address": "2001:db8:2d::117/64", "gateway": "2001:db8:2d::1"}],
                "routes": routes,
                "dns": {"nameservers": ["192.0.2.53", "192.0.2.54", "2001:db8::53", "2001:db8::54"]}
            }),
            host_local: json!({
                "type": "host-local",
                "ranges": [[{"subnet": "192.0.2.64/26", "rangeStart": "192.0.2.117", "rangeEnd": "192.0.2.126",
                             "gateway": "192.0.2.65"}],
                           [{"subnet": "2001:db8:2d::/64", "rangeStart": "2001:db8:2d::117",
                             "rangeEnd": "2001:db8:2d::126", "gateway": "2001:db8:2d::1"}]],
                "routes": routes,
                "dataDir": dir.join("host-local")
            }),
        }
    }

    fn config(ipam: &serde_json::Value, plugin: &str) -> String {
        json!({"cniVersion": "1.0.0", "name": "bench", "type": plugin, "master": "eth0", "mode": "bridge", "ipam": ipam})
            .to_string()
    }
}

/// Runs every group the machine can run.
pub fn run_all(opts: &Options) -> Result<Vec<Group>, String> {
    let dir = TempDir::new()?;
    std::fs::write(dir.0.join("cmdline"), CMDLINE)
        .map_err(|e| format!("cannot write to {}: {e}", dir.0.display()))?;
    let ipams = Ipams::new(&dir.0);
    let reference = |name: &str| Path::new(REFERENCE).join(name);
    let mut missing = Vec::new();
    let mut bin = |name: &str| match opts.bins.get(name).and_then(|p| p.canonicalize().ok()) {
        Some(p) if p.is_file() => Some(p),
        _ => {
            missing.push(format!("{name}: not built (pass --bin {name}=PATH)"));
            None
        }
    };
    let floor_c = bin("floor-c");
    let floor = bin("floor");
    let i2_static = bin("index2ip-static");
    let i2_dynamic = bin("index2ip-dynamic");
    // The plugin ours replaces; the Go module proxy refuses it, so it is measured only where a build is named.
    let original = bin("index2ip-original");
    for plugin in ["static", "host-local", "macvlan"] {
        if !reference(plugin).is_file() {
            return Err(format!(
                "{} is missing: apt-get install containernetworking-plugins",
                reference(plugin).display()
            ));
        }
    }

    let mut groups = Vec::new();
    let start = |name: &str, p: &Path| case(name, call(p, "VERSION", ""));
    let mut g = vec![start("/bin/true (dynamic, glibc)", Path::new("/bin/true"))];
    if let Some(f) = &floor {
        g.insert(0, start(RUST_FLOOR, f));
    }
    if let Some(f) = &floor_c {
        g.insert(0, start(C_FLOOR, f));
    }
    if opts.wants("start") {
        groups.push(measure(
            "Process start",
            "fork, exec and wait of a binary that does nothing: the floor every plugin call pays",
            g,
            opts.iterations,
        )?);
    }

    // The floor and index2ip alone: a Go plugin in the same rotation leaves the machine slower to start the next
    // process (its threads, its address space torn down after exit), which raises the floor more than index2ip and
    // flatters the ratio. The goal is judged here.
    if opts.wants("ipam") {
        let i2 = Ipams::config(&ipams.index2ip, "macvlan");
        let mut g = Vec::new();
        if let Some(f) = &floor_c {
            g.push(case(C_FLOOR, call(f, "ADD", "")));
        }
        if let Some(f) = &floor {
            g.push(case(RUST_FLOOR, call(f, "ADD", "")));
        }
        if let Some(p) = &i2_static {
            g.push(case("index2ip (static)", call(p, "ADD", &i2)));
        }
        groups.push(measure(
            ALONE,
            "index2ip's ADD with only the floors in the rotation, no Go program beside them",
            g,
            opts.iterations,
        )?);
    }

    let verbs: &[&str] = if opts.wants("ipam") {
        &["ADD", "DEL", "VERSION"]
    } else {
        &[]
    };
    for &verb in verbs {
        let mut g = Vec::new();
        if let Some(f) = &floor_c {
            g.push(case(C_FLOOR, call(f, verb, "")));
        }
        if let Some(f) = &floor {
            g.push(case(RUST_FLOOR, call(f, verb, "")));
        }
        let i2 = Ipams::config(&ipams.index2ip, "macvlan");
        if let Some(p) = &i2_static {
            g.push(case("index2ip (static)", call(p, verb, &i2)));
        }
        if let Some(p) = &i2_dynamic {
            g.push(case("index2ip (dynamic)", call(p, verb, &i2)));
        }
        if let Some(p) = &original {
            // The original reads the node's keys from this variable and ignores `ipam.cmdline`.
            let mut c = call(p, verb, &i2);
            c.env
                .push(("PROC_CMDLINE_FOR_TESTING".into(), CMDLINE.into()));
            g.push(case(ORIGINAL, c));
        }
        g.push(case(
            "reference static",
            call(
                &reference("static"),
                verb,
                &Ipams::config(&ipams.static_, "macvlan"),
            ),
        ));
        let hl = Ipams::config(&ipams.host_local, "macvlan");
        let mut host_local = case(
            "reference host-local",
            call(&reference("host-local"), verb, &hl),
        );
        // host-local keeps a lease per container: ADD needs a DEL after it, DEL a lease before it.
        match verb {
            "ADD" => host_local.after = Some(call(&reference("host-local"), "DEL", &hl)),
            "DEL" => host_local.before = Some(call(&reference("host-local"), "ADD", &hl)),
            _ => {}
        }
        g.push(host_local);
        let note = format!(
            "an IPAM plugin's {verb} as macvlan delegates it: index 5 on a /26 node, IPv4 and IPv6"
        );
        groups.push(measure(&format!("IPAM {verb}"), &note, g, opts.iterations)?);
    }

    if opts.wants("attachment") {
        groups.push(attachment(&ipams, opts.iterations, i2_static.as_deref())?);
    }
    let shim = bin("cni-shim");
    if opts.wants("shim") || opts.wants("queries") {
        groups.extend(shim_groups(
            opts,
            i2_static.as_deref(),
            shim.as_deref(),
            &dir.0,
        )?);
    }
    let netlab = bin("netlab");
    let lab = match opts.wants("lab") {
        true => Some(lab(
            opts.iterations,
            netlab.as_deref(),
            i2_dynamic.as_deref(),
            &dir.0,
        )?),
        false => None,
    };
    // The queries are measured last and reported before the lab: they make 100 000 files, and on a disk file system
    // the files made soon after cost far more (crates/bench/NOTES.md).
    if let (true, Some(shim), Some(_)) = (opts.wants("queries"), &shim, &i2_static) {
        groups.push(queries(opts, shim, &dir.0)?);
    }
    groups.extend(lab);
    if opts.wants("lab") {
        groups.push(lab_real(
            opts.iterations,
            netlab.as_deref(),
            i2_dynamic.as_deref(),
        )?);
    }
    if let Some(first) = groups.first_mut() {
        first.skipped.append(&mut missing);
    }
    Ok(groups)
}

/// macvlan ADD+DEL in network namespaces with each IPAM, measured inside the node's namespace.
fn attachment(ipams: &Ipams, iterations: usize, index2ip: Option<&Path>) -> Result<Group, String> {
    let title = "Full attachment";
    let note = "Debian's macvlan plugin ADD then DEL of a pod interface, in network namespaces, with each IPAM";
    let mut group = Group {
        title: title.into(),
        note: note.into(),
        baseline: "macvlan + index2ip (static)".into(),
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    if !is_root() {
        group
            .skipped
            .push("every case: needs root to create network namespaces".into());
        return Ok(group);
    }
    let Some(index2ip) = index2ip else {
        group
            .skipped
            .push("every case: index2ip (static) not built".into());
        return Ok(group);
    };
    let lab = Netns::new()?;
    // macvlan finds its IPAM through CNI_PATH: give it a directory holding the index2ip under test.
    let path_dir = TempDir::new()?;
    std::os::unix::fs::symlink(index2ip, path_dir.0.join("index2ip")).map_err(|e| e.to_string())?;
    let cni_path = format!("{}:{REFERENCE}", path_dir.0.display());
    let pair = |name: &str, ipam: &serde_json::Value| {
        let config = Ipams::config(ipam, "macvlan");
        let mut add = call(&Path::new(REFERENCE).join("macvlan"), "ADD", &config);
        for (k, v) in &mut add.env {
            match k.as_str() {
                "CNI_NETNS" => *v = lab.pod_path(),
                "CNI_PATH" => v.clone_from(&cni_path),
                _ => {}
            }
        }
        let mut del = add.clone();
        del.env[0].1 = "DEL".into();
        // The pair is the unit: a pod's interface comes and goes.
        Case {
            name: name.to_owned(),
            call: add,
            before: None,
            after: Some(del),
        }
    };
    let cases = vec![
        pair("macvlan + index2ip (static)", &ipams.index2ip),
        pair("macvlan + reference static", &ipams.static_),
        pair("macvlan + reference host-local", &ipams.host_local),
    ];
    let spec = serde_json::to_string(&cases).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.node()])
        .arg(exe)
        .args(["worker", &iterations.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the worker: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(spec.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err("the attachment worker failed (see above)".into());
    }
    let measured: Vec<(String, Vec<f64>)> =
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    for (name, us) in measured {
        let mut s = Samples::default();
        for u in us {
            s.push(Duration::from_secs_f64(u / 1e6));
        }
        group.rows.push((name, s));
    }
    group.note = format!("{note}; ADD is timed, its DEL runs untimed after it");
    Ok(group)
}

/// What the original `shim.sh` did, as its description has it: a new directory per call under a log root, the
/// command line, the whole environment, stdin, stdout, stderr and the exit status written there, the real plugin's
/// output printed back, and the script's own exit status that of its last command.
const BASH_SHIM: &str = r#"#!/bin/bash
name=$(basename "$0")
dir=$(mktemp -d "$LOGROOT/call-XXXXXX")
echo "$0 $*" > "$dir/cmdline"
env > "$dir/env"
cat > "$dir/stdin"
"$REAL/$name" "$@" < "$dir/stdin" > "$dir/stdout" 2> "$dir/stderr"
echo $? > "$dir/exit"
cat "$dir/stdout"
cat "$dir/stderr" >&2
"#;

/// cni-shim's overhead on index2ip ADD, against the call made directly and through a bash shim like the original,
/// for a small and a 1 MiB configuration; then cni-shim's queries over many records.
fn shim_groups(
    opts: &Options,
    index2ip: Option<&Path>,
    shim: Option<&Path>,
    dir: &Path,
) -> Result<Vec<Group>, String> {
    let mut overhead = Group {
        title: "cni-shim overhead".into(),
        note: "index2ip (static) ADD called directly, through cni-shim (static, records on, 32 MiB bound), and \
               through a bash shim doing what the original shim.sh did"
            .into(),
        baseline: "direct, small config".into(),
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    let (Some(index2ip), Some(shim)) = (index2ip, shim) else {
        overhead
            .skipped
            .push("every case: index2ip (static) or cni-shim not built".into());
        return Ok(vec![overhead]);
    };
    let io = |e: std::io::Error| e.to_string();
    let real = dir.join("real");
    std::fs::create_dir_all(&real).map_err(io)?;
    std::os::unix::fs::symlink(index2ip, real.join("index2ip")).map_err(io)?;
    let (shim_dir, shim_log) = (dir.join("shim"), dir.join("shim-log"));
    let install = Command::new(shim)
        .arg("install")
        .arg("--real-dir")
        .arg(&real)
        .arg("--shim-dir")
        .arg(&shim_dir)
        .arg("--log-dir")
        .arg(&shim_log)
        .output()
        .map_err(io)?;
    if !install.status.success() {
        return Err(format!(
            "cni-shim install: {}",
            String::from_utf8_lossy(&install.stderr)
        ));
    }
    let (bash_dir, bash_log) = (dir.join("bash-shim"), dir.join("bash-log"));
    std::fs::create_dir_all(&bash_dir).map_err(io)?;
    std::fs::create_dir_all(&bash_log).map_err(io)?;
    let script = format!("REAL={}\nLOGROOT={}\n", real.display(), bash_log.display());
    let script = BASH_SHIM.replacen("\n", &format!("\n{script}"), 1);
    std::fs::write(bash_dir.join("index2ip"), script).map_err(io)?;
    std::fs::set_permissions(
        bash_dir.join("index2ip"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(io)?;

    // The same shim with records off, and with its log directory on a tmpfs: what records cost, and how much of
    // that is the file system's. Not goals: the goals are taken with records on the disk, as a node keeps them.
    // And the plugin linked to the whole cni-shim, as installs did before the pass-through was a binary of its own:
    // what loading the operator tool's code costs each call.
    let variant = |name: &str, binary: &Path, log_dir: Option<&Path>| -> Result<PathBuf, String> {
        let at = dir.join(name);
        std::fs::create_dir_all(&at).map_err(io)?;
        std::fs::copy(binary, at.join("shim")).map_err(io)?;
        std::os::unix::fs::symlink("shim", at.join("index2ip")).map_err(io)?;
        let config = std::fs::read(shim_dir.join(".cni-shim.json")).map_err(io)?;
        let mut config: serde_json::Value =
            serde_json::from_slice(&config).map_err(|e| e.to_string())?;
        config["logDir"] =
            log_dir.map_or(serde_json::Value::Null, |d| d.display().to_string().into());
        std::fs::write(at.join(".cni-shim.json"), config.to_string()).map_err(io)?;
        Ok(at.join("index2ip"))
    };
    let passthrough = shim_dir.join("cni-shim-passthrough");
    let records_off = variant("shim-records-off", &passthrough, None)?;
    let whole = variant("shim-whole-binary", shim, Some(&shim_log))?;
    let tmpfs = tmpfs_dir()?;
    let records_tmpfs = match &tmpfs {
        Some(t) => Some(variant(
            "shim-records-tmpfs",
            &passthrough,
            Some(&t.0.join("log")),
        )?),
        None => {
            overhead
                .skipped
                .push("cni-shim, records on a tmpfs: /dev/shm is not a tmpfs here".into());
            None
        }
    };

    let base = json!({"cniVersion": "1.0.0", "name": "bench", "type": "ipvlan",
        "ipam": {"type": "index2ip", "index": 5, "cmdline": dir.join("cmdline")}});
    let mut big = base.clone();
    big["padding"] = "x".repeat(1 << 20).into();
    let mut cases = Vec::new();
    for (size, config) in [
        ("small config", base.to_string()),
        ("1 MiB config", big.to_string()),
    ] {
        for (how, program) in [
            ("direct", real.join("index2ip")),
            ("cni-shim", shim_dir.join("index2ip")),
            ("bash shim", bash_dir.join("index2ip")),
        ] {
            cases.push(case(
                &format!("{how}, {size}"),
                call(&program, "ADD", &config),
            ));
        }
    }
    let small = base.to_string();
    cases.push(case(
        "cni-shim, records off, small config",
        call(&records_off, "ADD", &small),
    ));
    cases.push(case(
        "cni-shim, plugin linked to the whole cni-shim binary, small config",
        call(&whole, "ADD", &small),
    ));
    if let Some(program) = &records_tmpfs {
        cases.push(case(
            "cni-shim, records on a tmpfs, small config",
            call(program, "ADD", &small),
        ));
    }
    let iterations = opts.iterations;
    let mut groups = Vec::new();
    if opts.wants("shim") {
        let mut measured = measure(&overhead.title, &overhead.note, cases, iterations)?;
        measured.skipped.append(&mut overhead.skipped);
        // A log directory the shim could not use would silently make "records on" rows measure records off.
        let logs = std::iter::once(shim_log.clone()).chain(tmpfs.as_ref().map(|t| t.0.join("log")));
        for log in logs {
            if std::fs::read_dir(&log).map_or(0, Iterator::count) == 0 {
                return Err(format!(
                    "cni-shim wrote no record to {}: its rows would measure records off",
                    log.display()
                ));
            }
        }
        groups.push(measured);
    } else {
        // The queries clone the records these calls leave.
        for c in &cases {
            run(&c.call)?;
        }
    }
    Ok(groups)
}

/// cni-shim's queries over many records, cloned from those the overhead's calls left in `dir`'s log directory.
fn queries(opts: &Options, shim: &Path, dir: &Path) -> Result<Group, String> {
    let iterations = opts.iterations;
    let shim_log = dir.join("shim-log");
    // Queries: records cloned from real ones up to the count, then logs and tree timed.
    let count = if iterations == 1 { 1_000 } else { 100_000 };
    let records = dir.join("records");
    synthesize_records(&shim_log, &records, count)?;
    let query = |name: &str, args: &[&str]| {
        let mut c = call(shim, "", "");
        c.env.clear();
        c.env
            .push(("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()));
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["--log-dir".to_owned(), records.display().to_string()]);
        Case {
            name: name.to_owned(),
            call: Call { args, ..c },
            before: None,
            after: None,
        }
    };
    let last = format!("bench-ctr-{}", count / 4 - 1);
    let q = vec![
        query("logs -n 20 (newest)", &["logs", "-n", "20"]),
        query(
            "logs --container (one of many)",
            &["logs", "--container", &last],
        ),
        query("logs --failed", &["logs", "--failed"]),
        query("tree CONTAINER", &["tree", &last]),
    ];
    let note = format!(
        "cni-shim's queries over {count} records (each a real record's copy, four per container)"
    );
    measure(
        &format!("cni-shim queries over {count} records"),
        &note,
        q,
        iterations.min(5),
    )
}

/// Fills `to` with `count` records cloned from the real ones in `from`, with fresh ids, four per container.
fn synthesize_records(from: &Path, to: &Path, count: usize) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    // The smallest record: an ordinary call, not one of the 1 MiB ones.
    let template = std::fs::read_dir(from)
        .map_err(io)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .min_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX))
        .ok_or("cni-shim wrote no record to clone")?;
    let name = template
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // <stamp>-<id>-<len>~<verb>~<outcome>~<plugin>~<container>.json (cni-shim's store.rs)
    let fields: Vec<&str> = name.trim_end_matches(".json").split('~').collect();
    let [head, verb, outcome, plugin, _] = fields[..] else {
        return Err(format!("unexpected record name {name}"));
    };
    let stamp = head.split('-').next().unwrap_or_default().to_owned();
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&template).map_err(io)?)
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(to).map_err(io)?;
    std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(io)?;
    for i in 0..count {
        let mut r = record.clone();
        let id = format!("{:016x}", 0x1000_0000_0000_0000u64 + i as u64);
        r["id"] = id.clone().into();
        r["traceId"] = format!("{:032x}", i / 4).into();
        r["containerId"] = format!("bench-ctr-{}", i / 4).into();
        if i % 4 != 0 {
            r["parentId"] =
                format!("{:016x}", 0x1000_0000_0000_0000u64 + (i - i % 4) as u64).into();
            r["parentSource"] = "shim".into();
        }
        let bytes = serde_json::to_vec(&r).map_err(|e| e.to_string())?;
        let file = format!(
            "{stamp}-{id}-{}~{verb}~{outcome}~{plugin}~bench-ctr-{}.json",
            bytes.len(),
            i / 4
        );
        std::fs::write(to.join(file), &bytes).map_err(io)?;
    }
    Ok(())
}

/// A lab group with nothing measured yet, and the binaries it runs; `Err` is the group with every case skipped and
/// why (netlab or index2ip not built, not root).
fn lab_group<'a>(
    title: &str,
    note: &str,
    netlab: Option<&'a Path>,
    index2ip: Option<&'a Path>,
) -> Result<(Group, &'a Path, &'a Path), Group> {
    let mut group = Group {
        title: title.into(),
        note: note.into(),
        baseline: String::new(),
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    let (Some(netlab), Some(index2ip)) = (netlab, index2ip) else {
        group
            .skipped
            .push("every case: netlab or index2ip (dynamic) not built".into());
        return Err(group);
    };
    if !is_root() {
        group.skipped.push("every case: needs root".into());
        return Err(group);
    }
    Ok((group, netlab, index2ip))
}

/// The lab at 12, 48 and 200 pods: `netlab up` and `down` wall time, and the plugin processes' share of `up`
/// (summed from the lab's state), whose difference is the lab's own overhead.
fn lab(
    iterations: usize,
    netlab: Option<&Path>,
    index2ip: Option<&Path>,
    dir: &Path,
) -> Result<Group, String> {
    let (mut group, netlab, index2ip) = match lab_group(
        "Lab",
        "netlab up and down of a site with four physical machines (the manifests' DaemonSets, a plain pod per \
         node, and more plain pods to reach the size), against the time its plugin processes took; \
         milliseconds as microseconds",
        netlab,
        index2ip,
    ) {
        Ok(ready) => ready,
        Err(skipped) => return Ok(skipped),
    };
    // The default lab (six nodes, virtual and unlabelled ones included), whole: up, status, check, down.
    let rounds = iterations.clamp(1, 5);
    let mut run = Samples::default();
    eprintln!("bench: Lab: the default lab, netlab run x {rounds}");
    for _ in 0..rounds {
        let start = Instant::now();
        let name = format!("benchrun{}", std::process::id());
        let out = Command::new(netlab)
            .args([
                "run",
                "--emulate",
                "--name",
                &name,
                "--manifests",
                "k8s",
                "--index2ip",
            ])
            .arg(index2ip)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "netlab run: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        run.push(start.elapsed());
        std::thread::sleep(SETTLE);
    }
    group
        .rows
        .push(("run (up, status, check, down), the default lab".into(), run));
    let sizes: &[usize] = if iterations == 1 {
        &[12]
    } else {
        &[12, 48, 200]
    };
    for &pods in sizes {
        let topo = dir.join(format!("lab-{pods}.yaml"));
        std::fs::write(&topo, topology(pods)).map_err(|e| e.to_string())?;
        let name = format!("bench{}", std::process::id());
        let (mut up, mut plugins, mut down, mut own) = (
            Samples::default(),
            Samples::default(),
            Samples::default(),
            Samples::default(),
        );
        eprintln!("bench: Lab: {pods} pods x {rounds} rounds");
        for _ in 0..rounds {
            let verb = |args: &[&str]| -> Result<Duration, String> {
                let start = Instant::now();
                let out = Command::new(netlab)
                    .args(args)
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "netlab {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&out.stdout)
                    ));
                }
                Ok(start.elapsed())
            };
            let i2 = index2ip.display().to_string();
            let t = topo.display().to_string();
            let took = verb(&[
                "up",
                "--emulate",
                "--name",
                &name,
                "--topology",
                &t,
                "--index2ip",
                &i2,
                "--manifests",
                "k8s",
            ]);
            let state = std::fs::read(format!("/run/netlab/{name}/state.json")).unwrap_or_default();
            let took_down = verb(&["down", "--name", &name]);
            let (took, in_plugins) = (took?, Duration::from_micros(plugin_us(&state)));
            if in_plugins.is_zero() {
                return Err(format!(
                    "netlab up --name {name}: no plugin time in its state file; netlab's own time would be all of up"
                ));
            }
            up.push(took);
            down.push(took_down?);
            std::thread::sleep(SETTLE);
            plugins.push(in_plugins);
            // Each round's own time against its own plugins: the plugins' time varies from round to round far
            // more than netlab's, and a difference of medians from different rounds would carry that.
            own.push(took.saturating_sub(in_plugins));
        }
        group.rows.push((format!("up, {pods} pods"), up));
        group
            .rows
            .push((format!("plugin processes within up, {pods} pods"), plugins));
        group
            .rows
            .push((format!("netlab's own time within up, {pods} pods"), own));
        group.rows.push((format!("down, {pods} pods"), down));
    }
    group.baseline = group
        .rows
        .first()
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    Ok(group)
}

/// The default lab on the real control plane (the peers of `$UPSTREAM_BIN`): `netlab up` to every DaemonSet's pods
/// running, the control plane's own start within it (as `up` reports it), and `down`. A few rounds: each is tens of
/// seconds.
fn lab_real(
    iterations: usize,
    netlab: Option<&Path>,
    index2ip: Option<&Path>,
) -> Result<Group, String> {
    let (mut group, netlab, index2ip) = match lab_group(
        "Lab on the real control plane",
        "netlab up of the default lab (six nodes; etcd, kube-apiserver, the controller manager and the \
         scheduler; 26 pods on the labelled nodes, placed by the DaemonSet controller and the scheduler, \
         attached by the real multus and flannel), warm (peers built, binaries cached); milliseconds as \
         microseconds",
        netlab,
        index2ip,
    ) {
        Ok(ready) => ready,
        Err(skipped) => return Ok(skipped),
    };
    let Some(peers) = std::env::var_os("UPSTREAM_BIN") else {
        group.skipped.push(
            "every case: UPSTREAM_BIN does not name the upstream peers (scripts/upstream.sh)"
                .into(),
        );
        return Ok(group);
    };
    let rounds = iterations.clamp(1, 3);
    let (mut up, mut control_plane, mut down) =
        (Samples::default(), Samples::default(), Samples::default());
    eprintln!("bench: Lab on the real control plane x {rounds}");
    for _ in 0..rounds {
        let name = format!("benchcp{}", std::process::id());
        let start = Instant::now();
        let out = Command::new(netlab)
            .args(["up", "--name", &name, "--manifests", "k8s", "--index2ip"])
            .arg(index2ip)
            .arg("--peers")
            .arg(&peers)
            .output()
            .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let start = Instant::now();
        let downed = Command::new(netlab)
            .args(["down", "--name", &name])
            .output()
            .map_err(|e| e.to_string())?;
        let took_down = start.elapsed();
        if !out.status.success() || !downed.status.success() {
            return Err(format!(
                "netlab up/down --name {name}: {text}{}",
                String::from_utf8_lossy(&downed.stdout)
            ));
        }
        // "control plane: etcd, ... in NAME-cp (3.0 s)"
        let cp = text
            .lines()
            .find(|l| l.trim_start().starts_with("control plane:"))
            .and_then(|l| {
                l.rsplit_once('(')?
                    .1
                    .strip_suffix(" s)")?
                    .parse::<f64>()
                    .ok()
            })
            .ok_or_else(|| {
                format!("netlab up said nothing of the control plane's start: {text}")
            })?;
        up.push(took);
        control_plane.push(Duration::from_secs_f64(cp));
        down.push(took_down);
        std::thread::sleep(SETTLE);
    }
    group
        .rows
        .push(("up, to every DaemonSet's pods running".into(), up));
    group.rows.push((
        "the control plane's own start within up (etcd and kube-apiserver ready)".into(),
        control_plane,
    ));
    group.rows.push(("down".into(), down));
    group.baseline = "up, to every DaemonSet's pods running".into();
    Ok(group)
}

/// Four physical machines of a /26 site and extra plain pods, spread over them, up to `pods` in all (the
/// manifests put two experiment pods and the lab a plain pod on each machine: 12).
fn topology(pods: usize) -> String {
    let mut t = String::from(
        "site: {ipv4: 192.0.2.0/26, gateway4: 192.0.2.1, ipv6: '2001:db8:1::/64', gateway6: '2001:db8:1::1'}\nnodes:\n",
    );
    for (n, offset) in [(1, 9), (2, 22), (3, 35), (4, 48)] {
        t += &format!("  - {{name: mlab{n}, offset: {offset}, labels: {{mlab/type: physical}}}}\n");
    }
    let extra: Vec<String> = (0..pods.saturating_sub(12))
        .map(|i| format!("  - {{name: extra{i}, node: mlab{}}}\n", i % 4 + 1))
        .collect();
    if extra.is_empty() {
        t += "pods: []\n";
    } else {
        t += "pods:\n";
        t += &extra.concat();
    }
    t
}

fn plugin_us(state: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(state).unwrap_or_default();
    v.get("pods")
        .and_then(serde_json::Value::as_array)
        .map(|pods| {
            pods.iter()
                .flat_map(|p| {
                    p.get("attachments")
                        .and_then(serde_json::Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|a| a.get("add_us").and_then(serde_json::Value::as_u64))
                .sum()
        })
        .unwrap_or(0)
}

/// `bench worker N`: runs the cases on stdin (JSON) round-robin and prints their samples in microseconds.
pub fn worker(args: &[String]) -> ExitCode {
    let iterations: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut spec = String::new();
    let cases: Vec<Case> = match std::io::stdin()
        .read_to_string(&mut spec)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str(&spec).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench worker: bad spec: {e}");
            return ExitCode::FAILURE;
        }
    };
    match round_robin(&cases, iterations) {
        Ok(rows) => {
            let out: Vec<(String, Vec<f64>)> = rows
                .into_iter()
                .map(|(name, s)| (name, s.micros()))
                .collect();
            match serde_json::to_writer(std::io::stdout(), &out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench worker: cannot write samples: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("bench worker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn measure(title: &str, note: &str, cases: Vec<Case>, iterations: usize) -> Result<Group, String> {
    eprintln!("bench: {title}: {} cases x {iterations} calls", cases.len());
    let rows = round_robin(&cases, iterations)?;
    Ok(Group {
        title: title.into(),
        note: note.into(),
        baseline: cases.first().map(|c| c.name.clone()).unwrap_or_default(),
        rows,
        skipped: Vec::new(),
    })
}

/// A few untimed warm-up rounds, then `iterations` rounds of one call per case.
fn round_robin(cases: &[Case], iterations: usize) -> Result<Vec<(String, Samples)>, String> {
    let mut rows: Vec<(String, Samples)> = cases
        .iter()
        .map(|c| (c.name.clone(), Samples::default()))
        .collect();
    let warmup = iterations.min(5);
    for round in 0..warmup + iterations {
        for (c, (_, samples)) in cases.iter().zip(rows.iter_mut()) {
            if let Some(b) = &c.before {
                run(b).map_err(|e| format!("{} (before): {e}", c.name))?;
            }
            let took = run(&c.call).map_err(|e| format!("{}: {e}", c.name))?;
            if let Some(a) = &c.after {
                run(a).map_err(|e| format!("{} (after): {e}", c.name))?;
            }
            if round >= warmup {
                samples.push(took);
            }
        }
    }
    Ok(rows)
}

/// Runs a call and times it from spawn to exit; a failure is an error, never a sample.
fn run(c: &Call) -> Result<Duration, String> {
    let start = Instant::now();
    let mut child = Command::new(&c.program)
        .args(&c.args)
        .env_clear()
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", c.program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(c.stdin.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{} failed with {}: {}{}",
            c.program.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().any(|l| {
            l.strip_prefix("Uid:")
                .and_then(|u| u.split_whitespace().nth(1))
                == Some("0")
        })
    })
}

struct TempDir(PathBuf);

/// A directory of this run's on /dev/shm when that is a tmpfs, removed on drop.
fn tmpfs_dir() -> Result<Option<TempDir>, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let is_tmpfs = mounts.lines().any(|l| {
        let mut fields = l.split(' ').skip(1);
        (fields.next(), fields.next()) == (Some("/dev/shm"), Some("tmpfs"))
    });
    if !is_tmpfs {
        return Ok(None);
    }
    let dir = PathBuf::from(format!("/dev/shm/index2ip-bench-{}", std::process::id()));
    // Not create_dir_all: a directory of that name is someone else's, and would be removed on drop.
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(Some(TempDir(dir)))
}

impl TempDir {
    fn new() -> Result<TempDir, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("index2ip-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A node namespace with `eth0` (a veth whose peer sits in a third namespace) and a pod namespace; all removed on
/// drop.
struct Netns(Vec<String>);

impl Netns {
    fn new() -> Result<Netns, String> {
        let pid = std::process::id();
        let ns = Netns(
            ["node", "pod", "up"]
                .iter()
                .map(|r| format!("i2bench-{pid}-{r}"))
                .collect(),
        );
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("cannot run ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        for n in &ns.0 {
            ip(&["netns", "add", n])?;
        }
        ip(&[
            "-n", &ns.0[0], "link", "add", "eth0", "type", "veth", "peer", "name", "uplink",
            "netns", &ns.0[2],
        ])?;
        ip(&["-n", &ns.0[0], "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns.0[2], "link", "set", "uplink", "up"])?;
        ip(&[
            "netns",
            "exec",
            &ns.0[1],
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.accept_dad=0",
        ])?;
        Ok(ns)
    }

    fn node(&self) -> String {
        self.0[0].clone()
    }

    fn pod_path(&self) -> String {
        format!("/var/run/netns/{}", self.0[1])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}
