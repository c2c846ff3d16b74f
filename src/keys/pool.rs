//! A pool of upstream keys: weighted round-robin over the healthy ones. A key the upstream
//! rejects (401/403) leaves the rotation; one it throttles (429) cools down for `Retry-After`
//! (bounded). All state is atomics: picking a key takes no lock.

use crate::config::{KeyPlacement, KeyPoolConfig};
use once_cell::sync::Lazy;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Cool-down when a 429 carries no usable `Retry-After`.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(10);
/// Upper bound on any cool-down, whatever the upstream asks for.
const MAX_COOLDOWN: Duration = Duration::from_secs(300);

static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

pub struct PoolKey {
    /// For logs and metrics: the configured name or `k-<hash prefix>`.
    pub id: String,
    secret: String,
    /// Rejected by the upstream (401/403): out of rotation until restart or reload.
    disabled: AtomicBool,
    /// Throttled (429): skipped until this time (ms since `EPOCH`).
    cool_until: AtomicU64,
}

impl PoolKey {
    /// The key as the upstream expects it, sensitive so that Pingora's header dumps hide it.
    pub fn header_value(&self, placement: &KeyPlacement) -> Option<http::HeaderValue> {
        let text = match placement {
            KeyPlacement::Bearer => format!("Bearer {}", self.secret),
            _ => self.secret.clone(),
        };
        let mut v = http::HeaderValue::from_str(&text).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }
}

/// What the upstream said about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict {
    Rejected,
    Throttled(Option<Duration>),
}

pub struct KeyPool {
    pub name: String,
    pub keys: Vec<PoolKey>,
    /// Key indices in smooth weighted round-robin order (one cycle).
    schedule: Vec<usize>,
    cursor: AtomicUsize,
}

impl KeyPool {
    pub fn new(config: &KeyPoolConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .map(|k| PoolKey {
                id: k.name.clone().unwrap_or_else(|| super::key_id(&k.key.0)),
                secret: k.key.0.clone(),
                disabled: AtomicBool::new(false),
                cool_until: AtomicU64::new(0),
            })
            .collect();
        let weights: Vec<u32> = config.keys.iter().map(|k| k.weight.max(1)).collect();
        KeyPool {
            name: config.name.clone(),
            keys,
            schedule: smooth_schedule(&weights),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next healthy key, or `None` when every key is disabled or cooling down (then the
    /// time until the first one is back, if any is only cooling).
    pub fn pick(&self) -> Result<usize, Option<Duration>> {
        let n = self.schedule.len();
        if n == 0 {
            return Err(None);
        }
        let now = now_ms();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for step in 0..n {
            let i = self.schedule[(start + step) % n];
            let k = &self.keys[i];
            if !k.disabled.load(Ordering::Relaxed) && k.cool_until.load(Ordering::Relaxed) <= now {
                return Ok(i);
            }
        }
        let soonest = self
            .keys
            .iter()
            .filter(|k| !k.disabled.load(Ordering::Relaxed))
            .map(|k| k.cool_until.load(Ordering::Relaxed).saturating_sub(now))
            .min();
        Err(soonest.map(Duration::from_millis))
    }

    /// Whether some key other than `except` could be picked now.
    pub fn has_other_healthy(&self, except: usize) -> bool {
        let now = now_ms();
        self.keys.iter().enumerate().any(|(i, k)| {
            i != except
                && !k.disabled.load(Ordering::Relaxed)
                && k.cool_until.load(Ordering::Relaxed) <= now
        })
    }

    pub fn report(&self, index: usize, verdict: KeyVerdict) {
        let Some(k) = self.keys.get(index) else {
            return;
        };
        match verdict {
            KeyVerdict::Rejected => {
                if !k.disabled.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "upstream rejected key {} of pool {}: removed from rotation",
                        k.id,
                        self.name
                    );
                }
            }
            KeyVerdict::Throttled(retry_after) => {
                let wait = retry_after.unwrap_or(DEFAULT_COOLDOWN).min(MAX_COOLDOWN);
                k.cool_until
                    .fetch_max(now_ms() + wait.as_millis() as u64, Ordering::Relaxed);
                log::info!(
                    "upstream throttled key {} of pool {}: cooling down for {:?}",
                    k.id,
                    self.name,
                    wait
                );
            }
        }
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

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP requires senders to use.
fn httpdate_parse(v: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as u64
        + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 || year < 1970 {
        return None;
    }
    let days = crate::chatlog::days_from_civil(year as i64, month as u32, day as u32);
    let secs = u64::try_from(days).ok()? * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, UpstreamKeyConfig};

    fn pool(weights: &[u32]) -> KeyPool {
        KeyPool::new(&KeyPoolConfig {
            name: "p".into(),
            keys: weights
                .iter()
                .enumerate()
                .map(|(i, w)| UpstreamKeyConfig {
                    key: Secret(format!("sk-{i}")),
                    name: None,
                    weight: *w,
                })
                .collect(),
        })
    }

    #[test]
    fn weighted_round_robin_is_smooth() {
        assert_eq!(smooth_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        let p = pool(&[1, 1]);
        let picks: Vec<usize> = (0..4).map(|_| p.pick().unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }

    #[test]
    fn rejected_keys_leave_and_throttled_keys_cool_down() {
        let p = pool(&[1, 1, 1]);
        p.report(0, KeyVerdict::Rejected);
        p.report(1, KeyVerdict::Throttled(Some(Duration::from_secs(60))));
        for _ in 0..6 {
            assert_eq!(p.pick(), Ok(2));
        }
        assert!(!p.has_other_healthy(2));
        p.report(2, KeyVerdict::Throttled(None));
        let wait = p.pick().unwrap_err().unwrap();
        assert!(wait <= DEFAULT_COOLDOWN && wait > Duration::from_secs(5));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert!(parse_retry_after("soon").is_none());
        let later = httpdate_parse("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            later
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            784111777
        );
    }
}
