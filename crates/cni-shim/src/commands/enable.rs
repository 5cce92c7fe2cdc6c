//! `enable` and `disable`: point a runtime at the shim directory and back.
//!
//! Edits are minimal and reversible. In TOML and systemd files each edited line gets a marker comment above it
//! holding the original (`# cni-shim: was: <line>`, or `# cni-shim: was N lines` followed by N
//! `# cni-shim: | <line>` for a multi-line array) or saying how many lines were added (`# cni-shim: added N lines`);
//! `disable` undoes exactly what the markers say. JSON (multus) has no comments, so
//! `disable` reads the original `binDir` from the backup `enable` made. Every first edit keeps a backup
//! `<file>.cni-shim.bak`.

use std::fs;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use toml_edit::{Document, Item};

use crate::atomic;
use crate::Error;

const MARK: &str = "# cni-shim:";

/// What to point at the shim directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Target {
    /// containerd's CRI plugin: `bin_dir` / `bin_dirs` in `config.toml`.
    Containerd,
    /// CRI-O: `plugin_dirs` in `[crio.network]`.
    Crio,
    /// multus: `binDir` in its CNI configuration.
    Multus,
    /// kubelet's `--cni-bin-dir` in `10-kubeadm.conf` (Kubernetes before 1.24).
    Kubelet,
}

impl Target {
    /// The file edited unless `--config` says otherwise.
    pub(crate) fn default_config(self) -> &'static str {
        match self {
            Target::Containerd => "/etc/containerd/config.toml",
            Target::Crio => "/etc/crio/crio.conf",
            Target::Multus => "/etc/cni/net.d/00-multus.conf",
            Target::Kubelet => "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        }
    }

    /// The commands that make the change take effect; empty when none is needed.
    pub(crate) fn restart(self) -> &'static [&'static [&'static str]] {
        match self {
            Target::Containerd => &[&["systemctl", "restart", "containerd"]],
            Target::Crio => &[&["systemctl", "restart", "crio"]],
            // Multus reads its configuration on every call.
            Target::Multus => &[],
            Target::Kubelet => &[
                &["systemctl", "daemon-reload"],
                &["systemctl", "restart", "kubelet"],
            ],
        }
    }
}

/// The backup kept beside an edited file.
pub(crate) fn backup_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".cni-shim.bak");
    file.with_file_name(name)
}

/// What an edit did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Edited {
    /// The file was changed.
    Changed,
    /// It was already as asked.
    Unchanged,
}

/// Points `target`'s configuration file at `shim_dir`.
pub(crate) fn enable(target: Target, file: &Path, shim_dir: &Path) -> Result<Edited, Error> {
    let text = fs::read_to_string(file).map_err(Error::io("read", file))?;
    let shim = shim_dir
        .to_str()
        .ok_or_else(|| Error::Usage("the shim directory is not UTF-8".into()))?;
    let edit = |r: Result<Option<String>, String>| {
        r.map_err(|reason| Error::Edit {
            path: file.to_owned(),
            reason,
        })
    };
    let new = match target {
        Target::Containerd | Target::Crio | Target::Kubelet => {
            edit(enable_text(target, &text, shim))?
        }
        Target::Multus => edit(multus_enable(&text, shim))?,
    };
    let Some(new) = new else {
        return Ok(Edited::Unchanged);
    };
    let backup = backup_path(file);
    if !backup.exists() {
        atomic::write(&backup, text.as_bytes(), mode(file))?;
    }
    atomic::write(file, new.as_bytes(), mode(file))?;
    Ok(Edited::Changed)
}

/// Undoes [`enable`]. Removes the backup when the file is back to it byte for byte.
pub(crate) fn disable(target: Target, file: &Path) -> Result<Edited, Error> {
    let text = fs::read_to_string(file).map_err(Error::io("read", file))?;
    let backup = backup_path(file);
    let original = fs::read_to_string(&backup).ok();
    let edit = |r: Result<Option<String>, String>| {
        r.map_err(|reason| Error::Edit {
            path: file.to_owned(),
            reason,
        })
    };
    let new = match target {
        Target::Containerd | Target::Crio => edit(disable_text(&text).and_then(|new| {
            // Markers edited by hand could undo into something the runtime would refuse.
            if let Some(t) = &new {
                Document::parse(t.as_str())
                    .map_err(|e| format!("undoing the markers would not give valid TOML: {e}"))?;
            }
            Ok(new)
        }))?,
        Target::Kubelet => edit(disable_text(&text))?,
        Target::Multus => edit(multus_disable(&text, original.as_deref()))?,
    };
    let result = match new {
        Some(new) => {
            atomic::write(file, new.as_bytes(), mode(file))?;
            Edited::Changed
        }
        None => Edited::Unchanged,
    };
    let now = fs::read_to_string(file).ok();
    if original.is_some() && now == original {
        let _ = fs::remove_file(&backup);
    }
    Ok(result)
}

fn mode(file: &Path) -> u32 {
    fs::metadata(file).map_or(0o644, |m| m.permissions().mode() & 0o7777)
}

/// The table, keys and new header a TOML target uses.
struct TomlSpot {
    /// Key paths of the table that may hold the directory, in the order tried.
    tables: &'static [&'static [&'static str]],
    /// Keys that may hold the directory; the first is used when adding.
    keys: &'static [&'static str],
    /// The header written when the table is missing.
    new_section: &'static str,
}

fn toml_spot(target: Target, doc: &Document<&str>) -> TomlSpot {
    match target {
        Target::Crio => TomlSpot {
            tables: &[&["crio", "network"]],
            keys: &["plugin_dirs"],
            new_section: "[crio.network]",
        },
        _ => TomlSpot {
            tables: &[
                &["plugins", "io.containerd.grpc.v1.cri", "cni"],
                &["plugins", "io.containerd.cri.v1.runtime", "cni"],
            ],
            keys: &["bin_dir", "bin_dirs"],
            // containerd 2 configurations say `version = 3` and name the CRI runtime plugin differently.
            new_section: if doc.get("version").and_then(Item::as_integer) == Some(3) {
                "[plugins.'io.containerd.cri.v1.runtime'.cni]"
            } else {
                "[plugins.\"io.containerd.grpc.v1.cri\".cni]"
            },
        },
    }
}

fn value_for(key: &str, shim: &str) -> String {
    let quoted = serde_json::to_string(shim).unwrap_or_default();
    if key.ends_with('s') {
        format!("[{quoted}]")
    } else {
        quoted
    }
}

/// Whether a TOML value already names only the shim directory.
fn names_only(value: &Item, shim: &str) -> bool {
    match value.as_array() {
        Some(a) => a.len() == 1 && a.get(0).and_then(|v| v.as_str()) == Some(shim),
        None => value.as_str() == Some(shim),
    }
}

/// The start of the line holding byte `at`, and the end of the line (before its newline) holding byte `at`.
fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

fn line_end(text: &str, at: usize) -> usize {
    text[at..].find('\n').map_or(text.len(), |i| at + i)
}

/// The pure edit behind [`enable`] for TOML and systemd files; `None` when already enabled.
///
/// TOML is parsed (toml_edit) to find the setting, wherever and however it is written: a header with a comment,
/// a dotted key, an inline table, an array spanning lines with `]` in a string. Only the value's bytes change;
/// the lines it spanned are kept in marker comments above. The result is parsed again and must hold the shim
/// directory, or nothing is written.
pub(crate) fn enable_text(
    target: Target,
    text: &str,
    shim: &str,
) -> Result<Option<String>, String> {
    if target == Target::Kubelet {
        return kubelet_enable(text, shim);
    }
    let doc = Document::parse(text).map_err(|e| format!("not valid TOML: {e}"))?;
    let spot = toml_spot(target, &doc);
    let table = spot.tables.iter().find_map(|path| {
        path.iter()
            .try_fold(doc.as_item(), |item, key| item.get(key))
            .filter(|t| t.is_table_like())
            .map(|t| (*path, t))
    });
    let new = match table {
        Some((path, item)) => {
            let t = item.as_table_like().ok_or("not a table")?;
            match spot.keys.iter().find_map(|k| t.get_key_value(k)) {
                Some((key, value)) => {
                    if names_only(value, shim) {
                        return Ok(None);
                    }
                    let (k, v) = key.span().zip(value.span()).ok_or("no position")?;
                    replace_value(text, k.start, v, &value_for(key.get(), shim))
                }
                None => add_key(text, item, spot.keys[0], shim, path)?,
            }
        }
        None => {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let key = spot.keys[0];
            lines.push(format!("{MARK} added 3 lines"));
            lines.push(String::new());
            lines.push(spot.new_section.to_owned());
            lines.push(format!("{key} = {}", value_for(key, shim)));
            join(lines, true)
        }
    };
    check_toml(target, &new, shim)?;
    Ok(Some(new))
}

/// Replaces the value at `value` (a byte range) whose key starts at `key_start`: the lines from the key's to the
/// value's end become one line, and a marker above keeps them.
fn replace_value(text: &str, key_start: usize, value: Range<usize>, wanted: &str) -> String {
    let (start, end) = (line_start(text, key_start), line_end(text, value.end));
    let originals: Vec<&str> = text[start..end].split('\n').collect();
    let indent = &text[start..key_start];
    let indent = &indent[..indent.len() - indent.trim_start().len()];
    let mut block = if let [one] = originals[..] {
        format!("{indent}{MARK} was: {one}\n")
    } else {
        let mut b = format!("{indent}{MARK} was {} lines\n", originals.len());
        for o in &originals {
            b.push_str(&format!("{indent}{MARK} | {o}\n"));
        }
        b
    };
    block.push_str(&text[start..value.start]);
    block.push_str(wanted);
    block.push_str(&text[value.end..end]);
    format!("{}{block}{}", &text[..start], &text[end..])
}

/// Adds `key` to the table `item`: after its header when it has one; a table that exists only through its
/// sub-tables gets its header at the end.
fn add_key(
    text: &str,
    item: &Item,
    key: &str,
    shim: &str,
    path: &[&str],
) -> Result<String, String> {
    let line = format!("{key} = {}", value_for(key, shim));
    let header = item.as_table().filter(|t| !t.is_dotted());
    match header {
        Some(t) if !t.is_implicit() => {
            let at = t.span().ok_or("no position")?;
            let end = line_end(text, at.end);
            Ok(format!(
                "{}\n{MARK} added 1 lines\n{line}{}",
                &text[..end],
                &text[end..]
            ))
        }
        Some(_) => {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let name: Vec<String> = path.iter().map(|k| toml_key(k)).collect();
            lines.push(format!("{MARK} added 3 lines"));
            lines.push(String::new());
            lines.push(format!("[{}]", name.join(".")));
            lines.push(line);
            Ok(join(lines, true))
        }
        None => Err(format!(
            "{} is written as a dotted key or an inline table: add {key} to it by hand",
            path.join(".")
        )),
    }
}

/// A bare key when it can be one, else a quoted one.
fn toml_key(key: &str) -> String {
    if key
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        key.to_owned()
    } else {
        serde_json::to_string(key).unwrap_or_default()
    }
}

/// The edit's result must parse and name only the shim directory where the runtime looks.
fn check_toml(target: Target, text: &str, shim: &str) -> Result<(), String> {
    let doc =
        Document::parse(text).map_err(|e| format!("the edit would not be valid TOML: {e}"))?;
    let spot = toml_spot(target, &doc);
    let found = spot.tables.iter().any(|path| {
        path.iter()
            .try_fold(doc.as_item(), |item, key| item.get(key))
            .and_then(Item::as_table_like)
            .and_then(|t| spot.keys.iter().find_map(|k| t.get(k)))
            .is_some_and(|v| names_only(v, shim))
    });
    if found {
        Ok(())
    } else {
        Err("the edit would not point the runtime at the shim directory".into())
    }
}

fn kubelet_enable(text: &str, shim: &str) -> Result<Option<String>, String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let ends_nl = text.ends_with('\n') || text.is_empty();
    let flag = "--cni-bin-dir";
    let Some(i) = lines
        .iter()
        .position(|l| !l.trim_start().starts_with('#') && l.contains(flag))
    else {
        return Err(format!(
            "no {flag} flag in it: kubelet 1.24 and later has none; enable containerd or crio instead"
        ));
    };
    let line = lines[i].clone();
    let at = line.find(flag).unwrap_or(0) + flag.len();
    let rest = &line[at..];
    let sep_len = rest.len() - rest.trim_start_matches(['=', ' ']).len();
    let value_start = at + sep_len;
    let value_end = line[value_start..]
        .find([' ', '"', '\''])
        .map_or(line.len(), |e| value_start + e);
    if &line[value_start..value_end] == shim {
        return Ok(None);
    }
    let new = format!("{}{}{}", &line[..value_start], shim, &line[value_end..]);
    lines[i] = new;
    lines.insert(i, format!("{MARK} was: {line}"));
    Ok(Some(join(lines, ends_nl)))
}

/// The pure edit behind [`disable`] for TOML and systemd files; `None` when there is nothing to undo.
pub(crate) fn disable_text(text: &str) -> Result<Option<String>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut changed = false;
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        let Some(rest) = t.strip_prefix(MARK) else {
            out.push(lines[i].to_owned());
            i += 1;
            continue;
        };
        changed = true;
        let rest = rest.trim_start();
        if let Some(original) = rest.strip_prefix("was: ") {
            if i + 1 >= lines.len() {
                return Err(format!("marker on line {} has no line after it", i + 1));
            }
            out.push(original.to_owned());
            i += 2;
        } else if let Some(n) = rest
            .strip_prefix("was ")
            .and_then(|r| r.strip_suffix(" lines"))
        {
            let n: usize = n
                .parse()
                .map_err(|_| format!("unreadable marker on line {}", i + 1))?;
            for k in 1..=n {
                let original = lines
                    .get(i + k)
                    .and_then(|l| l.trim_start().strip_prefix(MARK))
                    .and_then(|l| l.strip_prefix(" | "))
                    .ok_or_else(|| {
                        format!("marker on line {} lacks its original line {k}", i + 1)
                    })?;
                out.push(original.to_owned());
            }
            // The markers, then the one line that replaced the originals.
            i += n + 2;
        } else if let Some(n) = rest
            .strip_prefix("added ")
            .and_then(|r| r.strip_suffix(" lines"))
        {
            let n: usize = n
                .parse()
                .map_err(|_| format!("unreadable marker on line {}", i + 1))?;
            i += 1 + n;
        } else {
            return Err(format!("unreadable marker on line {}: {t}", i + 1));
        }
    }
    Ok(changed.then(|| join(out, text.ends_with('\n'))))
}

fn join(lines: Vec<String>, newline: bool) -> String {
    let mut s = lines.join("\n");
    if newline && !s.is_empty() {
        s.push('\n');
    }
    s
}

/// The byte range of the string literal value of the first `"key"` in JSON text.
fn json_string_value(text: &str, key: &str) -> Option<(usize, usize)> {
    let needle = format!("\"{key}\"");
    let mut from = 0;
    while let Some(found) = text[from..].find(&needle) {
        let after = from + found + needle.len();
        let rest = &text[after..];
        let colon = rest.len() - rest.trim_start().len();
        if rest[colon..].starts_with(':') {
            let v = after + colon + 1;
            let v = v + (text[v..].len() - text[v..].trim_start().len());
            if !text[v..].starts_with('"') {
                return None;
            }
            let mut escaped = false;
            for (i, c) in text[v + 1..].char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => return Some((v, v + 1 + i + 1)),
                    _ => escaped = false,
                }
            }
            return None;
        }
        from = after;
    }
    None
}

fn check_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
}

fn inserted(shim: &str) -> String {
    format!(
        "\"binDir\": {}, ",
        serde_json::to_string(shim).unwrap_or_default()
    )
}

/// The pure edit behind [`enable`] for a multus configuration.
pub(crate) fn multus_enable(text: &str, shim: &str) -> Result<Option<String>, String> {
    let value = check_json(text)?;
    if value.get("plugins").is_some() {
        return Err("a configuration list: set binDir in its multus plugin by hand".into());
    }
    let quoted = serde_json::to_string(shim).map_err(|e| e.to_string())?;
    let new = match json_string_value(text, "binDir") {
        Some((a, b)) if text[a..b] == quoted => return Ok(None),
        Some((a, b)) => format!("{}{}{}", &text[..a], quoted, &text[b..]),
        None => {
            let brace = text.find('{').ok_or("not a JSON object")?;
            format!(
                "{}{}{}",
                &text[..=brace],
                inserted(shim),
                &text[brace + 1..]
            )
        }
    };
    check_json(&new)?;
    Ok(Some(new))
}

/// The pure edit behind [`disable`] for a multus configuration: the original `binDir` comes from the backup.
pub(crate) fn multus_disable(text: &str, backup: Option<&str>) -> Result<Option<String>, String> {
    let backup = backup.ok_or("no backup to restore binDir from (was it enabled by cni-shim?)")?;
    let original = check_json(backup)?.get("binDir").cloned();
    let now = check_json(text)?.get("binDir").cloned();
    if now == original {
        return Ok(None);
    }
    let (a, b) = json_string_value(text, "binDir").ok_or("binDir is not a string")?;
    let new = match original {
        Some(v) => format!("{}{}{}", &text[..a], v, &text[b..]),
        None => {
            let shim: String = serde_json::from_str(&text[a..b]).map_err(|e| e.to_string())?;
            let ours = inserted(&shim);
            if !text.contains(&ours) {
                return Err("binDir was changed since enable: restore it by hand".into());
            }
            text.replacen(&ours, "", 1)
        }
    };
    check_json(&new)?;
    Ok(Some(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIM: &str = "/opt/cni-shim/bin";

    fn round_trip(target: Target, text: &str) -> String {
        let on = enable_text(target, text, SHIM)
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(
            enable_text(target, &on, SHIM),
            Ok(None),
            "enable is idempotent:\n{on}"
        );
        assert_eq!(
            disable_text(&on).ok().flatten().as_deref(),
            Some(text),
            "disable restores:\n{on}"
        );
        assert_eq!(disable_text(text), Ok(None));
        on
    }

    #[test]
    fn containerd_1_edits_bin_dir_in_place() {
        let text = "version = 2\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    bin_dir = \"/opt/cni/bin\"\n    conf_dir = \"/etc/cni/net.d\"\n";
        let on = round_trip(Target::Containerd, text);
        assert!(on.contains("    # cni-shim: was:     bin_dir = \"/opt/cni/bin\"\n    bin_dir = \"/opt/cni-shim/bin\"\n"), "{on}");
    }

    #[test]
    fn containerd_2_edits_bin_dirs() {
        let text = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.cni]\n  bin_dirs = ['/opt/cni/bin']\n";
        let on = round_trip(Target::Containerd, text);
        assert!(
            on.contains("  bin_dirs = [\"/opt/cni-shim/bin\"]\n"),
            "{on}"
        );
    }

    #[test]
    fn missing_keys_and_sections_are_added() {
        let on = round_trip(Target::Containerd, "version = 3\n");
        assert!(
            on.ends_with(
                "[plugins.'io.containerd.cri.v1.runtime'.cni]\nbin_dir = \"/opt/cni-shim/bin\"\n"
            ),
            "{on}"
        );
        let on = round_trip(
            Target::Crio,
            "[crio.network]\nnetwork_dir = \"/etc/cni/net.d/\"\n",
        );
        assert!(on.contains("[crio.network]\n# cni-shim: added 1 lines\nplugin_dirs = [\"/opt/cni-shim/bin\"]\n"), "{on}");
        round_trip(Target::Crio, "");
    }

    #[test]
    fn crio_replaces_plugin_dirs_also_across_lines() {
        round_trip(
            Target::Crio,
            "[crio.network]\nplugin_dirs = [\"/opt/cni/bin/\", \"/usr/libexec/cni\"]\n",
        );
        // CRI-O's default configuration.
        let text = "[crio.network]\n# cni_default_network = \"\"\nnetwork_dir = \"/etc/cni/net.d/\"\nplugin_dirs = [\n\t\"/opt/cni/bin/\",\n]\n\n[crio.metrics]\n";
        let on = round_trip(Target::Crio, text);
        assert!(on.contains("# cni-shim: was 3 lines\n# cni-shim: | plugin_dirs = [\n# cni-shim: | \t\"/opt/cni/bin/\",\n# cni-shim: | ]\nplugin_dirs = [\"/opt/cni-shim/bin\"]\n\n[crio.metrics]\n"), "{on}");
        let e = enable_text(
            Target::Crio,
            "[crio.network]\nplugin_dirs = [\n \"/opt/cni/bin/\",\n",
            SHIM,
        );
        assert!(e.is_err(), "an unclosed array is refused: {e:?}");
    }

    #[test]
    fn toml_the_line_editor_mangled_is_edited_where_the_setting_is() {
        let cri = "[plugins.\"io.containerd.grpc.v1.cri\"]\n";
        for (target, text, edited) in [
            // A header with a comment after it: the line editor did not see the section and added a second one,
            // which containerd refuses.
            (
                Target::Containerd,
                "[plugins.\"io.containerd.grpc.v1.cri\".cni]  # CNI\n  bin_dir = \"/opt/cni/bin\" # real\n".to_owned(),
                "  # cni-shim: was:   bin_dir = \"/opt/cni/bin\" # real\n  bin_dir = \"/opt/cni-shim/bin\" # real\n",
            ),
            // A dotted key and an inline table.
            (
                Target::Containerd,
                format!("{cri}  cni.bin_dir = \"/opt/cni/bin\"\n  cni.conf_dir = \"/etc/cni/net.d\"\n"),
                "\n  cni.bin_dir = \"/opt/cni-shim/bin\"\n",
            ),
            (
                Target::Containerd,
                format!("{cri}cni = {{ bin_dir = \"/opt/cni/bin\", conf_dir = \"/etc/cni/net.d\" }}\n"),
                "\ncni = { bin_dir = \"/opt/cni-shim/bin\", conf_dir = \"/etc/cni/net.d\" }\n",
            ),
            // A `]` inside a string of a multi-line array: the line editor took the array for ended.
            (
                Target::Crio,
                "[crio.network]\nplugin_dirs = [\"/opt/odd]dir\",\n  \"/usr/libexec/cni\",\n]\n".to_owned(),
                "# cni-shim: | ]\nplugin_dirs = [\"/opt/cni-shim/bin\"]\n",
            ),
            // A table that exists only through its sub-table gets its header at the end.
            (
                Target::Containerd,
                "[plugins.\"io.containerd.grpc.v1.cri\".cni.extra]\nx = 1\n".to_owned(),
                "\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\nbin_dir = \"/opt/cni-shim/bin\"\n",
            ),
        ] {
            let on = round_trip(target, &text);
            assert!(on.contains(edited), "{on}");
        }
        // What the edit cannot do cleanly is refused, not written.
        for bad in [
            "[plugins.\"io.containerd.grpc.v1.cri\"]\ncni.conf_dir = \"/etc/cni/net.d\"\n",
            "[plugins.\"io.containerd.grpc.v1.cri\"\nbin_dir = 1\n",
        ] {
            assert!(enable_text(Target::Containerd, bad, SHIM).is_err(), "{bad}");
        }
    }

    #[test]
    fn kubelet_flag() {
        let text = "[Service]\nEnvironment=\"KUBELET_NETWORK_ARGS=--network-plugin=cni --cni-conf-dir=/etc/cni/net.d --cni-bin-dir=/opt/cni/bin\"\nExecStart=\n";
        let on = round_trip(Target::Kubelet, text);
        assert!(on.contains("--cni-bin-dir=/opt/cni-shim/bin\"\n"), "{on}");
        assert!(enable_text(Target::Kubelet, "[Service]\n", SHIM).is_err());
    }

    #[test]
    fn multus_bin_dir_replaced_or_added_and_restored() {
        for text in [
            "{\n  \"cniVersion\": \"0.3.1\",\n  \"name\": \"multus\",\n  \"type\": \"multus\",\n  \"binDir\": \"/opt/cni/bin\"\n}\n",
            "{\"cniVersion\":\"0.3.1\",\"name\":\"multus\",\"type\":\"multus\"}",
        ] {
            let on = multus_enable(text, SHIM).ok().flatten().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&on).unwrap_or_default();
            assert_eq!(v["binDir"], serde_json::json!(SHIM));
            assert_eq!(multus_enable(&on, SHIM), Ok(None));
            assert_eq!(multus_disable(&on, Some(text)).ok().flatten().as_deref(), Some(text));
            assert_eq!(multus_disable(text, Some(text)), Ok(None));
        }
        assert!(multus_disable("{}", None).is_err());
        assert!(multus_enable("{\"plugins\":[]}", SHIM).is_err());
    }
}
