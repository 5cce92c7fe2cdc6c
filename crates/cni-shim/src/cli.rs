//! The operator tool: the binary run under its own name. `main.rs` dispatches here on `argv[0]` before any
//! argument is parsed, so clap never runs on the pass-through's path.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands::enable::{self, Edited, Target};
use crate::commands::install::{self, Changes, Install};
use crate::commands::logs::{self, Filter};
use crate::commands::{diff, replay, tree};
use crate::config::{
    ShimConfig, DEFAULT_CAPTURE_BYTES, DEFAULT_LOG_DIR, DEFAULT_MAX_BYTES, DEFAULT_SHIM_DIR,
};
use crate::store::LogDir;
use crate::Error;

/// A transparent CNI debugging shim: install it, point the runtime at it, read what the plugins were asked and
/// answered.
#[derive(Debug, Parser)]
#[command(name = "cni-shim", version, about)]
struct Cli {
    #[command(flatten)]
    dirs: Dirs,
    #[command(subcommand)]
    command: Cmd,
}

/// The flags every command takes.
#[derive(Debug, Args)]
struct Dirs {
    /// The shim directory (holds the plugin symlinks and the shim's configuration).
    #[arg(long, global = true, default_value = DEFAULT_SHIM_DIR)]
    shim_dir: PathBuf,
    /// The log directory; default: the one the shim directory's configuration names.
    #[arg(long, global = true)]
    log_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create or refresh the shim directory: a symlink per real plugin to a copy of cni-shim-passthrough (shipped
    /// beside cni-shim), and the configuration.
    Install(InstallArgs),
    /// Remove what install made (records are kept).
    Uninstall,
    /// List calls, newest first.
    Logs(LogsArgs),
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
        #[arg(long, default_value = "DEL", value_parser = upper)]
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
    Enable(EnableArgs),
    /// Point a runtime back at the real directory.
    Disable(EnableArgs),
}

#[derive(Debug, Args)]
struct InstallArgs {
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
}

#[derive(Debug, Args)]
struct LogsArgs {
    #[command(flatten)]
    filter: Filter,
    /// At most this many.
    #[arg(short = 'n', long, default_value_t = 50)]
    limit: usize,
    /// Whole records, one JSON object a line.
    #[arg(long)]
    json: bool,
    /// Keep printing new calls as they come.
    #[arg(short, long)]
    follow: bool,
}

#[derive(Debug, Args)]
struct EnableArgs {
    /// Which runtime.
    target: Target,
    /// The file to edit; default: the target's usual file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Restart the runtime afterwards.
    #[arg(long)]
    restart: bool,
}

impl EnableArgs {
    fn file(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(self.target.default_config()))
    }
}

fn upper(text: &str) -> Result<String, String> {
    Ok(text.to_ascii_uppercase())
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
    let dirs = &cli.dirs;
    let done = match cli.command {
        Cmd::Install(a) => run_install(dirs, &a),
        Cmd::Uninstall => run_uninstall(dirs),
        Cmd::Logs(a) => run_logs(dirs, &a),
        Cmd::Show { id, json } => run_show(dirs, &id, json),
        Cmd::Tree { container, json } => run_tree(dirs, container, json),
        Cmd::Diff {
            container,
            against,
            all,
        } => run_diff(dirs, &container, &against, all),
        Cmd::Replay { id, yes, force } => run_replay(dirs, &id, yes, force),
        Cmd::Enable(a) => run_enable(dirs, &a),
        Cmd::Disable(a) => run_disable(&a),
    };
    match done {
        Ok(code) => code,
        Err(e) => {
            // Every message already ends with its cause.
            let _ = writeln!(io::stderr(), "cni-shim: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Dirs {
    /// The log directory: `--log-dir`, else the configuration's, else the default.
    fn log_dir(&self) -> PathBuf {
        self.log_dir.clone().unwrap_or_else(|| {
            ShimConfig::load(&self.shim_dir)
                .ok()
                .and_then(|c| c.log_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_DIR))
        })
    }

    fn records(&self) -> Result<LogDir, Error> {
        LogDir::open_for_read(&self.log_dir())
    }
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
        println!("updated  the pass-through binary");
    }
    if changes.config {
        println!("updated  the configuration");
    }
}

fn run_install(dirs: &Dirs, a: &InstallArgs) -> Result<ExitCode, Error> {
    let opts = Install {
        real_dir: a.real_dir.clone(),
        shim_dir: dirs.shim_dir.clone(),
        log_dir: (!a.no_log).then(|| dirs.log_dir()),
        max_bytes: a.max_bytes,
        capture_bytes: a.capture_bytes,
        passthrough: passthrough_beside_me()?,
    };
    let changes = install::install(&opts)?;
    report(&changes);
    if changes.is_empty() {
        println!("{} is up to date", dirs.shim_dir.display());
    }
    println!(
        "next: cni-shim enable containerd|crio|multus --shim-dir {} (records: {})",
        dirs.shim_dir.display(),
        opts.log_dir
            .map_or("none".into(), |d| d.display().to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// The pass-through binary shipped beside this executable (found through `/proc/self/exe`, so a `cni-shim` run
/// through a link finds the one beside its real file).
fn passthrough_beside_me() -> Result<PathBuf, Error> {
    let me = std::fs::read_link("/proc/self/exe").map_err(Error::io("read", "/proc/self/exe"))?;
    Ok(me.with_file_name(crate::PASSTHROUGH_NAME))
}

fn run_uninstall(dirs: &Dirs) -> Result<ExitCode, Error> {
    let logs = ShimConfig::load(&dirs.shim_dir)
        .ok()
        .and_then(|c| c.log_dir);
    let changes = install::uninstall(&dirs.shim_dir)?;
    report(&changes);
    if let Some(l) = logs {
        println!("records kept in {}", l.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_logs(dirs: &Dirs, a: &LogsArgs) -> Result<ExitCode, Error> {
    let dir = dirs.records()?;
    if a.follow {
        logs::follow(&dir, &a.filter, a.limit, a.json)?;
    } else {
        let found = a.filter.newest(&dir, a.limit)?;
        logs::print(&mut io::stdout().lock(), &found, a.json).map_err(out_err)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_show(dirs: &Dirs, id: &str, json: bool) -> Result<ExitCode, Error> {
    let r = dirs.records()?.find(id)?;
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &r).map_err(|e| out_err(e.into()))?;
        writeln!(out).map_err(out_err)?;
    } else {
        logs::show(&mut out, &r).map_err(out_err)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_tree(dirs: &Dirs, container: Option<String>, json: bool) -> Result<ExitCode, Error> {
    let dir = dirs.records()?;
    let container = match container {
        Some(c) => c,
        None => logs::latest_container(&dir)?
            .ok_or_else(|| Error::Usage("no recorded call has a container id".into()))?,
    };
    let records = logs::of_container(&dir, &container)?;
    let forest = tree::forest(&records, &container);
    let mut out = io::stdout().lock();
    if json {
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
    Ok(ExitCode::SUCCESS)
}

fn run_diff(dirs: &Dirs, container: &str, verb: &str, all: bool) -> Result<ExitCode, Error> {
    let records = logs::of_container(&dirs.records()?, container)?;
    let pairs = diff::pairs(&records, container, verb);
    if pairs.is_empty() {
        return Err(Error::Usage(format!(
            "no ADD recorded for container {container}"
        )));
    }
    diff::print(&mut io::stdout().lock(), &pairs, verb, all).map_err(out_err)?;
    Ok(ExitCode::SUCCESS)
}

fn run_replay(dirs: &Dirs, id: &str, yes: bool, force: bool) -> Result<ExitCode, Error> {
    let r = dirs.records()?.find(id)?;
    let plan = replay::plan(&r)?;
    if !yes {
        let mut out = io::stdout().lock();
        writeln!(out, "# would run (add --yes to run it):").map_err(out_err)?;
        replay::describe(&mut out, &plan).map_err(out_err)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !plan.problems.is_empty() && !force {
        return Err(Error::Usage(format!(
            "not replaying {}: {}; add --force to run it anyway",
            r.id,
            plan.problems.join("; ")
        )));
    }
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
    Ok(ExitCode::from(u8::try_from(done.code & 0xff).unwrap_or(1)))
}

fn run_enable(dirs: &Dirs, a: &EnableArgs) -> Result<ExitCode, Error> {
    let (file, shim) = (a.file(), &dirs.shim_dir);
    if !shim.is_absolute() {
        return Err(Error::Usage(format!(
            "--shim-dir must be an absolute path, not {}: the runtime resolves it from its own directory",
            shim.display()
        )));
    }
    if !shim.join(crate::config::FILE_NAME).exists() {
        return Err(Error::Usage(format!(
            "{} is not an installed shim directory: run cni-shim install first",
            shim.display()
        )));
    }
    match enable::enable(a.target, &file, shim)? {
        Edited::Changed => println!(
            "{}: now points at {} (backup {})",
            file.display(),
            shim.display(),
            enable::backup_path(&file).display()
        ),
        Edited::Unchanged => println!("{}: already points at {}", file.display(), shim.display()),
    }
    restart(a.target, &file, a.restart)
}

fn run_disable(a: &EnableArgs) -> Result<ExitCode, Error> {
    let file = a.file();
    match enable::disable(a.target, &file)? {
        Edited::Changed => println!("{}: restored", file.display()),
        Edited::Unchanged => println!("{}: nothing to undo", file.display()),
    }
    restart(a.target, &file, a.restart)
}

/// Prints the commands that apply an edit, or runs them when `yes`.
fn restart(target: Target, file: &Path, yes: bool) -> Result<ExitCode, Error> {
    let commands = target.restart();
    if commands.is_empty() {
        println!(
            "no restart needed: multus reads {} on every call",
            file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let text: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
    if !yes {
        println!("to apply: {}", text.join(" && "));
        return Ok(ExitCode::SUCCESS);
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
    Ok(ExitCode::SUCCESS)
}
