//! The `extsecurity` command: parses arguments, calls the library, maps results to the
//! exit statuses in [`extsecurity::exits`]. Errors are printed once, on stderr,
//! prefixed `extsecurity: `. The commands live in `cli/`, one file per group.

mod cli;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, GenerateCli, generate, is_legacy_json, run, run_legacy};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    ExitCode::from(match args.get(1) {
        Some(first) if is_legacy_json(first) => run_legacy(&args[1..]),
        Some(first) if first == "generate" => generate(GenerateCli::parse_from(&args[1..]).what),
        _ => run(Cli::parse_from(&args), &args[1..]),
    })
}
