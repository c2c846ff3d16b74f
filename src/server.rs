//! Turning a config into a running Pingora server: `ServerConf` derived from our `server:`
//! section (passed at construction, as graceful upgrade requires), the proxy service with a
//! listener per address, and two ways to run it: in the foreground until a signal (the binary),
//! or in a background thread until a handle is dropped (tests, embedding).

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
}

/// A built, not yet running, gateway server.
pub struct GatewayServer {
    pub server: Server,
    /// Requests in flight (see `proxy::ctx::InFlight`).
    pub in_flight: Arc<AtomicUsize>,
    /// Flushed before the process exits, so a stop or an upgrade loses no record.
    pub chat_log: Option<crate::chatlog::ChatLog>,
    exit_when_drained: Arc<AtomicBool>,
}

/// Build the Pingora server for `config`. Fails only on config-level problems found while
/// building runtime state (unreadable CA files).
pub fn build_server(config: Config, options: &ProcessOptions) -> Result<GatewayServer, Problems> {
    let gateway = Gateway::build(config)?;
    let in_flight = Arc::clone(&gateway.in_flight);
    let draining = Arc::clone(&gateway.draining);
    let cutoff = Arc::clone(&gateway.cutoff);
    let (grace, after_grace) = (
        gateway.config.server.grace_period,
        gateway.config.server.shutdown_timeout,
    );
    let chat_log = gateway.chat_log.clone();
    let conf = server_conf(&gateway.config);
    let opt = Opt {
        upgrade: options.upgrade,
        daemon: options.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let listen = gateway.config.server.listen.clone();
    if let Some(admin) = admin_listener(&gateway.config, options)? {
        server.add_service(crate::admin::service(Arc::clone(&gateway), admin));
    }
    let mut service = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        LlmProxy { gateway },
        "llm-forward",
    );
    for addr in &listen {
        service.add_tcp(&addr.to_string());
    }
    server.add_service(service);
    let exit_when_drained = Arc::new(AtomicBool::new(false));
    let post_fork = PostFork {
        chat_log: chat_log.clone(),
        in_flight: Arc::clone(&in_flight),
        draining,
        cutoff,
        grace,
        after_grace,
        phases: std::sync::Mutex::new(Some(server.watch_execution_phase())),
        exit_when_drained: Arc::clone(&exit_when_drained),
    };
    server.add_service(background_service("post-fork", post_fork));
    Ok(GatewayServer {
        server,
        in_flight,
        chat_log,
        exit_when_drained,
    })
}

impl GatewayServer {
    /// Run until a signal, then exit the process: SIGTERM stops gracefully, SIGQUIT hands the
    /// listeners to a new process started with `-u`, SIGINT stops at once. With `exit_when_drained`
    /// set (see [`PostFork`]), a graceful stop exits as soon as no request is in flight.
    pub fn run_forever(self) -> ! {
        self.exit_when_drained.store(true, Ordering::Release);
        self.server.run(RunArgs::default());
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
///   takes as long as the longest stream, not always the whole grace period; and when the
///   grace period ends with requests still running, it raises the cutoff (`cutoff.rs`) and
///   gives them `shutdown_timeout` to end as cut and log before the process exits. Pingora's
///   own grace period is set past both (see `server_conf`), so it never drops them first.
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
        let (in_flight, chat_log, exit, draining, cutoff) = (
            Arc::clone(&self.in_flight),
            self.chat_log.clone(),
            Arc::clone(&self.exit_when_drained),
            Arc::clone(&self.draining),
            Arc::clone(&self.cutoff),
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

/// The admin service's address, once we know it can be bound. Pingora binds listeners inside
/// a service task, where a failure is a panic that leaves the service silently absent; trying
/// the address here turns that into a clear answer: refuse to start when the operator chose the
/// address, or carry on without metrics (with a warning) when the default port is taken (a
/// second gateway on the same host). A new process of a graceful upgrade (`-u`) skips the
/// check: the old process holds the socket and hands it over.
fn admin_listener(
    config: &Config,
    options: &ProcessOptions,
) -> Result<Option<std::net::SocketAddr>, Problems> {
    let Some(addr) = config.admin.listen else {
        return Ok(None);
    };
    if options.upgrade {
        return Ok(Some(addr));
    }
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(Some(addr)),
        Err(e) if addr == crate::config::DEFAULT_ADMIN_LISTEN => {
            log::warn!("admin listener: cannot bind {addr} ({e}); /metrics is off. Set admin.listen to another address, or admin.enabled: false");
            Ok(None)
        }
        Err(e) => {
            let mut p = Problems::default();
            p.add(
                "admin.listen",
                Some(addr.to_string()),
                format!("cannot listen there: {e}"),
            );
            Err(p)
        }
    }
}

fn server_conf(config: &Config) -> ServerConf {
    let s = &config.server;
    ServerConf {
        threads: s.threads,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
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
    let server = build_server(config, &ProcessOptions::default())?.server;
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
