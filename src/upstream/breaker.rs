//! A circuit breaker (one per upstream, and one per failing model of an upstream: see
//! `model_breakers.rs`): consecutive failures (or a failure ratio over a window) open
//! it; while open, requests skip the upstream and go to the fallback; after `open_for` one probe
//! request may try it (half-open), and its success closes the breaker again. A flapping primary
//! is thus served by the fallback during its outage and is back in use within `open_for` of
//! recovering, without a retry storm against it in between.
//!
//! Pure state behind one mutex (held for a few comparisons); the clock is passed in, so the
//! transitions are unit-tested without sleeping.

use crate::config::BreakerConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    Closed,
    Open,
    /// Open time is over; one probe is (or may be) on its way.
    HalfOpen,
}

impl BreakerState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

struct Inner {
    state: BreakerState,
    consecutive: u32,
    opened_at: Option<Instant>,
    /// A half-open probe is in flight; others keep skipping the upstream.
    probing: bool,
    window_start: Instant,
    window_total: u32,
    window_failed: u32,
}

pub(crate) struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    /// Closed with no failure since the last success: the state of a healthy upstream, read
    /// without the lock on every request (successes then need no lock either, unless a ratio
    /// is being counted).
    healthy: AtomicBool,
}

/// What `record` changed, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened,
    Closed,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig, now: Instant) -> Self {
        Breaker {
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive: 0,
                opened_at: None,
                probing: false,
                window_start: now,
                window_total: 0,
                window_failed: 0,
            }),
            healthy: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state as of `now` (an open breaker whose time is over reads as half-open).
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        let inner = self.lock();
        Self::current(&self.config, &inner, now)
    }

    fn current(config: &BreakerConfig, inner: &Inner, now: Instant) -> BreakerState {
        match (inner.state, inner.opened_at) {
            (BreakerState::Open, Some(at)) if now.duration_since(at) >= config.open_for => {
                BreakerState::HalfOpen
            }
            (state, _) => state,
        }
    }

    /// May a request try this upstream now? Closed: yes. Open: no. Half-open: the first caller
    /// becomes the probe; the others are told no until it reports.
    pub(crate) fn try_acquire(&self, now: Instant) -> bool {
        if self.healthy.load(Ordering::Acquire) {
            return true;
        }
        let mut inner = self.lock();
        match Self::current(&self.config, &inner, now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                // A probe that never reported (its request was dropped) must not wedge the
                // breaker: after another open period a new probe may go.
                let stale = inner
                    .opened_at
                    .is_some_and(|at| now.duration_since(at) >= self.config.open_for * 2);
                if inner.probing && !stale {
                    return false;
                }
                inner.state = BreakerState::HalfOpen;
                inner.probing = true;
                inner.opened_at = Some(now.checked_sub(self.config.open_for).unwrap_or(now));
                true
            }
        }
    }

    /// The outcome of one attempt against the upstream.
    pub(crate) fn record(&self, success: bool, now: Instant) -> Option<Transition> {
        let c = &self.config;
        if success && c.error_ratio == 0.0 && self.healthy.load(Ordering::Acquire) {
            return None;
        }
        let mut inner = self.lock();
        let t = self.record_locked(&mut inner, success, now);
        let healthy = inner.state == BreakerState::Closed && inner.consecutive == 0;
        self.healthy.store(healthy, Ordering::Release);
        t
    }

    fn record_locked(&self, inner: &mut Inner, success: bool, now: Instant) -> Option<Transition> {
        let c = &self.config;
        if now.duration_since(inner.window_start) >= c.window {
            inner.window_start = now;
            inner.window_total = 0;
            inner.window_failed = 0;
        }
        inner.window_total += 1;
        if success {
            inner.consecutive = 0;
            inner.probing = false;
            if inner.state != BreakerState::Closed {
                inner.state = BreakerState::Closed;
                inner.opened_at = None;
                return Some(Transition::Closed);
            }
            return None;
        }
        inner.window_failed += 1;
        inner.consecutive += 1;
        let by_count = c.failures > 0 && inner.consecutive >= c.failures;
        let by_ratio = c.error_ratio > 0.0
            && inner.window_total >= c.min_requests
            && f64::from(inner.window_failed) >= c.error_ratio * f64::from(inner.window_total);
        let was_closed = inner.state == BreakerState::Closed;
        if inner.state == BreakerState::HalfOpen || (was_closed && (by_count || by_ratio)) {
            inner.state = BreakerState::Open;
            inner.opened_at = Some(now);
            inner.probing = false;
            return was_closed.then_some(Transition::Opened);
        }
        None
    }

    /// Closed with no failure since the last success.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub(crate) fn open_for(&self) -> Duration {
        self.config.open_for
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            error_ratio: 0.0,
            min_requests: 4,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(2),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let t0 = Instant::now();
        let b = Breaker::new(config(), t0);
        assert!(b.try_acquire(t0));
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(true, t0), None); // a success resets the count
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(false, t0), Some(Transition::Opened));
        assert!(!b.try_acquire(t0 + Duration::from_secs(1)));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.try_acquire(later), "the probe");
        assert!(!b.try_acquire(later), "only one probe");
        // The probe fails: open again for a full period.
        assert_eq!(b.record(false, later), None);
        assert!(!b.try_acquire(later + Duration::from_secs(1)));
        let again = later + Duration::from_secs(2);
        assert!(b.try_acquire(again));
        assert_eq!(b.record(true, again), Some(Transition::Closed));
        assert!(b.try_acquire(again));
        assert_eq!(b.state(again), BreakerState::Closed);
    }

    #[test]
    fn opens_on_error_ratio() {
        let t0 = Instant::now();
        let b = Breaker::new(
            BreakerConfig {
                failures: 0,
                error_ratio: 0.5,
                ..config()
            },
            t0,
        );
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(true, t0), None);
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(true, t0), None);
        // Five requests, three failed: over the ratio, with min_requests reached.
        assert_eq!(b.record(false, t0), Some(Transition::Opened));
    }

    #[test]
    fn a_lost_probe_does_not_wedge_the_breaker() {
        let t0 = Instant::now();
        let b = Breaker::new(config(), t0);
        for _ in 0..3 {
            b.record(false, t0);
        }
        let t1 = t0 + Duration::from_secs(2);
        assert!(b.try_acquire(t1));
        assert!(!b.try_acquire(t1 + Duration::from_secs(1)));
        assert!(b.try_acquire(t1 + Duration::from_secs(2)));
    }
}
