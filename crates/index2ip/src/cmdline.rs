//! The node's keys, read from text in kernel command-line syntax.
//!
//! `epoxy.ipv4=ADDR/PLEN,GATEWAY,DNS1,DNS2` is required; `epoxy.ipv6=` takes the same four fields and is optional,
//! an empty value meaning the node has no IPv6. Other parameters may come in any order and are ignored.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};

/// The key holding the node's IPv4 block.
pub const V4_KEY: &str = "epoxy.ipv4";
/// The key holding the node's IPv6 block.
pub const V6_KEY: &str = "epoxy.ipv6";

/// One family's keys: the node's own address within its block, the block's gateway, and up to two name servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family<N, A> {
    /// The node's address with the block's prefix length (`4.14.159.112/26`).
    pub node: N,
    /// The block's default gateway (GATEWAY), an address no pod is given.
    pub gateway: A,
    /// Name servers, in order; an empty field on the command line adds none.
    pub dns: Vec<A>,
}

/// IPv4 keys.
pub type V4 = Family<Ipv4Net, Ipv4Addr>;
/// IPv6 keys.
pub type V6 = Family<Ipv6Net, Ipv6Addr>;

/// Everything the node's command line says about its public addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKeys {
    /// From `epoxy.ipv4`.
    pub v4: V4,
    /// From `epoxy.ipv6`, where present and not empty.
    pub v6: Option<V6>,
}

/// Why the keys could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// `epoxy.ipv4` is absent or empty.
    #[error(
        "{V4_KEY}= is missing: the node must be booted with {V4_KEY}=ADDR/PLEN,GATEWAY,DNS1,DNS2"
    )]
    MissingV4,
    /// A key appears twice with different values.
    #[error("{key}= is given twice with different values ({first:?} and {second:?})")]
    Duplicate {
        /// [`V4_KEY`] or [`V6_KEY`].
        key: &'static str,
        /// The value at its first occurrence.
        first: String,
        /// A different value at a later occurrence.
        second: String,
    },
    /// A value does not have four comma-separated fields.
    #[error("{key}={value:?} has {count} comma-separated fields, expected 4: ADDR/PLEN,GATEWAY,DNS1,DNS2")]
    FieldCount {
        /// [`V4_KEY`] or [`V6_KEY`].
        key: &'static str,
        /// Everything after the `=`, as written.
        value: String,
        /// How many fields it has.
        count: usize,
    },
    /// A field is not an address of the key's family.
    #[error("{key}= field {field} {value:?} is not {expected}")]
    Field {
        /// [`V4_KEY`] or [`V6_KEY`].
        key: &'static str,
        /// Which field: ADDR/PLEN, GATEWAY, DNS1 or DNS2.
        field: &'static str,
        /// What it holds.
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
}

impl NodeKeys {
    /// Reads the keys from the contents of a command-line file (`/proc/cmdline` or one in its syntax).
    pub fn parse(cmdline: &str) -> Result<NodeKeys, KeysError> {
        let mut v4 = None;
        let mut v6 = None;
        for (key, value) in params(cmdline) {
            let slot = match key {
                V4_KEY => &mut v4,
                V6_KEY => &mut v6,
                _ => continue,
            };
            let key = if key == V4_KEY { V4_KEY } else { V6_KEY };
            match slot {
                Some(first) if first != &value => {
                    return Err(KeysError::Duplicate {
                        key,
                        first: std::mem::take(first),
                        second: value,
                    })
                }
                _ => *slot = Some(value),
            }
        }
        let v4 = match v4.as_deref() {
            None | Some("") => return Err(KeysError::MissingV4),
            Some(v) => family(V4_KEY, v, "an IPv4 address/prefix", "an IPv4 address")?,
        };
        let v6 = match v6.as_deref() {
            None | Some("") => None,
            Some(v) => Some(family(
                V6_KEY,
                v,
                "an IPv6 address/prefix",
                "an IPv6 address",
            )?),
        };
        Ok(NodeKeys { v4, v6 })
    }
}

/// Splits kernel parameters as the kernel does: on white space outside double quotes, quotes removed, up to a
/// lone `--` (what follows belongs to init). Yields each `key=value`; parameters without `=` are flags and skipped.
fn params(cmdline: &str) -> impl Iterator<Item = (&str, String)> {
    let mut rest = cmdline;
    std::iter::from_fn(move || loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c.is_whitespace() && !quoted
            })
            .map_or(rest.len(), |(i, _)| i);
        let (token, tail) = rest.split_at(end);
        rest = tail;
        if token == "--" {
            rest = "";
            return None;
        }
        if let Some((key, value)) = token.split_once('=') {
            return Some((key.trim_matches('"'), value.replace('"', "")));
        }
    })
}

fn family<N: FromStr, A: FromStr>(
    key: &'static str,
    value: &str,
    net_kind: &'static str,
    addr_kind: &'static str,
) -> Result<Family<N, A>, KeysError> {
    let fields: Vec<&str> = value.split(',').collect();
    let [node, gateway, dns1, dns2] = fields[..] else {
        return Err(KeysError::FieldCount {
            key,
            value: value.to_owned(),
            count: fields.len(),
        });
    };
    let field = |field, value: &str, expected| KeysError::Field {
        key,
        field,
        value: value.to_owned(),
        expected,
    };
    let node = node
        .parse()
        .map_err(|_| field("ADDR/PLEN", node, net_kind))?;
    let gateway = gateway
        .parse()
        .map_err(|_| field("GATEWAY", gateway, addr_kind))?;
    let mut dns = Vec::with_capacity(2);
    for (name, text) in [("DNS1", dns1), ("DNS2", dns2)] {
        if !text.is_empty() {
            dns.push(text.parse().map_err(|_| field(name, text, addr_kind))?);
        }
    }
    Ok(Family { node, gateway, dns })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = "BOOT_IMAGE=/vmlinuz ro epoxy.ipv4=4.14.159.112/26,4.14.159.65,8.8.8.8,8.8.4.4 epoxy.ipv6=2001:1900:2100:2d::112/64,2001:1900:2100:2d::1,2001:4860:4860::8888,2001:4860:4860::8844 quiet\n";

    #[test]
    fn reads_the_example_node() -> Result<(), Box<dyn std::error::Error>> {
        let keys = NodeKeys::parse(EXAMPLE)?;
        assert_eq!(keys.v4.node, "4.14.159.112/26".parse()?);
        assert_eq!(keys.v4.gateway, "4.14.159.65".parse::<Ipv4Addr>()?);
        assert_eq!(
            keys.v4.dns,
            vec!["8.8.8.8".parse::<Ipv4Addr>()?, "8.8.4.4".parse()?]
        );
        let v6 = keys.v6.ok_or("no v6")?;
        assert_eq!(v6.node, "2001:1900:2100:2d::112/64".parse()?);
        assert_eq!(v6.dns.len(), 2);
        Ok(())
    }

    #[test]
    fn ipv6_is_optional_and_empty_means_absent() -> Result<(), KeysError> {
        let v4 = "epoxy.ipv4=192.0.2.9/26,192.0.2.1,192.0.2.53,192.0.2.54";
        assert_eq!(NodeKeys::parse(v4)?.v6, None);
        assert_eq!(NodeKeys::parse(&format!("epoxy.ipv6= {v4}"))?.v6, None);
        Ok(())
    }

    #[test]
    fn honours_quotes_and_the_init_separator() -> Result<(), KeysError> {
        let keys = NodeKeys::parse(
            "a=\"x y\" \"epoxy.ipv4=192.0.2.9/26,192.0.2.1,,\" -- epoxy.ipv4=junk",
        )?;
        assert!(keys.v4.dns.is_empty());
        assert_eq!(
            NodeKeys::parse("-- epoxy.ipv4=192.0.2.9/26,192.0.2.1,,"),
            Err(KeysError::MissingV4)
        );
        Ok(())
    }

    #[test]
    fn refuses_what_the_original_got_wrong() {
        let cases: [(&str, &str); 8] = [
            ("", "epoxy.ipv4= is missing"),
            ("epoxy.ipv4=", "epoxy.ipv4= is missing"),
            ("epoxy.ipv4=192.0.2.9/26,192.0.2.1,192.0.2.53", "has 3 comma-separated fields"),
            ("epoxy.ipv4=192.0.2.9,192.0.2.1,,", "field ADDR/PLEN \"192.0.2.9\" is not an IPv4 address/prefix"),
            ("epoxy.ipv4=192.0.2.9/33,192.0.2.1,,", "field ADDR/PLEN"),
            ("epoxy.ipv4=192.0.2.9/26,2001:db8::1,,", "field GATEWAY \"2001:db8::1\" is not an IPv4 address"),
            (
                "epoxy.ipv4=192.0.2.9/26,192.0.2.1,, epoxy.ipv6=2001:db8::9/64,2001:db8::1,8.8.8.8,",
                "epoxy.ipv6= field DNS1 \"8.8.8.8\" is not an IPv6 address",
            ),
            (
                "epoxy.ipv4=192.0.2.9/26,192.0.2.1,, epoxy.ipv4=192.0.2.10/26,192.0.2.1,,",
                "epoxy.ipv4= is given twice",
            ),
        ];
        for (line, expected) in cases {
            let msg = NodeKeys::parse(line)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(expected), "{line:?}: {msg:?}");
        }
    }

    #[test]
    fn a_repeated_identical_key_is_fine() {
        let line = "epoxy.ipv4=192.0.2.9/26,192.0.2.1,, epoxy.ipv4=192.0.2.9/26,192.0.2.1,,";
        assert!(NodeKeys::parse(line).is_ok());
    }
}
