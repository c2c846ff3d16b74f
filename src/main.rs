//! `llm-forward`: set up logging, parse the command line and hand over to the library.

use clap::Parser;
use log::LevelFilter;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    // Pingora's debug and trace output prints request heads and URLs, where client keys travel
    // (`Authorization`, `?key=`). Whatever RUST_LOG says, its crates stay at info or quieter.
    for module in [
        "pingora",
        "pingora_core",
        "pingora_proxy",
        "pingora_cache",
        "h2",
        "hyper",
    ] {
        logger.filter_module(module, LevelFilter::Info);
    }
    logger.init();
    llm_forward::cli::main_with(llm_forward::cli::Cli::parse())
}
