//! Results, with one model and a rendering for each spec version's shape.
//!
//! [`CniResult`] is the newest shape (1.1.0) and what the code works with. [`CniResult::at`] renders it as a given
//! version expects, and [`CniResult::parse`] reads a result of any version back into the model, so a `prevResult`
//! from an older chain is handled like a new one.
//!
//! | versions | layout |
//! | --- | --- |
//! | 0.1.0, 0.2.0 | `ip4` and `ip6` objects, each with `ip`, `gateway` and its family's `routes` |
//! | 0.3.0, 0.3.1, 0.4.0 | `interfaces`, `ips[]` with `"version": "4"` or `"6"`, top-level `routes` |
//! | 1.0.0 | `ips[]` without `version` |
//! | 1.1.0 | adds route `mtu`, `advmss`, `priority`, `table`, `scope` and interface `mtu`, `socketPath`, `pciID` |

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::version::{Shape, Version};

/// A plugin's result in the newest shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// Interfaces the plugin created (an IPAM plugin returns none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes to install.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Resolver settings.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// An interface in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// The interface's name as the kernel knows it, inside `sandbox` where that is set.
    pub name: String,
    /// Its hardware address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Its MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The namespace it lives in; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// A vhost-user or similar socket (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// A PCI device address (1.1.0).
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// An assigned address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address and prefix length, host bits kept (`192.0.2.11/26`).
    pub address: IpNet,
    /// The default gateway for this subnet, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`; never set by an IPAM plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route the container's network namespace should have: `dst` through `gw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The destination prefix; `0.0.0.0/0` or `::/0` for a default route.
    pub dst: IpNet,
    /// Next hop; absent means the gateway of the matching address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Metric (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Scope (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    /// A route with only a destination and a next hop: all that versions before 1.1.0 know.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// Resolver settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain, for short host-name lookups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Domains to search for short host-name lookups, in order; most resolvers prefer them to `domain`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Options for the resolver, as resolv.conf's `options` line takes them (`ndots:5`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl CniResult {
    /// This result as `version` lays it out, ready to serialize; fields the version does not know are dropped.
    pub fn at(&self, version: Version) -> Rendered<'_> {
        Rendered {
            version,
            result: self,
        }
    }

    /// Reads a result laid out as `version` (a `prevResult`, or a plugin's stdout).
    pub fn parse(version: Version, value: Value) -> Result<CniResult, serde_json::Error> {
        match version.shape() {
            Shape::Legacy => serde_json::from_value::<Legacy>(value).map(CniResult::from),
            // Versioned `ips[]` carry a `version` key, which the model derives from the address instead.
            Shape::Versioned | Shape::Current => serde_json::from_value(value),
        }
    }
}

/// A result rendered at one version; serializes to exactly that version's JSON, `cniVersion` first.
#[derive(Debug, Clone, Copy)]
pub struct Rendered<'a> {
    version: Version,
    result: &'a CniResult,
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let cni_version = self.version.as_str();
        let r = self.result;
        match self.version.shape() {
            Shape::Legacy => Envelope {
                cni_version,
                body: Legacy::from(r),
            }
            .serialize(s),
            Shape::Versioned => Envelope {
                cni_version,
                body: Versioned {
                    interfaces: r.interfaces.iter().map(Interface::before_1_1).collect(),
                    ips: r
                        .ips
                        .iter()
                        .map(|ip| VersionedIp {
                            version: family(ip.address),
                            ip,
                        })
                        .collect(),
                    routes: r
                        .routes
                        .iter()
                        .map(|rt| Route::new(rt.dst, rt.gw))
                        .collect(),
                    dns: &r.dns,
                },
            }
            .serialize(s),
            Shape::Current if self.version < Version::V1_1_0 => Envelope {
                cni_version,
                body: CniResult {
                    interfaces: r.interfaces.iter().map(Interface::before_1_1).collect(),
                    ips: r.ips.clone(),
                    routes: r
                        .routes
                        .iter()
                        .map(|rt| Route::new(rt.dst, rt.gw))
                        .collect(),
                    dns: r.dns.clone(),
                },
            }
            .serialize(s),
            Shape::Current => Envelope {
                cni_version,
                body: r,
            }
            .serialize(s),
        }
    }
}

impl Interface {
    fn before_1_1(&self) -> Interface {
        Interface {
            mtu: None,
            socket_path: None,
            pci_id: None,
            ..self.clone()
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct Versioned<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<VersionedIp<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Dns::is_empty")]
    dns: &'a Dns,
}

#[derive(Serialize)]
struct VersionedIp<'a> {
    version: &'static str,
    #[serde(flatten)]
    ip: &'a IpConfig,
}

fn family(net: IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "4",
        IpNet::V6(_) => "6",
    }
}

/// The 0.1.0 and 0.2.0 layout: at most one address per family, routes filed under their destination's family.
#[derive(Serialize, Deserialize)]
struct Legacy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<LegacyIp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<LegacyIp>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct LegacyIp {
    ip: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

impl From<&CniResult> for Legacy {
    fn from(r: &CniResult) -> Legacy {
        let section = |v4: bool| {
            r.ips
                .iter()
                .find(|ip| ip.address.addr().is_ipv4() == v4)
                .map(|ip| LegacyIp {
                    ip: ip.address,
                    gateway: ip.gateway,
                    routes: r
                        .routes
                        .iter()
                        .filter(|rt| rt.dst.addr().is_ipv4() == v4)
                        .map(|rt| Route::new(rt.dst, rt.gw))
                        .collect(),
                })
        };
        Legacy {
            ip4: section(true),
            ip6: section(false),
            dns: r.dns.clone(),
        }
    }
}

impl From<Legacy> for CniResult {
    fn from(l: Legacy) -> CniResult {
        let mut result = CniResult {
            dns: l.dns,
            ..CniResult::default()
        };
        for section in [l.ip4, l.ip6].into_iter().flatten() {
            result.ips.push(IpConfig {
                address: section.ip,
                gateway: section.gateway,
                interface: None,
            });
            result.routes.extend(section.routes);
        }
        result
    }
}

/// The reply to VERSION.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The version of this reply's own format.
    pub cni_version: String,
    /// Every version the plugin accepts, oldest first.
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// The reply of a plugin that supports `versions`.
    pub fn new(versions: &[Version]) -> VersionInfo {
        VersionInfo {
            cni_version: Version::LATEST.as_str().to_owned(),
            supported_versions: versions.iter().map(|v| v.as_str().to_owned()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn sample() -> Result<CniResult, Box<dyn std::error::Error>> {
        Ok(CniResult {
            interfaces: vec![Interface {
                name: "net1".into(),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1500),
                sandbox: Some("/run/netns/p".into()),
                socket_path: None,
                pci_id: Some("0000:00:01.0".into()),
            }],
            ips: vec![
                IpConfig {
                    address: "192.0.2.117/26".parse()?,
                    gateway: Some("192.0.2.65".parse()?),
                    interface: Some(0),
                },
                IpConfig {
                    address: "2001:db8::117/64".parse()?,
                    gateway: Some("2001:db8::1".parse()?),
                    interface: Some(0),
                },
            ],
            routes: vec![
                Route {
                    priority: Some(10),
                    ..Route::new("0.0.0.0/0".parse()?, Some("192.0.2.65".parse()?))
                },
                Route::new("::/0".parse()?, Some("2001:db8::1".parse()?)),
            ],
            dns: Dns {
                nameservers: vec!["192.0.2.53".into(), "2001:db8::53".into()],
                ..Dns::default()
            },
        })
    }

    fn render(r: &CniResult, v: Version) -> Result<Value, serde_json::Error> {
        serde_json::to_value(r.at(v))
    }

    #[test]
    fn legacy_shape() -> TestResult {
        let r = sample()?;
        for v in [Version::V0_1_0, Version::V0_2_0] {
            assert_eq!(
                render(&r, v)?,
                json!({
                    "cniVersion": v.as_str(),
                    "ip4": {"ip": "192.0.2.117/26", "gateway": "192.0.2.65",
                            "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.65"}]},
                    "ip6": {"ip": "2001:db8::117/64", "gateway": "2001:db8::1",
                            "routes": [{"dst": "::/0", "gw": "2001:db8::1"}]},
                    "dns": {"nameservers": ["192.0.2.53", "2001:db8::53"]}
                })
            );
        }
        Ok(())
    }

    #[test]
    fn versioned_shape() -> TestResult {
        let r = sample()?;
        for v in [Version::V0_3_0, Version::V0_3_1, Version::V0_4_0] {
            assert_eq!(
                render(&r, v)?,
                json!({
                    "cniVersion": v.as_str(),
                    "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/p"}],
                    "ips": [
                        {"version": "4", "address": "192.0.2.117/26", "gateway": "192.0.2.65", "interface": 0},
                        {"version": "6", "address": "2001:db8::117/64", "gateway": "2001:db8::1", "interface": 0}
                    ],
                    "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.65"}, {"dst": "::/0", "gw": "2001:db8::1"}],
                    "dns": {"nameservers": ["192.0.2.53", "2001:db8::53"]}
                })
            );
        }
        Ok(())
    }

    #[test]
    fn current_shapes() -> TestResult {
        let r = sample()?;
        let ips = json!([
            {"address": "192.0.2.117/26", "gateway": "192.0.2.65", "interface": 0},
            {"address": "2001:db8::117/64", "gateway": "2001:db8::1", "interface": 0}
        ]);
        let dns = json!({"nameservers": ["192.0.2.53", "2001:db8::53"]});
        assert_eq!(
            render(&r, Version::V1_0_0)?,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/p"}],
                "ips": ips,
                "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.65"}, {"dst": "::/0", "gw": "2001:db8::1"}],
                "dns": dns
            })
        );
        assert_eq!(
            render(&r, Version::V1_1_0)?,
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "mtu": 1500,
                                "sandbox": "/run/netns/p", "pciID": "0000:00:01.0"}],
                "ips": ips,
                "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.65", "priority": 10}, {"dst": "::/0", "gw": "2001:db8::1"}],
                "dns": dns
            })
        );
        Ok(())
    }

    #[test]
    fn cni_version_comes_first() -> TestResult {
        for v in Version::ALL {
            let text = serde_json::to_string(&sample()?.at(v))?;
            assert!(
                text.starts_with(&format!(r#"{{"cniVersion":"{v}","#)),
                "{text}"
            );
        }
        Ok(())
    }

    #[test]
    fn parses_what_it_renders_at_every_version() -> TestResult {
        let full = sample()?;
        for v in Version::ALL {
            let back = CniResult::parse(v, render(&full, v)?)?;
            // What a version cannot carry is lost on the way; everything else comes back.
            let expected = serde_json::to_value(full.at(v))?;
            assert_eq!(render(&back, v)?, expected, "{v}");
            assert_eq!(back.ips.len(), 2, "{v}");
        }
        Ok(())
    }

    #[test]
    fn empty_result_is_just_the_version() -> TestResult {
        for v in Version::ALL {
            assert_eq!(
                render(&CniResult::default(), v)?,
                json!({"cniVersion": v.as_str()})
            );
        }
        Ok(())
    }

    #[test]
    fn version_info_lists_in_order() -> TestResult {
        assert_eq!(
            serde_json::to_value(VersionInfo::new(&Version::ALL))?,
            json!({"cniVersion": "1.1.0",
                   "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
        Ok(())
    }
}
