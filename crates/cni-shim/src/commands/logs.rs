//! `logs` and `show`: listing and reading records.

use std::collections::HashSet;
use std::io::{self, Write};
use std::time::Duration;

use crate::record::{Payload, Record};
use crate::store::{name_safe, read_record, LogDir, NameTag};
use crate::{time, Error};

/// Which records `logs` prints: its flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct Filter {
    /// Container id (prefix).
    #[arg(long)]
    pub container: Option<String>,
    /// Pod `namespace/name` (substring).
    #[arg(long)]
    pub pod: Option<String>,
    /// Plugin name (exact).
    #[arg(long)]
    pub plugin: Option<String>,
    /// Verb (ADD, DEL, CHECK, ...).
    #[arg(long)]
    pub verb: Option<String>,
    /// Failed calls only.
    #[arg(long)]
    pub failed: bool,
    /// Calls since a duration ago (90s, 15m, 2h, 1d) or an RFC 3339 UTC time.
    #[arg(long, value_name = "WHEN", value_parser = since)]
    pub since: Option<u64>,
}

/// `--since` as nanoseconds since the epoch.
fn since(text: &str) -> Result<u64, String> {
    time::parse_since(text, std::time::SystemTime::now())
        .ok_or_else(|| "expected 90s, 15m, 2h, 1d or 2024-05-01T12:00:00Z".to_owned())
}

impl Filter {
    /// Whether a record passes.
    pub(crate) fn matches(&self, r: &Record) -> bool {
        self.container.as_deref().is_none_or(|c| r.in_container(c))
            && self
                .pod
                .as_deref()
                .is_none_or(|p| r.pod().is_some_and(|pod| pod.contains(p)))
            && self.plugin.as_deref().is_none_or(|p| r.plugin == p)
            && self.verb.as_deref().is_none_or(|v| {
                r.command
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(v))
            })
            && (!self.failed || r.failed())
            && self.since.is_none_or(|s| r.start_unix_ns >= s)
    }
}

impl Filter {
    /// Whether a record whose file name tells `tag` may pass (false only when it cannot), so that queries open
    /// only the files that can match.
    pub(crate) fn may_match(&self, tag: &NameTag<'_>) -> bool {
        self.container
            .as_deref()
            .is_none_or(|c| tag.may_be_container(c))
            && self
                .plugin
                .as_deref()
                .is_none_or(|p| tag.plugin.is_none_or(|t| t == name_safe(p)))
            && self
                .verb
                .as_deref()
                .is_none_or(|v| tag.verb.is_none_or(|t| t.eq_ignore_ascii_case(v)))
            && (!self.failed || tag.failed != Some(false))
            && self
                .since
                .is_none_or(|s| tag.stamp >= time::stamp(s).as_str())
    }

    /// The records that pass, newest first, at most `limit`, opening only the files that may match.
    pub(crate) fn newest(&self, dir: &LogDir, limit: usize) -> Result<Vec<Record>, Error> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        dir.scan_newest(
            |tag| self.may_match(tag),
            |r| {
                if self.matches(&r) {
                    found.push(r);
                }
                found.len() < limit
            },
        )?;
        Ok(found)
    }
}

/// The records of a container (id prefix), oldest first, opening only its files.
pub(crate) fn of_container(dir: &LogDir, container: &str) -> Result<Vec<Record>, Error> {
    let mut found = Vec::new();
    dir.scan_newest(
        |tag| tag.may_be_container(container),
        |r| {
            if r.in_container(container) {
                found.push(r);
            }
            true
        },
    )?;
    found.reverse();
    Ok(found)
}

/// The newest record's container id.
pub(crate) fn latest_container(dir: &LogDir) -> Result<Option<String>, Error> {
    let mut latest = None;
    dir.scan_newest(
        |tag| tag.container != Some("-"),
        |r| {
            latest = r.container_id;
            latest.is_none()
        },
    )?;
    Ok(latest)
}

/// One line per record: time, id, verb, plugin, interface, container, pod, exit, duration.
pub(crate) fn summary(r: &Record) -> String {
    let exit = match r.exit.signal {
        Some(sig) => format!("signal {sig}"),
        None => format!("exit {}", r.exit.code),
    };
    format!(
        "{}  {}  {:<7} {:<12} {:<6} {:<12}  {:<8} {:>9}  {}",
        time::clock(r.start_unix_ns),
        r.id,
        r.command.as_deref().unwrap_or("-"),
        r.plugin,
        r.ifname.as_deref().unwrap_or("-"),
        short(r.container_id.as_deref().unwrap_or("-")),
        exit,
        millis(r.duration_us),
        r.pod().unwrap_or_default(),
    )
}

/// A container id shortened as runtimes show them.
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// `12.3 ms`.
pub(crate) fn millis(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

/// Prints records, as summaries or as JSON lines.
pub(crate) fn print(out: &mut impl Write, records: &[Record], json: bool) -> io::Result<()> {
    for r in records {
        if json {
            serde_json::to_writer(&mut *out, r)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", summary(r))?;
        }
    }
    Ok(())
}

/// `logs --follow`: prints the selection, then every new matching record as it appears, until interrupted.
pub(crate) fn follow(dir: &LogDir, filter: &Filter, limit: usize, json: bool) -> Result<(), Error> {
    let mut seen: HashSet<_> = HashSet::new();
    let files = dir.list()?;
    let mut first = filter.newest(dir, limit)?;
    first.reverse();
    let mut out = io::stdout().lock();
    print(&mut out, &first, json).map_err(Error::io("write", "stdout"))?;
    seen.extend(files);
    drop(out);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        for path in dir.list()? {
            if seen.contains(&path) {
                continue;
            }
            if let Ok(r) = read_record(&path) {
                if filter.matches(&r) {
                    let mut out = io::stdout().lock();
                    print(&mut out, std::slice::from_ref(&r), json)
                        .map_err(Error::io("write", "stdout"))?;
                    out.flush().map_err(Error::io("write", "stdout"))?;
                }
            }
            seen.insert(path);
        }
    }
}

fn payload(out: &mut impl Write, name: &str, p: &Payload) -> io::Result<()> {
    let note = if p.truncated {
        format!(" ({} bytes, first {} kept)", p.len, p.bytes().len())
    } else {
        format!(" ({} bytes)", p.len)
    };
    writeln!(out, "--- {name}{note}")?;
    if let Some(v) = p.json() {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        )?;
    } else if let Some(t) = &p.text {
        write!(out, "{t}")?;
        if !t.is_empty() && !t.ends_with('\n') {
            writeln!(out)?;
        }
    } else if let Some(b) = &p.base64 {
        writeln!(out, "(not UTF-8; base64) {b}")?;
    }
    Ok(())
}

/// `show`: one record in full, readable.
pub(crate) fn show(out: &mut impl Write, r: &Record) -> io::Result<()> {
    writeln!(out, "id         {}", r.id)?;
    writeln!(out, "trace      {}", r.trace_id)?;
    if let Some(p) = &r.parent_id {
        writeln!(
            out,
            "parent     {p} ({})",
            r.parent_source.as_deref().unwrap_or("?")
        )?;
    }
    writeln!(
        out,
        "plugin     {}  ->  {}",
        r.plugin,
        r.real_path.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "command    {}", r.command.as_deref().unwrap_or("-"))?;
    writeln!(
        out,
        "container  {}",
        r.container_id.as_deref().unwrap_or("-")
    )?;
    if let Some(pod) = r.pod() {
        writeln!(out, "pod        {pod}")?;
    }
    writeln!(out, "ifname     {}", r.ifname.as_deref().unwrap_or("-"))?;
    writeln!(out, "netns      {}", r.netns.as_deref().unwrap_or("-"))?;
    writeln!(out, "CNI_ARGS   {}", r.cni_args.as_deref().unwrap_or("-"))?;
    writeln!(out, "CNI_PATH   {}", r.cni_path.as_deref().unwrap_or("-"))?;
    writeln!(out, "argv       {}", r.argv.join(" "))?;
    writeln!(
        out,
        "start      {}  ({}, pid {})",
        r.start,
        millis(r.duration_us),
        r.pid
    )?;
    match r.exit.signal {
        Some(s) => writeln!(out, "exit       {} (killed by signal {s})", r.exit.code)?,
        None => writeln!(out, "exit       {}", r.exit.code)?,
    }
    if let Some(e) = &r.error {
        writeln!(out, "shim error {e}")?;
    }
    if !r.redacted.is_empty() {
        writeln!(out, "redacted   {}", r.redacted.join(", "))?;
    }
    payload(out, "stdin", &r.stdin)?;
    payload(out, "stdout", &r.stdout)?;
    payload(out, "stderr", &r.stderr)
}
