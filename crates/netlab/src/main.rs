//! The `netlab` command: parse the flags, run one command, exit with its status.

mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match commands::Cli::parse().run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netlab: {e:#}");
            ExitCode::from(2)
        }
    }
}
