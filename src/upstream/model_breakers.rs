//! Circuit breakers per (upstream, model), beside the upstream's own. A provider often fails one
//! model while serving the others (an overloaded model, a deployment being rolled): its 5xx and
//! timeouts then open that model's breaker only, and a fallback model answered by the same
//! upstream neither resets that count nor is skipped with it. Failures that say the upstream as
//! a whole is unreachable (connect failures, resets) count on the upstream's breaker instead.
//!
//! A breaker exists only for a model that failed: the map stays empty on a healthy upstream, and
//! the common path (no entry) reads one atomic. It is bounded: at most `MAX_MODELS` models per
//! upstream are tracked; when full, healthy entries are dropped, and a model that finds no room
//! is judged by the upstream's breaker alone. Client-named models cannot grow it without bound.

use super::breaker::{Breaker, BreakerState, Transition};
use crate::config::BreakerConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Models tracked per upstream at most.
pub(crate) const MAX_MODELS: usize = 64;

pub(crate) struct ModelBreakers {
    config: BreakerConfig,
    map: RwLock<HashMap<Box<str>, Arc<Breaker>>>,
    /// The map holds at least one entry (the fast path skips the lock when it does not).
    any: AtomicBool,
}

impl ModelBreakers {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        ModelBreakers {
            config,
            map: RwLock::new(HashMap::new()),
            any: AtomicBool::new(false),
        }
    }

    fn get(&self, model: &str) -> Option<Arc<Breaker>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(model).cloned()
    }

    /// The state of `model`'s breaker (closed when it has none).
    pub(crate) fn state(&self, model: &str, now: Instant) -> BreakerState {
        self.get(model)
            .map_or(BreakerState::Closed, |b| b.state(now))
    }

    /// May a request for `model` try the upstream now? (Takes a half-open breaker's probe.)
    pub(crate) fn try_acquire(&self, model: &str, now: Instant) -> bool {
        self.get(model).is_none_or(|b| b.try_acquire(now))
    }

    /// The outcome of an attempt for `model`. A success for a model without a breaker changes
    /// nothing; a failure creates one when there is room.
    pub(crate) fn record(&self, model: &str, success: bool, now: Instant) -> Option<Transition> {
        if let Some(b) = self.get(model) {
            return b.record(success, now);
        }
        if success {
            return None;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_MODELS {
            map.retain(|_, b| !b.is_healthy());
        }
        if map.len() >= MAX_MODELS && !map.contains_key(model) {
            return None;
        }
        let b = map
            .entry(model.into())
            .or_insert_with(|| Arc::new(Breaker::new(self.config, now)))
            .clone();
        self.any.store(true, Ordering::Release);
        drop(map);
        b.record(false, now)
    }

    /// How many models' breakers are open (half-open ones included) now: a gauge that names no
    /// model (model names may come from clients).
    pub(crate) fn open_count(&self, now: Instant) -> usize {
        if !self.any.load(Ordering::Acquire) {
            return 0;
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter(|b| b.state(now) != BreakerState::Closed)
            .count()
    }

    pub(crate) fn open_for(&self) -> std::time::Duration {
        self.config.open_for
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failures: 2,
            error_ratio: 0.0,
            min_requests: 4,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(2),
        }
    }

    #[test]
    fn each_model_opens_alone() {
        let t0 = Instant::now();
        let m = ModelBreakers::new(config());
        assert!(m.try_acquire("a", t0));
        assert_eq!(m.record("b", true, t0), None);
        assert_eq!(m.record("a", false, t0), None);
        assert_eq!(m.record("b", true, t0), None, "b's success is not a's");
        assert_eq!(m.record("a", false, t0), Some(Transition::Opened));
        assert!(!m.try_acquire("a", t0));
        assert!(m.try_acquire("b", t0));
        assert_eq!(m.state("a", t0), BreakerState::Open);
        let later = t0 + Duration::from_secs(2);
        assert!(m.try_acquire("a", later), "the probe");
        assert_eq!(m.open_count(later), 1);
        assert_eq!(m.record("a", true, later), Some(Transition::Closed));
        assert_eq!(m.open_count(later), 0);
    }

    #[test]
    fn the_map_is_bounded() {
        let t0 = Instant::now();
        let m = ModelBreakers::new(config());
        for i in 0..MAX_MODELS * 3 {
            let name = format!("m{i}");
            m.record(&name, false, t0);
            m.record(&name, false, t0);
        }
        let len = m.map.read().unwrap().len();
        assert_eq!(len, MAX_MODELS);
        // Healthy entries make room.
        for i in 0..MAX_MODELS {
            let name = format!("m{i}");
            m.record(&name, true, t0 + Duration::from_secs(2));
        }
        m.record("new", false, t0);
        assert!(m.get("new").is_some());
    }
}
