//! Faults of the real plugin and of the log directory that the other modules do not cover: a plugin that cannot
//! be executed, one that hangs until the runtime's own timeout kills the shim, one that writes gigabytes, and a
//! log directory replaced by a symbolic link while the plugin runs.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{error_reply, noise, path, text, Lab, CONF};

/// How long a step may take before the test calls it a hang. Generous: it guards against hanging forever and
/// measures nothing.
const HANG: Duration = Duration::from_secs(20);

/// Polls `f` until it holds or [`HANG`] passes.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < HANG, "still not {what} after {HANG:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The state letter of a process (`R`, `S`, `Z`...), `None` once it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn a_real_plugin_that_cannot_be_executed_is_a_cni_error_naming_it() {
    let lab = Lab::new(&[
        ("not-executable", "echo never"),
        ("bad-interpreter", "echo never"),
        ("garbage", "echo never"),
        ("a-directory", "echo never"),
    ]);
    let real = |n: &str| lab.real.join(n);
    fs::set_permissions(real("not-executable"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(
        real("bad-interpreter"),
        "#!/nonexistent/interpreter\necho never\n",
    )
    .unwrap();
    fs::write(real("garbage"), noise(4096, 5)).unwrap();
    fs::remove_file(real("a-directory")).unwrap();
    fs::create_dir(real("a-directory")).unwrap();
    for name in [
        "not-executable",
        "bad-interpreter",
        "garbage",
        "a-directory",
    ] {
        let out = lab.call(
            name,
            &format!(r#"{{"cniVersion":"0.3.1","name":"n","type":"{name}"}}"#),
        );
        let reply = error_reply(&out);
        assert_eq!(reply["cniVersion"], "0.3.1", "{name}: {reply}");
        assert_eq!(reply["code"], 5, "{name}: {reply}");
        let msg = reply["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&real(name).display().to_string()),
            "{name}: {msg}"
        );
    }
    let records = lab.records();
    assert_eq!(records.len(), 4, "a failed call is recorded too");
    assert!(records
        .iter()
        .all(|r| r.child_pid.is_none() && r.exit.code != 0 && r.error.is_some()));
    // The request was already moved towards the plugin when it failed to start: it is still whole in the record.
    for r in &records {
        let stdin = r.stdin.text.as_deref().unwrap_or_default();
        assert!(
            stdin.starts_with(r#"{"cniVersion":"0.3.1""#) && stdin.ends_with("\"}"),
            "{stdin}"
        );
    }
}

#[test]
fn a_plugin_that_cannot_start_answers_in_the_version_of_a_request_longer_than_the_capture() {
    // The request was read before the plugin failed to start, and the record keeps only 16 bytes of it: the reply's
    // version still comes from all of it.
    let lab = Lab::with_args(&[("garbage", "echo never")], &["--capture-bytes", "16"]);
    fs::write(lab.real.join("garbage"), noise(4096, 9)).unwrap();
    let padding = "x".repeat(100_000);
    let out = lab.call(
        "garbage",
        &format!(r#"{{"cniVersion":"0.4.0","name":"n","type":"garbage","padding":"{padding}"}}"#),
    );
    let reply = error_reply(&out);
    assert_eq!(reply["cniVersion"], "0.4.0", "{reply}");
    assert_eq!(reply["code"], 5, "{reply}");
    let records = lab.records();
    assert_eq!(
        records[0].stdin.len, 100_063,
        "the whole request is counted"
    );
    assert!(records[0].stdin.truncated);
}

#[test]
fn a_hanging_plugin_yields_to_the_runtimes_timeout() {
    // The plugin reads its config, tells the test its pid, then blocks on a FIFO no one writes yet: a plugin stuck
    // on a lock or on the kernel.
    let lab = Lab::new(&[(
        "hang",
        "cat >/dev/null; echo $$ >\"$PIDFILE.tmp\"; mv \"$PIDFILE.tmp\" \"$PIDFILE\"; read x <\"$FIFO\"; echo '{}'",
    )]);
    let pidfile = lab.tmp.path().join("pid");
    let fifo = lab.tmp.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut c = lab.command("hang");
    c.env("PIDFILE", &pidfile)
        .env("FIFO", &fifo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut shim = c.spawn().unwrap();
    shim.stdin
        .take()
        .unwrap()
        .write_all(CONF.as_bytes())
        .unwrap();
    eventually("started", || pidfile.exists());
    let plugin: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // The runtime's timeout: it kills the process it ran (the shim), as a context-bound exec does.
    let (mut stdout, mut stderr) = (shim.stdout.take().unwrap(), shim.stderr.take().unwrap());
    shim.kill().unwrap();
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        let _ = stderr.read_to_end(&mut bytes);
        let _ = done.send(bytes);
    });
    let status = shim.wait().unwrap();
    let got = wait.recv_timeout(HANG).expect(
        "the runtime's pipes reach end of file once the shim is dead: nothing else holds them",
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(got.is_empty(), "{}", text(&got));

    // The real plugin dies with the shim, as it would have died with the runtime's own kill without a shim.
    // Built with std::process (src/spawn/mod.rs), it lives on, as documented: it is released instead.
    let dies_with_the_shim = cfg!(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64"),
        not(feature = "portable-spawn")
    ));
    if dies_with_the_shim {
        eventually("the real plugin gone with the shim", || {
            matches!(proc_state(plugin), None | Some('Z'))
        });
    } else {
        assert!(
            matches!(proc_state(plugin), Some('S' | 'R')),
            "the plugin outlives the shim"
        );
        fs::write(&fifo, "go\n").unwrap();
        eventually("the released plugin ends", || {
            matches!(proc_state(plugin), None | Some('Z'))
        });
    }
    // The shim died before its record: no record, and nothing half-written. What is left is at most the empty
    // file the record was to be written to, hidden from queries and removed by a later prune once stale.
    let left: Vec<(String, u64)> = fs::read_dir(&lab.logs)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let len = e.metadata().map_or(u64::MAX, |m| m.len());
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|(n, len)| n.starts_with(".tmp-") && *len == 0),
        "{left:?}"
    );
    assert!(lab.records().is_empty());
}

#[test]
fn pruning_after_the_log_directory_was_swapped_deletes_nothing_through_the_link() {
    // The plugin swaps the log directory for a link to a directory holding a record-like file; the call's own
    // prune, due on every call here and over a tiny bound, must work on the directory the shim checked.
    let lab = Lab::new(&[(
        "swap",
        "cat >/dev/null; mv \"$LOGS\" \"$LOGS.moved\"; mkdir \"$ELSEWHERE\"; \
         echo keep > \"$ELSEWHERE/20200101T000000.000000000Z-00000000000000aa-5~ADD~ok~x~y.json\"; \
         ln -s \"$ELSEWHERE\" \"$LOGS\"; echo '{}'",
    )]);
    lab.configure(|c| {
        c.prune_every = 1;
        c.max_bytes = 1;
    });
    fs::create_dir_all(&lab.logs).unwrap();
    let elsewhere = lab.tmp.path().join("elsewhere");
    let mut c = lab.command("swap");
    c.env("LOGS", &lab.logs).env("ELSEWHERE", &elsewhere);
    let out = lab.run(c, CONF.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let left: Vec<String> = fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "nothing pruned through the link: {left:?}");
}

/// The peak resident size in KiB of process `pid` so far, from `/proc`.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[test]
fn a_plugin_writing_a_gigabyte_passes_it_all_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let lab = Lab::new(&[(
        "flood",
        "cat >/dev/null; yes 0123456789abcdef | head -c $SIZE",
    )]);
    let mut c = lab.command("flood");
    c.env("SIZE", GIB.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut shim = c.spawn().unwrap();
    let pid = shim.id();
    shim.stdin
        .take()
        .unwrap()
        .write_all(CONF.as_bytes())
        .unwrap();
    let mut stdout = shim.stdout.take().unwrap();
    // The runtime reads everything; the shim's peak memory is sampled while it streams and until it exits.
    let (stop, stopped) = mpsc::channel::<()>();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while stopped.try_recv().is_err() {
            if let Some(kib) = vm_hwm_kib(pid) {
                peak = peak.max(kib);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let mut buf = vec![0u8; 1 << 16];
    let (mut total, mut last_line) = (0u64, Vec::new());
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        last_line.extend_from_slice(&buf[..n]);
        let keep = last_line.len().saturating_sub(17);
        last_line.drain(..keep);
    }
    let status = shim.wait().unwrap();
    stop.send(()).unwrap();
    let peak_kib = sampler.join().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(total, GIB, "every byte reached the runtime");
    // 2^30 is a multiple of the 17-byte line plus a 13-byte remainder: the stream ends mid-line, as head cut it.
    assert!(
        last_line.ends_with(b"0123456789abc"),
        "{}",
        text(&last_line)
    );
    assert!(peak_kib > 0, "the shim's memory was never sampled");
    assert!(
        peak_kib < 32 * 1024,
        "the shim's peak resident size was {peak_kib} KiB while {total} bytes passed"
    );
    let _ = writeln!(
        std::io::stderr(),
        "cni-shim peak RSS with 1 GiB on stdout: {peak_kib} KiB (sampled)"
    );
    let r = &lab.records()[0];
    assert_eq!((r.stdout.len, r.stdout.truncated), (GIB, true));
    assert_eq!(
        r.stdout.bytes().len() as u64,
        cni_shim::config::DEFAULT_CAPTURE_BYTES,
        "the record keeps captureBytes"
    );
}

#[test]
fn a_log_directory_replaced_by_a_symlink_mid_run_is_not_followed() {
    // The plugin itself swaps the log directory for a link to a directory of its choosing while the call runs.
    let lab = Lab::new(&[(
        "swap",
        "cat; if [ -d \"$LOGS\" ] && [ ! -L \"$LOGS\" ]; then mv \"$LOGS\" \"$LOGS.moved\"; mkdir \"$ELSEWHERE\"; ln -s \"$ELSEWHERE\" \"$LOGS\"; fi; echo to stderr >&2; exit 42",
    )]);
    let elsewhere = lab.tmp.path().join("elsewhere");
    let moved = Path::new(&format!("{}.moved", path(&lab.logs))).to_owned();
    // A first, ordinary call fills the directory.
    let ordinary = lab.run(
        {
            let mut c = lab.command("swap");
            c.env("LOGS", lab.tmp.path().join("not-the-log-dir"))
                .env("ELSEWHERE", &elsewhere);
            c
        },
        CONF.as_bytes(),
    );
    assert_eq!(ordinary.status.code(), Some(42));
    assert_eq!(lab.records().len(), 1);
    assert!(!elsewhere.exists());

    let input = noise(200_000, 9);
    for round in 0..2 {
        let mut c = lab.command("swap");
        c.env("LOGS", &lab.logs).env("ELSEWHERE", &elsewhere);
        let out = lab.run(c, &input);
        assert_eq!(out.status.code(), Some(42), "round {round}");
        assert!(out.stdout == input, "round {round}: stdout changed");
        assert_eq!(text(&out.stderr), "to stderr\n");
        if round == 0 {
            assert!(fs::symlink_metadata(&lab.logs)
                .unwrap()
                .file_type()
                .is_symlink());
        }
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "round {round}: nothing written through the link"
        );
    }
    // The call that swapped the directory had checked it and opened its file before: that record lands in the
    // directory it checked, now moved. The next call finds a link and records nothing.
    let moved: Vec<String> = fs::read_dir(&moved)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert!(moved.iter().all(|n| !n.starts_with('.')), "{moved:?}");
}
