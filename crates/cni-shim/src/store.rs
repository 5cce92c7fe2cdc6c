//! The log directory: safe to open, written atomically, bounded in size.

use std::fs::{self, DirBuilder};
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustix::fs::{fchmod, fstat, openat, renameat, statat, unlinkat, AtFlags, Dir, Mode, OFlags};
use rustix::io::Errno;

use crate::{Error, Record};

/// A temp file older than this was left by a shim that died while writing: pruning removes it.
const STALE_TEMP: Duration = Duration::from_secs(600);
/// The unit records are counted in against the size bound: what a small file occupies on disk.
const BLOCK: u64 = 4096;
/// Prefix of a record being written.
const TEMP_PREFIX: &str = ".tmp-";

/// A log directory that passed the safety checks.
#[derive(Debug, Clone)]
pub(crate) struct LogDir {
    path: PathBuf,
    /// For writing: the directory, held open once checked; records, drafts and pruning work relative to it, so a
    /// directory swapped for a link afterwards is never followed.
    fd: Option<Arc<OwnedFd>>,
}

/// A record's temp file, open for writing: see [`LogDir::draft`]. It holds the log directory open and names
/// files relative to it, so that a directory swapped for a link while the call runs is never followed: the record
/// lands in the directory that was checked, wherever it has been moved.
#[derive(Debug)]
pub(crate) struct Draft {
    dir_path: PathBuf,
    dir: Arc<OwnedFd>,
    file: fs::File,
    tmp: String,
    /// Renamed into place: nothing to remove.
    finished: bool,
}

impl Draft {
    /// Writes the record and renames the file into place under the record's full name, which carries its size,
    /// verb, outcome, plugin and container, so that pruning needs no stat per file and queries open only the
    /// files that can match.
    pub(crate) fn finish(mut self, record: &Record) -> Result<PathBuf, Error> {
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
            .and_then(|()| Ok(renameat(&*self.dir, &self.tmp, &*self.dir, &name)?))
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
            let _ = unlinkat(&*self.dir, &self.tmp, AtFlags::empty());
        }
    }
}

/// Whether the shim that made a draft (`.tmp-<stem>~<pid>.json`) still runs: its call may be a long one, and its
/// draft is not stale however old. A reused pid only keeps an empty file a while longer.
fn draft_owner_alive(name: &str) -> bool {
    name.strip_suffix(".json")
        .and_then(|n| n.rsplit_once('~'))
        .and_then(|(_, pid)| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
}

/// The effective uid, as the kernel shows it: `/proc/self` is owned by the process's effective user.
pub(crate) fn effective_uid() -> Result<u32, Error> {
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(Error::io("read", "/proc/self"))
}

impl LogDir {
    /// Opens a log directory for writing, creating it (mode 0700) if missing.
    ///
    /// Refuses a symlink, a non-directory, and a directory owned by anyone but the effective user; tightens its
    /// mode to 0700 if looser, since it is ours.
    pub(crate) fn open_for_write(path: &Path) -> Result<LogDir, Error> {
        let refuse = |reason: &str| Error::LogDir {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let open = || {
            rustix::fs::open(
                path,
                OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        let fd = match open() {
            Err(Errno::NOENT) => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(Error::io("create", path))?;
                open()
            }
            other => other,
        }
        .map_err(|e| match e {
            // O_NOFOLLOW met a link (ELOOP, or ENOTDIR together with O_DIRECTORY), or O_DIRECTORY something else.
            Errno::LOOP | Errno::NOTDIR => {
                match fs::symlink_metadata(path).map(|m| m.file_type().is_symlink()) {
                    Ok(true) => refuse("it is a symbolic link"),
                    _ => refuse("it is not a directory"),
                }
            }
            e => Error::io("open", path)(e.into()),
        })?;
        // Checked through the descriptor: what was checked is what is written to.
        let meta = fstat(&fd).map_err(|e| Error::io("inspect", path)(e.into()))?;
        let me = effective_uid()?;
        if meta.st_uid != me {
            return Err(refuse(&format!(
                "it is owned by uid {}, not by uid {me}",
                meta.st_uid
            )));
        }
        if meta.st_mode & 0o077 != 0 {
            fchmod(&fd, Mode::from_raw_mode(0o700))
                .map_err(|e| Error::io("restrict", path)(e.into()))?;
        }
        Ok(LogDir {
            path: path.to_owned(),
            fd: Some(Arc::new(fd)),
        })
    }

    /// Opens a log directory for reading: it must exist and not be a symlink.
    pub(crate) fn open_for_read(path: &Path) -> Result<LogDir, Error> {
        let meta = fs::symlink_metadata(path).map_err(Error::io("open the log directory", path))?;
        if meta.file_type().is_symlink() || !meta.is_dir() {
            return Err(Error::LogDir {
                path: path.to_owned(),
                reason: "it is a symbolic link or not a directory".into(),
            });
        }
        Ok(LogDir {
            path: path.to_owned(),
            fd: None,
        })
    }

    /// The directory, held open when opened for writing, else opened here (never through a link).
    fn dir_fd(&self) -> Result<Arc<OwnedFd>, Error> {
        match &self.fd {
            Some(fd) => Ok(Arc::clone(fd)),
            None => rustix::fs::open(
                &self.path,
                OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map(Arc::new)
            .map_err(|e| Error::io("open", &self.path)(e.into())),
        }
    }

    /// Creates the temp file a record will be written to (mode 0600), named after the record's stem: the shim does
    /// this while the real plugin runs, so that creating a file is not on the caller's path. [`Draft::finish`]
    /// renames it into place, so a reader or a concurrent call never sees half a record. A draft dropped unfinished is
    /// removed; one left by a shim that died is removed by a later [`LogDir::prune`].
    pub(crate) fn draft(&self, stem: &str) -> Result<Draft, Error> {
        // The pid tells a later prune whether the call may still be running.
        let tmp = format!("{TEMP_PREFIX}{stem}~{}.json", std::process::id());
        let path = self.path.join(&tmp);
        let dir = self.dir_fd()?;
        let file = openat(
            &*dir,
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
    pub(crate) fn list(&self) -> Result<Vec<PathBuf>, Error> {
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
    pub(crate) fn prune(&self, max_bytes: u64) -> Result<(), Error> {
        let dir = self.dir_fd()?;
        let now = SystemTime::now();
        let mut records: Vec<(String, u64)> = Vec::new();
        let mut total = 0u64;
        let entries = Dir::read_from(&*dir).map_err(|e| Error::io("list", &self.path)(e.into()))?;
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            let stat = || statat(&*dir, name, AtFlags::SYMLINK_NOFOLLOW).ok();
            if is_record_name(name) {
                let len = match name_len(name) {
                    Some(len) => len,
                    None => stat().map_or(0, |m| u64::try_from(m.st_size).unwrap_or(0)),
                };
                let blocks = len.max(1).div_ceil(BLOCK) * BLOCK;
                total += blocks;
                records.push((name.to_owned(), blocks));
            } else if name.starts_with(TEMP_PREFIX) && !draft_owner_alive(name) {
                let modified = stat().and_then(|m| {
                    let secs = u64::try_from(m.st_mtime).ok()?;
                    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
                });
                if modified
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age > STALE_TEMP)
                {
                    let _ = unlinkat(&*dir, name, AtFlags::empty());
                }
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
            match unlinkat(&*dir, name.as_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => total -= len,
                Err(e) => return Err(Error::io("remove", self.path.join(&name))(e.into())),
            }
        }
        Ok(())
    }

    /// Reads the records whose file names pass `keep`, newest first, handing each to `visit` until it returns
    /// false. Only the files that pass are opened, so a query over many records costs one directory read plus the
    /// records it can match. Files that do not parse are reported on stderr and skipped.
    pub(crate) fn scan_newest(
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
    pub(crate) fn find(&self, id: &str) -> Result<Record, Error> {
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
pub(crate) fn name_safe(s: &str) -> String {
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
pub(crate) struct NameTag<'a> {
    /// The start time, as [`crate::time::stamp`] writes it: sorts as time does.
    pub stamp: &'a str,
    pub verb: Option<&'a str>,
    /// Whether the call failed.
    pub failed: Option<bool>,
    /// The plugin, as [`name_safe`] writes it.
    pub plugin: Option<&'a str>,
    /// The container id, as [`name_safe`] writes it.
    pub container: Option<&'a str>,
}

impl<'a> NameTag<'a> {
    pub(crate) fn of(name: &'a str) -> NameTag<'a> {
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
    pub(crate) fn may_be_container(&self, prefix: &str) -> bool {
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
pub(crate) fn read_record(path: &Path) -> Result<Record, Error> {
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
            names(&dir.path),
            [format!(
                ".tmp-{}~{}.json",
                record.file_stem(),
                std::process::id()
            )],
            "the draft is hidden from queries and names its shim"
        );
        let path = draft.finish(&record).expect("the record");
        assert_eq!(
            names(&dir.path),
            [path.file_name().expect("a name").to_string_lossy()]
        );
        assert!(is_record(&path));
        let back: Record =
            serde_json::from_slice(&fs::read(&path).expect("the file")).expect("JSON");
        assert_eq!(back, record);

        // Dropped unfinished (a probe that is not recorded), a draft removes itself.
        let other = a_record("VERSION");
        drop(dir.draft(&other.file_stem()).expect("a draft"));
        assert_eq!(names(&dir.path).len(), 1);
        // A second draft under the same stem is refused rather than shared.
        let first = dir.draft(&other.file_stem()).expect("a draft");
        assert!(dir.draft(&other.file_stem()).is_err());
        drop(first);
        assert_eq!(names(&dir.path).len(), 1);
    }

    #[test]
    fn pruning_removes_drafts_left_by_killed_shims_once_stale() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let dir = LogDir::open_for_write(tmp.path()).expect("the log dir");
        let old = SystemTime::now() - STALE_TEMP - Duration::from_secs(1);
        // No process has pid 2^32 - 1 (the kernel's limit is 2^22): that shim is gone.
        let gone = u32::MAX;
        let drafts = [
            (format!(".tmp-a~{gone}.json"), old),
            (format!(".tmp-b~{gone}.json"), SystemTime::now()),
            (format!(".tmp-c~{}.json", std::process::id()), old),
        ];
        for (name, modified) in &drafts {
            fs::File::create(tmp.path().join(name))
                .and_then(|f| f.set_modified(*modified))
                .expect("a draft");
        }
        dir.prune(u64::MAX).expect("a prune");
        assert_eq!(
            names(tmp.path()),
            [drafts[1].0.clone(), drafts[2].0.clone()],
            "only the stale draft of a shim that is gone goes: a fresh one, or one whose shim still runs, stays"
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
