//! One Redis connection per backend (limiter, cache), opened on first use — inside the
//! runtime, after a `-d` fork — and then shared by every call: a `ConnectionManager`
//! multiplexes requests and reconnects by itself.
//!
//! Every call goes through [`LazyRedis::call`]: bounded by the backend's timeout, and after a
//! failure the backend is skipped for [`BACKOFF`] (calls fail at once, without waiting). A Redis
//! that hangs therefore costs one request one timeout, not every request one timeout per call
//! (a limited request makes up to three: slot, rate, token budget).
//!
//! `rediss://` URLs connect over TLS through native-tls, i.e. the system OpenSSL that Pingora
//! already links. The server's certificate is always verified: against the system's trust store,
//! or only against `redis.ca_file` when it is set (a private CA). There is no switch to turn
//! verification off (`#insecure` URLs are refused by the config).

use redis::aio::ConnectionManager;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a backend is skipped after a failed call.
pub(crate) const BACKOFF: Duration = Duration::from_secs(1);

/// The error of a call skipped during a back-off.
pub(crate) const SKIPPED: &str = "Redis was unreachable a moment ago";

pub(crate) struct LazyRedis {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
    /// Until when (ms on [`clock_ms`]) calls fail at once, after a failure.
    down_until: AtomicU64,
    /// Calls that failed or timed out (not those skipped during a back-off), for
    /// `llm_forward_redis_errors_total`.
    errors: AtomicU64,
}

impl LazyRedis {
    /// Parse `url` (and read `ca_file`, the CA bundle a `rediss://` server's certificate must
    /// chain to); nothing connects yet.
    pub(crate) fn open(
        url: &str,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        let client = match ca_file.filter(|_| url.starts_with("rediss://")) {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("redis.ca_file {}: {e}", path.display()))?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(url, certs).map_err(|e| {
                    format!(
                        "redis.ca_file {}: not a PEM CA bundle ({e})",
                        path.display()
                    )
                })?
            }
            None => redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?,
        };
        Ok(LazyRedis {
            client,
            conn: Mutex::new(None),
            timeout,
            down_until: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// Calls that failed or timed out so far.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Whether calls are skipped, after a recent failure.
    pub(crate) fn backing_off(&self) -> bool {
        self.down_until.load(Ordering::Relaxed) > clock_ms()
    }

    /// The shared connection, made on the first call.
    pub(crate) async fn get(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let c = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| e.to_string())?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Run one call (which takes its connection from [`get`](Self::get)) within the timeout;
    /// a failure starts the back-off. While backing off, fail at once (without extending the
    /// back-off: the first call after it ends tries Redis again).
    pub(crate) async fn call<T>(
        &self,
        f: impl Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        if self.backing_off() {
            return Err(SKIPPED.into());
        }
        let r = match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err("timed out".into()),
        };
        if r.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.down_until
                .store(clock_ms() + BACKOFF.as_millis() as u64, Ordering::Relaxed);
        }
        r
    }
}

/// Milliseconds on a monotonic process clock (wall-clock steps never shorten a back-off).
fn clock_ms() -> u64 {
    static EPOCH: once_cell::sync::Lazy<Instant> = once_cell::sync::Lazy::new(Instant::now);
    // Starts above zero, so a `down_until` of 0 is always in the past.
    EPOCH.elapsed().as_millis() as u64 + 1
}
