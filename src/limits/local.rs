//! The single-node backend: pingora-limits estimators. `Rate` counts events per fixed window in a
//! count-min sketch, which never under-counts and over-counts only when keys collide in every
//! row. With 5 rows of 2^17 slots and n keys active in a window, a key is over-counted only if
//! each of its 5 cells is shared with another key: probability about (1 - e^(-n/2^17))^5, for
//! 10,000 keys ≈ 2·10^-6 per key (about one key in 50 windows), and then only by the counts of
//! the keys it shares cells with. The price is memory: 10 MiB per window length in use (the
//! current and the previous window's estimators), allocated only when a rule uses that length.

use super::spec::LimitSpec;
use super::Decision;
use once_cell::sync::Lazy;
use pingora_limits::estimator::Estimator;
use pingora_limits::inflight::{Guard, Inflight};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const HASHES: usize = 5;
const SLOTS: usize = 1 << 17;

static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);

/// Fixed windows of one length, aligned on a process-wide clock: the count-min estimator of the
/// current window and of the one before it (cleared when reused). pingora-limits' `Rate` does
/// the same but starts windows at the first event after a reset and keeps the boundary private;
/// aligned windows give every check its reset time by arithmetic, with one clock read.
struct Windows {
    ms: u64,
    estimators: [Estimator; 2],
    /// The window index the estimators are set up for.
    current: AtomicU64,
}

impl Windows {
    fn new(window: Duration) -> Self {
        Windows {
            ms: (window.as_millis() as u64).max(1),
            estimators: [Estimator::new(HASHES, SLOTS), Estimator::new(HASHES, SLOTS)],
            current: AtomicU64::new(0),
        }
    }

    /// The estimator of the window containing `now_ms`, cleared first if it last served an
    /// older window; and the time until that window ends.
    fn at(&self, now_ms: u64) -> (&Estimator, Duration) {
        let idx = now_ms / self.ms;
        let seen = self.current.load(Ordering::Acquire);
        if idx > seen
            && self
                .current
                .compare_exchange(seen, idx, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.estimators[(idx % 2) as usize].reset();
        }
        let reset = Duration::from_millis((idx + 1) * self.ms - now_ms);
        (&self.estimators[(idx % 2) as usize], reset)
    }
}

pub struct LocalLimiter {
    /// One pair of estimators per distinct window length used by the rules.
    windows: HashMap<Duration, Windows>,
    inflight: Inflight,
}

impl LocalLimiter {
    pub fn new(windows: impl IntoIterator<Item = Duration>) -> Self {
        let windows = windows.into_iter().map(|w| (w, Windows::new(w))).collect();
        LocalLimiter {
            windows,
            inflight: Inflight::new(),
        }
    }

    /// Count one request in every window of `spec`; refused requests are not counted.
    pub fn check(&self, bucket: &str, spec: &LimitSpec) -> Decision {
        self.check_n(bucket, spec, 1)
    }

    /// Count `n` events (requests, or reserved tokens) in every window of `spec`, if every
    /// window has room for them; otherwise count nothing.
    pub fn check_n(&self, bucket: &str, spec: &LimitSpec, n: u64) -> Decision {
        let bucket = hash_bucket(bucket);
        let n = n.min(isize::MAX as u64) as isize;
        let now_ms = EPOCH.elapsed().as_millis() as u64;
        let mut decision = Decision::unlimited();
        let mut counted: [Option<&Estimator>; 8] = [None; 8];
        for (i, w) in spec.0.iter().enumerate() {
            let Some(windows) = self.windows.get(&w.window) else {
                continue;
            };
            let (estimator, reset) = windows.at(now_ms);
            let count = estimator.incr(bucket, n).max(0) as u64;
            if let Some(slot) = counted.get_mut(i) {
                *slot = Some(estimator);
            }
            if count > w.count {
                // Refused: undo this one in every window.
                for e in counted.iter().flatten() {
                    e.decr(bucket, n);
                }
                return Decision::refused(w.count, reset);
            }
            decision.tighten(w.count, w.count - count, reset);
        }
        decision
    }

    /// Correct what was counted (a token reservation settled with the real usage): `delta`
    /// may be negative. Applies to the current windows.
    pub fn adjust(&self, bucket: &str, spec: &LimitSpec, delta: i64) {
        let bucket = hash_bucket(bucket);
        let now_ms = EPOCH.elapsed().as_millis() as u64;
        for w in &spec.0 {
            if let Some(windows) = self.windows.get(&w.window) {
                windows.at(now_ms).0.incr(bucket, delta as isize);
            }
        }
    }

    /// Enter `bucket` if fewer than `max` requests are in it; the guard leaves on drop.
    pub fn enter(&self, bucket: &str, max: u32) -> Option<Guard> {
        let (guard, now) = self.inflight.incr(bucket, 1);
        (now <= i64::from(max) as isize).then_some(guard)
    }
}

/// Hash the bucket name once; the estimator then hashes a u64 per row, not the string.
fn hash_bucket(bucket: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(bucket, &mut h);
    std::hash::Hasher::finish(&h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::spec::parse_limit;

    #[test]
    fn admits_exactly_the_limit_and_refusals_do_not_count() {
        let spec = parse_limit("3/minute;5/hour").unwrap();
        let l = LocalLimiter::new(spec.0.iter().map(|w| w.window));
        let admitted = (0..10).filter(|_| l.check("a", &spec).allowed).count();
        assert_eq!(admitted, 3);
        let d = l.check("a", &spec);
        assert!(!d.allowed && d.limit == 3 && d.reset <= Duration::from_secs(60));
        // Other buckets are independent.
        assert!(l.check("b", &spec).allowed);
    }

    #[test]
    fn ten_thousand_keys_do_not_throttle_each_other() {
        let spec = parse_limit("2/minute").unwrap();
        let l = LocalLimiter::new([Duration::from_secs(60)]);
        for i in 0..10_000 {
            let b = format!("key:{i}");
            assert!(l.check(&b, &spec).allowed);
            assert!(
                l.check(&b, &spec).allowed,
                "key {i} throttled by a collision"
            );
        }
    }

    #[test]
    fn weighted_counts_and_settlement() {
        let spec = parse_limit("100/minute").unwrap();
        let l = LocalLimiter::new([Duration::from_secs(60)]);
        assert!(l.check_n("k", &spec, 60).allowed);
        assert!(!l.check_n("k", &spec, 60).allowed, "60 + 60 > 100");
        l.adjust("k", &spec, -40); // the first reservation used only 20
        let d = l.check_n("k", &spec, 60);
        assert!(d.allowed && d.remaining == 20);
    }

    #[test]
    fn concurrency_is_released_on_drop() {
        let l = LocalLimiter::new([]);
        let a = l.enter("k", 2).unwrap();
        let _b = l.enter("k", 2).unwrap();
        assert!(l.enter("k", 2).is_none());
        drop(a);
        assert!(l.enter("k", 2).is_some());
    }
}
