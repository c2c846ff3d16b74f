//! Listening sockets bound by us, in the foreground, before Pingora runs.
//!
//! Pingora binds inside its service runtime, after `-d` has forked: a port in use is retried
//! for 30 s, then the listener task panics and the process runs on without listening, while
//! the foreground process of `-d` has long exited 0. Binding here instead fails the start at
//! once, with the address and the reason, with a non-zero exit that systemd (`Type=forking`)
//! sees. The sockets reach Pingora through its table of listening descriptors — the table a
//! graceful upgrade fills with inherited sockets — so Pingora adopts them as it adopts those,
//! and hands them on at the next upgrade.

use async_trait::async_trait;
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;

/// Bind every address. During an upgrade (`-u`) an address in use is the one the old process
/// hands over (already received when this runs), so it is left to Pingora's table.
pub(super) fn bind_all(
    addrs: &[SocketAddr],
    upgrade: bool,
) -> Result<Vec<(String, TcpListener)>, String> {
    let mut bound = Vec::with_capacity(addrs.len());
    for addr in addrs {
        // std sets SO_REUSEADDR, as Pingora does; the backlog is raised by Pingora on adoption.
        match TcpListener::bind(addr) {
            Ok(listener) => {
                listener
                    .set_nonblocking(true)
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                bound.push((addr.to_string(), listener));
            }
            Err(e) if upgrade && e.kind() == ErrorKind::AddrInUse => {}
            Err(e) => {
                let hint = match e.kind() {
                    ErrorKind::AddrInUse => {
                        " (another process listens there; to replace a running llm-forward without downtime, start the new one with -u)"
                    }
                    ErrorKind::PermissionDenied => {
                        " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                    }
                    ErrorKind::AddrNotAvailable => " (no interface has this address)",
                    _ => "",
                };
                return Err(format!("cannot listen on {addr}: {e}{hint}"));
            }
        }
    }
    Ok(bound)
}

/// A listening service whose sockets were bound by [`bind_all`]: it puts them in Pingora's
/// table, then runs the service. Should the service still fail to listen (an address in use
/// during an upgrade that the old process did not hand over), the process exits 1 rather than
/// running without a listener.
pub(super) struct PreBound {
    inner: Option<Box<dyn ServiceWithDependents>>,
    bound: Vec<(String, TcpListener)>,
    name: String,
    addresses: Option<Vec<String>>,
    threads: Option<usize>,
}

impl PreBound {
    pub(super) fn new(
        inner: impl ServiceWithDependents + 'static,
        bound: Vec<(String, TcpListener)>,
    ) -> Self {
        PreBound {
            name: inner.name().to_string(),
            addresses: inner.listen_addresses(),
            threads: inner.threads(),
            inner: Some(Box::new(inner)),
            bound,
        }
    }
}

#[async_trait]
impl ServiceWithDependents for PreBound {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        if let Some(table) = &fds {
            let mut table = table.lock();
            for (addr, listener) in self.bound.drain(..) {
                if table.get(&addr).is_none() {
                    table.add(addr, listener.into_raw_fd());
                }
            }
        }
        self.bound.clear();
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        let task = tokio::spawn(async move {
            inner
                .start_service(fds, shutdown, listeners_per_fd, ready_notifier)
                .await
        });
        if let Err(e) = task.await {
            if e.is_panic() {
                log::error!(
                    "cannot listen on {}; exiting",
                    self.addresses.as_deref().unwrap_or_default().join(", ")
                );
                std::process::exit(1);
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn threads(&self) -> Option<usize> {
        self.threads
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.addresses.clone()
    }
}
