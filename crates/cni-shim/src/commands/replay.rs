//! `replay`: run a recorded call again against the real plugin.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::record::Record;
use crate::{trace, Error};

/// What a replay would run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// The real plugin.
    pub program: PathBuf,
    /// Its arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Its whole environment: the recorded `CNI_*` variables and a plain `PATH`.
    pub env: BTreeMap<String, String>,
    /// The stdin the record kept: cut short or redacted where `problems` says so.
    pub stdin: Vec<u8>,
    /// Why the replay would not be the recorded call.
    pub problems: Vec<String>,
}

/// Plans a replay: the recorded call, minus the shim's parent link (a replay is a new root).
pub(crate) fn plan(r: &Record) -> Result<Plan, Error> {
    let program = r.real_path.as_ref().map(PathBuf::from).ok_or_else(|| {
        Error::Usage(format!(
            "record {} names no real plugin: {}",
            r.id,
            r.error.as_deref().unwrap_or("unknown")
        ))
    })?;
    let mut env: BTreeMap<String, String> = r.env.clone();
    env.remove(trace::ENV);
    env.insert(
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    let mut problems = Vec::new();
    if r.stdin.truncated {
        problems.push(format!(
            "stdin was {} bytes and only {} were kept",
            r.stdin.len,
            r.stdin.bytes().len()
        ));
    }
    if !r.redacted.is_empty() {
        problems.push(format!("values were redacted: {}", r.redacted.join(", ")));
    }
    Ok(Plan {
        program,
        args: r.argv.iter().skip(1).cloned().collect(),
        env,
        stdin: r.stdin.bytes(),
        problems,
    })
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_./=:,+@".contains(&c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Prints the plan as a shell command that would do the same.
pub(crate) fn describe(out: &mut impl Write, p: &Plan) -> io::Result<()> {
    for problem in &p.problems {
        writeln!(out, "# warning: {problem}")?;
    }
    let stdin = String::from_utf8_lossy(&p.stdin);
    write!(out, "printf '%s' {} |\n  env -i", quote(&stdin))?;
    for (k, v) in &p.env {
        write!(out, " \\\n    {}", quote(&format!("{k}={v}")))?;
    }
    write!(out, " \\\n    {}", quote(&p.program.to_string_lossy()))?;
    for a in &p.args {
        write!(out, " {}", quote(a))?;
    }
    writeln!(out)
}

/// What a replay did.
#[derive(Debug)]
pub(crate) struct Replayed {
    /// Its exit status (128+n for a signal).
    pub code: i32,
    /// Whether stdout matched the recorded stdout.
    pub same_stdout: bool,
}

/// Runs the plan, passing the plugin's stdout and stderr through.
pub(crate) fn run(p: &Plan, recorded: &Record) -> Result<Replayed, Error> {
    let mut child = Command::new(&p.program)
        .args(&p.args)
        .env_clear()
        .envs(&p.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| Error::Spawn {
            path: p.program.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let bytes = p.stdin.clone();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let output = child
        .wait_with_output()
        .map_err(Error::io("wait for", &p.program))?;
    io::stdout()
        .write_all(&output.stdout)
        .map_err(Error::io("write", "stdout"))?;
    use std::os::unix::process::ExitStatusExt;
    let code = output
        .status
        .code()
        .unwrap_or_else(|| 128 + output.status.signal().unwrap_or(0));
    Ok(Replayed {
        code,
        same_stdout: !recorded.stdout.truncated && output.stdout == recorded.stdout.bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Exit, Payload};

    fn record() -> Record {
        Record {
            format: 1,
            id: "00f067aa0ba902b7".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            parent_id: None,
            parent_source: None,
            plugin: "bridge".into(),
            real_path: Some("/opt/cni/bin/bridge".into()),
            command: Some("ADD".into()),
            container_id: Some("c".into()),
            ifname: Some("eth0".into()),
            netns: None,
            cni_args: None,
            cni_path: None,
            argv: vec!["/opt/cni-shim/bin/bridge".into(), "it's".into()],
            env: BTreeMap::from([
                ("CNI_COMMAND".to_owned(), "ADD".to_owned()),
                (trace::ENV.to_owned(), "00-x-y-01".to_owned()),
            ]),
            stdin: Payload {
                len: 2,
                text: Some("{}".into()),
                ..Payload::default()
            },
            stdout: Payload::default(),
            stderr: Payload::default(),
            exit: Exit::default(),
            error: None,
            start: String::new(),
            start_unix_ns: 0,
            duration_us: 0,
            pid: 1,
            child_pid: None,
            redacted: Vec::new(),
        }
    }

    #[test]
    fn a_replay_is_a_new_root_with_the_recorded_call() -> Result<(), Error> {
        let p = plan(&record())?;
        assert_eq!(p.program, PathBuf::from("/opt/cni/bin/bridge"));
        assert_eq!(p.args, ["it's"]);
        assert_eq!(p.stdin, b"{}");
        assert!(!p.env.contains_key(trace::ENV));
        assert!(p.problems.is_empty());
        let mut shown = Vec::new();
        describe(&mut shown, &p).map_err(Error::io("write", "buffer"))?;
        let shown = String::from_utf8_lossy(&shown);
        assert!(
            shown.contains("'it'\\''s'") && shown.contains("CNI_COMMAND=ADD"),
            "{shown}"
        );
        Ok(())
    }

    #[test]
    fn truncated_or_redacted_records_are_flagged_and_failed_lookups_refused() {
        let mut r = record();
        r.stdin.truncated = true;
        r.redacted = vec!["stdin:/password".into()];
        assert_eq!(plan(&r).map(|p| p.problems.len()).ok(), Some(2));
        r.real_path = None;
        assert!(plan(&r).is_err());
    }
}
