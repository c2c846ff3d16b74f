//! `llm-forward`: parse the command line and hand over to the library.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    llm_forward::cli::main_with(llm_forward::cli::Cli::parse())
}
