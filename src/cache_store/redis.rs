//! The `redis` backend: entries shared by every node of a cluster, so an answer stored through
//! one node is a hit through any other.
//!
//! Keys: `llmf:cache:e:<64 hex>` holds an entry blob (the checksummed format of `entry.rs`)
//! with Redis expiring it at the entry's TTL; `llmf:cache:r:<route>` is the set of ids stored
//! for a route (purge by route). Key names carry digests and route prefixes only, never key
//! material. Each call is bounded by `timeout`; after a failure Redis is left alone for a
//! second (every lookup in that second is a plain miss, without waiting; `redis_conn.rs`), and
//! the connection manager reconnects by itself.

use super::entry::Entry;
use super::{bounded, now_ms, Backend, BackendResult, Usage};
use crate::cache_key::{hex, Digest};
use crate::redis_conn::LazyRedis;
use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const PREFIX: &str = "llmf:cache:";

pub(crate) struct RedisBackend {
    redis: LazyRedis,
}

impl RedisBackend {
    pub(crate) fn new(
        url: &str,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        Ok(RedisBackend {
            redis: LazyRedis::open(url, timeout, ca_file)?,
        })
    }

    /// The connection for an admin operation; an error at once while Redis is skipped after
    /// a failure.
    async fn connection(&self) -> BackendResult<ConnectionManager> {
        if self.redis.backing_off() {
            return Err(crate::redis_conn::SKIPPED.into());
        }
        self.redis.get().await
    }

    async fn scan(&self, pattern: String) -> BackendResult<Vec<String>> {
        let mut conn = self.connection().await?;
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    async fn delete(&self, keys: &[String]) -> BackendResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut conn = self.connection().await?;
        let mut n = 0;
        for batch in keys.chunks(500) {
            let removed: u64 = redis::cmd("UNLINK")
                .arg(batch)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            n += removed;
        }
        Ok(n)
    }
}

fn entry_key(id: &Digest) -> String {
    format!("{PREFIX}e:{}", hex(id))
}

fn route_key(route: &str) -> String {
    format!("{PREFIX}r:{route}")
}

/// Admin operations walk many keys: give them longer than one request's call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

#[async_trait]
impl Backend for RedisBackend {
    async fn get(&self, id: &Digest) -> BackendResult<Option<Arc<Entry>>> {
        let blob: Option<Vec<u8>> = self
            .redis
            .call(async {
                let mut conn = self.redis.get().await?;
                redis::cmd("GET")
                    .arg(entry_key(id))
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
        Ok(blob
            .and_then(|b| Entry::decode(Bytes::from(b)))
            .map(Arc::new))
    }

    async fn put(&self, id: Digest, entry: Arc<Entry>) -> BackendResult<()> {
        let ttl_ms = entry.expires_ms.saturating_sub(now_ms());
        if ttl_ms == 0 {
            return Ok(());
        }
        let blob = entry.encode();
        let rkey = route_key(&entry.route);
        self.redis
            .call(async {
                let mut conn = self.redis.get().await?;
                let hex_id = hex(&id);
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(entry_key(&id))
                    .arg(blob)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore()
                    .cmd("SADD")
                    .arg(&rkey)
                    .arg(&hex_id)
                    .ignore()
                    // A route's entries share its TTL, so the index outlives its newest entry a
                    // little; ids of entries that expired meanwhile are harmless there.
                    .cmd("PEXPIRE")
                    .arg(&rkey)
                    .arg(ttl_ms + 60_000)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
    }

    async fn remove(&self, id: &Digest) -> BackendResult<bool> {
        let key = entry_key(id);
        bounded(ADMIN_TIMEOUT, self.delete(&[key]))
            .await
            .map(|n| n > 0)
    }

    async fn purge_route(&self, route: &str) -> BackendResult<u64> {
        bounded(ADMIN_TIMEOUT, async {
            let mut conn = self.connection().await?;
            let ids: Vec<String> = redis::cmd("SMEMBERS")
                .arg(route_key(route))
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let keys: Vec<String> = ids.iter().map(|h| format!("{PREFIX}e:{h}")).collect();
            let n = self.delete(&keys).await?;
            self.delete(&[route_key(route)]).await?;
            Ok(n)
        })
        .await
    }

    async fn purge_all(&self) -> BackendResult<u64> {
        bounded(ADMIN_TIMEOUT, async {
            let entries = self.scan(format!("{PREFIX}e:*")).await?;
            let n = self.delete(&entries).await?;
            let routes = self.scan(format!("{PREFIX}r:*")).await?;
            self.delete(&routes).await?;
            Ok(n)
        })
        .await
    }

    async fn usage(&self) -> BackendResult<Usage> {
        bounded(ADMIN_TIMEOUT, async {
            let keys = self.scan(format!("{PREFIX}e:*")).await?;
            let mut conn = self.connection().await?;
            let mut bytes = 0u64;
            for batch in keys.chunks(500) {
                let mut pipe = redis::pipe();
                for k in batch {
                    pipe.cmd("STRLEN").arg(k);
                }
                let lens: Vec<u64> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                bytes += lens.iter().sum::<u64>();
            }
            Ok(Usage {
                entries: keys.len() as u64,
                bytes,
            })
        })
        .await
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
