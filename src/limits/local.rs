//! The single-node backend: pingora-limits estimators. `Rate` counts events per fixed window in a
//! count-min sketch, which never under-counts and over-counts only when keys collide in every
//! row. With 4 rows of 2^17 slots, a key shares all four cells with another given key with
//! probability (1/2^17)^4, and with *some* key among 10,000 others with probability about
//! (10,000/2^17)^4 ≈ 3·10^-5 — and even then it is over-counted by that key's count only.
//! Memory is allocated zeroed, so untouched slots cost no resident memory.

use super::spec::LimitSpec;
use super::Decision;
use pingora_limits::inflight::{Guard, Inflight};
use pingora_limits::rate::Rate;
use std::collections::HashMap;
use std::time::Duration;

const HASHES: usize = 4;
const SLOTS: usize = 1 << 17;

pub struct LocalLimiter {
    /// One estimator per distinct window length used by the rules.
    rates: HashMap<Duration, Rate>,
    inflight: Inflight,
}

impl LocalLimiter {
    pub fn new(windows: impl IntoIterator<Item = Duration>) -> Self {
        let rates = windows
            .into_iter()
            .map(|w| (w, Rate::new_with_estimator_config(w, HASHES, SLOTS)))
            .collect();
        LocalLimiter {
            rates,
            inflight: Inflight::new(),
        }
    }

    /// Count one request in every window of `spec`; refused requests are not counted.
    pub fn check(&self, bucket: &str, spec: &LimitSpec) -> Decision {
        let mut decision = Decision::unlimited();
        for (i, w) in spec.0.iter().enumerate() {
            let Some(rate) = self.rates.get(&w.window) else {
                continue;
            };
            let count = rate.observe(&bucket, 1).max(0) as u64;
            let reset = rate.rate_with(&bucket, |r| {
                w.window
                    .mul_f64((1.0 - r.current_interval_fraction).clamp(0.0, 1.0))
            });
            if count > w.count {
                // Undo this request in every window it was counted in.
                for done in &spec.0[..=i] {
                    if let Some(r) = self.rates.get(&done.window) {
                        r.observe(&bucket, -1);
                    }
                }
                return Decision::refused(w.count, reset);
            }
            decision.tighten(w.count, w.count - count, reset);
        }
        decision
    }

    /// Enter `bucket` if fewer than `max` requests are in it; the guard leaves on drop.
    pub fn enter(&self, bucket: &str, max: u32) -> Option<Guard> {
        let (guard, now) = self.inflight.incr(bucket, 1);
        (now <= i64::from(max) as isize).then_some(guard)
    }
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
    fn concurrency_is_released_on_drop() {
        let l = LocalLimiter::new([]);
        let a = l.enter("k", 2).unwrap();
        let _b = l.enter("k", 2).unwrap();
        assert!(l.enter("k", 2).is_none());
        drop(a);
        assert!(l.enter("k", 2).is_some());
    }
}
