//! The verbs a runtime asks a plugin to perform.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Version};

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach it; must succeed when there is nothing to remove.
    Del,
    /// Verify an attachment (0.4.0 and later).
    Check,
    /// Clean up resources of attachments the runtime no longer knows (1.1.0).
    Gc,
    /// Report readiness to accept ADD (1.1.0).
    Status,
    /// Report the spec versions the plugin supports.
    Version,
}

impl Command {
    /// Every verb, in the spec's order.
    pub const ALL: [Command; 6] = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Gc,
        Command::Status,
        Command::Version,
    ];

    /// The verb as it appears in `CNI_COMMAND`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// The first spec version that defines this verb.
    pub const fn since(self) -> Version {
        match self {
            Command::Add | Command::Del | Command::Version => Version::V0_1_0,
            Command::Check => Version::V0_4_0,
            Command::Gc | Command::Status => Version::V1_1_0,
        }
    }

    /// Whether the spec makes `CNI_CONTAINERID` and `CNI_IFNAME` mandatory for this verb.
    pub const fn needs_container(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }

    /// Whether the spec makes `CNI_NETNS` mandatory for this verb (DEL may arrive after the namespace is gone).
    pub const fn needs_netns(self) -> bool {
        matches!(self, Command::Add | Command::Check)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Command {
    type Err = Error;

    /// Exact, upper-case match: an unknown verb is an error, never a default (the original treated it as ADD).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Command::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| Error::UnknownCommand(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_the_spec_verbs() {
        for c in Command::ALL {
            assert_eq!(c.as_str().parse::<Command>().ok(), Some(c));
        }
        for bad in ["", "add", "Add", "ADD ", "DELETE", "INIT"] {
            assert!(bad.parse::<Command>().is_err(), "{bad:?} accepted");
        }
    }
}
