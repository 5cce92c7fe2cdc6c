//! A CNI network configuration (a NetworkAttachmentDefinition's `spec.config`, a file of `/etc/cni/net.d`): one
//! plugin or a chain. The one type for it: lint checks it, the lab runs it. And what lint knows of each plugin type.

use cni::{NetConf, Version};
use serde_json::Value;

/// A parsed network configuration: a single plugin's `.conf` or a `.conflist` chain. It serializes as the list a
/// runtime executes ([`NetworkConfig::to_conflist`]) and deserializes from either form.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// The network name (`name`), which multus passes to the plugins; host-local keys its store by it.
    pub name: Option<String>,
    /// `cniVersion` as written (absent means 0.1.0 to libcni).
    pub cni_version: Option<String>,
    /// The plugins in order (one for a single-plugin config).
    pub plugins: Vec<NetConf>,
    /// Whether it was written as a chain (`plugins`).
    pub is_chain: bool,
}

/// Why a `spec.config` is not a CNI configuration, with the line inside the JSON where serde knows one.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// What is wrong.
    pub message: String,
    /// 1-based line inside the JSON text.
    pub line: Option<usize>,
}

impl NetworkConfig {
    /// Parses a single-plugin configuration or a chain.
    pub fn parse(text: &str) -> Result<NetworkConfig, ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError {
            message: format!("not JSON: {e}"),
            line: Some(e.line()),
        })?;
        NetworkConfig::from_value(value)
    }

    /// Reads a single-plugin configuration or a chain already decoded as JSON.
    pub fn from_value(value: Value) -> Result<NetworkConfig, ConfigError> {
        let err = |message: String| ConfigError {
            message,
            line: None,
        };
        let obj = value
            .as_object()
            .ok_or_else(|| err("not a JSON object".into()))?;
        let text_field = |key: &str| -> Result<Option<String>, ConfigError> {
            match obj.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(err(format!("`{key}` is not a string"))),
            }
        };
        let name = text_field("name")?;
        let cni_version = text_field("cniVersion")?;
        let (plugins, is_chain) = match obj.get("plugins") {
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    return Err(err("`plugins` is empty".into()));
                }
                let plugins = items
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        serde_json::from_value::<NetConf>(p.clone())
                            .map_err(|e| err(format!("plugin {}: {e}", i + 1)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (plugins, true)
            }
            Some(_) => return Err(err("`plugins` is not a list".into())),
            None => (
                vec![serde_json::from_value::<NetConf>(value.clone())
                    .map_err(|e| err(e.to_string()))?],
                false,
            ),
        };
        for (i, p) in plugins.iter().enumerate() {
            if p.plugin_type.is_empty() {
                return Err(err(format!("plugin {} has no `type`", i + 1)));
            }
        }
        Ok(NetworkConfig {
            name,
            cni_version,
            plugins,
            is_chain,
        })
    }

    /// The IPAM section of the first plugin that names index2ip.
    pub fn index2ip(&self) -> Option<&cni::Ipam> {
        self.plugins
            .iter()
            .filter_map(|p| p.ipam.as_ref())
            .find(|i| i.plugin_type == "index2ip")
    }

    /// Whether any plugin is flannel.
    pub fn is_flannel(&self) -> bool {
        self.plugins.iter().any(|p| p.plugin_type == "flannel")
    }

    /// The version its plugins are called with: `cniVersion`, or 0.1.0 where absent, as libcni reads it.
    pub fn version(&self) -> Result<Version, cni::Error> {
        match &self.cni_version {
            None => Ok(Version::V0_1_0),
            Some(v) => v.parse(),
        }
    }

    /// The index index2ip's IPAM asks for, where it is a positive integer that fits.
    pub fn index(&self) -> Option<u32> {
        self.index2ip()?
            .keys
            .get("index")?
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
    }

    /// As a runtime executes it: a list of plugins (SPEC.md section 1), whatever form it was written in.
    pub fn to_conflist(&self) -> Value {
        let mut list = serde_json::Map::new();
        if let Some(v) = &self.cni_version {
            list.insert("cniVersion".into(), v.as_str().into());
        }
        if let Some(n) = &self.name {
            list.insert("name".into(), n.as_str().into());
        }
        let plugins = self
            .plugins
            .iter()
            .map(|p| serde_json::to_value(p).unwrap_or_default())
            .collect();
        list.insert("plugins".into(), Value::Array(plugins));
        Value::Object(list)
    }
}

impl serde::Serialize for NetworkConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_conflist().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for NetworkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NetworkConfig, D::Error> {
        let value = Value::deserialize(d)?;
        NetworkConfig::from_value(value).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// Where a plugin type may stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Creates the interface: a single plugin or a chain's first.
    Interface,
    /// Needs a previous result: only later in a chain.
    Chained,
    /// An IPAM plugin: only as `ipam.type`.
    Ipam,
}

/// A plugin type lint knows and the spec versions it answers VERSION with.
#[derive(Debug, Clone, Copy)]
pub struct KnownPlugin {
    /// The `type`.
    pub name: &'static str,
    /// Where it may stand.
    pub role: Role,
    /// The versions it supports.
    pub versions: &'static [Version],
}

use Version::*;

const REF_ALL: &[Version] = &[V0_1_0, V0_2_0, V0_3_0, V0_3_1, V0_4_0, V1_0_0];
const FROM_0_3_0: &[Version] = &[V0_3_0, V0_3_1, V0_4_0, V1_0_0];
const FROM_0_3_1: &[Version] = &[V0_3_1, V0_4_0, V1_0_0];
const FROM_0_4_0: &[Version] = &[V0_4_0, V1_0_0];

/// The plugins of this cluster: the reference plugins 1.1.1 (their VERSION answers, checked against the installed
/// binaries by the tests), index2ip (every version), and flannel's and multus's CNI plugins at the pinned
/// releases, taken to speak what the reference plugins of their libcni generation speak (0.1.0 to 1.0.0).
pub const KNOWN: &[KnownPlugin] = &[
    KnownPlugin {
        name: "bridge",
        role: Role::Interface,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "host-device",
        role: Role::Interface,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "ipvlan",
        role: Role::Interface,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "loopback",
        role: Role::Interface,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "macvlan",
        role: Role::Interface,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "ptp",
        role: Role::Interface,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "vlan",
        role: Role::Interface,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "flannel",
        role: Role::Interface,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "multus",
        role: Role::Interface,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "bandwidth",
        role: Role::Chained,
        versions: FROM_0_3_0,
    },
    KnownPlugin {
        name: "firewall",
        role: Role::Chained,
        versions: FROM_0_4_0,
    },
    KnownPlugin {
        name: "portmap",
        role: Role::Chained,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "sbr",
        role: Role::Chained,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "tuning",
        role: Role::Chained,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "vrf",
        role: Role::Chained,
        versions: FROM_0_3_1,
    },
    KnownPlugin {
        name: "dhcp",
        role: Role::Ipam,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "host-local",
        role: Role::Ipam,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "static",
        role: Role::Ipam,
        versions: REF_ALL,
    },
    KnownPlugin {
        name: "index2ip",
        role: Role::Ipam,
        versions: &Version::ALL,
    },
];

/// What lint knows of a plugin type.
pub fn known(name: &str) -> Option<&'static KnownPlugin> {
    KNOWN.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_plugins_and_chains() -> Result<(), String> {
        let single = NetworkConfig::parse(r#"{"cniVersion":"0.3.1","name":"n","type":"ipvlan","ipam":{"type":"index2ip","index":3}}"#)
            .map_err(|e| e.message)?;
        assert!(!single.is_chain);
        assert_eq!(
            single.index2ip().and_then(|i| i.keys.get("index")),
            Some(&Value::from(3))
        );
        let chain = NetworkConfig::parse(r#"{"cniVersion":"1.0.0","name":"flannel","plugins":[{"type":"flannel"},{"type":"portmap"}]}"#)
            .map_err(|e| e.message)?;
        assert!(chain.is_chain && chain.is_flannel() && chain.index2ip().is_none());
        Ok(())
    }

    #[test]
    fn refuses_what_is_not_a_cni_config() {
        for bad in [
            "{",
            "[]",
            r#"{"plugins":[]}"#,
            r#"{"plugins":{}}"#,
            r#"{"name":"x"}"#,
            r#"{"plugins":[{"type":"a"},{}]}"#,
            r#"{"type":"a","name":5}"#,
        ] {
            assert!(NetworkConfig::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            NetworkConfig::parse("{\n\"a\":\n}")
                .err()
                .and_then(|e| e.line),
            Some(3)
        );
    }
}
