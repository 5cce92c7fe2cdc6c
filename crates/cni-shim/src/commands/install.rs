//! `install` and `uninstall`: the shim directory, its symlinks, its copy of the pass-through binary and its
//! configuration.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::config::{ShimConfig, FILE_NAME};
use crate::store::LogDir;
use crate::{Error, BINARY_NAME, PASSTHROUGH_NAME};

/// What `install` is asked to set up.
#[derive(Debug, Clone)]
pub(crate) struct Install {
    /// The real plugins.
    pub real_dir: PathBuf,
    /// The shim directory to create or refresh.
    pub shim_dir: PathBuf,
    /// Where records go; none when absent.
    pub log_dir: Option<PathBuf>,
    /// Size bound of the log directory.
    pub max_bytes: u64,
    /// Bound on each captured stream.
    pub capture_bytes: u64,
    /// The pass-through binary to copy into the shim directory (normally the one shipped beside this executable).
    pub passthrough: PathBuf,
}

/// What a run changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Links created or repointed.
    pub linked: Vec<String>,
    /// Links dropped because their plugin is gone.
    pub unlinked: Vec<String>,
    /// Names left alone because a file that is not ours is in the way.
    pub skipped: Vec<String>,
    /// Whether the pass-through binary was (re)copied, or an earlier install's binary removed.
    pub binary: bool,
    /// Whether the configuration was (re)written.
    pub config: bool,
}

impl Changes {
    /// Whether nothing changed.
    pub(crate) fn is_empty(&self) -> bool {
        self.linked.is_empty() && self.unlinked.is_empty() && !self.binary && !self.config
    }
}

fn ensure_absolute(p: &Path, what: &str) -> Result<(), Error> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what} must be an absolute path, not {}",
            p.display()
        )))
    }
}

/// Whether `link` is a symlink made by `install`: pointing at the pass-through binary beside it, or, made by an
/// install from before the pass-through was a binary of its own, at a copy of `cni-shim`.
fn is_our_link(link: &Path) -> bool {
    fs::read_link(link)
        .is_ok_and(|t| t == Path::new(PASSTHROUGH_NAME) || t == Path::new(BINARY_NAME))
}

/// Whether `link` is a symlink made by this version's `install`.
fn is_current_link(link: &Path) -> bool {
    fs::read_link(link).is_ok_and(|t| t == Path::new(PASSTHROUGH_NAME))
}

/// The executable plugins in the real directory.
fn real_plugins(real_dir: &Path) -> Result<BTreeSet<String>, Error> {
    let mut out = BTreeSet::new();
    for entry in fs::read_dir(real_dir)
        .map_err(Error::io("list", real_dir))?
        .flatten()
    {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || name == BINARY_NAME || name == PASSTHROUGH_NAME {
            continue;
        }
        // Follows symlinks: a real directory of links to plugins elsewhere is fine.
        if fs::metadata(entry.path()).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0) {
            out.insert(name);
        }
    }
    Ok(out)
}

/// Creates or refreshes the shim directory. Idempotent: a second run changes nothing; a run after plugins were
/// added or removed in the real directory links the new and drops the gone.
pub(crate) fn install(opts: &Install) -> Result<Changes, Error> {
    ensure_absolute(&opts.real_dir, "--real-dir")?;
    ensure_absolute(&opts.shim_dir, "--shim-dir")?;
    if let Some(l) = &opts.log_dir {
        ensure_absolute(l, "--log-dir")?;
    }
    // Read before anything is made: without it there is nothing to install.
    let source = fs::read(&opts.passthrough).map_err(|e| {
        let what = match e.kind() {
            ErrorKind::NotFound => {
                "find the pass-through binary (cni-shim and cni-shim-passthrough ship together)"
            }
            _ => "read the pass-through binary",
        };
        Error::io(what, &opts.passthrough)(e)
    })?;
    let real = fs::canonicalize(&opts.real_dir)
        .map_err(Error::io("open the real directory", &opts.real_dir))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&opts.shim_dir)
        .map_err(Error::io("create", &opts.shim_dir))?;
    let shim = fs::canonicalize(&opts.shim_dir).map_err(Error::io("open", &opts.shim_dir))?;
    if real == shim {
        return Err(Error::Usage(format!(
            "the real directory and the shim directory are both {}: the shim would run itself",
            real.display()
        )));
    }
    let mut changes = Changes::default();

    // The binary first, so that no link ever points at nothing.
    let target = opts.shim_dir.join(PASSTHROUGH_NAME);
    if fs::read(&target).ok().as_deref() != Some(&source[..]) {
        atomic::write(&target, &source, 0o755)?;
        changes.binary = true;
    }

    let wanted = real_plugins(&opts.real_dir)?;
    for name in &wanted {
        let link = opts.shim_dir.join(name);
        match fs::symlink_metadata(&link) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::os::unix::fs::symlink(PASSTHROUGH_NAME, &link)
                    .map_err(Error::io("link", &link))?;
                changes.linked.push(name.clone());
            }
            Ok(_) if is_current_link(&link) => {}
            Ok(m) if m.file_type().is_symlink() => {
                // A link elsewhere, or an earlier install's: repoint it atomically.
                let tmp = opts
                    .shim_dir
                    .join(format!(".tmp-link-{name}-{}", std::process::id()));
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(PASSTHROUGH_NAME, &tmp)
                    .and_then(|()| fs::rename(&tmp, &link))
                    .map_err(|e| {
                        let _ = fs::remove_file(&tmp);
                        Error::io("relink", &link)(e)
                    })?;
                changes.linked.push(name.clone());
            }
            Ok(_) => changes.skipped.push(name.clone()),
            Err(e) => return Err(Error::io("inspect", &link)(e)),
        }
    }
    for entry in fs::read_dir(&opts.shim_dir)
        .map_err(Error::io("list", &opts.shim_dir))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !wanted.contains(&name) && is_our_link(&entry.path()) {
            fs::remove_file(entry.path()).map_err(Error::io("unlink", entry.path()))?;
            changes.unlinked.push(name);
        }
    }
    // An earlier install's copy of the whole binary, which no link points at any more.
    match fs::remove_file(opts.shim_dir.join(BINARY_NAME)) {
        Ok(()) => changes.binary = true,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", opts.shim_dir.join(BINARY_NAME))(e)),
    }

    if let Some(log_dir) = &opts.log_dir {
        LogDir::open_for_write(log_dir)?;
    }
    let config = ShimConfig {
        real_dir: opts.real_dir.clone(),
        log_dir: opts.log_dir.clone(),
        max_bytes: opts.max_bytes,
        capture_bytes: opts.capture_bytes,
        // Kept from an earlier configuration: install has no flags for these.
        ..ShimConfig::load(&opts.shim_dir).unwrap_or_else(|_| ShimConfig::new(PathBuf::new(), None))
    };
    if ShimConfig::load(&opts.shim_dir).ok().as_ref() != Some(&config) {
        config.store(&opts.shim_dir)?;
        changes.config = true;
    }
    // The runtime must be able to read and run what is in the shim directory.
    let dir_mode = fs::metadata(&opts.shim_dir)
        .map_err(Error::io("inspect", &opts.shim_dir))?
        .mode();
    if dir_mode & 0o755 != 0o755 {
        fs::set_permissions(
            &opts.shim_dir,
            fs::Permissions::from_mode((dir_mode | 0o755) & 0o7777),
        )
        .map_err(Error::io("set the mode of", &opts.shim_dir))?;
    }
    Ok(changes)
}

/// Removes what `install` made: the links, the binary, the configuration, and the directory if then empty. Leaves
/// the records (their directory is reported so the operator can remove it).
pub(crate) fn uninstall(shim_dir: &Path) -> Result<Changes, Error> {
    let mut changes = Changes::default();
    let entries = match fs::read_dir(shim_dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(changes),
        other => other.map_err(Error::io("list", shim_dir))?,
    };
    for entry in entries.flatten() {
        if is_our_link(&entry.path()) {
            fs::remove_file(entry.path()).map_err(Error::io("unlink", entry.path()))?;
            changes
                .unlinked
                .push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    for name in [FILE_NAME, PASSTHROUGH_NAME, BINARY_NAME] {
        let removed = match fs::remove_file(shim_dir.join(name)) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io("remove", shim_dir.join(name))(e)),
        };
        match name {
            FILE_NAME => changes.config |= removed,
            _ => changes.binary |= removed,
        }
    }
    // Only if empty: anything else in it is not ours.
    let _ = fs::remove_dir(shim_dir);
    Ok(changes)
}
