//! The CNI verbs. The only I/O is reading the node's command-line file.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cni::error::code;
use cni::{CniResult, Dns, ErrorReply, IpConfig, NetConf, Plugin, Request, Route};
use ipnet::IpNet;

use crate::{allocate, index, Allocation, Error, NodeKeys};

/// Where the node's keys are read from unless `ipam.cmdline` names another file.
pub const DEFAULT_CMDLINE: &str = "/proc/cmdline";

/// A command-line file larger than this is not one.
const CMDLINE_LIMIT: u64 = 1 << 20;

/// The index2ip plugin. Stateless: DEL and GC have nothing to remove.
#[derive(Debug, Clone, Copy, Default)]
pub struct Index2ip;

impl Plugin for Index2ip {
    fn add(&self, req: &Request) -> Result<CniResult, ErrorReply> {
        Ok(compute(req).map(|(keys, alloc, _)| result(&keys, &alloc))?)
    }

    fn del(&self, _req: &Request) -> Result<(), ErrorReply> {
        // Nothing was stored, so there is nothing to release: DEL succeeds whatever the config, as the spec
        // requires of a repeated DEL and as runtimes need when they send DEL with `ipam` stripped to its type.
        Ok(())
    }

    fn check(&self, req: &Request) -> Result<(), ErrorReply> {
        let prev = req.config.prev_result.clone().ok_or(Error::NoPrevResult)?;
        let prev = CniResult::parse(req.version, prev).map_err(Error::InvalidPrevResult)?;
        let (keys, alloc, index) = compute(req)?;
        let expected = result(&keys, &alloc);
        let missing = expected
            .ips
            .iter()
            .find(|ip| {
                !prev
                    .ips
                    .iter()
                    .any(|p| p.address == ip.address && p.gateway == ip.gateway)
            })
            .map(|ip| describe(ip.address, ip.gateway))
            .or_else(|| {
                expected
                    .routes
                    .iter()
                    .find(|r| !prev.routes.iter().any(|p| p.dst == r.dst && p.gw == r.gw))
                    .map(|r| format!("route {}", describe(r.dst, r.gw)))
            });
        match missing {
            None => Ok(()),
            Some(missing) => Err(Error::CheckMismatch { missing, index }.into()),
        }
    }

    fn status(&self, req: &Request) -> Result<(), ErrorReply> {
        node_keys(&req.config)
            .map(|_| ())
            .map_err(|e| ErrorReply::new(code::NOT_AVAILABLE, format!("cannot serve ADD: {e}")))
    }
}

fn compute(req: &Request) -> Result<(NodeKeys, Allocation, crate::Index), Error> {
    let index = index::resolve(req.config.ipam_key("index"), req.env.arg("K8S_POD_NAME"))?;
    let keys = node_keys(&req.config)?;
    let alloc = allocate(&keys, index)?;
    Ok((keys, alloc, index))
}

/// The node's keys, from `ipam.cmdline` or `/proc/cmdline`.
pub fn node_keys(config: &NetConf) -> Result<NodeKeys, Error> {
    let path = match config.ipam_key("cmdline") {
        None | Some(serde_json::Value::Null) => Path::new(DEFAULT_CMDLINE),
        Some(serde_json::Value::String(p)) if !p.is_empty() => Path::new(p),
        Some(other) => return Err(Error::InvalidCmdlinePath(other.to_string())),
    };
    read_keys(path)
}

/// Reads and parses a command-line file.
pub fn read_keys(path: &Path) -> Result<NodeKeys, Error> {
    let read_error = |source| Error::ReadKeys {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .and_then(|f| f.take(CMDLINE_LIMIT + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > CMDLINE_LIMIT {
        return Err(read_error(std::io::Error::other(
            "larger than 1 MiB, which no kernel command line is",
        )));
    }
    NodeKeys::parse(&String::from_utf8_lossy(&bytes)).map_err(|source| Error::Keys {
        path: PathBuf::from(path),
        source,
    })
}

/// The result for an allocation: one address per family with its gateway, a default route per family via that
/// gateway, and the name servers in the order IPv4 DNS1, DNS2, IPv6 DNS1, DNS2.
pub fn result(keys: &NodeKeys, alloc: &Allocation) -> CniResult {
    let mut r = CniResult::default();
    let mut family = |address: IpNet, gateway: IpAddr, default: IpNet| {
        r.ips.push(IpConfig {
            address,
            gateway: Some(gateway),
            interface: None,
        });
        r.routes.push(Route::new(default, Some(gateway)));
    };
    family(
        alloc.v4.into(),
        keys.v4.gateway.into(),
        IpNet::V4(Default::default()),
    );
    if let (Some(v6), Some(k)) = (alloc.v6, &keys.v6) {
        family(v6.into(), k.gateway.into(), IpNet::V6(Default::default()));
    }
    let v6_dns = keys
        .v6
        .iter()
        .flat_map(|k| k.dns.iter().map(|a| a.to_string()));
    r.dns = Dns {
        nameservers: keys
            .v4
            .dns
            .iter()
            .map(|a| a.to_string())
            .chain(v6_dns)
            .collect(),
        ..Dns::default()
    };
    r
}

fn describe(address: IpNet, gateway: Option<IpAddr>) -> String {
    match gateway {
        Some(gw) => format!("{address} via {gw}"),
        None => address.to_string(),
    }
}
