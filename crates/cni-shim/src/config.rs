//! The shim's own configuration: a small JSON file in the shim directory, written by `install`.
//!
//! The pass-through finds it through the directory of the symlink it was run as, never through `CNI_PATH`:
//! runtimes probe VERSION with `CNI_PATH=dummy`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The configuration file's name inside the shim directory.
pub const FILE_NAME: &str = ".cni-shim.json";
/// Where `install` puts the shim directory unless told otherwise.
pub const DEFAULT_SHIM_DIR: &str = "/opt/cni-shim/bin";
/// Where records go unless told otherwise.
pub const DEFAULT_LOG_DIR: &str = "/var/log/cni-shim";
/// The default bound on the log directory's total size.
pub const DEFAULT_MAX_BYTES: u64 = 32 << 20;
/// The default bound on each of stdin, stdout and stderr kept in a record.
pub const DEFAULT_CAPTURE_BYTES: u64 = 64 << 10;
/// By default one call in this many enforces the size bound: a full pass over the directory costs more than a call.
pub const DEFAULT_PRUNE_EVERY: u32 = 64;

/// `<shim-dir>/.cni-shim.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShimConfig {
    /// The directory holding the real plugins.
    pub real_dir: PathBuf,
    /// Where records go; no records when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    /// The bound on the log directory's total size in bytes; the oldest records go first.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// The most of each stream (stdin, stdout, stderr) a record keeps; the rest is forwarded but not kept.
    #[serde(default = "default_capture_bytes")]
    pub capture_bytes: u64,
    /// One call in this many (on average) enforces `max_bytes`; 1 makes every call do it.
    #[serde(default = "default_prune_every")]
    pub prune_every: u32,
    /// Whether successful VERSION and STATUS calls are recorded. Runtimes probe with them every few seconds;
    /// recorded, they would crowd out the calls worth reading. Failed probes are always recorded.
    #[serde(default)]
    pub record_probes: bool,
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}
fn default_capture_bytes() -> u64 {
    DEFAULT_CAPTURE_BYTES
}
fn default_prune_every() -> u32 {
    DEFAULT_PRUNE_EVERY
}

impl ShimConfig {
    /// A configuration with default bounds.
    pub fn new(real_dir: PathBuf, log_dir: Option<PathBuf>) -> ShimConfig {
        ShimConfig {
            real_dir,
            log_dir,
            max_bytes: DEFAULT_MAX_BYTES,
            capture_bytes: DEFAULT_CAPTURE_BYTES,
            prune_every: DEFAULT_PRUNE_EVERY,
            record_probes: false,
        }
    }

    /// Reads and checks `<shim_dir>/.cni-shim.json`.
    pub fn load(shim_dir: &Path) -> Result<ShimConfig, Error> {
        let path = shim_dir.join(FILE_NAME);
        let bytes = fs::read(&path).map_err(|source| Error::ConfigRead {
            path: path.clone(),
            source,
        })?;
        let config: ShimConfig =
            serde_json::from_slice(&bytes).map_err(|source| Error::ConfigDecode {
                path: path.clone(),
                source,
            })?;
        let invalid = |reason: &str| Error::ConfigInvalid {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        if !config.real_dir.is_absolute() {
            return Err(invalid("realDir must be an absolute path"));
        }
        if config.log_dir.as_ref().is_some_and(|d| !d.is_absolute()) {
            return Err(invalid("logDir must be an absolute path"));
        }
        if config.prune_every == 0 {
            return Err(invalid("pruneEvery must be at least 1"));
        }
        Ok(config)
    }

    /// Writes `<shim_dir>/.cni-shim.json` atomically (temp file, flush, rename), mode 0644: it holds no secret
    /// and the runtime's plugins read it.
    pub fn store(&self, shim_dir: &Path) -> Result<(), Error> {
        let path = shim_dir.join(FILE_NAME);
        let mut text = serde_json::to_vec_pretty(self).map_err(|source| Error::Record {
            path: path.clone(),
            source,
        })?;
        text.push(b'\n');
        crate::atomic::write(&path, &text, 0o644)
    }
}

/// The shim directory: the directory of the symlink the shim was run as.
///
/// Runtimes exec a plugin by its full path, so `argv[0]` names the directory. A bare name (run from a shell through
/// `PATH`) is looked up on `PATH` (never `CNI_PATH`), accepting only an entry that is this very executable.
pub(crate) fn locate_shim_dir(argv0: &OsStr) -> Result<PathBuf, Error> {
    let path = Path::new(argv0);
    if argv0.as_encoded_bytes().contains(&b'/') {
        return Ok(match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        });
    }
    let me = fs::metadata("/proc/self/exe").ok();
    let found = std::env::var_os("PATH").and_then(|dirs| {
        std::env::split_paths(&dirs).find(|dir| {
            let candidate = fs::metadata(dir.join(path)).ok();
            match (&me, candidate) {
                (Some(me), Some(c)) => me.dev() == c.dev() && me.ino() == c.ino(),
                _ => false,
            }
        })
    });
    found.ok_or_else(|| Error::Locate {
        argv0: argv0.to_string_lossy().into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_comes_from_argv0() -> Result<(), Error> {
        assert_eq!(
            locate_shim_dir(OsStr::new("/opt/cni-shim/bin/bridge"))?,
            PathBuf::from("/opt/cni-shim/bin")
        );
        assert_eq!(locate_shim_dir(OsStr::new("./bridge"))?, PathBuf::from("."));
        assert_eq!(locate_shim_dir(OsStr::new("/bridge"))?, PathBuf::from("/"));
        Ok(())
    }

    #[test]
    fn a_bare_name_not_on_path_is_an_error() {
        let e = locate_shim_dir(OsStr::new("no-such-plugin-anywhere-42"));
        assert!(matches!(e, Err(Error::Locate { .. })), "{e:?}");
    }

    #[test]
    fn defaults_fill_missing_bounds() -> Result<(), serde_json::Error> {
        let c: ShimConfig = serde_json::from_str(r#"{"realDir":"/opt/cni/bin"}"#)?;
        assert_eq!(c, ShimConfig::new(PathBuf::from("/opt/cni/bin"), None));
        Ok(())
    }
}
