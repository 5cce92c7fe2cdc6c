//! One call, as the shim saw it.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::capture::Capture;
use crate::redact;

/// The record format's version, bumped on incompatible change.
pub const FORMAT: u32 = 1;

/// One call through the shim: one JSON file in the log directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// [`FORMAT`].
    pub format: u32,
    /// The call's span id: 16 hex digits, unique.
    pub id: String,
    /// The trace id, shared by a call and every call it made.
    pub trace_id: String,
    /// The calling record's id (or the runtime's span, see `parent_source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// `shim` when the parent is a record, `traceparent` when it is the runtime's span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_source: Option<String>,
    /// The plugin's name: the name the shim was run as.
    pub plugin: String,
    /// The real plugin run, where one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_path: Option<String>,
    /// `CNI_COMMAND`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `CNI_CONTAINERID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// `CNI_IFNAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// `CNI_NETNS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// `CNI_ARGS`, with secret-looking values redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_args: Option<String>,
    /// `CNI_PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_path: Option<String>,
    /// The arguments, the first being the name the shim was run as.
    pub argv: Vec<String>,
    /// The `CNI_*`, `TRACEPARENT` and `TRACESTATE` variables (not the whole environment: it may hold secrets).
    pub env: BTreeMap<String, String>,
    /// What the runtime wrote.
    pub stdin: Payload,
    /// What the caller received on stdout.
    pub stdout: Payload,
    /// What the caller received on stderr.
    pub stderr: Payload,
    /// The exit status the caller received.
    pub exit: Exit,
    /// Why the shim answered itself instead of the real plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Start time, RFC 3339 UTC.
    pub start: String,
    /// Start time, nanoseconds since the epoch.
    pub start_unix_ns: u64,
    /// Wall time from start until the real plugin's output ended and it exited.
    pub duration_us: u64,
    /// The shim's process id.
    pub pid: u32,
    /// The real plugin's process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<u32>,
    /// Where values were redacted (`stdin:/json/pointer`, `CNI_ARGS:KEY`, `stderr`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
}

/// A captured stream: text when it is UTF-8, base64 otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// How many bytes passed.
    pub len: u64,
    /// Whether only a prefix is kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The bytes kept, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The bytes kept, in base64, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

impl Payload {
    /// Encodes a capture, redacting text; reports redactions under `label`.
    pub(crate) fn from_capture(c: &Capture, label: &str, redacted: &mut Vec<String>) -> Payload {
        let (text, base64) = match std::str::from_utf8(&c.bytes) {
            Ok(t) => (
                Some(redact::redact_text(t, label, redacted).unwrap_or_else(|| t.to_owned())),
                None,
            ),
            // A stream cut mid-character is still text: keep the valid prefix as text.
            Err(e) if c.truncated() && e.error_len().is_none() => {
                let t = String::from_utf8_lossy(&c.bytes[..e.valid_up_to()]).into_owned();
                (
                    Some(redact::redact_text(&t, label, redacted).unwrap_or(t)),
                    None,
                )
            }
            // Not text: kept as base64, with secret keys' string values masked first.
            Err(_) => {
                let mut changed = false;
                let masked = redact::redact_json_like(&c.bytes, &mut changed);
                if changed {
                    redacted.push(label.to_owned());
                }
                (None, Some(BASE64.encode(&masked)))
            }
        };
        Payload {
            len: c.total,
            truncated: c.truncated(),
            text,
            base64,
        }
    }

    /// The bytes kept, decoded from `text` or `base64`: secrets redacted, a prefix where `truncated`, empty where
    /// `base64` does not decode.
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.text, &self.base64) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (None, Some(b)) => BASE64.decode(b).unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }

    /// The text, if any, parsed as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        self.text
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
    }
}

/// How the call ended, as its caller saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    /// The exit status: the plugin's, or 128+n when it died of signal n.
    pub code: i32,
    /// The signal that killed the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

impl Record {
    /// A value of `CNI_ARGS`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.cni_args.as_deref()?.split(';').find_map(|seg| {
            let (k, v) = seg.split_once('=')?;
            (k == key).then_some(v)
        })
    }

    /// `K8S_POD_NAMESPACE/K8S_POD_NAME`, or the name alone.
    pub fn pod(&self) -> Option<String> {
        let name = self.arg("K8S_POD_NAME")?;
        Some(match self.arg("K8S_POD_NAMESPACE") {
            Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
            _ => name.to_owned(),
        })
    }

    /// Whether the call belongs to a container whose id starts with `prefix`.
    pub fn in_container(&self, prefix: &str) -> bool {
        self.container_id
            .as_deref()
            .is_some_and(|c| c.starts_with(prefix))
    }

    /// Whether the call failed.
    pub fn failed(&self) -> bool {
        self.exit.code != 0
    }

    /// The start of the file name the record is stored under (`<stamp>-<id>`): sorts by start time.
    pub(crate) fn file_stem(&self) -> String {
        Record::stem(self.start_unix_ns, &self.id)
    }

    /// The stem of a record started at `start_unix_ns` with this id, before the record exists.
    pub(crate) fn stem(start_unix_ns: u64, id: &str) -> String {
        format!("{}-{id}", crate::time::stamp(start_unix_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_keeps_text_as_text_and_bytes_as_base64() {
        let mut found = Vec::new();
        let mut c = Capture::new(100);
        c.push(b"{\"a\":1}\n");
        let p = Payload::from_capture(&c, "stdout", &mut found);
        assert_eq!(p.text.as_deref(), Some("{\"a\":1}\n"));
        assert_eq!(p.bytes(), b"{\"a\":1}\n");
        let mut c = Capture::new(100);
        c.push(&[0, 159, 146, 150, 255]);
        let p = Payload::from_capture(&c, "stdout", &mut found);
        assert_eq!(
            (p.text.is_none(), p.bytes()),
            (true, vec![0, 159, 146, 150, 255])
        );
        assert!(found.is_empty());
    }

    #[test]
    fn a_cut_character_keeps_the_text() {
        let mut c = Capture::new(4);
        c.push("abcé".as_bytes());
        let p = Payload::from_capture(&c, "stdout", &mut Vec::new());
        assert_eq!(
            (p.text.as_deref(), p.truncated, p.len),
            (Some("abc"), true, 5)
        );
    }
}
