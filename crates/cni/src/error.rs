//! Errors of the protocol layer and the error reply every plugin writes.

use serde::{Deserialize, Serialize};

use crate::{Command, Version};

/// The error codes the spec reserves (SPEC.md, "Error").
///
/// Codes 100 and above belong to each plugin.
pub mod code {
    /// The plugin does not speak the configuration's `cniVersion`, or the verb does not exist at it.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A configuration field the plugin does not support; the message must name the key and its value.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container is unknown: the runtime need not clean up its network (no DEL follows).
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// A `CNI_*` variable is missing or unusable; the message must name it.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// Reading or writing failed, such as reading the configuration from stdin.
    pub const IO: u32 = 5;
    /// Input did not decode, such as a configuration that is not JSON.
    pub const DECODE: u32 = 6;
    /// The configuration decodes but fails validation (`prevResult` included).
    pub const INVALID_CONFIG: u32 = 7;
    /// A transient condition: the runtime should retry the operation later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available.
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: the plugin is available, but limited.
    pub const LIMITED: u32 = 51;
    /// A bug in the plugin: it panicked. The first plugin-specific code; plugins use 100 to 198 for their own.
    pub const INTERNAL: u32 = 199;
}

/// What can go wrong before a plugin's own logic runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `CNI_COMMAND` names no verb of the spec.
    #[error("unknown CNI_COMMAND {0:?}: expected one of ADD, DEL, CHECK, GC, STATUS, VERSION")]
    UnknownCommand(String),
    /// A variable the verb requires is unset or empty.
    #[error("{name} is required for {command} but is not set")]
    MissingEnv {
        /// The variable's name, such as `CNI_CONTAINERID`.
        name: &'static str,
        /// The verb that needs it.
        command: Command,
    },
    /// A variable is set but cannot be used.
    #[error("{name} is invalid: {reason}")]
    InvalidEnv {
        /// The variable's name, such as `CNI_ARGS`.
        name: &'static str,
        /// What makes its value unusable, printed after the name.
        reason: String,
    },
    /// The configuration's `cniVersion` is not one the plugin supports.
    #[error("cniVersion {0:?} is not supported: supported are 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0")]
    UnsupportedVersion(String),
    /// The verb does not exist at the configuration's version.
    #[error("{command} is not defined at cniVersion {version}: it needs {} or later", command.since())]
    VerbTooNew {
        /// The verb asked for.
        command: Command,
        /// The configuration's version.
        version: Version,
    },
    /// Standard input could not be read.
    #[error("cannot read the network configuration from stdin: {0}")]
    Stdin(#[source] std::io::Error),
    /// Standard input exceeds the size a configuration may have.
    #[error("the network configuration on stdin exceeds {limit} bytes")]
    StdinTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Standard input is not JSON.
    #[error("the network configuration on stdin is not valid JSON: {0}")]
    Decode(#[source] serde_json::Error),
    /// Standard input is JSON, but not a network configuration.
    #[error("the network configuration on stdin is invalid: {0}")]
    InvalidConfig(#[source] serde_json::Error),
    /// `prevResult` does not have the shape of a result at the configuration's version.
    #[error("prevResult is not a {version} result: {source}")]
    PrevResult {
        /// The configuration's version.
        version: Version,
        /// What did not decode.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The spec's error code for this error.
    pub fn code(&self) -> u32 {
        match self {
            Error::UnknownCommand(_) | Error::MissingEnv { .. } | Error::InvalidEnv { .. } => {
                code::INVALID_ENVIRONMENT
            }
            Error::UnsupportedVersion(_) | Error::VerbTooNew { .. } => code::INCOMPATIBLE_VERSION,
            Error::Stdin(_) => code::IO,
            Error::Decode(_) | Error::StdinTooLarge { .. } => code::DECODE,
            Error::InvalidConfig(_) | Error::PrevResult { .. } => code::INVALID_CONFIG,
        }
    }
}

/// The error object a plugin prints on stdout, with a non-zero exit (SPEC.md, "Error").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReply {
    /// The request's version where it was known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cni_version: String,
    /// The spec's code, or a plugin's own (100 and above).
    pub code: u32,
    /// A short message: lower-case, no trailing period.
    pub msg: String,
    /// More detail, where there is some.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl ErrorReply {
    /// A reply with a code and message and no details; the version is filled in when it is written.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        ErrorReply {
            cni_version: String::new(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same reply with details.
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }
}

impl From<&Error> for ErrorReply {
    fn from(e: &Error) -> Self {
        ErrorReply::new(e.code(), e.to_string())
    }
}

impl From<Error> for ErrorReply {
    fn from(e: Error) -> Self {
        ErrorReply::from(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_omits_empty_fields() {
        let r = ErrorReply::new(7, "bad");
        assert_eq!(
            serde_json::to_string(&r).ok().as_deref(),
            Some(r#"{"code":7,"msg":"bad"}"#)
        );
    }

    #[test]
    fn codes_follow_the_spec() {
        assert_eq!(Error::UnknownCommand("X".into()).code(), 4);
        assert_eq!(Error::UnsupportedVersion("9".into()).code(), 1);
        assert_eq!(Error::StdinTooLarge { limit: 1 }.code(), 6);
        let verb = Error::VerbTooNew {
            command: Command::Check,
            version: Version::V0_3_1,
        };
        assert_eq!(verb.code(), 1);
        assert_eq!(
            verb.to_string(),
            "CHECK is not defined at cniVersion 0.3.1: it needs 0.4.0 or later"
        );
    }
}
