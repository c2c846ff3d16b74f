//! The cluster backend: every node counts in the same Redis, through one atomic Lua script per
//! request (one round trip). Windows are fixed and aligned on Redis's clock, so all nodes agree
//! on them; a request is counted only when every window admits it, so exactly `count` requests
//! pass per window across the cluster. Keys hold bucket names (route, tenant, key *ids*, client
//! IPs), never key material, and expire with their window.
//!
//! Concurrency slots are leases: per limit key a sorted set of holder ids (this process's random
//! id and a counter) scored by their deadline on Redis's clock. Taking a slot reaps expired
//! leases in the same script; a task renews this process's leases while their answers run;
//! giving a slot back removes its holder. A reply lost to a timeout (the script ran after we
//! stopped waiting), a release that failed, or a node that died leaves a lease nobody renews,
//! and it frees itself within `limits.concurrency_lease`.
//!
//! Each call is bounded by a short timeout and a failure makes every call skip Redis for a
//! moment (`redis_conn.rs`); the caller applies the configured `on_backend_error` policy. The
//! connection manager reconnects by itself once Redis is back.

use super::spec::LimitSpec;
use super::Decision;
use crate::redis_conn::LazyRedis;
use redis::Script;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local weight = tonumber(ARGV[#ARGV])
local n = #KEYS
local names = {}
local best_limit, best_remaining, best_reset = 0, -1, 0
for i = 1, n do
  local limit = tonumber(ARGV[2 * i - 1])
  local win = tonumber(ARGV[2 * i])
  local idx = math.floor(now / win)
  local name = KEYS[i] .. ':' .. idx
  names[i] = name
  local count = tonumber(redis.call('GET', name) or '0')
  local reset = (idx + 1) * win - now
  if count + weight > limit then
    return {0, limit, 0, reset}
  end
  local remaining = limit - count - weight
  if best_remaining < 0 or remaining < best_remaining then
    best_limit, best_remaining, best_reset = limit, remaining, reset
  end
end
for i = 1, n do
  redis.call('INCRBY', names[i], weight)
  redis.call('PEXPIRE', names[i], tonumber(ARGV[2 * i]) + 1000)
end
return {1, best_limit, best_remaining, best_reset}
"#;

/// Take a concurrency slot: a lease in the sorted set `KEYS[1]` (holder id → deadline, ms on
/// Redis's clock). Expired leases are dropped first, then the holder `ARGV[3]` is admitted for
/// `ARGV[2]` ms while fewer than `ARGV[1]` are held. The key itself expires with its newest lease.
const ENTER: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
"#;

/// Renew leases: holder `ARGV[i + 1]` of `KEYS[i]` gets `ARGV[1]` ms from now. `XX`: a lease
/// that was given back (or already reaped) is not taken again.
const RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[i + 1])
  if redis.call('PTTL', KEYS[i]) < lease then
    redis.call('PEXPIRE', KEYS[i], lease)
  end
end
return 1
"#;

/// Leases renewed per script call (one round trip each).
const RENEW_BATCH: usize = 500;

/// Settle a reservation: add `ARGV[#ARGV]` (possibly negative) to the current windows.
const ADJUST: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delta = tonumber(ARGV[#ARGV])
for i = 1, #KEYS do
  local win = tonumber(ARGV[i])
  local name = KEYS[i] .. ':' .. math.floor(now / win)
  redis.call('INCRBY', name, delta)
  redis.call('PEXPIRE', name, win + 1000)
end
return 1
"#;

pub struct RedisLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    redis: LazyRedis,
    script: Script,
    adjust: Script,
    enter: Script,
    renew: Script,
    prefix: String,
    lease: Duration,
    /// This process's part of holder ids (random), so nodes never share one.
    node: u64,
    next_id: AtomicU64,
    held: Mutex<Held>,
}

/// The leases this process holds, renewed by one task while there are any.
struct Held {
    /// Holder number → its slot key.
    slots: HashMap<u64, Arc<str>>,
    renewing: bool,
}

/// A concurrency slot held in Redis. [`RedisLimiter::leave`] gives it back; dropped without
/// that (a lost release), it is no longer renewed and expires with its lease.
pub struct SharedSlot {
    id: u64,
    key: Arc<str>,
    shared: Arc<Shared>,
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        lock(&self.shared.held).slots.remove(&self.id);
    }
}

fn lock(m: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedisLimiter {
    /// Calls to Redis that failed or timed out so far (metrics).
    pub fn errors(&self) -> u64 {
        self.shared.redis.errors()
    }

    /// `lease`: how long a concurrency slot outlives its holder's last renewal.
    pub fn new(
        url: &str,
        timeout: Duration,
        lease: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        Ok(RedisLimiter {
            shared: Arc::new(Shared {
                redis: LazyRedis::open(url, timeout, ca_file)?,
                script: Script::new(SCRIPT),
                adjust: Script::new(ADJUST),
                enter: Script::new(ENTER),
                renew: Script::new(RENEW),
                prefix: "llmf:rl:".into(),
                lease,
                node: rand::random(),
                next_id: AtomicU64::new(0),
                held: Mutex::new(Held {
                    slots: HashMap::new(),
                    renewing: false,
                }),
            }),
        })
    }

    /// Count `n` events in every window if all have room (one round trip).
    pub async fn check(&self, bucket: &str, spec: &LimitSpec, n: u64) -> Result<Decision, String> {
        let s = &*self.shared;
        s.redis
            .call(async {
                let mut conn = s.redis.get().await?;
                let mut invocation = s.script.prepare_invoke();
                for w in &spec.0 {
                    let ms = w.window.as_millis() as u64;
                    invocation.key(format!("{}{bucket}:{ms}", s.prefix));
                    invocation.arg(w.count).arg(ms);
                }
                invocation.arg(n);
                let (allowed, limit, remaining, reset): (u8, u64, u64, u64) = invocation
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let reset = Duration::from_millis(reset);
                Ok(if allowed == 1 {
                    let mut d = Decision::unlimited();
                    d.tighten(limit, remaining, reset);
                    d
                } else {
                    Decision::refused(limit, reset)
                })
            })
            .await
    }

    /// Take a slot of `bucket` if fewer than `max` are held cluster-wide; `None`: all taken.
    pub async fn enter(&self, bucket: &str, max: u32) -> Result<Option<SharedSlot>, String> {
        let s = &*self.shared;
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        let key: Arc<str> = format!("llmf:slots:{bucket}").into();
        let admitted = s
            .redis
            .call(async {
                let mut conn = s.redis.get().await?;
                s.enter
                    .key(&*key)
                    .arg(max)
                    .arg(s.lease.as_millis() as u64)
                    .arg(s.holder(id))
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
        if admitted != 1 {
            return Ok(None);
        }
        self.hold(id, Arc::clone(&key));
        Ok(Some(SharedSlot {
            id,
            key,
            shared: Arc::clone(&self.shared),
        }))
    }

    /// Give a slot back. If this fails, the slot expires with its lease (it is no longer
    /// renewed either way).
    pub async fn leave(&self, slot: SharedSlot) -> Result<(), String> {
        let s = &*self.shared;
        let (key, holder) = (Arc::clone(&slot.key), s.holder(slot.id));
        drop(slot);
        s.redis
            .call(async {
                let mut conn = s.redis.get().await?;
                redis::cmd("ZREM")
                    .arg(&*key)
                    .arg(holder)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
    }

    /// Register a lease for renewal, starting the renewal task if none runs.
    fn hold(&self, id: u64, key: Arc<str>) {
        let mut held = lock(&self.shared.held);
        held.slots.insert(id, key);
        if held.renewing {
            return;
        }
        // Requests run inside a runtime; without one the lease simply expires (never a leak).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            held.renewing = true;
            rt.spawn(renew_while_held(Arc::downgrade(&self.shared)));
        }
    }

    /// Add `delta` (possibly negative) to the current windows: a reservation settled.
    pub async fn adjust(&self, bucket: &str, spec: &LimitSpec, delta: i64) -> Result<(), String> {
        let s = &*self.shared;
        s.redis
            .call(async {
                let mut conn = s.redis.get().await?;
                let mut invocation = s.adjust.prepare_invoke();
                for w in &spec.0 {
                    let ms = w.window.as_millis() as u64;
                    invocation.key(format!("{}{bucket}:{ms}", s.prefix));
                    invocation.arg(ms);
                }
                invocation.arg(delta);
                invocation
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
    }
}

impl Shared {
    fn holder(&self, id: u64) -> String {
        format!("{:016x}:{id}", self.node)
    }

    /// Extend every lease in `slots` by a full lease from now.
    async fn renew(&self, slots: &[(u64, Arc<str>)]) -> Result<(), String> {
        for batch in slots.chunks(RENEW_BATCH) {
            self.redis
                .call(async {
                    let mut conn = self.redis.get().await?;
                    let mut invocation = self.renew.prepare_invoke();
                    invocation.arg(self.lease.as_millis() as u64);
                    for (id, key) in batch {
                        invocation.key(&**key).arg(self.holder(*id));
                    }
                    invocation
                        .invoke_async::<i64>(&mut conn)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .await?;
        }
        Ok(())
    }
}

/// Renew this process's leases three times per lease (so two renewals may fail before one
/// expires); stop once none is held (the next slot starts a new task) or the limiter is gone.
async fn renew_while_held(shared: Weak<Shared>) {
    loop {
        let Some(period) = shared.upgrade().map(|s| s.lease / 3) else {
            return;
        };
        tokio::time::sleep(period).await;
        let Some(s) = shared.upgrade() else {
            return;
        };
        let slots: Vec<(u64, Arc<str>)> = {
            let mut held = lock(&s.held);
            if held.slots.is_empty() {
                held.renewing = false;
                return;
            }
            held.slots
                .iter()
                .map(|(id, key)| (*id, Arc::clone(key)))
                .collect()
        };
        if let Err(e) = s.renew(&slots).await {
            log::warn!(
                "concurrency leases not renewed (limiter backend: {e}); they expire in {:?} unless a renewal succeeds",
                s.lease
            );
        }
    }
}
