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
//!
//! The ports are bound before Pingora runs (`listen.rs`), so a client or a supervisor can see
//! the gateway up before these handlers exist; a stop signal then would kill the process
//! outright (or vanish, where a shell started it with SIGINT ignored). So the binary holds the
//! three signals blocked from the bind on — every thread inherits the mask — and the watch
//! unblocks them once it listens: a signal sent in between waits, then takes its usual path.

use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};

pub(super) struct ProcessSignals {
    /// Raised on SIGINT: stop without waiting for requests in flight.
    pub fast_stop: Arc<AtomicBool>,
}

#[async_trait]
impl ShutdownSignalWatch for ProcessSignals {
    async fn recv(&self) -> ShutdownSignal {
        let mut quit = listen(SignalKind::quit(), "SIGQUIT");
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        mask_stop_signals(libc::SIG_UNBLOCK);
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

/// Block SIGINT, SIGTERM and SIGQUIT in this thread and the threads it starts from now on,
/// until [`ProcessSignals`] listens.
pub(super) fn hold_stop_signals() {
    mask_stop_signals(libc::SIG_BLOCK);
}

fn mask_stop_signals(how: libc::c_int) {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only reads it.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        log::warn!(
            "cannot change the signal mask: {}",
            std::io::Error::from_raw_os_error(rc)
        );
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
