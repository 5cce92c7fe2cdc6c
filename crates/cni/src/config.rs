//! The network configuration a runtime passes on stdin.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Version};

/// One plugin's configuration (SPEC.md, "Plugin configuration objects"), as it arrives on stdin.
///
/// Keys this type does not name are kept in [`NetConf::extra`], so a configuration round-trips unchanged.
/// A delegated IPAM plugin receives its parent's whole configuration; its own section is [`NetConf::ipam`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// The spec version the runtime speaks. Empty on the wire means 0.1.0, as libcni reads it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cni_version: String,
    /// The network's name, unique among a host's networks; an IPAM plugin that keeps state keys it by this name
    /// (host-local's store is a directory named after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The plugin to run (for a delegated IPAM: the main plugin, such as `ipvlan`).
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub plugin_type: String,
    /// Which IPAM plugin assigns this plugin's addresses, and that plugin's keys; a delegated IPAM plugin reads its
    /// own section here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    /// DNS settings, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
    /// The previous plugin's result in a chain (CHECK, and ADD after the first plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_result: Option<Value>,
    /// Capabilities the runtime filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<Value>,
    /// Extra arguments from the runtime (`args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// Every other key, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `ipam` section: its `type`, and whatever the IPAM plugin defines, kept for that plugin to interpret.
///
/// Runtimes have sent DEL with this section stripped to its type, so nothing here is required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ipam {
    /// The IPAM plugin to run.
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub plugin_type: String,
    /// The plugin's own keys.
    #[serde(flatten)]
    pub keys: Map<String, Value>,
}

impl NetConf {
    /// Decodes a configuration: malformed JSON is a decode error (code 6), JSON of the wrong shape an invalid
    /// configuration (code 7).
    pub fn from_slice(bytes: &[u8]) -> Result<NetConf, Error> {
        serde_json::from_slice(bytes).map_err(|e| {
            if e.is_data() {
                Error::InvalidConfig(e)
            } else {
                Error::Decode(e)
            }
        })
    }

    /// The configuration's version; an absent or empty `cniVersion` is 0.1.0, as libcni reads it.
    pub fn version(&self) -> Result<Version, Error> {
        match self.cni_version.as_str() {
            "" => Ok(Version::V0_1_0),
            v => v.parse(),
        }
    }

    /// One of the IPAM plugin's own keys; `None` where it or the whole section is absent.
    pub fn ipam_key(&self, key: &str) -> Option<&Value> {
        self.ipam.as_ref().and_then(|i| i.keys.get(key))
    }
}

/// Reads just the `cniVersion` of bytes that did not decode as a whole, so that an error reply can still answer in
/// the request's version.
pub fn sniff_version(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Only {
        cni_version: String,
    }
    serde_json::from_slice::<Only>(bytes)
        .ok()
        .map(|o| o.cni_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_keys_and_round_trips() -> Result<(), Box<dyn std::error::Error>> {
        let text = r#"{"cniVersion":"0.3.1","name":"index2ip-index-2-conf","type":"ipvlan","master":"eth0","mode":"l2","ipam":{"type":"index2ip","index":2,"future":[1]},"runtimeConfig":{"x":1},"args":{"cni":{}}}"#;
        let conf = NetConf::from_slice(text.as_bytes())?;
        assert_eq!(conf.version()?, Version::V0_3_1);
        assert_eq!(conf.plugin_type, "ipvlan");
        assert_eq!(conf.extra.get("master"), Some(&Value::from("eth0")));
        assert_eq!(conf.ipam_key("index"), Some(&Value::from(2)));
        let again: Value = serde_json::to_value(&conf)?;
        let original: Value = serde_json::from_str(text)?;
        assert_eq!(again, original);
        Ok(())
    }

    #[test]
    fn tells_decode_errors_from_config_errors() {
        assert_eq!(NetConf::from_slice(b"{").err().map(|e| e.code()), Some(6));
        assert_eq!(NetConf::from_slice(b"").err().map(|e| e.code()), Some(6));
        assert_eq!(
            NetConf::from_slice(b"\xff").err().map(|e| e.code()),
            Some(6)
        );
        assert_eq!(NetConf::from_slice(b"[1]").err().map(|e| e.code()), Some(7));
        assert_eq!(
            NetConf::from_slice(br#"{"ipam":5}"#)
                .err()
                .map(|e| e.code()),
            Some(7)
        );
    }

    #[test]
    fn missing_version_is_0_1_0_and_unknown_is_refused() -> Result<(), Error> {
        assert_eq!(NetConf::from_slice(b"{}")?.version()?, Version::V0_1_0);
        let e = NetConf::from_slice(br#"{"cniVersion":"0.5.0"}"#)?.version();
        assert_eq!(e.err().map(|e| e.code()), Some(1));
        Ok(())
    }

    #[test]
    fn sniffs_the_version_of_a_broken_config() {
        assert_eq!(
            sniff_version(br#"{"cniVersion":"0.4.0","ipam":7}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(sniff_version(b"{"), None);
    }
}
