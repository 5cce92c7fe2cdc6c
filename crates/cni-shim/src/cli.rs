//! The operator tool: the binary run under its own name.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::enable::{self, Edited, Target};
use crate::commands::install::{self, Changes, Install};
use crate::commands::{diff, logs, replay, tree};
use crate::config::{
    ShimConfig, DEFAULT_CAPTURE_BYTES, DEFAULT_LOG_DIR, DEFAULT_MAX_BYTES, DEFAULT_SHIM_DIR,
};
use crate::store::LogDir;
use crate::{time, Error};

/// A transparent CNI debugging shim: install it, point the runtime at it, read what the plugins were asked and
/// answered.
#[derive(Debug, Parser)]
#[command(name = "cni-shim", version, about)]
pub struct Cli {
    /// The shim directory (holds the plugin symlinks and the shim's configuration).
    #[arg(long, global = true, default_value = DEFAULT_SHIM_DIR)]
    pub shim_dir: PathBuf,
    /// The log directory; default: the one the shim directory's configuration names.
    #[arg(long, global = true)]
    pub log_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create or refresh the shim directory: a symlink per real plugin, the shim binary, its configuration.
    Install {
        /// The directory of the real plugins.
        #[arg(long)]
        real_dir: PathBuf,
        /// Bound on the log directory's total size, in bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_BYTES)]
        max_bytes: u64,
        /// Bound on each of stdin, stdout and stderr kept per call, in bytes.
        #[arg(long, default_value_t = DEFAULT_CAPTURE_BYTES)]
        capture_bytes: u64,
        /// Record nothing.
        #[arg(long, conflicts_with = "log_dir")]
        no_log: bool,
    },
    /// Remove what install made (records are kept).
    Uninstall,
    /// List calls, newest first.
    Logs {
        /// Container id (prefix).
        #[arg(long)]
        container: Option<String>,
        /// Pod `namespace/name` (substring).
        #[arg(long)]
        pod: Option<String>,
        /// Plugin name.
        #[arg(long)]
        plugin: Option<String>,
        /// Verb (ADD, DEL, CHECK, ...).
        #[arg(long)]
        verb: Option<String>,
        /// Failed calls only.
        #[arg(long)]
        failed: bool,
        /// Calls since a duration ago (90s, 15m, 2h, 1d) or an RFC 3339 UTC time.
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: usize,
        /// Whole records, one JSON object a line.
        #[arg(long)]
        json: bool,
        /// Keep printing new calls as they come.
        #[arg(short, long)]
        follow: bool,
    },
    /// One call in full.
    Show {
        /// Record id (or a unique prefix).
        id: String,
        /// The record as stored.
        #[arg(long)]
        json: bool,
    },
    /// A container's calls as trees, with timings and exit codes.
    Tree {
        /// Container id (prefix); default: the most recent container.
        container: Option<String>,
        /// The trees as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A container's ADD input against its DEL (or CHECK) input.
    Diff {
        /// Container id (prefix).
        container: String,
        /// The verb to compare ADD with.
        #[arg(long, default_value = "DEL")]
        against: String,
        /// Include prevResult, which legitimately differs.
        #[arg(long)]
        all: bool,
    },
    /// Run a recorded call again against the real plugin; prints what it would run unless --yes.
    Replay {
        /// Record id (or a unique prefix).
        id: String,
        /// Really run it.
        #[arg(long)]
        yes: bool,
        /// Run even if the record was truncated or redacted.
        #[arg(long)]
        force: bool,
    },
    /// Point a runtime at the shim directory (minimal, reversible edit with a backup).
    Enable {
        /// Which runtime.
        target: Target,
        /// The file to edit; default: the target's usual file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Restart the runtime afterwards.
        #[arg(long)]
        restart: bool,
    },
    /// Point a runtime back at the real directory.
    Disable {
        /// Which runtime.
        target: Target,
        /// The file to edit; default: the target's usual file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Restart the runtime afterwards.
        #[arg(long)]
        restart: bool,
    },
}

/// Runs the operator tool.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Every message already ends with its cause.
            let _ = writeln!(io::stderr(), "cni-shim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn log_dir(cli: &Cli) -> PathBuf {
    cli.log_dir.clone().unwrap_or_else(|| {
        ShimConfig::load(&cli.shim_dir)
            .ok()
            .and_then(|c| c.log_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_DIR))
    })
}

fn out_err(e: io::Error) -> Error {
    Error::io("write", "stdout")(e)
}

fn report(changes: &Changes) {
    for n in &changes.linked {
        println!("linked   {n}");
    }
    for n in &changes.unlinked {
        println!("unlinked {n}");
    }
    for n in &changes.skipped {
        println!("skipped  {n} (a file that is not a cni-shim link is in the way)");
    }
    if changes.binary {
        println!("updated  the shim binary");
    }
    if changes.config {
        println!("updated  the configuration");
    }
}

fn restart(target: Target, file: &Path, yes: bool) -> Result<(), Error> {
    let commands = target.restart();
    if commands.is_empty() {
        println!(
            "no restart needed: multus reads {} on every call",
            file.display()
        );
        return Ok(());
    }
    let text: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
    if !yes {
        println!("to apply: {}", text.join(" && "));
        return Ok(());
    }
    for c in commands {
        println!("running: {}", c.join(" "));
        let status = std::process::Command::new(c[0])
            .args(&c[1..])
            .status()
            .map_err(Error::io("run", c[0]))?;
        if !status.success() {
            return Err(Error::Usage(format!("{} failed: {status}", c.join(" "))));
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    let mut out = io::stdout().lock();
    match &cli.command {
        Cmd::Install {
            real_dir,
            max_bytes,
            capture_bytes,
            no_log,
        } => {
            let opts = Install {
                real_dir: real_dir.clone(),
                shim_dir: cli.shim_dir.clone(),
                log_dir: (!no_log).then(|| log_dir(&cli)),
                max_bytes: *max_bytes,
                capture_bytes: *capture_bytes,
                binary: PathBuf::from("/proc/self/exe"),
            };
            let changes = install::install(&opts)?;
            report(&changes);
            if changes.is_empty() {
                println!("{} is up to date", cli.shim_dir.display());
            }
            println!(
                "next: cni-shim enable containerd|crio|multus --shim-dir {} (records: {})",
                cli.shim_dir.display(),
                opts.log_dir
                    .map_or("none".into(), |d| d.display().to_string())
            );
        }
        Cmd::Uninstall => {
            let logs = ShimConfig::load(&cli.shim_dir).ok().and_then(|c| c.log_dir);
            let changes = install::uninstall(&cli.shim_dir)?;
            report(&changes);
            if let Some(l) = logs {
                println!("records kept in {}", l.display());
            }
        }
        Cmd::Logs {
            container,
            pod,
            plugin,
            verb,
            failed,
            since,
            limit,
            json,
            follow,
        } => {
            let since = since
                .as_deref()
                .map(|s| {
                    time::parse_since(s, std::time::SystemTime::now()).ok_or_else(|| {
                        Error::Usage(format!(
                            "--since {s:?}: expected 90s, 15m, 2h, 1d or 2024-05-01T12:00:00Z"
                        ))
                    })
                })
                .transpose()?;
            let filter = logs::Filter {
                container: container.clone(),
                pod: pod.clone(),
                plugin: plugin.clone(),
                verb: verb.clone(),
                failed: *failed,
                since,
            };
            let dir = LogDir::open_for_read(&log_dir(&cli))?;
            if *follow {
                drop(out);
                logs::follow(&dir, &filter, *limit, *json)?;
                return Ok(ExitCode::SUCCESS);
            }
            logs::print(&mut out, &filter.newest(&dir, *limit)?, *json).map_err(out_err)?;
        }
        Cmd::Show { id, json } => {
            let r = LogDir::open_for_read(&log_dir(&cli))?.find(id)?;
            if *json {
                serde_json::to_writer_pretty(&mut out, &r).map_err(|e| out_err(e.into()))?;
                writeln!(out).map_err(out_err)?;
            } else {
                logs::show(&mut out, &r).map_err(out_err)?;
            }
        }
        Cmd::Tree { container, json } => {
            let dir = LogDir::open_for_read(&log_dir(&cli))?;
            let container = match container {
                Some(c) => c.clone(),
                None => logs::latest_container(&dir)?
                    .ok_or_else(|| Error::Usage("no recorded call has a container id".into()))?,
            };
            let records = logs::of_container(&dir, &container)?;
            let forest = tree::forest(&records, &container);
            if *json {
                fn to_json(n: &tree::Node) -> serde_json::Value {
                    serde_json::json!({
                        "record": n.record,
                        "children": n.children.iter().map(to_json).collect::<Vec<_>>(),
                    })
                }
                let v: Vec<_> = forest.iter().map(to_json).collect();
                serde_json::to_writer_pretty(&mut out, &v).map_err(|e| out_err(e.into()))?;
                writeln!(out).map_err(out_err)?;
            } else {
                tree::print(&mut out, &container, &forest).map_err(out_err)?;
            }
        }
        Cmd::Diff {
            container,
            against,
            all,
        } => {
            let records = logs::of_container(&LogDir::open_for_read(&log_dir(&cli))?, container)?;
            let verb = against.to_ascii_uppercase();
            let pairs = diff::pairs(&records, container, &verb);
            if pairs.is_empty() {
                return Err(Error::Usage(format!(
                    "no ADD recorded for container {container}"
                )));
            }
            diff::print(&mut out, &pairs, &verb, *all).map_err(out_err)?;
        }
        Cmd::Replay { id, yes, force } => {
            let r = LogDir::open_for_read(&log_dir(&cli))?.find(id)?;
            let plan = replay::plan(&r)?;
            if !*yes {
                writeln!(out, "# would run (add --yes to run it):").map_err(out_err)?;
                replay::describe(&mut out, &plan).map_err(out_err)?;
                return Ok(ExitCode::SUCCESS);
            }
            if !plan.problems.is_empty() && !*force {
                return Err(Error::Usage(format!(
                    "not replaying {}: {}; add --force to run it anyway",
                    r.id,
                    plan.problems.join("; ")
                )));
            }
            drop(out);
            let done = replay::run(&plan, &r)?;
            eprintln!(
                "replayed {}: exit {} (recorded {}); stdout {}",
                r.id,
                done.code,
                r.exit.code,
                if done.same_stdout {
                    "identical"
                } else {
                    "differs"
                }
            );
            return Ok(ExitCode::from(u8::try_from(done.code & 0xff).unwrap_or(1)));
        }
        Cmd::Enable {
            target,
            config,
            restart: yes,
        } => {
            let file = config
                .clone()
                .unwrap_or_else(|| PathBuf::from(target.default_config()));
            if !cli.shim_dir.is_absolute() {
                return Err(Error::Usage(format!(
                    "--shim-dir must be an absolute path, not {}: the runtime resolves it from its own directory",
                    cli.shim_dir.display()
                )));
            }
            if !cli.shim_dir.join(crate::config::FILE_NAME).exists() {
                return Err(Error::Usage(format!(
                    "{} is not an installed shim directory: run cni-shim install first",
                    cli.shim_dir.display()
                )));
            }
            match enable::enable(*target, &file, &cli.shim_dir)? {
                Edited::Changed => println!(
                    "{}: now points at {} (backup {})",
                    file.display(),
                    cli.shim_dir.display(),
                    enable::backup_path(&file).display()
                ),
                Edited::Unchanged => println!(
                    "{}: already points at {}",
                    file.display(),
                    cli.shim_dir.display()
                ),
            }
            restart(*target, &file, *yes)?;
        }
        Cmd::Disable {
            target,
            config,
            restart: yes,
        } => {
            let file = config
                .clone()
                .unwrap_or_else(|| PathBuf::from(target.default_config()));
            match enable::disable(*target, &file)? {
                Edited::Changed => println!("{}: restored", file.display()),
                Edited::Unchanged => println!("{}: nothing to undo", file.display()),
            }
            restart(*target, &file, *yes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
