//! The log directory: safe to open, written atomically, bounded in size.

use std::fs::{self, DirBuilder};
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{openat, renameat, unlinkat, AtFlags, Mode, OFlags};

use crate::{Error, Record};

/// A temp file older than this was left by a shim that died while writing: pruning removes it.
const STALE_TEMP: Duration = Duration::from_secs(600);
/// The unit records are counted in against the size bound: what a small file occupies on disk.
const BLOCK: u64 = 4096;
/// Prefix of a record being written.
const TEMP_PREFIX: &str = ".tmp-";

/// A log directory that passed the safety checks.
#[derive(Debug, Clone)]
pub struct LogDir {
    path: PathBuf,
}

/// A record's temp file, open for writing: see [`LogDir::draft`]. It holds the log directory open and names
/// files relative to it, so that a directory swapped for a link while the call runs is never followed: the record
/// lands in the directory that was checked, wherever it has been moved.
#[derive(Debug)]
pub struct Draft {
    dir_path: PathBuf,
    dir: OwnedFd,
    file: fs::File,
    tmp: String,
    /// Renamed into place: nothing to remove.
    finished: bool,
}

impl Draft {
    /// Writes the record and renames the file into place under the record's full name, which carries its size,
    /// verb, outcome, plugin and container, so that pruning needs no stat per file and queries open only the
    /// files that can match.
    pub fn finish(mut self, record: &Record) -> Result<PathBuf, Error> {
        let bytes = serde_json::to_vec(record).map_err(|source| Error::Record {
            path: self.dir_path.join(record.file_stem()),
            source,
        })?;
        let name = format!(
            "{}-{}~{}~{}~{}~{}.json",
            record.file_stem(),
            bytes.len(),
            name_safe(record.command.as_deref().unwrap_or("-")),
            if record.failed() { "fail" } else { "ok" },
            name_safe(&record.plugin),
            name_safe(record.container_id.as_deref().unwrap_or("-")),
        );
        let target = self.dir_path.join(&name);
        self.file
            .write_all(&bytes)
            .and_then(|()| Ok(renameat(&self.dir, &self.tmp, &self.dir, &name)?))
            .map_err(|source| Error::Io {
                action: "write the record",
                path: target.clone(),
                source,
            })?;
        self.finished = true;
        Ok(target)
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        if !self.finished {
            let _ = unlinkat(&self.dir, &self.tmp, AtFlags::empty());
        }
    }
}

/// The effective uid, as the kernel shows it: `/proc/self` is owned by the process's effective user.
pub fn effective_uid() -> Result<u32, Error> {
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(Error::io("read", "/proc/self"))
}

impl LogDir {
    /// Opens a log directory for writing, creating it (mode 0700) if missing.
    ///
    /// Refuses a symlink, a non-directory, and a directory owned by anyone but the effective user; tightens its
    /// mode to 0700 if looser, since it is ours.
    pub fn open_for_write(path: &Path) -> Result<LogDir, Error> {
        let refuse = |reason: String| Error::LogDir {
            path: path.to_owned(),
            reason,
        };
        let meta = match fs::symlink_metadata(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(Error::io("create", path))?;
                fs::symlink_metadata(path).map_err(Error::io("inspect", path))?
            }
            other => other.map_err(Error::io("inspect", path))?,
        };
        if meta.file_type().is_symlink() {
            return Err(refuse("it is a symbolic link".into()));
        }
        if !meta.is_dir() {
            return Err(refuse("it is not a directory".into()));
        }
        let me = effective_uid()?;
        if meta.uid() != me {
            return Err(refuse(format!(
                "it is owned by uid {}, not by uid {me}",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(Error::io("restrict", path))?;
        }
        Ok(LogDir {
            path: path.to_owned(),
        })
    }

    /// Opens a log directory for reading: it must exist and not be a symlink.
    pub fn open_for_read(path: &Path) -> Result<LogDir, Error> {
        let meta = fs::symlink_metadata(path).map_err(Error::io("open the log directory", path))?;
        if meta.file_type().is_symlink() || !meta.is_dir() {
            return Err(Error::LogDir {
                path: path.to_owned(),
                reason: "it is a symbolic link or not a directory".into(),
            });
        }
        Ok(LogDir {
            path: path.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a record as one file, mode 0600: a temp file renamed into place, so a reader or a concurrent call
    /// never sees half a record. A failed write leaves nothing behind.
    pub fn write(&self, record: &Record) -> Result<PathBuf, Error> {
        self.draft(&record.file_stem())?.finish(record)
    }

    /// Creates the temp file a record will be written to, named after the record's stem: the shim does this while
    /// the real plugin runs, so that creating a file is not on the caller's path. A draft dropped unfinished is
    /// removed; one left by a shim that died is removed by a later [`LogDir::prune`].
    pub fn draft(&self, stem: &str) -> Result<Draft, Error> {
        let tmp = format!("{TEMP_PREFIX}{stem}.json");
        let path = self.path.join(&tmp);
        // The directory was checked by path; from here on it is held open, and a link in its place is refused.
        let dir = rustix::fs::open(
            &self.path,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", &self.path)(e.into()))?;
        let file = openat(
            &dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| Error::io("create the record", &path)(e.into()))?;
        Ok(Draft {
            dir_path: self.path.clone(),
            dir,
            file: fs::File::from(file),
            tmp,
            finished: false,
        })
    }

    /// Record files, oldest first.
    pub fn list(&self) -> Result<Vec<PathBuf>, Error> {
        let mut names: Vec<PathBuf> = fs::read_dir(&self.path)
            .map_err(Error::io("list", &self.path))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_record(p))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Drops the oldest records until the directory holds at most `max_bytes`, and removes temp files left by
    /// shims that died mid-write. Each record counts as the 4 KiB blocks it occupies, which bounds the number of
    /// files and so the cost of this pass. Sizes come from the file names, so the pass is one directory read.
    /// Races with concurrent pruners are harmless: a file already gone is skipped.
    pub fn prune(&self, max_bytes: u64) -> Result<(), Error> {
        let now = SystemTime::now();
        let mut records: Vec<(String, u64)> = Vec::new();
        let mut total = 0u64;
        for entry in fs::read_dir(&self.path)
            .map_err(Error::io("list", &self.path))?
            .flatten()
        {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_record_name(name) {
                let len = match name_len(name) {
                    Some(len) => len,
                    None => entry.metadata().map_or(0, |m| m.len()),
                };
                let blocks = len.max(1).div_ceil(BLOCK) * BLOCK;
                total += blocks;
                records.push((name.to_owned(), blocks));
            } else if name.starts_with(TEMP_PREFIX)
                && entry
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age > STALE_TEMP)
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        if total <= max_bytes {
            return Ok(());
        }
        records.sort_unstable();
        for (name, len) in records {
            if total <= max_bytes {
                break;
            }
            let path = self.path.join(&name);
            match fs::remove_file(&path) {
                Ok(()) => total -= len,
                Err(e) if e.kind() == ErrorKind::NotFound => total -= len,
                Err(e) => return Err(Error::io("remove", path)(e)),
            }
        }
        Ok(())
    }

    /// Reads the records whose file names pass `keep`, newest first, handing each to `visit` until it returns
    /// false. Only the files that pass are opened, so a query over many records costs one directory read plus the
    /// records it can match. Files that do not parse are reported on stderr and skipped.
    pub fn scan_newest(
        &self,
        keep: impl Fn(&NameTag<'_>) -> bool,
        mut visit: impl FnMut(Record) -> bool,
    ) -> Result<(), Error> {
        let mut names = self.list()?;
        names.reverse();
        for path in names {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !keep(&NameTag::of(name)) {
                continue;
            }
            match read_record(&path) {
                Ok(r) => {
                    if !visit(r) {
                        break;
                    }
                }
                Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                Err(e) => eprintln!("warning: skipping {}: {e}", path.display()),
            }
        }
        Ok(())
    }

    /// Finds a record by id or unique id prefix.
    pub fn find(&self, id: &str) -> Result<Record, Error> {
        let matches: Vec<PathBuf> = self
            .list()?
            .into_iter()
            .filter(|p| record_id(p).is_some_and(|rid| rid.starts_with(id)))
            .collect();
        match matches.as_slice() {
            [] => Err(Error::NoSuchRecord(id.to_owned())),
            [one] => read_record(one),
            many => {
                let mut matches: Vec<String> = many
                    .iter()
                    .take(5)
                    .filter_map(|p| record_id(p).map(str::to_owned))
                    .collect();
                if many.len() > 5 {
                    matches.push(format!("and {} more", many.len() - 5));
                }
                Err(Error::AmbiguousId {
                    prefix: id.to_owned(),
                    matches,
                })
            }
        }
    }
}

fn is_record(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(is_record_name)
}

fn is_record_name(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(".json")
}

/// The longest a field of a record's file name gets.
const NAME_FIELD_MAX: usize = 64;

/// A value as a file-name field: letters, digits, `.`, `_` and `-` kept, anything else `_`, at most 64 characters.
/// The map is per character, so a prefix of a value maps to a prefix of its field.
pub fn name_safe(s: &str) -> String {
    s.chars()
        .take(NAME_FIELD_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What a record's file name, `<stamp>-<id>-<len>~<verb>~<ok|fail>~<plugin>~<container>.json`, tells without
/// opening it. Names without the `~` fields tell only the stamp.
#[derive(Debug, Clone, Copy, Default)]
pub struct NameTag<'a> {
    /// The start time, as [`crate::time::stamp`] writes it: sorts as time does.
    pub stamp: &'a str,
    /// The verb.
    pub verb: Option<&'a str>,
    /// Whether the call failed.
    pub failed: Option<bool>,
    /// The plugin, as [`name_safe`] writes it.
    pub plugin: Option<&'a str>,
    /// The container id, as [`name_safe`] writes it.
    pub container: Option<&'a str>,
}

impl<'a> NameTag<'a> {
    /// Reads a file name.
    pub fn of(name: &'a str) -> NameTag<'a> {
        let stem = name.strip_suffix(".json").unwrap_or(name);
        let mut fields = stem.split('~');
        let head = fields.next().unwrap_or_default();
        let stamp = head.split('-').next().unwrap_or_default();
        match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(verb), Some(outcome), Some(plugin), Some(container)) => NameTag {
                stamp,
                verb: Some(verb),
                failed: Some(outcome == "fail"),
                plugin: Some(plugin),
                container: Some(container),
            },
            _ => NameTag {
                stamp,
                ..NameTag::default()
            },
        }
    }

    /// Whether the record may belong to a container whose id starts with `prefix` (false only when it cannot).
    pub fn may_be_container(&self, prefix: &str) -> bool {
        let safe = name_safe(prefix);
        match self.container {
            Some(c) if prefix.chars().count() <= NAME_FIELD_MAX => c.starts_with(&safe),
            _ => true,
        }
    }
}

/// `<stamp>-<id>-<len>[~fields].json` split into id and length.
fn name_parts(name: &str) -> Option<(&str, &str)> {
    let stem = name.strip_suffix(".json")?;
    let head = stem.split('~').next()?;
    let mut parts = head.rsplitn(3, '-');
    let len = parts.next()?;
    let id = parts.next()?;
    parts.next()?;
    Some((id, len))
}

/// The size a record's file name states.
fn name_len(name: &str) -> Option<u64> {
    name_parts(name).and_then(|(_, len)| len.parse().ok())
}

/// The id part of a record's file name.
fn record_id(path: &Path) -> Option<&str> {
    name_parts(path.file_name()?.to_str()?).map(|(id, _)| id)
}

/// Reads one record file.
pub fn read_record(path: &Path) -> Result<Record, Error> {
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Record {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_record(command: &str) -> Record {
        use crate::passthrough::{build_record, Call, Meta};
        let meta = Meta {
            env: [("CNI_COMMAND".to_owned(), command.to_owned())].into(),
            plugin: "index2ip".into(),
            real: None,
            args: Vec::new(),
            span: crate::trace::Span::start(None, None),
            started: SystemTime::now(),
            duration: Duration::ZERO,
        };
        build_record(meta, &Call::default())
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("the directory")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_draft_becomes_the_record_or_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let dir = LogDir::open_for_write(&tmp.path().join("log")).expect("the log dir");
        let record = a_record("ADD");
        let draft = dir.draft(&record.file_stem()).expect("a draft");
        assert_eq!(
            names(dir.path()),
            [format!(".tmp-{}.json", record.file_stem())],
            "the draft is hidden from queries"
        );
        let path = draft.finish(&record).expect("the record");
        assert_eq!(
            names(dir.path()),
            [path.file_name().expect("a name").to_string_lossy()]
        );
        assert!(is_record(&path));
        let back: Record =
            serde_json::from_slice(&fs::read(&path).expect("the file")).expect("JSON");
        assert_eq!(back, record);

        // Dropped unfinished (a probe that is not recorded), a draft removes itself.
        let other = a_record("VERSION");
        drop(dir.draft(&other.file_stem()).expect("a draft"));
        assert_eq!(names(dir.path()).len(), 1);
        // A second draft under the same stem is refused rather than shared.
        let first = dir.draft(&other.file_stem()).expect("a draft");
        assert!(dir.draft(&other.file_stem()).is_err());
        drop(first);
        assert_eq!(names(dir.path()).len(), 1);
    }

    #[test]
    fn pruning_removes_drafts_left_by_killed_shims_once_stale() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let dir = LogDir::open_for_write(tmp.path()).expect("the log dir");
        // A shim killed mid-call leaves its draft: forgotten here, as a dead process would.
        let (old, fresh) = (a_record("ADD"), a_record("DEL"));
        std::mem::forget(dir.draft(&old.file_stem()).expect("a draft"));
        std::mem::forget(dir.draft(&fresh.file_stem()).expect("a draft"));
        let old_name = format!(".tmp-{}.json", old.file_stem());
        fs::File::options()
            .write(true)
            .open(tmp.path().join(&old_name))
            .and_then(|f| f.set_modified(SystemTime::now() - STALE_TEMP - Duration::from_secs(1)))
            .expect("an older draft");
        dir.prune(u64::MAX).expect("a prune");
        assert_eq!(
            names(tmp.path()),
            [format!(".tmp-{}.json", fresh.file_stem())],
            "the stale draft went; the fresh one may be a call still running"
        );
    }

    #[test]
    fn names_tell_what_queries_filter_on() {
        let t = NameTag::of(
            "20261129T200141.671446732Z-9390cee0b462718c-911~ADD~fail~host-local~abc_def.json",
        );
        assert_eq!(t.stamp, "20261129T200141.671446732Z");
        assert_eq!(
            (t.verb, t.failed, t.plugin),
            (Some("ADD"), Some(true), Some("host-local"))
        );
        assert!(t.may_be_container("abc/d"), "a prefix maps to a prefix");
        assert!(!t.may_be_container("abx"));
        assert_eq!(
            name_parts("20261129T200141.671446732Z-9390cee0b462718c-911~ADD~ok~x~y.json"),
            Some(("9390cee0b462718c", "911"))
        );
        // Names without the fields (older records) tell only the stamp, and every query still opens them.
        let old = NameTag::of("20261129T200141.671446732Z-9390cee0b462718c-911.json");
        assert_eq!((old.verb, old.container), (None, None));
        assert!(old.may_be_container("anything"));
        assert_eq!(name_safe("a b/c~d"), "a_b_c_d");
        assert_eq!(name_safe(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn names_carry_id_and_size() {
        let p = Path::new("/l/20240501T123456.000000001Z-00f067aa0ba902b7-1234.json");
        assert_eq!(record_id(p), Some("00f067aa0ba902b7"));
        assert_eq!(
            name_len("20240501T123456.000000001Z-00f067aa0ba902b7-1234.json"),
            Some(1234)
        );
        assert!(is_record(p));
        assert!(!is_record(Path::new(
            "/l/.tmp-20240501T123456.000000001Z-00f067aa0ba902b7-1234.json"
        )));
        assert_eq!(record_id(Path::new("/l/x.json")), None);
    }
}
