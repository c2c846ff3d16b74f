//! Turning a config into a running Pingora server: `ServerConf` derived from our `server:`
//! section (passed at construction, as graceful upgrade requires), the proxy service with a
//! listener per address, and two ways to run it: in the foreground until a signal (the binary),
//! or in a background thread until a handle is dropped (tests, embedding).

use crate::config::{Config, Problems};
use crate::proxy::LlmProxy;
use crate::state::Gateway;
use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use std::sync::Arc;
use tokio::sync::Notify;

/// Process-level switches from the command line (Pingora's own flags).
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// Fork to the background (`-d`).
    pub daemon: bool,
    /// Take the listeners over from a running instance (`-u`, graceful upgrade).
    pub upgrade: bool,
}

/// Build the Pingora server for `config`. Fails only on config-level problems found while
/// building runtime state (unreadable CA files).
pub fn build_server(config: Config, options: &ProcessOptions) -> Result<Server, Problems> {
    let gateway = Gateway::build(config)?;
    let conf = server_conf(&gateway.config);
    let opt = Opt {
        upgrade: options.upgrade,
        daemon: options.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let listen = gateway.config.server.listen.clone();
    let mut service = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        LlmProxy { gateway },
        "llm-forward",
    );
    for addr in &listen {
        service.add_tcp(&addr.to_string());
    }
    server.add_service(service);
    Ok(server)
}

fn server_conf(config: &Config) -> ServerConf {
    let s = &config.server;
    ServerConf {
        threads: s.threads,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        grace_period_seconds: Some(s.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(s.shutdown_timeout.as_secs()),
        // Our `fail_to_connect` decides per route; this is only Pingora's outer bound.
        max_retries: 16,
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
    let server = build_server(config, &ProcessOptions::default())?;
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
