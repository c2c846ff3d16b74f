//! The `memory` backend: entries in this process, within a byte budget. Recency is kept by
//! pingora-lru (sharded LRU lists with weights, the structure pingora-cache's own eviction
//! manager uses); admitting an entry evicts the least recently used ones until the total weight
//! (body + head + a fixed overhead per entry) is back under the budget, synchronously, so the
//! budget holds at every moment rather than after some background sweep.

use super::entry::Entry;
use super::{Backend, BackendResult, Usage};
use crate::cache_key::Digest;
use async_trait::async_trait;
use pingora_lru::Lru;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

const SHARDS: usize = 16;

pub(crate) struct MemoryBackend {
    map: RwLock<HashMap<Digest, Arc<Entry>>>,
    lru: Lru<Digest, SHARDS>,
    budget: usize,
}

/// pingora-lru keys are u64: the digest's first 8 bytes (it is a SHA-256, so well spread).
pub(crate) fn lru_key(id: &Digest) -> u64 {
    u64::from_le_bytes([id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]])
}

impl MemoryBackend {
    pub(crate) fn new(budget: usize) -> Self {
        MemoryBackend {
            map: RwLock::new(HashMap::new()),
            lru: Lru::with_capacity(budget, 1024),
            budget,
        }
    }

    fn map_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Digest, Arc<Entry>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn get(&self, id: &Digest) -> BackendResult<Option<Arc<Entry>>> {
        let found = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if found.is_some() {
            self.lru.promote(lru_key(id));
        }
        Ok(found)
    }

    async fn put(&self, id: Digest, entry: Arc<Entry>) -> BackendResult<()> {
        let weight = entry.weight();
        if weight > self.budget {
            return Ok(());
        }
        let mut map = self.map_write();
        map.insert(id, entry);
        self.lru.admit(lru_key(&id), id, weight);
        for (victim, _) in self.lru.evict_to_limit() {
            map.remove(&victim);
        }
        Ok(())
    }

    async fn remove(&self, id: &Digest) -> BackendResult<bool> {
        let mut map = self.map_write();
        self.lru.remove(lru_key(id));
        Ok(map.remove(id).is_some())
    }

    async fn purge_route(&self, route: &str) -> BackendResult<u64> {
        let mut map = self.map_write();
        let victims: Vec<Digest> = map
            .iter()
            .filter(|(_, e)| e.route == route)
            .map(|(id, _)| *id)
            .collect();
        for id in &victims {
            map.remove(id);
            self.lru.remove(lru_key(id));
        }
        Ok(victims.len() as u64)
    }

    async fn purge_all(&self) -> BackendResult<u64> {
        let mut map = self.map_write();
        let n = map.len() as u64;
        for id in map.keys() {
            self.lru.remove(lru_key(id));
        }
        map.clear();
        Ok(n)
    }

    async fn usage(&self) -> BackendResult<Usage> {
        let entries = self.map.read().unwrap_or_else(|p| p.into_inner()).len() as u64;
        Ok(Usage {
            entries,
            bytes: self.lru.weight() as u64,
        })
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    fn keeps_heads(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(route: &str, size: usize) -> Arc<Entry> {
        Arc::new(Entry {
            route: route.into(),
            expires_ms: u64::MAX,
            meta: (Bytes::new(), Bytes::new()).into(),
            body: Bytes::from(vec![0u8; size]),
            ends: vec![size as u32],
        })
    }

    fn id(n: u32) -> Digest {
        crate::cache_key::sha256(&n.to_be_bytes())
    }

    #[tokio::test]
    async fn stays_within_its_budget() {
        let m = MemoryBackend::new(100_000);
        for n in 0..1000 {
            m.put(id(n), entry("/", 1000)).await.unwrap();
            let u = m.usage().await.unwrap();
            assert!(u.bytes <= 100_000, "{u:?}");
        }
        let u = m.usage().await.unwrap();
        assert!(u.entries > 40 && u.entries < 100, "{u:?}");
        // The most recent entries survive, the oldest were evicted.
        assert!(m.get(&id(999)).await.unwrap().is_some());
        assert!(m.get(&id(0)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn purges_by_key_route_and_all() {
        let m = MemoryBackend::new(1 << 20);
        m.put(id(1), entry("/a", 10)).await.unwrap();
        m.put(id(2), entry("/a", 10)).await.unwrap();
        m.put(id(3), entry("/b", 10)).await.unwrap();
        assert!(m.remove(&id(3)).await.unwrap());
        assert_eq!(m.purge_route("/a").await.unwrap(), 2);
        assert_eq!(m.usage().await.unwrap(), Usage::default());
        m.put(id(4), entry("/b", 10)).await.unwrap();
        assert_eq!(m.purge_all().await.unwrap(), 1);
        assert_eq!(m.usage().await.unwrap().entries, 0);
    }
}
