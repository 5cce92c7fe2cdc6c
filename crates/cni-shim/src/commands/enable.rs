//! `enable` and `disable`: point a runtime at the shim directory and back.
//!
//! Edits are minimal and reversible. In TOML and systemd files each edited line gets a marker comment above it
//! holding the original (`# cni-shim: was: <line>`, or `# cni-shim: was N lines` followed by N
//! `# cni-shim: | <line>` for a multi-line array) or saying how many lines were added (`# cni-shim: added N lines`);
//! `disable` undoes exactly what the markers say. JSON (multus) has no comments, so
//! `disable` reads the original `binDir` from the backup `enable` made. Every first edit keeps a backup
//! `<file>.cni-shim.bak`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::write_atomically;
use crate::Error;

/// The marker prefix.
const MARK: &str = "# cni-shim:";

/// What to point at the shim directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
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
    pub fn default_config(self) -> &'static str {
        match self {
            Target::Containerd => "/etc/containerd/config.toml",
            Target::Crio => "/etc/crio/crio.conf",
            Target::Multus => "/etc/cni/net.d/00-multus.conf",
            Target::Kubelet => "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        }
    }

    /// The commands that make the change take effect; empty when none is needed.
    pub fn restart(self) -> &'static [&'static [&'static str]] {
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
pub fn backup_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".cni-shim.bak");
    file.with_file_name(name)
}

/// What an edit did.
#[derive(Debug, PartialEq, Eq)]
pub enum Edited {
    /// The file was changed.
    Changed,
    /// It was already as asked.
    Unchanged,
}

/// Points `target`'s configuration file at `shim_dir`.
pub fn enable(target: Target, file: &Path, shim_dir: &Path) -> Result<Edited, Error> {
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
        write_atomically(&backup, text.as_bytes(), mode(file))?;
    }
    write_atomically(file, new.as_bytes(), mode(file))?;
    Ok(Edited::Changed)
}

/// Undoes [`enable`]. Removes the backup when the file is back to it byte for byte.
pub fn disable(target: Target, file: &Path) -> Result<Edited, Error> {
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
        Target::Containerd | Target::Crio | Target::Kubelet => edit(disable_text(&text))?,
        Target::Multus => edit(multus_disable(&text, original.as_deref()))?,
    };
    let result = match new {
        Some(new) => {
            write_atomically(file, new.as_bytes(), mode(file))?;
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

/// A TOML section header's name, for `[a.b]` lines.
fn header(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

/// Whether `line` assigns `key` (`key = …`).
fn assigns<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim_start().strip_prefix(key)?;
    let rest = rest.trim_start().strip_prefix('=')?;
    Some(rest.trim())
}

/// The section, keys and value a TOML target uses.
struct TomlSpot {
    sections: &'static [&'static str],
    /// Keys that may hold the directory; the first is used when adding.
    keys: &'static [&'static str],
    new_section: String,
}

fn toml_spot(target: Target, text: &str) -> TomlSpot {
    match target {
        Target::Crio => TomlSpot {
            sections: &["crio.network"],
            keys: &["plugin_dirs"],
            new_section: "[crio.network]".into(),
        },
        _ => {
            // containerd 2 configurations say `version = 3` and name the CRI runtime plugin differently.
            let v3 = text.lines().any(|l| assigns(l, "version") == Some("3"));
            TomlSpot {
                sections: &[
                    "plugins.\"io.containerd.grpc.v1.cri\".cni",
                    "plugins.'io.containerd.cri.v1.runtime'.cni",
                    "plugins.\"io.containerd.cri.v1.runtime\".cni",
                ],
                keys: &["bin_dir", "bin_dirs"],
                new_section: if v3 {
                    "[plugins.'io.containerd.cri.v1.runtime'.cni]".into()
                } else {
                    "[plugins.\"io.containerd.grpc.v1.cri\".cni]".into()
                },
            }
        }
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

/// The pure edit behind [`enable`] for TOML and systemd files; `None` when already enabled.
pub fn enable_text(target: Target, text: &str, shim: &str) -> Result<Option<String>, String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let ends_nl = text.ends_with('\n') || text.is_empty();
    if target == Target::Kubelet {
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
        return Ok(Some(join(lines, ends_nl)));
    }
    let spot = toml_spot(target, text);
    let section = lines
        .iter()
        .position(|l| header(l).is_some_and(|h| spot.sections.contains(&h)));
    if let Some(start) = section {
        let end = lines[start + 1..]
            .iter()
            .position(|l| header(l).is_some())
            .map_or(lines.len(), |e| start + 1 + e);
        for i in start + 1..end {
            let line = lines[i].clone();
            if line.trim_start().starts_with('#') {
                continue;
            }
            if let Some((key, value)) = spot
                .keys
                .iter()
                .find_map(|k| assigns(&line, k).map(|v| (*k, v)))
            {
                let wanted = value_for(key, shim);
                let indent = &line[..line.len() - line.trim_start().len()];
                if value.starts_with('[') && !value.contains(']') {
                    // A multi-line array (CRI-O's default `plugin_dirs`): keep every original line in a marker.
                    let last = (i + 1..end)
                        .find(|&j| lines[j].contains(']'))
                        .ok_or_else(|| format!("{key} on line {} has no closing ]", i + 1))?;
                    let originals: Vec<String> = lines.drain(i..=last).collect();
                    let mut block = vec![format!("{indent}{MARK} was {} lines", originals.len())];
                    block.extend(originals.iter().map(|o| format!("{indent}{MARK} | {o}")));
                    block.push(format!("{indent}{key} = {wanted}"));
                    lines.splice(i..i, block);
                    return Ok(Some(join(lines, ends_nl)));
                }
                if value == wanted {
                    return Ok(None);
                }
                lines[i] = format!("{indent}{key} = {wanted}");
                lines.insert(i, format!("{indent}{MARK} was: {line}"));
                return Ok(Some(join(lines, ends_nl)));
            }
        }
        let key = spot.keys[0];
        lines.insert(start + 1, format!("{key} = {}", value_for(key, shim)));
        lines.insert(start + 1, format!("{MARK} added 1 lines"));
        return Ok(Some(join(lines, ends_nl)));
    }
    let key = spot.keys[0];
    lines.push(format!("{MARK} added 3 lines"));
    lines.push(String::new());
    lines.push(spot.new_section);
    lines.push(format!("{key} = {}", value_for(key, shim)));
    Ok(Some(join(lines, true)))
}

/// The pure edit behind [`disable`] for TOML and systemd files; `None` when there is nothing to undo.
pub fn disable_text(text: &str) -> Result<Option<String>, String> {
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
pub fn multus_enable(text: &str, shim: &str) -> Result<Option<String>, String> {
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
pub fn multus_disable(text: &str, backup: Option<&str>) -> Result<Option<String>, String> {
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
