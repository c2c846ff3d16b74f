//! A pool of upstream keys: weighted round-robin over the usable ones, and what the upstream's
//! answers say about each key.
//!
//! A key leaves the rotation only on evidence about the key, never on one client's word: a 401
//! that says the key itself is invalid, or refusals (401/403) from `refusals` distinct clients
//! within `refusal_window` with no answer accepted (2xx) in between. A client's own mistake (an
//! endpoint its scope lacks, a header the upstream rejects) refuses that client whatever key is
//! sent, so it counts once however often it is repeated. A key out of the rotation gets one live
//! request after `probe_after` (doubling per refused probe, up to `probe_max`); an accepted
//! probe brings it back. A 429 cools the key for the model it was about (`Retry-After`, else
//! `cooldown`; at most `cooldown_max`): other models still use it.
//!
//! Picking takes no lock: the state it reads is atomics. The locks below are taken only after a
//! refusal or while a per-model cool-down runs.

use crate::config::{KeyHealthConfig, KeyPlacement, KeyPoolConfig};
use once_cell::sync::Lazy;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Per-model cool-downs kept per key; past it the one ending soonest is forgotten (model names
/// come from clients, so their number must be bounded).
const MAX_COOLING_MODELS: usize = 64;

static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A model's tag in the cool-down table (a hash: no allocation per request).
pub fn model_tag(model: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    model.hash(&mut h);
    h.finish()
}

pub struct PoolKey {
    /// For logs and metrics: the configured name or `k-<hash prefix>`.
    pub id: String,
    secret: String,
    /// `Bearer <secret>` and the bare secret, built once: an attempt hands out a clone (a
    /// reference count), never a new copy. `None`: not a valid header value.
    bearer: Option<http::HeaderValue>,
    bare: Option<http::HeaderValue>,
    /// Out of the rotation: only probes use it.
    disabled: AtomicBool,
    /// When a disabled key may be probed next (ms since `EPOCH`).
    probe_at: AtomicU64,
    /// The current wait between probes (ms).
    probe_backoff: AtomicU64,
    /// A probe was handed out and has not been answered.
    probing: AtomicBool,
    /// Throttled for every model (a 429 to a request without one) until then.
    cool_until: AtomicU64,
    /// The latest end of any per-model cool-down: before it, `cooling` must be looked at.
    models_cool_until: AtomicU64,
    /// Per-model cool-downs: (model tag, until).
    cooling: Mutex<Vec<(u64, u64)>>,
    /// Recent refusals: (client, when), one entry per client.
    refusals: Mutex<Vec<(u64, u64)>>,
    /// `refusals` may be non-empty (an accepted answer skips the lock otherwise).
    refused: AtomicBool,
}

impl PoolKey {
    fn new(id: String, secret: String) -> Self {
        PoolKey {
            id,
            bearer: sensitive_value(&["Bearer ", &secret]),
            bare: sensitive_value(&[&secret]),
            secret,
            disabled: AtomicBool::new(false),
            probe_at: AtomicU64::new(0),
            probe_backoff: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            cool_until: AtomicU64::new(0),
            models_cool_until: AtomicU64::new(0),
            cooling: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            refused: AtomicBool::new(false),
        }
    }

    /// The key as the upstream expects it, sensitive so that Pingora's header dumps hide it:
    /// a clone of the value built with the key (no allocation, no copy of the secret).
    pub fn header_value(&self, placement: &KeyPlacement) -> Option<http::HeaderValue> {
        match placement {
            KeyPlacement::Bearer => self.bearer.clone(),
            _ => self.bare.clone(),
        }
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// How long until this key may serve `model` (zero: now).
    fn cooling_for(&self, model: Option<u64>, now: u64) -> u64 {
        let whole = self.cool_until.load(Ordering::Relaxed).saturating_sub(now);
        let Some(tag) = model else {
            return whole;
        };
        if self.models_cool_until.load(Ordering::Relaxed) <= now {
            return whole;
        }
        let this = lock(&self.cooling)
            .iter()
            .find(|(t, _)| *t == tag)
            .map_or(0, |(_, until)| until.saturating_sub(now));
        whole.max(this)
    }

    /// For metrics: 0 in rotation, 1 cooling down after a 429 (for
    /// every model or some), 2 rejected (out of rotation).
    pub fn health(&self) -> u8 {
        if self.disabled.load(Ordering::Relaxed) {
            2
        } else if self
            .cool_until
            .load(Ordering::Relaxed)
            .max(self.models_cool_until.load(Ordering::Relaxed))
            > now_ms()
        {
            1
        } else {
            0
        }
    }
}

/// `parts` joined as a sensitive header value whose clones share one buffer.
fn sensitive_value(parts: &[&str]) -> Option<http::HeaderValue> {
    let bytes = bytes::Bytes::from(parts.concat());
    let mut v = http::HeaderValue::from_maybe_shared(bytes).ok()?;
    v.set_sensitive(true);
    // A `Bytes` made from a `Vec` becomes shared on its first clone, which allocates: done
    // here, once, so that no request pays it.
    drop(v.clone());
    Some(v)
}

/// What the upstream said about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict {
    /// A 2xx: the key works (a probe brings it back; recent refusals are forgotten).
    Accepted,
    /// 401/403 to a request from `client` (an opaque id: forward key and address).
    Refused { client: u64 },
    /// A 401 whose body says the key itself is invalid.
    Invalid,
    /// 429 for `model` (a [`model_tag`]; `None`: the whole key), with the upstream's wait.
    Throttled {
        model: Option<u64>,
        retry_after: Option<Duration>,
    },
}

pub struct KeyPool {
    pub name: String,
    pub keys: Vec<PoolKey>,
    /// Key indices in smooth weighted round-robin order (one cycle).
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    /// Keys out of the rotation (when zero, no probe can be due).
    disabled: AtomicUsize,
    health: KeyHealthConfig,
}

impl KeyPool {
    pub fn new(config: &KeyPoolConfig) -> Self {
        Self::with_health(config, KeyHealthConfig::default())
    }

    pub fn with_health(config: &KeyPoolConfig, health: KeyHealthConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .map(|k| {
                let id = k.name.clone().unwrap_or_else(|| super::key_id(&k.key.0));
                PoolKey::new(id, k.key.0.clone())
            })
            .collect();
        let weights: Vec<u32> = config.keys.iter().map(|k| k.weight.max(1)).collect();
        KeyPool {
            name: config.name.clone(),
            keys,
            schedule: smooth_schedule(&weights),
            cursor: AtomicUsize::new(0),
            disabled: AtomicUsize::new(0),
            health,
        }
    }

    /// The key for the next attempt at `model` (a [`model_tag`]), never `avoid` (the key this
    /// request was just refused with): a disabled key whose probe is due, else the next usable
    /// key in the rotation. `Err`: none is usable now (with the time until the first cooling one
    /// is back, if any is only cooling).
    pub fn pick(
        &self,
        model: Option<u64>,
        avoid: Option<usize>,
    ) -> Result<usize, Option<Duration>> {
        let n = self.schedule.len();
        if n == 0 {
            return Err(None);
        }
        let now = now_ms();
        if self.disabled.load(Ordering::Relaxed) > 0 {
            if let Some(i) = self.claim_probe(model, avoid, now) {
                return Ok(i);
            }
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for step in 0..n {
            let i = self.schedule[(start + step) % n];
            let k = &self.keys[i];
            if Some(i) != avoid
                && !k.disabled.load(Ordering::Relaxed)
                && k.cooling_for(model, now) == 0
            {
                return Ok(i);
            }
        }
        let soonest = self
            .keys
            .iter()
            .filter(|k| !k.disabled.load(Ordering::Relaxed))
            .map(|k| k.cooling_for(model, now))
            .min();
        Err(soonest.map(Duration::from_millis))
    }

    /// A disabled key whose probe is due, taken by this request alone: until the probe's answer
    /// (or, if none comes, for one more backoff) no other request gets it.
    fn claim_probe(&self, model: Option<u64>, avoid: Option<usize>, now: u64) -> Option<usize> {
        self.keys.iter().enumerate().find_map(|(i, k)| {
            if Some(i) == avoid || !k.disabled.load(Ordering::Relaxed) {
                return None;
            }
            let due = k.probe_at.load(Ordering::Relaxed);
            if due > now || k.cooling_for(model, now) > 0 {
                return None;
            }
            let lease = now.saturating_add(k.probe_backoff.load(Ordering::Relaxed));
            k.probe_at
                .compare_exchange(due, lease, Ordering::AcqRel, Ordering::Relaxed)
                .ok()?;
            k.probing.store(true, Ordering::Relaxed);
            log::info!(
                "key {} of pool {}: probing it with a live request",
                k.id,
                self.name
            );
            Some(i)
        })
    }

    /// Whether some key other than `except` could serve `model` now.
    pub fn has_other_usable(&self, except: usize, model: Option<u64>) -> bool {
        let now = now_ms();
        self.keys.iter().enumerate().any(|(i, k)| {
            i != except && !k.disabled.load(Ordering::Relaxed) && k.cooling_for(model, now) == 0
        })
    }

    pub fn report(&self, index: usize, verdict: KeyVerdict) {
        let Some(k) = self.keys.get(index) else {
            return;
        };
        let now = now_ms();
        match verdict {
            KeyVerdict::Accepted => {
                if k.refused.swap(false, Ordering::Relaxed) {
                    lock(&k.refusals).clear();
                }
                if k.disabled.load(Ordering::Relaxed) && k.disabled.swap(false, Ordering::AcqRel) {
                    k.probing.store(false, Ordering::Relaxed);
                    self.disabled.fetch_sub(1, Ordering::Relaxed);
                    log::warn!(
                        "key {} of pool {}: accepted again, back in rotation",
                        k.id,
                        self.name
                    );
                }
            }
            KeyVerdict::Invalid => self.disable(k, now, "the upstream says it is invalid"),
            KeyVerdict::Refused { client } => {
                if k.disabled.load(Ordering::Relaxed) {
                    self.probe_refused(k, now);
                    return;
                }
                let window = ms(self.health.refusal_window);
                let distinct = {
                    let mut seen = lock(&k.refusals);
                    seen.retain(|(_, at)| now.saturating_sub(*at) < window);
                    match seen.iter_mut().find(|(c, _)| *c == client) {
                        Some(entry) => entry.1 = now,
                        None => seen.push((client, now)),
                    }
                    k.refused.store(true, Ordering::Relaxed);
                    seen.len()
                };
                if distinct >= self.health.refusals as usize {
                    lock(&k.refusals).clear();
                    self.disable(k, now, "refused for several clients in a row");
                }
            }
            KeyVerdict::Throttled { model, retry_after } => {
                let wait = retry_after
                    .unwrap_or(self.health.cooldown)
                    .min(self.health.cooldown_max);
                let until = now.saturating_add(ms(wait));
                match model {
                    None => {
                        k.cool_until.fetch_max(until, Ordering::Relaxed);
                    }
                    Some(tag) => {
                        let mut cooling = lock(&k.cooling);
                        cooling.retain(|(_, u)| *u > now);
                        match cooling.iter_mut().find(|(t, _)| *t == tag) {
                            Some(entry) => entry.1 = entry.1.max(until),
                            None => {
                                if cooling.len() >= MAX_COOLING_MODELS {
                                    if let Some(first) =
                                        (0..cooling.len()).min_by_key(|&i| cooling[i].1)
                                    {
                                        cooling.swap_remove(first);
                                    }
                                }
                                cooling.push((tag, until));
                            }
                        }
                        k.models_cool_until.fetch_max(until, Ordering::Relaxed);
                    }
                }
                log::info!(
                    "upstream throttled key {} of pool {}: cooling down for {:?}{}",
                    k.id,
                    self.name,
                    wait,
                    if model.is_some() {
                        " for that model"
                    } else {
                        ""
                    }
                );
            }
        }
    }

    /// Take a key out of the rotation; its first probe comes after `probe_after`.
    fn disable(&self, k: &PoolKey, now: u64, why: &str) {
        if k.disabled.load(Ordering::Relaxed) {
            self.probe_refused(k, now);
            return;
        }
        let backoff = ms(self.health.probe_after);
        k.probe_backoff.store(backoff, Ordering::Relaxed);
        k.probe_at
            .store(now.saturating_add(backoff), Ordering::Relaxed);
        k.probing.store(false, Ordering::Relaxed);
        if !k.disabled.swap(true, Ordering::AcqRel) {
            self.disabled.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "key {} of pool {}: {why}; removed from rotation, probed again in {:?}",
                k.id,
                self.name,
                self.health.probe_after
            );
        }
    }

    /// A probe was refused: the next one waits twice as long (up to `probe_max`).
    fn probe_refused(&self, k: &PoolKey, now: u64) {
        if !k.probing.swap(false, Ordering::Relaxed) {
            return;
        }
        let doubled = k.probe_backoff.load(Ordering::Relaxed).saturating_mul(2);
        let backoff = doubled.clamp(ms(self.health.probe_after), ms(self.health.probe_max));
        k.probe_backoff.store(backoff, Ordering::Relaxed);
        k.probe_at
            .store(now.saturating_add(backoff), Ordering::Relaxed);
        log::warn!(
            "key {} of pool {}: probe refused; next probe in {:?}",
            k.id,
            self.name,
            Duration::from_millis(backoff)
        );
    }
}

/// nginx's smooth weighted round-robin, unrolled into one cycle: weights 5,1,1 give
/// a a b a c a a rather than a a a a a b c.
fn smooth_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
        else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    out
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate_parse(v)?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// An HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`, or the obsolete RFC 850 and asctime forms
/// that RFC 9110 asks recipients to accept).
fn httpdate_parse(v: &str) -> Option<std::time::SystemTime> {
    httpdate::parse_http_date(v).ok()
}

#[cfg(test)]
mod tests;
