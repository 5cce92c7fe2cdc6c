//! Writing a whole file so that no reader ever sees half of it, and a crash leaves the old file or the new.
//!
//! The one rule for every file cni-shim writes whole (a runtime's configuration and its backup, the shim's
//! configuration, the pass-through binary): a temp file beside the target, written, flushed to the disk, renamed
//! over the target, then the directory flushed. A crash right after `enable` must not leave containerd an empty
//! `config.toml`. Records are not written here: they sit on every call's path, are renamed into place the same
//! way but never flushed (store.rs), because a record lost in a crash costs nothing and a flush costs the caller
//! milliseconds.

use std::fs::{self, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Error;

/// Replaces `path` with `bytes`, mode `mode` (less the umask).
pub(crate) fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let io = |e| Error::io("write", path)(e);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_the_file_whole_with_its_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        fs::write(&file, "old").unwrap();
        write(&file, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "new");
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = write(&dir.path().join("missing/x"), b"", 0o644).unwrap_err();
        assert!(e.to_string().contains("missing/x"), "{e}");
    }
}
