//! The command line: `run` (the default), `check`, `import-env`. Exit codes: 0 ok, 1 runtime
//! failure, 2 bad configuration or usage.

// `check`, `import-env` and `convert` answer on stdout; everything else logs to stderr.
#![allow(clippy::print_stdout)]

use crate::config::{self, Config, ConfigError, ConfigSource};
use crate::server::{build_server, ProcessOptions, StartError};
use clap::{Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "llm-forward",
    version,
    about = "A high-performance LLM API gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (the default when no command is given).
    Run(RunArgs),
    /// Validate a config file (without one: openai-forward's environment and `.env`, as `run`
    /// reads them) and print every problem; exit 2 if there are any. Warnings are logged.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: Option<String>,
    },
    /// Turn chat logs (JSONL) into openai-forward's `chat_<route>.json` files (`aifd convert`).
    Convert {
        /// The chat-log directory (one sub-directory per route).
        #[arg(long, default_value = "Log/chat")]
        log_dir: String,
        /// Where to write the `chat_<route>.json` files.
        #[arg(long, default_value = ".")]
        out_dir: String,
    },
    /// Print the YAML equivalent of openai-forward's environment (and `.env` file).
    ImportEnv {
        /// A `.env` file to read (default: `.env` in the working directory, if present).
        file: Option<String>,
    },
}

#[derive(clap::Args, Debug, Default, Clone)]
pub struct RunArgs {
    /// Config file (YAML). Without it: openai-forward's environment variables if set, else the
    /// built-in default (0.0.0.0:8000, `/` → https://api.openai.com).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<String>,
    /// Listen on this host instead (replaces the configured addresses).
    #[arg(long)]
    pub host: Option<IpAddr>,
    /// Listen on this port instead.
    #[arg(long)]
    pub port: Option<u16>,
    /// Run in the background (Pingora's daemon mode).
    #[arg(short, long)]
    pub daemon: bool,
    /// Take over the listeners of a running instance (graceful upgrade; see the README).
    #[arg(short, long)]
    pub upgrade: bool,
    /// Serve the web console on the admin listener (openai-forward's `--webui`). Without
    /// `admin.key`, a key is made up for this run and written to the runtime directory.
    #[arg(long)]
    pub webui: bool,
}

pub fn main_with(cli: Cli) -> ExitCode {
    match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::Check { config }) => check(config.as_deref()),
        Some(Command::ImportEnv { file }) => import_env(file.as_deref()),
        Some(Command::Convert { log_dir, out_dir }) => convert(&log_dir, &out_dir),
    }
}

fn check(file: Option<&str>) -> ExitCode {
    let loaded = match file {
        Some(f) => config::load_file(f).map(|c| (c, ConfigSource::File(f.into()))),
        None => config::openai_forward::from_process_env(),
    };
    match loaded {
        Ok((cfg, source)) => match crate::state::Gateway::build(cfg) {
            Ok(_) => {
                println!("{source}: ok");
                ExitCode::SUCCESS
            }
            Err(list) => report(&ConfigError::Invalid {
                path: source.to_string(),
                list,
            }),
        },
        Err(e) => report(&e),
    }
}

fn report(e: &ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(2)
}

/// The config `run` would use: the file, else openai-forward's environment, else the default;
/// and which one it is.
pub fn resolve_config(args: &RunArgs) -> Result<(Config, ConfigSource), ConfigError> {
    let (mut cfg, source) = match &args.config {
        Some(path) => (config::load_file(path)?, ConfigSource::File(path.clone())),
        None => config::openai_forward::from_process_env()?,
    };
    if args.host.is_some() || args.port.is_some() {
        let first = cfg.server.listen.first().copied();
        let host = args
            .host
            .or(first.map(|a| a.ip()))
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let port = args.port.or(first.map(|a| a.port())).unwrap_or(8000);
        cfg.server.listen = vec![SocketAddr::new(host, port)];
    }
    Ok((cfg, source))
}

fn run(args: RunArgs) -> ExitCode {
    let (mut cfg, source) = match resolve_config(&args) {
        Ok(resolved) => resolved,
        Err(e) => return report(&e),
    };
    let generated_admin_key = args.webui && cfg.admin.key.is_none();
    if args.webui {
        if cfg.admin.listen.is_none() {
            eprintln!("--webui: the console is served by the admin listener, which is off (admin.enabled: false)");
            return ExitCode::from(2);
        }
        cfg.admin.ui = true;
        if generated_admin_key {
            let bytes: [u8; 24] = rand::random();
            let key = crate::cache_key::hex(&bytes);
            cfg.admin.key = Some(config::Secret(key));
        }
    }
    // Before any thread exists: it sets the environment OpenSSL reads (upstream/trust.rs).
    let trust = crate::upstream::trust::prefer_hashed_directory();
    eprint!("{}", crate::banner::render(&cfg, &source));
    if cfg
        .routes
        .iter()
        .any(|r| r.upstreams.iter().any(|u| u.url.tls))
    {
        eprintln!("  tls trust   {trust}");
    }
    let options = ProcessOptions {
        daemon: args.daemon,
        upgrade: args.upgrade,
        hold_signals: true,
        config_file: args.config.clone(),
        generated_admin_key,
    };
    match build_server(cfg, &options) {
        Ok(built) => built.run_forever(),
        Err(StartError::Config(list)) => report(&ConfigError::Invalid {
            path: source.to_string(),
            list,
        }),
        Err(StartError::Failed(why)) => {
            eprintln!("llm-forward: {why}");
            ExitCode::from(1)
        }
    }
}

fn convert(log_dir: &str, out_dir: &str) -> ExitCode {
    match crate::convert::convert_dir_report(log_dir.as_ref(), out_dir.as_ref()) {
        Ok(outputs) => {
            for o in &outputs {
                println!(
                    "{} -> {} ({} conversations, {} skipped, {} malformed)",
                    o.route,
                    o.path.display(),
                    o.stats.converted,
                    o.stats.skipped,
                    o.stats.malformed
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("convert: {e}");
            ExitCode::from(1)
        }
    }
}

fn import_env(file: Option<&str>) -> ExitCode {
    match config::openai_forward::import(file) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}
