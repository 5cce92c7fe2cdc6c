//! The `CNI_*` environment, parsed once into a type.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::{Command, Error};

/// The invocation parameters a runtime passes in the environment (SPEC.md, "Parameters").
///
/// Built by [`Env::from_vars`], which enforces what each verb requires: for ADD, DEL and CHECK
/// `container_id` and `ifname` are present and non-empty, for ADD and CHECK so is `netns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`: a path to the network namespace.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`: the interface to create inside the container.
    pub ifname: Option<String>,
    /// `CNI_ARGS`: `KEY=VALUE` pairs, in order.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`: directories to search for plugins, in order.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Parses the process environment.
    pub fn from_process() -> Result<Env, Error> {
        Env::from_vars(std::env::vars_os())
    }

    /// Parses `CNI_*` variables from any set of pairs; other variables are ignored.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Env, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: Into<OsString>,
    {
        let mut raw = Raw::default();
        for (k, v) in vars {
            let slot = match k.as_ref().to_str() {
                Some("CNI_COMMAND") => &mut raw.command,
                Some("CNI_CONTAINERID") => &mut raw.container_id,
                Some("CNI_NETNS") => &mut raw.netns,
                Some("CNI_IFNAME") => &mut raw.ifname,
                Some("CNI_ARGS") => &mut raw.args,
                Some("CNI_PATH") => &mut raw.path,
                _ => continue,
            };
            *slot = Some(v.into()).filter(|v| !v.is_empty());
        }

        let command: Command = match raw.command {
            None => {
                return Err(Error::InvalidEnv {
                    name: "CNI_COMMAND",
                    reason: "not set: this program is a CNI plugin, run by a container runtime"
                        .into(),
                })
            }
            Some(c) => utf8("CNI_COMMAND", c)?.parse()?,
        };
        let required = |name, value: Option<OsString>, needed: bool| match value {
            None if needed => Err(Error::MissingEnv { name, command }),
            v => Ok(v),
        };
        let container_id = required(
            "CNI_CONTAINERID",
            raw.container_id,
            command.needs_container(),
        )?
        .map(|v| utf8("CNI_CONTAINERID", v))
        .transpose()?;
        let ifname = required("CNI_IFNAME", raw.ifname, command.needs_container())?
            .map(|v| utf8("CNI_IFNAME", v))
            .transpose()?;
        let netns = required("CNI_NETNS", raw.netns, command.needs_netns())?.map(PathBuf::from);
        let args = match raw.args {
            None => Vec::new(),
            Some(v) => parse_args(&utf8("CNI_ARGS", v)?)?,
        };
        let path = raw
            .path
            .map(|p| {
                std::env::split_paths(&p)
                    .filter(|d| !d.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();

        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }

    /// The value of a `CNI_ARGS` key; the first one wins where a key repeats.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Raw {
    command: Option<OsString>,
    container_id: Option<OsString>,
    netns: Option<OsString>,
    ifname: Option<OsString>,
    args: Option<OsString>,
    path: Option<OsString>,
}

fn utf8(name: &'static str, value: OsString) -> Result<String, Error> {
    value.into_string().map_err(|v| Error::InvalidEnv {
        name,
        reason: format!("not UTF-8: {}", v.to_string_lossy()),
    })
}

/// `CNI_ARGS` is `K1=V1;K2=V2`. Empty segments (a trailing `;`) are tolerated; a segment without `=` is not.
fn parse_args(s: &str) -> Result<Vec<(String, String)>, Error> {
    s.split(';')
        .filter(|seg| !seg.is_empty())
        .map(|seg| match seg.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(Error::InvalidEnv {
                name: "CNI_ARGS",
                reason: format!("{seg:?} is not KEY=VALUE"),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, Error> {
        Env::from_vars(pairs.iter().map(|(k, v)| (*k, *v)))
    }

    const ADD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/p"),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
    ];

    #[test]
    fn parses_a_full_add() -> Result<(), Error> {
        let mut pairs = ADD.to_vec();
        pairs.push(("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=ndt-index2-x;"));
        pairs.push(("HOME", "/root"));
        let e = env(&pairs)?;
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id.as_deref(), Some("c1"));
        assert_eq!(e.netns, Some(PathBuf::from("/run/netns/p")));
        assert_eq!(e.ifname.as_deref(), Some("net1"));
        assert_eq!(e.arg("K8S_POD_NAME"), Some("ndt-index2-x"));
        assert_eq!(e.arg("missing"), None);
        assert_eq!(
            e.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        Ok(())
    }

    #[test]
    fn each_verb_requires_what_the_spec_says() {
        let without = |name: &str| -> Vec<(&str, &str)> {
            ADD.iter().copied().filter(|(k, _)| *k != name).collect()
        };
        for name in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let err = env(&without(name)).err();
            assert!(
                matches!(err, Some(Error::MissingEnv { name: n, .. }) if n == name),
                "{name}: {err:?}"
            );
        }
        // DEL may come after the namespace is gone.
        let mut del = without("CNI_NETNS");
        del[0] = ("CNI_COMMAND", "DEL");
        assert!(env(&del).is_ok());
        // An empty value counts as unset.
        let mut empty = ADD.to_vec();
        empty[1] = ("CNI_CONTAINERID", "");
        assert!(matches!(env(&empty), Err(Error::MissingEnv { .. })));
        // VERSION, GC and STATUS need nothing but the verb.
        for verb in ["VERSION", "GC", "STATUS"] {
            assert!(env(&[("CNI_COMMAND", verb)]).is_ok(), "{verb}");
        }
    }

    #[test]
    fn refuses_missing_or_unknown_commands() {
        assert!(matches!(
            env(&[]),
            Err(Error::InvalidEnv {
                name: "CNI_COMMAND",
                ..
            })
        ));
        let e = env(&[("CNI_COMMAND", "add")]);
        assert!(matches!(e, Err(Error::UnknownCommand(ref c)) if c == "add"));
        assert_eq!(e.err().map(|e| e.code()), Some(4));
    }

    #[test]
    fn refuses_malformed_args() {
        let mut pairs = ADD.to_vec();
        pairs.push(("CNI_ARGS", "K8S_POD_NAME=a;garbage"));
        let err = env(&pairs).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("CNI_ARGS is invalid: \"garbage\" is not KEY=VALUE")
        );
    }

    #[test]
    fn refuses_non_utf8_values() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'c', 0xff]);
        let mut pairs: Vec<(OsString, OsString)> = ADD
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        pairs[1].1 = bad;
        assert!(matches!(
            Env::from_vars(pairs),
            Err(Error::InvalidEnv {
                name: "CNI_CONTAINERID",
                ..
            })
        ));
    }
}
