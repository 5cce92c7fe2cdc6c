//! The caller's view through the shim is the real plugin's.

use std::fs;
use std::os::unix::process::ExitStatusExt;

use crate::util::{error_reply, noise, text, Lab, CONF};

#[test]
fn every_exit_code_comes_through() {
    let lab = Lab::new(&[(
        "fake",
        "cat >/dev/null; echo out; echo err >&2; exit \"$FAKE_EXIT\"",
    )]);
    let codes: Vec<i32> = (0..=255).collect();
    std::thread::scope(|s| {
        for chunk in codes.chunks(32) {
            let lab = &lab;
            s.spawn(move || {
                for &code in chunk {
                    let mut c = lab.command("fake");
                    c.env("FAKE_EXIT", code.to_string());
                    let out = lab.run(c, CONF.as_bytes());
                    assert_eq!(out.status.code(), Some(code));
                    assert_eq!(
                        (text(&out.stdout), text(&out.stderr)),
                        ("out\n".into(), "err\n".into())
                    );
                }
            });
        }
    });
    let records = lab.records();
    assert_eq!(records.len(), 256);
    let mut seen: Vec<i32> = records.iter().map(|r| r.exit.code).collect();
    seen.sort_unstable();
    assert_eq!(seen, codes);
}

#[test]
fn the_plugin_starts_with_the_signals_and_descriptors_it_would_have_without_the_shim() {
    // What the plugin's own children see: blocked and ignored signals (the shim ignores SIGPIPE, the plugin must
    // not), and the descriptors open on them.
    let body =
        "grep -E '^Sig(Blk|Ign)' /proc/self/status; ls /proc/self/fd | sort -n | tr '\\n' ' '";
    let lab = Lab::new(&[("fake", body)]);
    let out = lab.call("fake", "{}");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let direct = std::process::Command::new("sh")
        .arg("-c")
        .arg(body)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    // The standard signals (1 to 31) as masks; the real-time ones above are libc's own business, and whatever
    // started this test may have left them ignored.
    let masks = |out: &str| -> Vec<u64> {
        out.lines()
            .filter_map(|l| l.split_once(":\t"))
            .filter(|(k, _)| k.starts_with("Sig"))
            .map(|(_, v)| u64::from_str_radix(v, 16).unwrap() & 0x7fff_ffff)
            .collect()
    };
    let (shimmed, direct) = (text(&out.stdout), text(&direct.stdout));
    assert_eq!(masks(&shimmed), masks(&direct), "{shimmed}");
    assert_eq!(
        masks(&shimmed)[1] & (1 << (13 - 1)),
        0,
        "SIGPIPE is not ignored"
    );
    let fds = |out: &str| out.lines().last().map(str::to_owned);
    assert_eq!(fds(&shimmed), fds(&direct));
    assert!(fds(&shimmed).unwrap().starts_with("0 1 2 3 "));
}

#[test]
fn a_request_written_late_and_slowly_still_reaches_the_plugin_whole() {
    // The shim moves what is already written before the plugin starts; the rest must follow.
    let lab = Lab::new(&[("echo", "cat")]);
    let mut c = lab.command("echo");
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut shim = c.spawn().unwrap();
    let mut stdin = shim.stdin.take().unwrap();
    let mut sent = Vec::new();
    for i in 0..5 {
        let part = format!("part {i}\n");
        std::io::Write::write_all(&mut stdin, part.as_bytes()).unwrap();
        sent.extend_from_slice(part.as_bytes());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(stdin);
    let out = shim.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, sent);
    assert_eq!(
        lab.records()[0].stdin.text.as_deref(),
        Some(text(&sent).as_str())
    );
}

#[test]
fn a_signal_is_reported_as_the_shell_does() {
    let lab = Lab::new(&[(
        "fake",
        "ulimit -c 0; echo before; kill -s \"$SIG\" $$; echo after",
    )]);
    for (name, n) in [
        ("HUP", 1),
        ("INT", 2),
        ("KILL", 9),
        ("SEGV", 11),
        ("TERM", 15),
    ] {
        let mut c = lab.command("fake");
        c.env("SIG", name);
        let out = lab.run(c, b"");
        assert_eq!(out.status.signal(), None, "the shim itself exits normally");
        assert_eq!(out.status.code(), Some(128 + n), "{name}");
        assert_eq!(text(&out.stdout), "before\n");
    }
    let signals: Vec<_> = lab
        .records()
        .iter()
        .map(|r| (r.exit.code, r.exit.signal))
        .collect();
    assert_eq!(
        signals,
        [
            (129, Some(1)),
            (130, Some(2)),
            (137, Some(9)),
            (139, Some(11)),
            (143, Some(15))
        ]
    );
}

#[test]
fn megabytes_of_arbitrary_bytes_pass_unchanged() {
    let lab = Lab::with_args(
        &[("echo", "cat"), ("echo-err", "cat >&2; echo done")],
        &["--capture-bytes", "4096"],
    );
    let input = noise(6 << 20, 7);
    let out = lab.run(lab.command("echo"), &input);
    assert!(out.status.success());
    assert!(
        out.stdout == input,
        "stdout differs from the input ({} bytes)",
        out.stdout.len()
    );
    let out = lab.run(lab.command("echo-err"), &input);
    assert!(
        out.stderr == input,
        "stderr differs from the input ({} bytes)",
        out.stderr.len()
    );
    assert_eq!(text(&out.stdout), "done\n");
    let records = lab.records();
    let r = &records[0];
    assert_eq!(
        (r.stdin.len, r.stdout.len),
        (input.len() as u64, input.len() as u64)
    );
    assert!(r.stdin.truncated && r.stdout.truncated);
    assert_eq!(
        r.stdin.bytes(),
        input[..4096],
        "the kept prefix is exact, as base64"
    );
    assert!(r.stdin.base64.is_some());
    assert_eq!(records[1].stderr.len, input.len() as u64);
}

#[test]
fn a_plugin_that_ignores_stdin_does_not_hang_the_caller() {
    let lab = Lab::new(&[("quick", "echo '{}'")]);
    let out = lab.run(lab.command("quick"), &noise(8 << 20, 3));
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "{}\n".into())
    );
}

#[test]
fn arguments_environment_and_slowness_are_the_plugins_business() {
    let lab = Lab::new(&[(
        "fake",
        "sleep 0.3; echo \"$0|$*|$CNI_COMMAND|$CNI_IFNAME|$CNI_ARGS|$OTHER\"; test -n \"$CNI_SHIM_TRACEPARENT\" || exit 9",
    )]);
    let mut c = lab.command("fake");
    c.args(["a b", "c"])
        .env("OTHER", "kept")
        .env("CNI_ARGS", "K8S_POD_NAME=p");
    let out = lab.run(c, CONF.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let real = lab.real.join("fake");
    assert_eq!(
        text(&out.stdout),
        format!("{}|a b c|ADD|eth0|K8S_POD_NAME=p|kept\n", real.display())
    );
    let r = &lab.records()[0];
    assert!(
        r.duration_us >= 300_000,
        "the record times the whole call: {}",
        r.duration_us
    );
    assert_eq!(r.argv[1..], ["a b".to_owned(), "c".to_owned()]);
    assert!(
        !r.env.contains_key("OTHER"),
        "only CNI variables are recorded"
    );
}

#[test]
fn version_probes_with_a_dummy_cni_path_work() {
    let lab = Lab::new(&[(
        "fake",
        r#"echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}'"#,
    )]);
    let mut c = lab.command("fake");
    c.env("CNI_COMMAND", "VERSION").env("CNI_PATH", "dummy");
    let out = lab.run(c, b"");
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("supportedVersions"));
    assert!(
        lab.records().is_empty(),
        "successful probes are not recorded by default"
    );
    lab.configure(|c| c.record_probes = true);
    let mut c = lab.command("fake");
    c.env("CNI_COMMAND", "VERSION").env("CNI_PATH", "dummy");
    lab.run(c, b"");
    assert_eq!(lab.records().len(), 1);
}

#[test]
fn a_missing_real_plugin_is_a_cni_error_naming_the_path() {
    let lab = Lab::new(&[("gone", "exit 0")]);
    fs::remove_file(lab.real.join("gone")).unwrap();
    let out = lab.call("gone", r#"{"cniVersion":"0.4.0","name":"n","type":"gone"}"#);
    let reply = error_reply(&out);
    assert_eq!(reply["cniVersion"], "0.4.0");
    assert_eq!(reply["code"], 5);
    let msg = reply["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&lab.real.join("gone").display().to_string()),
        "{msg}"
    );
    let r = &lab.records()[0];
    assert_eq!((r.exit.code, r.child_pid), (1, None));
    assert!(r.error.as_deref().unwrap_or_default().contains("gone"));
}

#[test]
fn the_shim_never_runs_itself() {
    let lab = Lab::new(&[("fake", "exit 0")]);
    // A real directory that is the shim directory: every "real" plugin is a link to the shim.
    lab.configure(|c| c.real_dir = lab.shim.clone());
    let out = lab.call("fake", CONF);
    let reply = error_reply(&out);
    assert!(
        reply["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("the shim itself"),
        "{reply}"
    );
}

#[test]
fn a_missing_configuration_is_a_cni_error_naming_it() {
    let lab = Lab::new(&[("fake", "exit 0")]);
    fs::remove_file(lab.shim.join(".cni-shim.json")).unwrap();
    let reply = error_reply(&lab.call("fake", CONF));
    assert_eq!(reply["cniVersion"], "1.0.0");
    let msg = reply["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(".cni-shim.json"), "{msg}");
}

#[test]
fn a_caller_that_stops_reading_breaks_the_plugins_pipe_as_without_the_shim() {
    use std::process::Stdio;
    let lab = Lab::new(&[("chatty", "cat >/dev/null; while :; do echo line; done")]);
    let direct = {
        let mut c = std::process::Command::new(lab.real.join("chatty"));
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        drop(child.stdout.take());
        child.wait().unwrap()
    };
    assert_eq!(direct.signal(), Some(13), "without the shim: SIGPIPE");
    let mut c = lab.command("chatty");
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    drop(child.stdout.take());
    let through = child.wait().unwrap();
    assert_eq!(
        through.code(),
        Some(128 + 13),
        "through the shim: as the shell reports SIGPIPE"
    );
    assert_eq!(lab.records()[0].exit.signal, Some(13));
}
