//! The plugin side: read the invocation, dispatch one verb, write the one reply.

use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

use crate::config::sniff_version;
use crate::error::code;
use crate::{CniResult, Command, Env, Error, ErrorReply, NetConf, Version, VersionInfo};

/// The most a configuration on stdin may weigh. Real ones are a few KiB; the bound keeps a runaway writer from
/// exhausting a node's memory.
pub const STDIN_LIMIT: u64 = 16 << 20;

/// A decoded request: what every verb but VERSION receives.
#[derive(Debug, Clone)]
pub struct Request {
    /// The `CNI_*` variables, parsed.
    pub env: Env,
    /// The configuration's version, one the plugin supports and at which the verb exists.
    pub version: Version,
    /// The configuration from stdin; for a delegated IPAM plugin, its parent's whole configuration.
    pub config: NetConf,
}

/// What a plugin implements. VERSION is answered from [`Plugin::versions`]; every other verb gets a
/// [`Request`] whose version the plugin supports and at which the verb is defined.
pub trait Plugin {
    /// The versions the plugin accepts, oldest first.
    fn versions(&self) -> &[Version] {
        &Version::ALL
    }
    /// ADD: the result to hand back, rendered at the request's version by the caller.
    fn add(&self, req: &Request) -> Result<CniResult, ErrorReply>;
    /// DEL: must succeed when there is nothing to delete.
    fn del(&self, req: &Request) -> Result<(), ErrorReply>;
    /// CHECK (0.4.0 and later): an error if what ADD set up, as `prevResult` describes it, is no longer so.
    fn check(&self, req: &Request) -> Result<(), ErrorReply>;
    /// GC: nothing to collect unless the plugin keeps state.
    fn gc(&self, _req: &Request) -> Result<(), ErrorReply> {
        Ok(())
    }
    /// STATUS: ready unless the plugin knows otherwise.
    fn status(&self, _req: &Request) -> Result<(), ErrorReply> {
        Ok(())
    }
}

/// Runs a plugin against this process's environment, stdin and stdout. The whole of a plugin's `main`.
pub fn serve<P: Plugin>(plugin: &P) -> ExitCode {
    run(
        plugin,
        Env::from_process(),
        io::stdin().lock(),
        io::stdout().lock(),
    )
}

/// [`serve`] with its inputs and output named, for tests and for programs that embed a plugin.
pub fn run<P: Plugin>(
    plugin: &P,
    env: Result<Env, Error>,
    stdin: impl Read,
    mut stdout: impl Write,
) -> ExitCode {
    let mut version = None;
    // A panic is a bug, but the runtime must still get a reply it can read.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        dispatch(plugin, env, stdin, &mut version)
    }))
    .unwrap_or_else(|_| {
        Outcome::Error(ErrorReply::new(
            code::INTERNAL,
            "internal error: the plugin panicked (see stderr); this is a bug",
        ))
    });
    let version = version.unwrap_or_else(|| Version::LATEST.as_str().to_owned());
    write_reply(&mut stdout, &version, outcome)
}

/// Everything a plugin can print.
#[derive(Debug)]
pub enum Outcome {
    /// ADD's result, at the request's version.
    Result(CniResult, Version),
    /// VERSION's answer.
    Version(VersionInfo),
    /// Success with nothing to print (DEL, CHECK, GC, STATUS).
    Done,
    /// An error reply, printed with a non-zero exit.
    Error(ErrorReply),
}

/// The one writer of a plugin's stdout: prints the outcome as one line of JSON and picks the exit code. An error
/// reply carries `version` when it has none of its own. A failed write is reported on stderr and is a failure.
pub fn write_reply(out: &mut impl Write, version: &str, outcome: Outcome) -> ExitCode {
    // The reply is rendered whole, then written at once: serialising straight into a locked stdout paid for the
    // lock and the line buffer's newline search on every small write, a fifth of a plugin's instructions.
    let mut reply = Vec::with_capacity(512);
    let (rendered, status) = match outcome {
        Outcome::Result(result, v) => (
            serde_json::to_writer(&mut reply, &result.at(v)),
            ExitCode::SUCCESS,
        ),
        Outcome::Version(info) => (serde_json::to_writer(&mut reply, &info), ExitCode::SUCCESS),
        Outcome::Done => return ExitCode::SUCCESS,
        Outcome::Error(mut error) => {
            if error.cni_version.is_empty() {
                version.clone_into(&mut error.cni_version);
            }
            (serde_json::to_writer(&mut reply, &error), ExitCode::FAILURE)
        }
    };
    reply.push(b'\n');
    let written = rendered
        .map_err(io::Error::from)
        .and_then(|()| out.write_all(&reply))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => status,
        Err(e) => {
            // Stdout is gone; stderr is the only channel left.
            let _ = writeln!(io::stderr(), "cannot write the reply to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch<P: Plugin>(
    plugin: &P,
    env: Result<Env, Error>,
    stdin: impl Read,
    version: &mut Option<String>,
) -> Outcome {
    let env = match env {
        Ok(env) => env,
        Err(e) => return Outcome::Error(e.into()),
    };
    if env.command == Command::Version {
        return Outcome::Version(VersionInfo::new(plugin.versions()));
    }
    let request = match decode(plugin, env, stdin, version) {
        Ok(r) => r,
        Err(e) => return Outcome::Error(e.into()),
    };
    let done = |r: Result<(), ErrorReply>| r.map_or_else(Outcome::Error, |()| Outcome::Done);
    match request.env.command {
        Command::Add => match plugin.add(&request) {
            Ok(result) => Outcome::Result(result, request.version),
            Err(e) => Outcome::Error(e),
        },
        Command::Del => done(plugin.del(&request)),
        Command::Check => done(plugin.check(&request)),
        Command::Gc => done(plugin.gc(&request)),
        Command::Status => done(plugin.status(&request)),
        Command::Version => Outcome::Version(VersionInfo::new(plugin.versions())),
    }
}

fn decode<P: Plugin>(
    plugin: &P,
    env: Env,
    stdin: impl Read,
    version: &mut Option<String>,
) -> Result<Request, Error> {
    let mut bytes = Vec::with_capacity(4096);
    stdin
        .take(STDIN_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::Stdin)?;
    if bytes.len() as u64 > STDIN_LIMIT {
        return Err(Error::StdinTooLarge { limit: STDIN_LIMIT });
    }
    let config = NetConf::from_slice(&bytes).inspect_err(|_| {
        *version = sniff_version(&bytes).filter(|v| v.parse::<Version>().is_ok());
    })?;
    let parsed = config.version()?;
    if !plugin.versions().contains(&parsed) {
        return Err(Error::UnsupportedVersion(config.cni_version));
    }
    *version = Some(parsed.as_str().to_owned());
    if parsed < env.command.since() {
        return Err(Error::VerbTooNew {
            command: env.command,
            version: parsed,
        });
    }
    Ok(Request {
        env,
        version: parsed,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IpConfig;
    use serde_json::{json, Value};

    struct Fake;

    impl Plugin for Fake {
        fn versions(&self) -> &[Version] {
            &Version::ALL[2..]
        }
        fn add(&self, req: &Request) -> Result<CniResult, ErrorReply> {
            if req.config.name.as_deref() == Some("panic") {
                #[allow(clippy::panic)]
                {
                    panic!("deliberate");
                }
            }
            let address = "192.0.2.1/24"
                .parse()
                .map_err(|_| ErrorReply::new(100, "parse"))?;
            Ok(CniResult {
                ips: vec![IpConfig {
                    address,
                    gateway: None,
                    interface: None,
                }],
                ..CniResult::default()
            })
        }
        fn del(&self, _: &Request) -> Result<(), ErrorReply> {
            Ok(())
        }
        fn check(&self, _: &Request) -> Result<(), ErrorReply> {
            Err(ErrorReply::new(103, "mismatch").with_details("why"))
        }
    }

    fn call(command: &str, stdin: &str) -> (ExitCode, String) {
        let env = Env::from_vars([
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/n"),
            ("CNI_IFNAME", "eth0"),
        ]);
        let mut out = Vec::new();
        let code = run(&Fake, env, stdin.as_bytes(), &mut out);
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    #[test]
    fn add_answers_in_the_request_version() {
        let (code, out) = call("ADD", r#"{"cniVersion":"0.3.1","name":"n","type":"x"}"#);
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(
            json(&out),
            json!({"cniVersion":"0.3.1","ips":[{"version":"4","address":"192.0.2.1/24"}]})
        );
        assert!(out.ends_with("}\n"), "one line of JSON: {out:?}");
    }

    #[test]
    fn version_ignores_stdin() {
        let (code, out) = call("VERSION", "garbage");
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(
            json(&out),
            json!({"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
        );
    }

    #[test]
    fn errors_carry_code_message_and_version() {
        let cases = [
            ("ADD", "", 6, "1.1.0"),
            ("ADD", "{", 6, "1.1.0"),
            ("ADD", r#"{"cniVersion":"0.4.0","ipam":1}"#, 7, "0.4.0"),
            ("ADD", r#"{"cniVersion":"0.2.0"}"#, 1, "1.1.0"),
            ("ADD", r#"{"cniVersion":"7.0.0"}"#, 1, "1.1.0"),
            ("CHECK", r#"{"cniVersion":"0.3.1"}"#, 1, "0.3.1"),
            ("CHECK", r#"{"cniVersion":"1.0.0"}"#, 103, "1.0.0"),
            ("GC", r#"{"cniVersion":"1.0.0"}"#, 1, "1.0.0"),
            ("STATUS", r#"{"cniVersion":"0.4.0"}"#, 1, "0.4.0"),
            ("BOGUS", "{}", 4, "1.1.0"),
            (
                "ADD",
                r#"{"cniVersion":"1.1.0","name":"panic"}"#,
                199,
                "1.1.0",
            ),
        ];
        for (verb, stdin, code, version) in cases {
            let (exit, out) = call(verb, stdin);
            assert_eq!(exit, ExitCode::FAILURE, "{verb} {stdin}");
            let reply = json(&out);
            assert_eq!(reply["code"], json!(code), "{verb} {stdin}: {out}");
            assert_eq!(reply["cniVersion"], json!(version), "{verb} {stdin}: {out}");
            assert!(
                reply["msg"].as_str().is_some_and(|m| !m.is_empty()),
                "{out}"
            );
            assert!(out.ends_with('\n'));
        }
    }

    #[test]
    fn quiet_success_prints_nothing() {
        for (verb, stdin) in [
            ("DEL", r#"{"cniVersion":"0.3.0"}"#),
            ("GC", r#"{"cniVersion":"1.1.0"}"#),
            ("STATUS", r#"{"cniVersion":"1.1.0"}"#),
        ] {
            assert_eq!(
                call(verb, stdin),
                (ExitCode::SUCCESS, String::new()),
                "{verb}"
            );
        }
    }

    #[test]
    fn refuses_oversized_stdin() {
        let big = vec![b' '; STDIN_LIMIT as usize + 1];
        let env = Env::from_vars([("CNI_COMMAND", "GC")]);
        let mut out = Vec::new();
        assert_eq!(run(&Fake, env, &big[..], &mut out), ExitCode::FAILURE);
        assert_eq!(json(&String::from_utf8_lossy(&out))["code"], json!(6));
    }

    #[test]
    fn a_failed_write_is_a_failure() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let outcome = Outcome::Version(VersionInfo::new(&Version::ALL));
        assert_eq!(
            write_reply(&mut Broken, "1.1.0", outcome),
            ExitCode::FAILURE
        );
    }
}
