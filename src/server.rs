//! Turning a config into a running Pingora server: `ServerConf` derived from our `server:`
//! section (passed at construction, as graceful upgrade requires), the proxy service with a
//! listener per address, and two ways to run it: in the foreground until a signal (the binary),
//! or in a background thread until a handle is dropped (tests, embedding).
//!
//! Everything that can fail at start — the runtime directory, taking the listeners over
//! (`-u`), binding the ports — happens here, in the foreground, before `-d` forks: the command
//! systemd runs fails when the start fails (see the README, Deployment).

mod listen;
mod runtime_dir;
mod signals;

use crate::config::{Config, Problems};
use crate::proxy::LlmProxy;
use crate::state::Gateway;
use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::ShutdownWatch;
use pingora_core::server::{ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Process-level switches from the command line (Pingora's own flags).
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// Fork to the background (`-d`).
    pub daemon: bool,
    /// Take the listeners over from a running instance (`-u`, graceful upgrade).
    pub upgrade: bool,
    /// The binary, which will [`GatewayServer::run_forever`]: hold stop signals from the bind
    /// on until its handlers listen (`server/signals.rs`). Not for servers in a thread.
    pub hold_signals: bool,
    /// The file the config came from (`-c`): the console shows it (masked).
    pub config_file: Option<String>,
    /// `run --webui` made up the admin key: write it where only the operator can read it.
    pub generated_admin_key: bool,
}

/// A built, not yet running, gateway server.
pub struct GatewayServer {
    pub server: Server,
    /// Requests in flight (see `proxy::ctx::InFlight`).
    pub in_flight: Arc<AtomicUsize>,
    /// Flushed before the process exits, so a stop or an upgrade loses no record.
    pub chat_log: Option<crate::chatlog::ChatLog>,
    exit_when_drained: Arc<AtomicBool>,
    /// Raised on SIGINT (see `signals.rs`).
    fast_stop: Arc<AtomicBool>,
}

/// Why a server could not be built.
#[derive(Debug)]
pub enum StartError {
    /// The configuration (or the directory it names) is unusable: exit 2.
    Config(Problems),
    /// The machine said no (a port in use, another upgrade under way): exit 1.
    Failed(String),
}

impl From<StartError> for Problems {
    fn from(e: StartError) -> Problems {
        match e {
            StartError::Config(p) => p,
            StartError::Failed(why) => {
                let mut p = Problems::default();
                p.add("server", None, why);
                p
            }
        }
    }
}

/// Build the Pingora server for `config`: runtime state, the private runtime directory, the
/// listeners (received from the old process with `-u`, else bound here).
pub fn build_server(config: Config, options: &ProcessOptions) -> Result<GatewayServer, StartError> {
    let gateway = Gateway::build(config).map_err(StartError::Config)?;
    let paths = runtime_dir::prepare(&gateway.config.server).map_err(StartError::Config)?;
    if let Some(console) = &gateway.console {
        if let Some(file) = &options.config_file {
            console.set_config_file(file.into());
        }
        if options.generated_admin_key {
            write_admin_key(&gateway.config, &paths)?;
        }
    }
    let in_flight = Arc::clone(&gateway.in_flight);
    let draining = Arc::clone(&gateway.draining);
    let cutoff = Arc::clone(&gateway.cutoff);
    let (grace, after_grace) = (
        gateway.config.server.grace_period,
        gateway.config.server.shutdown_timeout,
    );
    let chat_log = gateway.chat_log.clone();
    let tracer = gateway.tracer.clone();
    let conf = server_conf(&gateway.config, &paths);
    let opt = Opt {
        upgrade: options.upgrade,
        daemon: options.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // Receives the listeners with `-u` (exits 1 when none come); one such process at a time.
    let lock = if options.upgrade {
        Some(runtime_dir::UpgradeLock::take(&paths.upgrade_sock).map_err(StartError::Failed)?)
    } else {
        None
    };
    server.bootstrap();
    drop(lock);
    if options.hold_signals {
        signals::hold_stop_signals();
    }
    let listen = gateway.config.server.listen.clone();
    let bound = listen::bind_all(&listen, options.upgrade).map_err(StartError::Failed)?;
    if let Some((addr, socket)) = admin_listener(&gateway.config, options)? {
        let admin = crate::admin::service(Arc::clone(&gateway), addr);
        server.add_service(listen::PreBound::new(admin, socket));
    }
    let header_timeout = gateway.config.server.header_timeout;
    let proxy = pingora_proxy::http_proxy(&server.configuration, LlmProxy { gateway });
    let mut service = pingora_core::services::listening::Service::new(
        "llm-forward".to_string(),
        crate::head_deadline::HeadDeadlineApp::new(proxy, header_timeout),
    );
    for addr in &listen {
        service.add_tcp(&addr.to_string());
    }
    server.add_service(listen::PreBound::new(service, bound));
    let exit_when_drained = Arc::new(AtomicBool::new(false));
    let fast_stop = Arc::new(AtomicBool::new(false));
    let post_fork = PostFork {
        chat_log: chat_log.clone(),
        in_flight: Arc::clone(&in_flight),
        draining,
        cutoff,
        grace,
        after_grace,
        phases: std::sync::Mutex::new(Some(server.watch_execution_phase())),
        exit_when_drained: Arc::clone(&exit_when_drained),
        fast_stop: Arc::clone(&fast_stop),
    };
    server.add_service(background_service("post-fork", post_fork));
    if let Some(tracer) = &tracer {
        server.add_service(background_service("otlp-exporter", tracer.exporter()));
    }
    Ok(GatewayServer {
        server,
        in_flight,
        chat_log,
        exit_when_drained,
        fast_stop,
    })
}

impl GatewayServer {
    /// Run until a signal, then exit the process: SIGTERM stops gracefully, SIGQUIT hands the
    /// listeners to a new process started with `-u`, SIGINT stops at once (`signals.rs`). With
    /// `exit_when_drained` set (see [`PostFork`]), a graceful stop exits as soon as no request
    /// is in flight.
    pub fn run_forever(self) -> ! {
        self.exit_when_drained.store(true, Ordering::Release);
        self.server.run(RunArgs {
            shutdown_signal: Box::new(signals::ProcessSignals {
                fast_stop: Arc::clone(&self.fast_stop),
            }),
        });
        flush(self.chat_log.as_ref());
        std::process::exit(0)
    }
}

/// Threads the process needs, started by Pingora as a background service — that is, after `-d`
/// has forked, since threads started before a fork stay behind in the parent.
///
/// - the chat-log writer;
/// - the drain flag: raised as a graceful upgrade or stop begins, so answers from then on close
///   their connections (`proxy/keepalive.rs`);
/// - the drain watch: Pingora's grace period is a fixed sleep after which running requests are
///   dropped, unlogged. The watch runs the grace period instead: it exits as soon as the last
///   request in flight has finished (after flushing the chat log), so a stop or an upgrade
///   takes as long as the longest stream, not always the whole grace period; when the grace
///   period ends with requests still running, it raises the cutoff (`cutoff.rs`) and gives
///   them `shutdown_timeout` to end as cut and log before the process exits (Pingora's own
///   grace period is set past both, see `server_conf`, so it never drops them first); after
///   SIGINT it exits at once.
struct PostFork {
    chat_log: Option<crate::chatlog::ChatLog>,
    in_flight: Arc<AtomicUsize>,
    /// Raised when a graceful upgrade or stop begins (see `proxy/keepalive.rs`).
    draining: Arc<AtomicBool>,
    /// Raised when the grace period ends with requests still in flight.
    cutoff: Arc<crate::cutoff::Cutoff>,
    /// `server.grace_period`, then `server.shutdown_timeout` for cut requests to log.
    grace: Duration,
    after_grace: Duration,
    phases: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<ExecutionPhase>>>,
    /// Set by `run_forever`; tests running the server in a thread never exit the process.
    exit_when_drained: Arc<AtomicBool>,
    fast_stop: Arc<AtomicBool>,
}

#[async_trait]
impl BackgroundService for PostFork {
    async fn start(&self, _shutdown: ShutdownWatch) {
        if let Some(log) = &self.chat_log {
            log.start_writer();
        }
        let phases = self.phases.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut phases) = phases else {
            return;
        };
        let (in_flight, chat_log, exit, draining, cutoff, fast) = (
            Arc::clone(&self.in_flight),
            self.chat_log.clone(),
            Arc::clone(&self.exit_when_drained),
            Arc::clone(&self.draining),
            Arc::clone(&self.cutoff),
            Arc::clone(&self.fast_stop),
        );
        let (grace, after_grace) = (self.grace, self.after_grace);
        let _ = std::thread::Builder::new()
            .name("drain-watch".into())
            .spawn(move || {
                while let Ok(phase) = phases.blocking_recv() {
                    if matches!(
                        phase,
                        ExecutionPhase::GracefulUpgradeTransferringFds
                            | ExecutionPhase::GracefulUpgradeCloseTimeout
                            | ExecutionPhase::GracefulTerminate
                            | ExecutionPhase::ShutdownStarted
                            | ExecutionPhase::ShutdownGracePeriod
                    ) {
                        draining.store(true, Ordering::Relaxed);
                    }
                    if matches!(phase, ExecutionPhase::ShutdownGracePeriod) {
                        if fast.load(Ordering::Acquire) && exit.load(Ordering::Acquire) {
                            flush(chat_log.as_ref());
                            std::process::exit(0);
                        }
                        let idle = |within: Duration| {
                            let end = Instant::now() + within;
                            while in_flight.load(Ordering::Acquire) > 0 {
                                if Instant::now() >= end {
                                    return false;
                                }
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            true
                        };
                        if idle(grace) {
                            log::info!(
                                "all requests finished; exiting before the grace period ends"
                            );
                        } else {
                            let left = in_flight.load(Ordering::Acquire);
                            log::warn!(
                                "grace period over: cutting {left} request(s) still running"
                            );
                            cutoff.raise();
                            if !idle(after_grace) {
                                log::warn!(
                                    "{} request(s) did not end within shutdown_timeout",
                                    in_flight.load(Ordering::Acquire)
                                );
                            }
                        }
                        if exit.load(Ordering::Acquire) {
                            flush(chat_log.as_ref());
                            std::process::exit(0);
                        }
                    }
                }
            });
    }
}

/// Write out every queued chat-log record (the writer has its own thread; this waits for it).
fn flush(chat_log: Option<&crate::chatlog::ChatLog>) {
    let Some(log) = chat_log else {
        return;
    };
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(log.flush_and_stop()),
        Err(e) => log::error!("chat log: cannot flush on exit: {e}"),
    }
}

/// The admin service's address and its socket, bound here in the foreground like the proxy's
/// (`listen.rs`): refuse to start when the operator chose the address and it cannot be bound,
/// or carry on without metrics (with a warning) when the default port is taken (a second
/// gateway on the same host). During a graceful upgrade (`-u`) the old process hands the
/// socket over, so an address in use is left to Pingora's table.
fn admin_listener(
    config: &Config,
    options: &ProcessOptions,
) -> Result<Option<AdminSocket>, StartError> {
    let Some(addr) = config.admin.listen else {
        return Ok(None);
    };
    match listen::bind_all(&[addr], options.upgrade) {
        Ok(socket) => Ok(Some((addr, socket))),
        Err(e) if addr == crate::config::DEFAULT_ADMIN_LISTEN => {
            log::warn!("admin listener: {e}; /metrics is off. Set admin.listen to another address, or admin.enabled: false");
            Ok(None)
        }
        Err(e) => {
            let mut p = Problems::default();
            p.add("admin.listen", Some(addr.to_string()), e);
            Err(StartError::Config(p))
        }
    }
}

type AdminSocket = (std::net::SocketAddr, Vec<(String, std::net::TcpListener)>);

/// `run --webui` without `admin.key`: the key made up for this run goes to `admin.key` in the
/// private runtime directory (0600), never to the log; the banner names the file.
fn write_admin_key(config: &Config, paths: &runtime_dir::RuntimePaths) -> Result<(), StartError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (Some(key), Some(dir)) = (
        &config.admin.key,
        std::path::Path::new(&paths.pid_file).parent(),
    ) else {
        return Ok(());
    };
    let path = dir.join("admin.key");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(key.0.as_bytes()));
    match written {
        Ok(()) => {
            eprintln!(
                "  console     the admin key for this run is in {} (set admin.key to choose one)",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(StartError::Failed(format!(
            "cannot write the console's admin key to {}: {e}",
            path.display()
        ))),
    }
}

fn server_conf(config: &Config, paths: &runtime_dir::RuntimePaths) -> ServerConf {
    let s = &config.server;
    ServerConf {
        threads: s.threads,
        pid_file: paths.pid_file.clone(),
        upgrade_sock: paths.upgrade_sock.clone(),
        // Past our own grace period and the time cut requests get to log (the drain watch in
        // `PostFork` runs both and exits first): Pingora's drops requests unlogged.
        grace_period_seconds: Some(
            (s.grace_period + s.shutdown_timeout).as_secs_f64().ceil() as u64 + 1,
        ),
        graceful_shutdown_timeout_seconds: Some(s.shutdown_timeout.as_secs()),
        // The attempt plan decides per route (`retry.max_attempts` is at most 50); this is only
        // Pingora's outer bound.
        max_retries: 64,
        // Per-thread single-threaded runtimes by default: measured ~10 % less CPU per request
        // and a lower c=1 tail than one work-stealing pool (bench/load.sh, alternating runs:
        // 38.7–39.2 against 43.2 µs/req). A connection stays on the thread that accepted it.
        work_stealing: s.work_stealing,
        ..ServerConf::default()
    }
}

/// A gateway running on background threads; dropping the handle stops it and waits.
pub struct RunningGateway {
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Start `config` in the background (tests and embedding). Listeners are bound asynchronously:
/// callers that need readiness poll a connection to the listen address.
pub fn spawn(config: Config) -> Result<RunningGateway, Problems> {
    let server = build_server(config, &ProcessOptions::default())
        .map_err(Problems::from)?
        .server;
    let stop = Arc::new(Notify::new());
    let signal = StopSignal(Arc::clone(&stop));
    let thread = std::thread::Builder::new()
        .name("llm-forward".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signal),
            })
        })
        .map_err(|e| {
            let mut p = Problems::default();
            p.add("", None, format!("cannot start the server thread: {e}"));
            p
        })?;
    Ok(RunningGateway {
        stop,
        thread: Some(thread),
    })
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        // `notify_one` stores a permit, so a stop sent before the server listens is not lost.
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct StopSignal(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}
