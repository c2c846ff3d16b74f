//! `llm-forward`: set up logging, parse the command line and hand over to the library.

use clap::Parser;
use log::LevelFilter;
use std::process::ExitCode;

fn main() -> ExitCode {
    let env = || env_logger::Env::default().default_filter_or("info");
    let mut logger = env_logger::Builder::from_env(env());
    // What RUST_LOG alone would let through, to cap only what it makes more verbose than info.
    let asked = env_logger::Builder::from_env(env()).build();
    // Pingora's debug and trace output prints request heads and URLs, where client keys travel
    // (`Authorization`, `?key=`). Whatever RUST_LOG says, its crates stay at info or quieter
    // (and as quiet as RUST_LOG asks: `warn` hides their info lines).
    for module in [
        "pingora",
        "pingora_core",
        "pingora_proxy",
        "pingora_cache",
        "h2",
        "hyper",
    ] {
        let debug = log::Metadata::builder()
            .level(log::Level::Debug)
            .target(module)
            .build();
        if log::Log::enabled(&asked, &debug) {
            logger.filter_module(module, LevelFilter::Info);
        }
    }
    logger.init();
    // The access line, one per request, then skips env_logger's per-record work when it would
    // be written plain anyway (same bytes; see `logfmt::line`).
    llm_forward::logfmt::line::enable_direct_stderr();
    llm_forward::cli::main_with(llm_forward::cli::Cli::parse())
}
