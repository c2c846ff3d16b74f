//! The binary's signals. SIGQUIT (hand the listeners to a new process) and SIGTERM (stop
//! gracefully) go to Pingora unchanged. SIGINT does not take Pingora's "fast shutdown": that
//! path stops the worker runtimes without first telling the accept loops, and a listener's
//! I/O belongs to the runtime of the worker thread that bound it while its accept loop may run
//! on another. When the binding thread stops first, `accept()` on the other fails at once with
//! "runtime is being shut down", forever and without yielding: the loop logs ~90 MB/s, the
//! process never exits and the port stays bound (about one Ctrl-C in ten with two threads).
//!
//! So SIGINT takes the graceful path, which tells the accept loops to close first, and
//! raises `fast_stop`: the drain watch (`server.rs`) then exits at once instead of waiting
//! for requests in flight, which is what Ctrl-C means.

use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct ProcessSignals {
    /// Raised on SIGINT: stop without waiting for requests in flight.
    pub fast_stop: Arc<AtomicBool>,
}

#[async_trait]
impl ShutdownSignalWatch for ProcessSignals {
    async fn recv(&self) -> ShutdownSignal {
        let mut quit = listen(SignalKind::quit(), "SIGQUIT");
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        tokio::select! {
            _ = next(&mut quit) => ShutdownSignal::GracefulUpgrade,
            _ = next(&mut term) => ShutdownSignal::GracefulTerminate,
            _ = next(&mut int) => {
                log::info!("SIGINT received: closing the listeners and exiting without waiting for requests in flight");
                self.fast_stop.store(true, Ordering::Release);
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}

fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
    match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("cannot handle {name}: {e}");
            None
        }
    }
}

/// The next delivery of `signal`; never, when it could not be installed.
async fn next(signal: &mut Option<Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
