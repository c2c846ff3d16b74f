//! Request-rate and concurrency limits: the rules (`rules.rs`), their limit strings (`spec.rs`)
//! and two backends behind one interface: this process's memory (`local.rs`, pingora-limits) or
//! a Redis shared by a cluster (`redis.rs`).

pub mod local;
pub mod redis;
pub mod rules;
pub mod spec;
pub(crate) mod text;

use std::time::Duration;

/// The outcome of one check, with what the `x-ratelimit-*` headers report: the limit and the
/// remaining count of the tightest window, and when it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

impl Decision {
    pub fn unlimited() -> Self {
        Decision {
            allowed: true,
            limit: 0,
            remaining: u64::MAX,
            reset: Duration::ZERO,
        }
    }

    pub fn refused(limit: u64, reset: Duration) -> Self {
        Decision {
            allowed: false,
            limit,
            remaining: 0,
            reset,
        }
    }

    /// Keep the window with the fewest requests left.
    pub fn tighten(&mut self, limit: u64, remaining: u64, reset: Duration) {
        if remaining < self.remaining {
            self.limit = limit;
            self.remaining = remaining;
            self.reset = reset;
        }
    }
}

/// What to do when the shared backend cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBackendError {
    Allow,
    Deny,
}

/// The limits at run time: the rules, the request-rate backend, and this node's concurrency
/// counters (in-flight requests are a per-node quantity).
pub struct Limits {
    pub rules: Vec<rules::LimitRule>,
    pub requests: Limiter,
    pub inflight: local::LocalLimiter,
}

impl Limits {
    /// `ca_file`: the CA bundle a `rediss://` backend's certificate must chain to.
    pub fn new(
        config: &crate::config::LimitsConfig,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let windows: Vec<Duration> = config
            .rules
            .iter()
            .flat_map(|r| {
                r.requests
                    .iter()
                    .chain(r.tokens.iter())
                    .flat_map(|s| s.0.iter().map(|w| w.window))
            })
            .collect();
        let requests = match &config.backend {
            crate::config::LimitBackendConfig::Memory => {
                Limiter::Local(local::LocalLimiter::new(windows))
            }
            crate::config::LimitBackendConfig::Redis(url) => Limiter::Redis {
                redis: Box::new(redis::RedisLimiter::new(
                    url,
                    config.backend_timeout,
                    config.concurrency_lease,
                    ca_file,
                )?),
                policy: config.on_backend_error,
            },
        };
        Ok(Limits {
            rules: config.rules.clone(),
            requests,
            inflight: local::LocalLimiter::new([]),
        })
    }
}

pub enum Limiter {
    Local(local::LocalLimiter),
    Redis {
        redis: Box<redis::RedisLimiter>,
        policy: OnBackendError,
    },
}

/// A concurrency slot: held in this process's counters, or a lease in Redis (given back in
/// `logging`; renewed until then).
pub enum Slot {
    Local(pingora_limits::inflight::Guard),
    Shared(redis::SharedSlot),
}

/// The answer to a request for a concurrency slot.
pub enum Admission {
    /// Go ahead, holding this slot (none when the shared backend is down and the policy
    /// admits anyway).
    Admitted(Option<Slot>),
    /// Every slot is taken.
    Full,
    /// The shared backend did not answer and the policy is `deny`.
    Unavailable,
}

impl Limits {
    /// Calls to the shared (Redis) backend that failed or timed out so far.
    pub fn backend_errors(&self) -> Option<u64> {
        match &self.requests {
            Limiter::Local(_) => None,
            Limiter::Redis { redis, .. } => Some(redis.errors()),
        }
    }

    /// Take a slot of `bucket` (cluster-wide with the Redis backend). A Redis that does not
    /// answer follows `on_backend_error`.
    pub async fn enter(&self, bucket: &str, max: u32) -> Admission {
        match &self.requests {
            Limiter::Local(_) => match self.inflight.enter(bucket, max) {
                Some(g) => Admission::Admitted(Some(Slot::Local(g))),
                None => Admission::Full,
            },
            Limiter::Redis { redis, policy } => match redis.enter(bucket, max).await {
                Ok(Some(slot)) => Admission::Admitted(Some(Slot::Shared(slot))),
                Ok(None) => Admission::Full,
                Err(e) => {
                    log::warn!("concurrency limiter backend unavailable ({e}); policy: {policy:?}");
                    match policy {
                        OnBackendError::Allow => Admission::Admitted(None),
                        OnBackendError::Deny => Admission::Unavailable,
                    }
                }
            },
        }
    }

    /// Give a slot back (local slots go back when dropped).
    pub async fn leave(&self, slot: Slot) {
        if let (Slot::Shared(slot), Limiter::Redis { redis, .. }) = (slot, &self.requests) {
            if let Err(e) = redis.leave(slot).await {
                log::warn!("concurrency slot not given back (limiter backend: {e}); it expires with its lease");
            }
        }
    }
}

impl Limiter {
    /// Settle a reservation with what was really used (`delta` = used − reserved).
    pub async fn adjust(&self, bucket: &str, spec: &spec::LimitSpec, delta: i64) {
        match self {
            Limiter::Local(l) => l.adjust(bucket, spec, delta),
            Limiter::Redis { redis, .. } => {
                if let Err(e) = redis.adjust(bucket, spec, delta).await {
                    log::warn!("token settlement lost (limiter backend: {e})");
                }
            }
        }
    }
}

/// A limiter's answer when the backend failed: the policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Decided(Decision),
    BackendDown { allowed: bool },
}

impl Limiter {
    pub async fn check(&self, bucket: &str, spec: &spec::LimitSpec) -> Verdict {
        self.check_n(bucket, spec, 1).await
    }

    /// Count `n` events (a token reservation) if every window has room.
    pub async fn check_n(&self, bucket: &str, spec: &spec::LimitSpec, n: u64) -> Verdict {
        match self {
            Limiter::Local(l) => Verdict::Decided(l.check_n(bucket, spec, n)),
            Limiter::Redis { redis, policy } => match redis.check(bucket, spec, n).await {
                Ok(d) => Verdict::Decided(d),
                Err(e) => {
                    log::warn!("rate limiter backend unavailable ({e}); policy: {policy:?}");
                    Verdict::BackendDown {
                        allowed: *policy == OnBackendError::Allow,
                    }
                }
            },
        }
    }
}
