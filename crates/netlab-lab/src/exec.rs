//! The runtime side: executing a plugin, or a chain of them, as libcni does.
//!
//! The lab's alone: plugins never need it, so the protocol crate `cni` stays the protocol. It holds the lab's one
//! `unsafe` block ([`unshare_thread`]).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::{Map, Value};

use cni::{CniResult, Command, ErrorReply, NetConf, Version};
use netlab_model::cniconf::NetworkConfig;

/// Why running a plugin gave no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// No executable of that name in any directory of the search path.
    #[error("plugin {plugin:?} not found in {}", join(.path))]
    NotFound {
        /// The plugin type.
        plugin: String,
        /// The directories searched.
        path: Vec<PathBuf>,
    },
    /// The plugin could not be started or talked to.
    #[error("cannot run {}: {source}", .plugin.display())]
    Spawn {
        /// The executable.
        plugin: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A namespace the plugin was to run in cannot be opened.
    #[error("cannot open the namespace {}: {source}", .path.display())]
    Namespace {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The plugin answered with a CNI error.
    #[error("{} {command} failed with code {}: {}{}", .plugin.display(), .reply.code, .reply.msg,
        if .reply.details.is_empty() { String::new() } else { format!(" ({})", .reply.details) })]
    Plugin {
        /// The executable.
        plugin: PathBuf,
        /// The verb.
        command: Command,
        /// Its error reply.
        reply: ErrorReply,
    },
    /// The plugin failed without a CNI error on stdout.
    #[error("{} {command} exited with {status} and no CNI error on stdout; stderr: {stderr}", .plugin.display())]
    Failed {
        /// The executable.
        plugin: PathBuf,
        /// The verb.
        command: Command,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The network configuration cannot run: it has no name, or a version the spec does not define.
    #[error("network configuration {name:?}: {reason}")]
    Config {
        /// Its name, as far as it has one.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The plugin succeeded but its stdout is not a result of the requested version.
    #[error("{} {command} printed no valid {version} result: {source}", .plugin.display())]
    BadResult {
        /// The executable.
        plugin: PathBuf,
        /// The verb.
        command: Command,
        /// The requested version.
        version: Version,
        /// What did not decode.
        #[source]
        source: serde_json::Error,
    },
}

impl ExecError {
    /// The plugin's own CNI error, where it gave one.
    pub fn reply(&self) -> Option<&ErrorReply> {
        match self {
            ExecError::Plugin { reply, .. } => Some(reply),
            _ => None,
        }
    }
}

fn join(path: &[PathBuf]) -> String {
    let dirs: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
    if dirs.is_empty() {
        "an empty CNI_PATH".to_owned()
    } else {
        dirs.join(":")
    }
}

/// The attachment a call is about, and how to run plugins for it.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`: where plugins are found, also by plugins that delegate.
    pub path: Vec<PathBuf>,
    /// Namespace files (`/proc/PID/ns/mnt`, `/var/run/netns/NODE`, ...) the plugin runs in, entered in this order
    /// by the thread that spawns it, as `nsenter` would but without its process; empty: this process's own.
    pub namespaces: Vec<PathBuf>,
    /// Other environment the plugin gets; nothing else of this process's environment is passed.
    pub extra_env: Vec<(OsString, OsString)>,
    /// The runtime's capability arguments (`portMappings`, ...): each plugin whose configuration declares a
    /// capability `true` gets that argument in its `runtimeConfig`, as libcni passes them (SPEC.md section 3,
    /// "Deriving runtimeConfig").
    pub capability_args: Map<String, Value>,
}

/// What a plugin printed on success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Stdout.
    pub stdout: Vec<u8>,
    /// Stderr, which plugins use for diagnostics.
    pub stderr: Vec<u8>,
}

impl Invocation {
    /// Finds a plugin's executable in `path`, as libcni does: the first directory holding it wins.
    pub fn find(&self, plugin: &str) -> Result<PathBuf, ExecError> {
        let not_found = || ExecError::NotFound {
            plugin: plugin.to_owned(),
            path: self.path.clone(),
        };
        if plugin.is_empty() || plugin.contains('/') {
            return Err(not_found());
        }
        self.path
            .iter()
            .map(|dir| dir.join(plugin))
            .find(|p| p.is_file())
            .ok_or_else(not_found)
    }

    /// Runs one plugin with `config` on stdin. A non-zero exit is an error, decoded from stdout where the plugin
    /// wrote a CNI error.
    pub fn exec(
        &self,
        plugin: &Path,
        command: Command,
        config: &[u8],
    ) -> Result<Output, ExecError> {
        let spawn_error = |source| ExecError::Spawn {
            plugin: plugin.to_owned(),
            source,
        };
        let mut process = Process::new(plugin);
        let namespaces = self
            .namespaces
            .iter()
            .map(|ns| {
                std::fs::File::open(ns).map_err(|source| ExecError::Namespace {
                    path: ns.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        process
            .env_clear()
            .env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_IFNAME", &self.ifname)
            .env("CNI_ARGS", args_string(&self.args))
            .env(
                "CNI_PATH",
                std::env::join_paths(&self.path).unwrap_or_default(),
            )
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(netns) = &self.netns {
            process.env("CNI_NETNS", netns);
        }
        let mut child = if namespaces.is_empty() {
            process.spawn()
        } else {
            spawn_in(&namespaces, &mut process)
        }
        .map_err(spawn_error)?;
        // Write stdin from a thread so a plugin that answers before reading all of it cannot deadlock us.
        let writer = child.stdin.take().map(|mut stdin| {
            let config = config.to_vec();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&config);
            })
        });
        let out = child.wait_with_output().map_err(spawn_error)?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        if out.status.success() {
            return Ok(Output {
                stdout: out.stdout,
                stderr: out.stderr,
            });
        }
        match serde_json::from_slice::<ErrorReply>(&out.stdout) {
            Ok(reply) => Err(ExecError::Plugin {
                plugin: plugin.to_owned(),
                command,
                reply,
            }),
            Err(_) => Err(ExecError::Failed {
                plugin: plugin.to_owned(),
                command,
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            }),
        }
    }

    /// ADD through a chain of plugin configs (a conflist's `plugins`, or one config), each getting the previous
    /// result as `prevResult`, as SPEC.md section 3 lays out. Returns the last result.
    pub fn add_chain(&self, list: &NetworkConfig) -> Result<CniResult, ExecError> {
        let (name, version) = runnable(list)?;
        let mut prev: Option<Value> = None;
        let mut last = CniResult::default();
        for plugin_conf in &list.plugins {
            let (plugin, stdin) = self.prepare(name, version, plugin_conf, prev.as_ref())?;
            let out = self.exec(&plugin, Command::Add, &stdin)?;
            let value: Value =
                serde_json::from_slice(&out.stdout).map_err(|source| ExecError::BadResult {
                    plugin: plugin.clone(),
                    command: Command::Add,
                    version,
                    source,
                })?;
            last = CniResult::parse(version, value.clone()).map_err(|source| {
                ExecError::BadResult {
                    plugin,
                    command: Command::Add,
                    version,
                    source,
                }
            })?;
            prev = Some(value);
        }
        Ok(last)
    }

    /// CHECK or DEL through a chain: CHECK in order, DEL in reverse, each with `prev` (the chain's ADD result,
    /// where the runtime kept it) as `prevResult`. DEL goes on through failures and returns the first.
    pub fn finish_chain(
        &self,
        command: Command,
        list: &NetworkConfig,
        prev: Option<&CniResult>,
    ) -> Result<(), ExecError> {
        let (name, version) = runnable(list)?;
        let prev = prev.and_then(|r| serde_json::to_value(r.at(version)).ok());
        let mut first_error = None;
        let order: Box<dyn Iterator<Item = &NetConf>> = if command == Command::Del {
            Box::new(list.plugins.iter().rev())
        } else {
            Box::new(list.plugins.iter())
        };
        for plugin_conf in order {
            let outcome = self
                .prepare(name, version, plugin_conf, prev.as_ref())
                .and_then(|(plugin, stdin)| self.exec(&plugin, command, &stdin));
            if let Err(e) = outcome {
                if command != Command::Del {
                    return Err(e);
                }
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn prepare(
        &self,
        name: &str,
        version: Version,
        conf: &NetConf,
        prev: Option<&Value>,
    ) -> Result<(PathBuf, Vec<u8>), ExecError> {
        let mut conf: Map<String, Value> = match serde_json::to_value(conf) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let plugin_type = conf
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let plugin = self.find(&plugin_type)?;
        conf.insert("cniVersion".into(), version.as_str().into());
        conf.insert("name".into(), name.into());
        let runtime_config: Map<String, Value> = self
            .capability_args
            .iter()
            .filter(|(cap, _)| {
                conf.get("capabilities").and_then(|c| c.get(cap.as_str()))
                    == Some(&Value::Bool(true))
            })
            .map(|(cap, arg)| (cap.clone(), arg.clone()))
            .collect();
        if !runtime_config.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        Ok((plugin, Value::Object(conf).to_string().into_bytes()))
    }
}

/// The name and version a configuration runs with, as libcni requires them: a name, and a version the spec defines.
pub fn runnable(list: &NetworkConfig) -> Result<(&str, Version), ExecError> {
    let name = list.name.as_deref().unwrap_or_default();
    let bad = |reason: String| ExecError::Config {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("the configuration has no \"name\"".into()));
    }
    let version = list.version().map_err(|e| bad(e.to_string()))?;
    Ok((name, version))
}

fn args_string(args: &[(String, String)]) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// unshare(2) for the calling thread: it leaves what it shared with the rest of its process (`FS`: root, working
/// directory and umask; `NEWNS`: a mount namespace of its own; `NEWNET` ...), and keeps sharing the descriptor
/// table, whatever `flags` hold: `FILES` is refused (EINVAL).
pub fn unshare_thread(flags: rustix::thread::UnshareFlags) -> std::io::Result<()> {
    if flags.contains(rustix::thread::UnshareFlags::FILES) {
        return Err(rustix::io::Errno::INVAL.into());
    }
    #[allow(unsafe_code)]
    // SAFETY: rustix marks unshare unsafe for one flag only, CLONE_FILES: a thread with a descriptor table of its own
    // could be handed descriptors that are not valid in it, or close another thread's. That flag is refused above;
    // every other part this thread stops sharing (its root and working directory, its namespaces) leaves the
    // descriptors it and the other threads hold valid and shared.
    unsafe {
        rustix::thread::unshare_unsafe(flags)?;
    }
    Ok(())
}

/// Spawns `process` from a thread of its own that first enters `namespaces` (setns(2) on each, in order): the child
/// is created in them. Entering them in the child instead, between fork and exec, would rule out posix_spawn, and a
/// fork of a large process (the lab's) costs far more than this thread: its page tables are copied and every page
/// it writes afterwards faults.
fn spawn_in(
    namespaces: &[std::fs::File],
    process: &mut Process,
) -> std::io::Result<std::process::Child> {
    use std::os::fd::AsFd;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .spawn_scoped(scope, || {
                // Its own root, working directory and umask, which setns(2) into a mount namespace requires of a
                // thread in a process with others. The thread ends after the spawn, taking its namespaces and root
                // with it.
                unshare_thread(rustix::thread::UnshareFlags::FS)?;
                for ns in namespaces {
                    rustix::thread::move_into_link_name_space(ns.as_fd(), None)?;
                }
                process.spawn()
            })
            .and_then(|spawner| {
                spawner
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread panicked")))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A directory of fake plugins: shell scripts that log their call and print what they are told to.
    fn plugins(scripts: &[(&str, &str)]) -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cni-exec-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, body) in scripts {
            // Written by a child, not here: a write descriptor of this process, inherited by a plugin that a test
            // running beside this one forks meanwhile, would make this script's exec fail with ETXTBSY.
            use std::io::Write;
            let p = dir.join(name);
            let mut writer = std::process::Command::new("sh")
                .args(["-c", "cat > \"$1\" && chmod 0755 \"$1\"", "sh"])
                .arg(&p)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = writer.stdin.take().unwrap();
            stdin
                .write_all(format!("#!/bin/sh\n{body}\n").as_bytes())
                .unwrap();
            drop(stdin);
            assert!(writer.wait().unwrap().success(), "writing {}", p.display());
        }
        Dir(dir)
    }

    fn invocation(dir: &Dir) -> Invocation {
        Invocation {
            container_id: "c1".into(),
            netns: Some("/run/netns/x".into()),
            ifname: "eth0".into(),
            args: vec![("K8S_POD_NAME".into(), "p".into())],
            path: vec![PathBuf::from("/nonexistent"), dir.0.clone()],
            ..Invocation::default()
        }
    }

    const ADD_A: &str = r#"cat > "$(dirname "$0")/a.in"; echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME $CNI_ARGS" >> "$(dirname "$0")/log"
[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","ips":[{"address":"192.0.2.5/24"}]}'; exit 0"#;
    const ADD_B: &str = r#"cat > "$(dirname "$0")/b.in"; echo "b $CNI_COMMAND" >> "$(dirname "$0")/log"
[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","ips":[{"address":"192.0.2.5/24"}],"dns":{"nameservers":["192.0.2.53"]}}'; exit 0"#;

    #[test]
    fn capability_arguments_reach_only_the_plugins_that_declare_them() {
        let dir = plugins(&[("a", ADD_A), ("b", ADD_B)]);
        let list = NetworkConfig::parse(
            r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"a"},
                {"type":"b","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
        )
        .unwrap();
        let mut inv = invocation(&dir);
        let ports = serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
        inv.capability_args
            .insert("portMappings".into(), ports.clone());
        inv.capability_args
            .insert("bandwidth".into(), serde_json::json!({"ingressRate": 1}));
        inv.add_chain(&list).unwrap();
        let read = |f: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(dir.0.join(f)).unwrap()).unwrap()
        };
        assert!(read("a.in").get("runtimeConfig").is_none());
        assert_eq!(
            read("b.in")["runtimeConfig"],
            serde_json::json!({"portMappings": ports})
        );
    }

    #[test]
    fn a_chain_passes_prev_result_and_deletes_in_reverse() {
        let dir = plugins(&[("a", ADD_A), ("b", ADD_B)]);
        let list = NetworkConfig::parse(
            r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"a","k":1},{"type":"b"}]}"#,
        )
        .unwrap();
        let inv = invocation(&dir);
        let result = inv.add_chain(&list).unwrap();
        assert_eq!(result.dns.nameservers, vec!["192.0.2.53".to_owned()]);
        let b_in: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.0.join("b.in")).unwrap()).unwrap();
        assert_eq!(b_in["prevResult"]["ips"][0]["address"], "192.0.2.5/24");
        assert_eq!(b_in["name"], "net");
        let a_in: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.0.join("a.in")).unwrap()).unwrap();
        assert_eq!(a_in["k"], 1);
        assert!(a_in.get("prevResult").is_none());

        inv.finish_chain(Command::Del, &list, Some(&result))
            .unwrap();
        let log = std::fs::read_to_string(dir.0.join("log")).unwrap();
        assert_eq!(
            log,
            "ADD c1 eth0 K8S_POD_NAME=p\nb ADD\nb DEL\nDEL c1 eth0 K8S_POD_NAME=p\n"
        );
    }

    #[test]
    fn errors_are_typed() {
        let dir = plugins(&[
            (
                "cnierr",
                r#"echo '{"cniVersion":"1.0.0","code":101,"msg":"no room"}'; exit 1"#,
            ),
            ("crash", "echo boom >&2; exit 2"),
            ("junk", "echo not-json"),
        ]);
        let inv = invocation(&dir);
        let run = |t: &str| {
            let list = NetworkConfig::parse(&format!(
                r#"{{"cniVersion":"1.0.0","name":"n","type":"{t}"}}"#
            ))
            .unwrap();
            inv.add_chain(&list).unwrap_err()
        };
        let e = run("cnierr");
        assert_eq!(e.reply().map(|r| r.code), Some(101));
        assert!(
            e.to_string().ends_with("ADD failed with code 101: no room"),
            "{e}"
        );
        assert!(matches!(run("crash"), ExecError::Failed { ref stderr, .. } if stderr == "boom"));
        assert!(matches!(run("junk"), ExecError::BadResult { .. }));
        let e = run("missing");
        assert!(
            e.to_string()
                .starts_with("plugin \"missing\" not found in /nonexistent:"),
            "{e}"
        );
        assert!(matches!(run("../a"), ExecError::NotFound { .. }));
    }

    #[test]
    fn del_goes_on_through_failures() {
        let dir = plugins(&[("a", ADD_A), ("bad", "exit 3")]);
        let list = NetworkConfig::parse(
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"},{"type":"bad"}]}"#,
        )
        .unwrap();
        let inv = invocation(&dir);
        assert!(inv.finish_chain(Command::Del, &list, None).is_err());
        let log = std::fs::read_to_string(dir.0.join("log")).unwrap();
        assert_eq!(
            log, "DEL c1 eth0 K8S_POD_NAME=p\n",
            "a still ran after bad failed"
        );
    }

    #[test]
    fn configurations_run_only_with_a_name_and_a_known_version() {
        for (text, expected) in [
            (r#"{"type":"a"}"#, "no \"name\""),
            (
                r#"{"name":"n","cniVersion":"9.9.9","type":"a"}"#,
                "not supported",
            ),
        ] {
            let e = runnable(&NetworkConfig::parse(text).unwrap())
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
        let single = NetworkConfig::parse(r#"{"name":"n","type":"a"}"#).unwrap();
        assert_eq!(runnable(&single).unwrap(), ("n", Version::V0_1_0));
        assert_eq!(single.plugins.len(), 1);
    }
}
