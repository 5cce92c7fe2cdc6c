//! `bench`: whole-process benchmarks, measured side by side in one run, written to BENCHMARKS.md.
//!
//! Every case is a full fork+exec+wait of a real binary with a real request, as a container runtime makes it. Cases
//! of a group run round-robin, one call of each in turn, so drift on a noisy machine hits them all alike; figures
//! are medians and 99th percentiles, and ratios are taken between cases of the same run.
//!
//! `scripts/bench.sh` builds the variants and runs this; see `bench --help`.

mod cases;
mod report;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "\
bench: whole-process benchmarks of index2ip and its neighbours, side by side in one run

usage: bench [--iterations N] [--only SECTION,...] [--out FILE] [--bin NAME=PATH]...

  --iterations N   calls per case (default 300; 1 is a smoke run that only proves every case works)
  --out FILE       write the report there as Markdown (default: print it)
  --only SECTIONS  measure only these, comma-separated: start, ipam, attachment, shim, queries, lab
                   (default: all); for working on one part, the report then holds only those sections
  --notes FILE     append this Markdown (the analysis of the figures) to the report
  --bin NAME=PATH  a binary under test: index2ip-static, index2ip-dynamic, index2ip-original (the Go plugin
                   ours replaces), cni-shim, netlab, floor (a static Rust program that does nothing),
                   floor-c (a static C program without libc that exits at once: the true floor);
                   missing ones are reported as not measured

Needs the reference plugins in /usr/lib/cni; the attachment cases need root (network namespaces).
scripts/bench.sh builds every variant and runs this with the right --bin flags.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The attachment cases re-run this binary inside the node's network namespace.
    if args.first().map(String::as_str) == Some("worker") {
        return cases::worker(&args[1..]);
    }
    let opts = match Options::parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("bench: {msg}\nrun `bench --help` for usage");
            return ExitCode::from(2);
        }
    };
    match cases::run_all(&opts) {
        Ok(groups) => {
            let mut text = report::markdown(&opts, &groups);
            if let Some(path) = &opts.notes {
                match std::fs::read_to_string(path) {
                    Ok(notes) => {
                        text.push('\n');
                        text.push_str(&notes);
                    }
                    Err(e) => {
                        eprintln!("bench: cannot read {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                }
            }
            match &opts.out {
                Some(path) => match std::fs::write(path, &text) {
                    Ok(()) => {
                        eprintln!("bench: wrote {}", path.display());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("bench: cannot write {}: {e}", path.display());
                        ExitCode::FAILURE
                    }
                },
                None => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
            }
        }
        Err(msg) => {
            eprintln!("bench: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Calls per case.
    pub iterations: usize,
    /// Where the report goes.
    pub out: Option<PathBuf>,
    /// Binaries under test by name.
    pub bins: BTreeMap<String, PathBuf>,
    /// Markdown appended to the report.
    pub notes: Option<PathBuf>,
    /// The sections to measure; empty: all.
    pub only: Vec<String>,
}

/// The sections `--only` can name.
pub const SECTIONS: [&str; 6] = ["start", "ipam", "attachment", "shim", "queries", "lab"];

impl Options {
    /// Whether `section` is measured in this run.
    pub fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }

    fn parse(args: &[String]) -> Result<Option<Options>, String> {
        let mut opts = Options {
            iterations: 300,
            out: None,
            bins: BTreeMap::new(),
            notes: None,
            only: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--iterations" => {
                    let v = value()?;
                    opts.iterations = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--iterations takes a positive integer, got {v:?}")
                    })?;
                }
                "--out" => opts.out = Some(PathBuf::from(value()?)),
                "--notes" => opts.notes = Some(PathBuf::from(value()?)),
                "--only" => {
                    for section in value()?.split(',').filter(|s| !s.is_empty()) {
                        if !SECTIONS.contains(&section) {
                            return Err(format!(
                                "--only: no section {section:?}; the sections are {}",
                                SECTIONS.join(", ")
                            ));
                        }
                        opts.only.push(section.to_owned());
                    }
                }
                "--bin" => {
                    let v = value()?;
                    let (name, path) = v
                        .split_once('=')
                        .ok_or_else(|| format!("--bin takes NAME=PATH, got {v:?}"))?;
                    opts.bins.insert(name.to_owned(), PathBuf::from(path));
                }
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        Ok(Some(opts))
    }
}
