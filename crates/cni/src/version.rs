//! Spec versions and the result shape each one uses.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A released version of the CNI specification.
///
/// Runtimes require a configuration's `cniVersion` to be an exact member of a plugin's supported list, so this is
/// a closed set rather than a semver range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// 0.1.0: `ip4`/`ip6` objects.
    V0_1_0,
    /// 0.2.0: `ip4`/`ip6` objects.
    V0_2_0,
    /// 0.3.0: `interfaces`, `ips[]` with `version`, top-level `routes`.
    V0_3_0,
    /// 0.3.1: as 0.3.0.
    V0_3_1,
    /// 0.4.0: as 0.3.1, adds CHECK.
    V0_4_0,
    /// 1.0.0: `ips[]` without `version`.
    V1_0_0,
    /// 1.1.0: adds GC, STATUS and route and interface attributes.
    V1_1_0,
}

/// The JSON layout a result takes at a given version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// 0.1.0 and 0.2.0: `ip4`/`ip6` objects with nested routes.
    Legacy,
    /// 0.3.0, 0.3.1, 0.4.0: `ips[]` carrying `"version"`.
    Versioned,
    /// 1.0.0 and later: `ips[]` without `"version"`.
    Current,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 7] = [
        Version::V0_1_0,
        Version::V0_2_0,
        Version::V0_3_0,
        Version::V0_3_1,
        Version::V0_4_0,
        Version::V1_0_0,
        Version::V1_1_0,
    ];

    /// The newest version this crate speaks, used where a request names none (VERSION replies, early errors).
    pub const LATEST: Version = Version::V1_1_0;

    /// The version as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::V0_1_0 => "0.1.0",
            Version::V0_2_0 => "0.2.0",
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// The layout of a result at this version.
    pub const fn shape(self) -> Shape {
        match self {
            Version::V0_1_0 | Version::V0_2_0 => Shape::Legacy,
            Version::V0_3_0 | Version::V0_3_1 | Version::V0_4_0 => Shape::Versioned,
            Version::V1_0_0 | Version::V1_1_0 => Shape::Current,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Version {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::UnsupportedVersion(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_version_and_refuses_others() {
        for v in Version::ALL {
            assert_eq!(v.as_str().parse::<Version>().ok(), Some(v));
        }
        for bad in ["", "1.1", "0.5.0", "v1.0.0", "1.0.0 ", "2.0.0"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn versions_are_ordered_oldest_first() {
        assert!(Version::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Version::LATEST, Version::ALL[Version::ALL.len() - 1]);
    }
}
