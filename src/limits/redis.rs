//! The cluster backend: every node counts in the same Redis, through one atomic Lua script per
//! request (one round trip). Windows are fixed and aligned on Redis's clock, so all nodes agree
//! on them; a request is counted only when every window admits it, so exactly `count` requests
//! pass per window across the cluster. Keys hold bucket names (route, tenant, key *ids*, client
//! IPs), never key material, and expire with their window.
//!
//! Each call is bounded by a short timeout; a slow or dead Redis yields `Err`, and the caller
//! applies the configured `on_backend_error` policy. The connection manager reconnects by
//! itself once Redis is back.

use super::spec::LimitSpec;
use super::Decision;
use crate::redis_conn::LazyRedis;
use redis::aio::ConnectionManager;
use redis::Script;
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

/// Take a concurrency slot: admit while fewer than `ARGV[1]` are held. The key's TTL
/// (`ARGV[2]` ms, renewed on every entry) bounds how long a slot of a node that died can linger.
const ENTER: &str = r#"
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if held >= tonumber(ARGV[1]) then
  return 0
end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"#;

/// Release a slot (never below zero: a key that expired meanwhile stays absent).
const LEAVE: &str = r#"
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if held > 0 then
  redis.call('DECR', KEYS[1])
end
return 1
"#;

/// How long a concurrency counter outlives its last entry: a node that dies holding slots
/// gives them back after this.
const SLOT_TTL_MS: u64 = 10 * 60 * 1000;

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
    redis: LazyRedis,
    script: Script,
    adjust: Script,
    enter: Script,
    leave: Script,
    prefix: String,
    /// Calls that failed or timed out (metrics: `llm_forward_redis_errors_total`).
    pub errors: std::sync::atomic::AtomicU64,
}

impl RedisLimiter {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(RedisLimiter {
            redis: LazyRedis::open(url, timeout)?,
            script: Script::new(SCRIPT),
            adjust: Script::new(ADJUST),
            enter: Script::new(ENTER),
            leave: Script::new(LEAVE),
            prefix: "llmf:rl:".into(),
            errors: Default::default(),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        self.redis.get().await
    }

    /// Count `n` events in every window if all have room (one round trip).
    pub async fn check(&self, bucket: &str, spec: &LimitSpec, n: u64) -> Result<Decision, String> {
        let call = async {
            let mut conn = self.connection().await?;
            let mut invocation = self.script.prepare_invoke();
            for w in &spec.0 {
                let ms = w.window.as_millis() as u64;
                invocation.key(format!("{}{bucket}:{ms}", self.prefix));
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
        };
        tokio::time::timeout(self.redis.timeout(), call)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// Take a slot of `bucket` if fewer than `max` are held cluster-wide.
    pub async fn enter(&self, bucket: &str, max: u32) -> Result<bool, String> {
        let call = async {
            let mut conn = self.connection().await?;
            self.enter
                .key(format!("llmf:cc:{bucket}"))
                .arg(max)
                .arg(SLOT_TTL_MS)
                .invoke_async::<i64>(&mut conn)
                .await
                .map(|admitted| admitted == 1)
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(self.redis.timeout(), call)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// Give a slot of `bucket` back.
    pub async fn leave(&self, bucket: &str) -> Result<(), String> {
        let call = async {
            let mut conn = self.connection().await?;
            self.leave
                .key(format!("llmf:cc:{bucket}"))
                .invoke_async::<i64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(self.redis.timeout(), call)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// Add `delta` (possibly negative) to the current windows: a reservation settled.
    pub async fn adjust(&self, bucket: &str, spec: &LimitSpec, delta: i64) -> Result<(), String> {
        let call = async {
            let mut conn = self.connection().await?;
            let mut invocation = self.adjust.prepare_invoke();
            for w in &spec.0 {
                let ms = w.window.as_millis() as u64;
                invocation.key(format!("{}{bucket}:{ms}", self.prefix));
                invocation.arg(ms);
            }
            invocation.arg(delta);
            invocation
                .invoke_async::<i64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(self.redis.timeout(), call)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}
