//! Asynchronous, cached DNS for an upstream host.
//!
//! Pingora's `HttpPeer::new("host:port")` resolves with a blocking getaddrinfo on the worker and
//! panics when it fails. Here resolution runs on tokio's blocking pool (`lookup_host`), bounded by
//! a timeout, and the answer is cached for `ttl`. An expired answer is still served while one
//! background refresh replaces it, so a slow resolver never sits on the request path once a host
//! has been seen. A failure is an error for the caller (a 502), never a panic.
//!
//! Each route owns one [`CachedHost`], so the hot path is a read lock and a clone of an `Arc`:
//! no map, no key allocation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DnsError {
    #[error("no address found")]
    NotFound,
    #[error("resolution failed: {0}")]
    Failed(String),
    #[error("resolution timed out")]
    Timeout,
}

struct Answer {
    addrs: Box<[SocketAddr]>,
    resolved_at: Instant,
    /// Round-robin position across the host's addresses.
    next: AtomicUsize,
}

/// One upstream host name and its cached addresses.
pub(crate) struct CachedHost {
    host: String,
    port: u16,
    ttl: Duration,
    timeout: Duration,
    answer: RwLock<Option<Arc<Answer>>>,
    refreshing: AtomicBool,
}

impl CachedHost {
    pub(crate) fn new(host: &str, port: u16, ttl: Duration, timeout: Duration) -> Arc<Self> {
        Arc::new(CachedHost {
            host: host.to_string(),
            port,
            ttl,
            timeout,
            answer: RwLock::new(None),
            refreshing: AtomicBool::new(false),
        })
    }

    /// One address: cached when possible, round-robin over all answers.
    pub(crate) async fn resolve(self: &Arc<Self>) -> Result<SocketAddr, DnsError> {
        let answer = match self.current() {
            Some(answer) => {
                if answer.resolved_at.elapsed() > self.ttl
                    && !self.refreshing.swap(true, Ordering::AcqRel)
                {
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        // On failure the last good answer stays; a later request tries again.
                        let _ = me.lookup().await;
                        me.refreshing.store(false, Ordering::Release);
                    });
                }
                answer
            }
            None => self.lookup().await?,
        };
        let i = answer.next.fetch_add(1, Ordering::Relaxed);
        Ok(answer.addrs[i % answer.addrs.len()])
    }

    fn current(&self) -> Option<Arc<Answer>> {
        self.answer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    async fn lookup(&self) -> Result<Arc<Answer>, DnsError> {
        let lookup = tokio::net::lookup_host((self.host.as_str(), self.port));
        let addrs: Box<[SocketAddr]> = match tokio::time::timeout(self.timeout, lookup).await {
            Err(_) => return Err(DnsError::Timeout),
            Ok(Err(e)) => return Err(DnsError::Failed(e.to_string())),
            Ok(Ok(iter)) => iter.collect(),
        };
        if addrs.is_empty() {
            return Err(DnsError::NotFound);
        }
        let answer = Arc::new(Answer {
            addrs,
            resolved_at: Instant::now(),
            next: AtomicUsize::new(0),
        });
        *self
            .answer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::clone(&answer));
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_and_caches_localhost() {
        let h = CachedHost::new(
            "localhost",
            8080,
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        let a = h.resolve().await.unwrap();
        assert_eq!(a.port(), 8080);
        assert!(a.ip().is_loopback());
        assert!(h.current().is_some());
    }

    #[tokio::test]
    async fn stale_answers_are_served_while_refreshing() {
        let h = CachedHost::new("localhost", 80, Duration::ZERO, Duration::from_secs(5));
        h.resolve().await.unwrap();
        // Expired at once: still answered from the cache, with a refresh behind it.
        assert!(h.resolve().await.is_ok());
    }

    #[tokio::test]
    async fn unknown_host_is_an_error_not_a_panic() {
        let h = CachedHost::new(
            "no-such-host.invalid",
            80,
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        assert!(h.resolve().await.is_err());
    }
}
