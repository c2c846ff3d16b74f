//! The response cache's storage: one pingora-cache `Storage` ([`CacheStore`]) over three
//! backends — `memory` (a byte budget with LRU eviction), `disk` (one checksummed file per
//! entry, written atomically, persistent across restarts and upgrades) and `redis` (shared by
//! every node of a cluster).
//!
//! The `Storage` side is common: a miss buffers the upstream's body (up to the maximum entry
//! size; beyond it the response passes through and nothing is stored), and only when Pingora
//! finishes the fill — the whole response arrived — is the entry checked (a stream must end with
//! its terminal event) and handed to the backend. A response cut short, or abandoned by its
//! client, never reaches `finish`, so it is never stored. A backend that fails or times out
//! turns a lookup into a miss and a write into nothing: the client never sees a cache error.
//!
//! Pingora wants `&'static` storage; a store is built once per gateway and leaked (tests start
//! a few gateways per process; a real process builds one).

pub(crate) mod disk;
pub(crate) mod entry;
pub(crate) mod live;
pub(crate) mod memory;
pub(crate) mod policy;
pub(crate) mod redis;

use crate::cache_key::{parse_hex, Digest};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use entry::{Entry, KeptHead, Meta};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta, Storage};
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) type BackendResult<T> = Result<T, String>;

/// Entries and bytes a backend holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

/// What a backend does; [`CacheStore`] does the rest.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    async fn get(&self, id: &Digest) -> BackendResult<Option<Arc<Entry>>>;
    async fn put(&self, id: Digest, entry: Arc<Entry>) -> BackendResult<()>;
    async fn remove(&self, id: &Digest) -> BackendResult<bool>;
    async fn purge_route(&self, route: &str) -> BackendResult<u64>;
    async fn purge_all(&self) -> BackendResult<u64>;
    async fn usage(&self) -> BackendResult<Usage>;
    fn name(&self) -> &'static str;
    /// Entries stay in this process: their heads are kept as they are ([`Meta::Kept`]), not
    /// serialized.
    fn keeps_heads(&self) -> bool {
        false
    }
}

/// Counters since start (this process).
#[derive(Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stored: AtomicU64,
    /// Streams without their terminal event, bodies over the entry size.
    pub not_stored: AtomicU64,
    pub backend_errors: AtomicU64,
}

/// Largest chunk a non-stream body is replayed in.
const PLAIN_CHUNK: usize = 64 * 1024;

pub(crate) struct CacheStore {
    backend: Box<dyn Backend>,
    max_entry: usize,
    pub counters: Counters,
    /// Fills readable while they arrive; `Some` with `fill_after_disconnect` (see `live.rs`).
    pub(crate) live: Option<live::LiveFills>,
}

impl CacheStore {
    pub(crate) fn new(
        backend: Box<dyn Backend>,
        max_entry: usize,
        fill_after_disconnect: bool,
    ) -> Self {
        CacheStore {
            backend,
            max_entry,
            counters: Counters::default(),
            live: fill_after_disconnect.then(live::LiveFills::default),
        }
    }

    /// A reader of the fill in progress for `id`, if any.
    fn live_hit(&self, id: &Digest) -> Option<(CacheMeta, HitHandler)> {
        let fill = self.live.as_ref()?.get(id)?;
        let meta = CacheMeta::deserialize(&fill.meta.0, &fill.meta.1).ok()?;
        Some((meta, Box::new(fill.reader())))
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    fn backend_error(&self, what: &str, e: &str) {
        self.counters.backend_errors.fetch_add(1, Ordering::Relaxed);
        log::warn!("cache {} {what} failed: {e}", self.backend.name());
    }

    /// The complete, fresh entry stored under `id` and its head (never a fill in progress).
    /// An expired or unreadable entry is removed; a failing backend is a miss.
    pub(crate) async fn stored(&self, id: &Digest) -> Option<(CacheMeta, Arc<Entry>)> {
        let entry = match self.backend.get(id).await {
            Ok(Some(e)) => e,
            Ok(None) => return None,
            Err(e) => {
                self.backend_error("lookup", &e);
                return None;
            }
        };
        if entry.is_expired(now_ms()) {
            let _ = self.backend.remove(id).await;
            return None;
        }
        let Some(meta) = entry.meta.to_cache_meta() else {
            let _ = self.backend.remove(id).await;
            return None;
        };
        Some((meta, entry))
    }

    /// Remove one entry by its id (the `x-cache-key` of a response).
    pub(crate) async fn purge_key(&self, id: &Digest) -> BackendResult<u64> {
        self.backend.remove(id).await.map(u64::from)
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn digest_of(key: &CacheKey) -> Option<Digest> {
    key.primary_key_str().and_then(parse_hex)
}

#[async_trait]
impl Storage for CacheStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<Option<(CacheMeta, HitHandler)>> {
        let Some(id) = digest_of(key) else {
            return Ok(None);
        };
        if let Some(hit) = self.live_hit(&id) {
            return Ok(Some(hit));
        }
        let Some((meta, entry)) = self.stored(&id).await else {
            return Ok(None);
        };
        Ok(Some((
            meta,
            Box::new(Hit {
                entry,
                next: 0,
                batch: 0,
            }),
        )))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<MissHandler> {
        let sse = meta
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        // A kept head costs a header copy; a serialized one a zstd compression (live fills
        // need it too: their readers each decode their own copy).
        let kept = self
            .backend
            .keeps_heads()
            .then(|| KeptHead::of(meta))
            .flatten()
            .map(Box::new);
        let serialized = (kept.is_none() || self.live.is_some())
            .then(|| meta.serialize().ok())
            .flatten();
        let id = digest_of(key);
        let live = match (&self.live, id, &serialized) {
            (Some(fills), Some(id), Some(meta)) => Some(live::LiveShare {
                store: self,
                id,
                fill: fills.start(id, meta.clone()),
            }),
            _ => None,
        };
        Ok(Box::new(Miss {
            store: self,
            live,
            id,
            route: key.user_tag.clone(),
            expires_ms: to_ms(meta.fresh_until()),
            kept,
            meta: serialized,
            sse,
            body: BytesMut::new(),
            overflow: false,
        }))
    }

    /// The fill's own client reads what it is writing (partial-write mode only).
    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        _tag: Option<&[u8]>,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<Option<(CacheMeta, HitHandler)>> {
        // Never `Ok(None)` here: Pingora panics without a reader; an error only stops caching.
        match digest_of(key).and_then(|id| self.live_hit(&id)) {
            Some(hit) => Ok(Some(hit)),
            None => pingora_error::Error::e_explain(
                pingora_error::ErrorType::InternalError,
                "no fill in progress for this key",
            ),
        }
    }

    fn support_streaming_partial_write(&self) -> bool {
        self.live.is_some()
    }

    /// Pingora's own purge and eviction paths are not used (the admin interface purges
    /// through the backend); nothing to do.
    async fn purge(
        &'static self,
        _target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<PurgeOutcome> {
        Ok(PurgeOutcome::NotFound)
    }

    /// No revalidation: entries are exact answers that expire, never refreshed in place.
    async fn update_meta(
        &'static self,
        _key: &CacheKey,
        _meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<bool> {
        Ok(false)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Replays an entry chunk by chunk (a stream: event by event), or, when `batch` is set, in
/// runs of whole chunks of up to that many bytes.
struct Hit {
    entry: Arc<Entry>,
    next: usize,
    batch: usize,
}

/// Let a hit send runs of whole chunks (events) of up to `bytes` per write, for a client whose
/// stream is not paced: fewer writes, same bytes.
pub(crate) fn batch_hit(handler: &mut HitHandler, bytes: usize) {
    if let Some(hit) = handler.as_any_mut().downcast_mut::<Hit>() {
        hit.batch = bytes;
    }
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> pingora_error::Result<Option<Bytes>> {
        Ok(self.entry.run(self.next, self.batch).map(|(bytes, next)| {
            self.next = next;
            bytes
        }))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> pingora_error::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Buffers a fill; stores it in `finish`, which Pingora calls only once the whole response
/// has arrived. Dropped without `finish` (upstream cut, client gone): nothing is stored.
struct Miss {
    store: &'static CacheStore,
    /// The live fill readers follow (partial-write mode).
    live: Option<live::LiveShare>,
    id: Option<Digest>,
    route: String,
    expires_ms: u64,
    /// The head as it is kept (memory backend), else `meta`.
    kept: Option<Box<KeptHead>>,
    /// The serialized head (other backends, live fills).
    meta: Option<(Vec<u8>, Vec<u8>)>,
    sse: bool,
    body: BytesMut,
    /// Over the maximum entry size: the rest passes through, nothing is kept.
    overflow: bool,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> pingora_error::Result<()> {
        if let Some(live) = &self.live {
            // Readers need every byte, stored or not.
            live.fill.push(data.clone());
        }
        if self.overflow {
            return Ok(());
        }
        if self.body.len() + data.len() > self.store.max_entry {
            self.overflow = true;
            self.body = BytesMut::new();
            return Ok(());
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> pingora_error::Result<MissFinishType> {
        let live = self.live.take();
        let ends = if self.overflow {
            None
        } else if self.sse {
            entry::split_sse(&self.body)
        } else {
            Some(entry::split_plain(self.body.len(), PLAIN_CHUNK))
        };
        // Whether live readers may end cleanly: a stream only with its terminal event.
        let complete = match (&ends, self.overflow) {
            (Some(_), _) => true,
            (None, false) => false,
            (None, true) => !self.sse || live.as_ref().is_some_and(|l| l.fill.is_complete_sse()),
        };
        // Stored first, then the live fill closed: a lookup finds one or the other.
        let finished = self.store_entry(ends).await;
        if let Some(live) = live {
            live.close(complete);
        }
        Ok(finished)
    }
}

impl Miss {
    async fn store_entry(self, ends: Option<Vec<u32>>) -> MissFinishType {
        let store = self.store;
        let (Some(id), Some(ends)) = (self.id, ends) else {
            store.counters.not_stored.fetch_add(1, Ordering::Relaxed);
            return MissFinishType::Created(0);
        };
        // One exact-size buffer for head and body: the fill buffers grew by doubling, and every
        // allocation costs the budget its header and rounding.
        let (meta, body) = match (self.kept, self.meta) {
            // A body that came in one chunk fills its buffer exactly: kept as it is.
            (Some(kept), _) if self.body.capacity() == self.body.len() => {
                (Meta::Kept(kept), self.body.freeze())
            }
            (Some(kept), _) => (Meta::Kept(kept), Bytes::copy_from_slice(&self.body)),
            (None, Some(meta)) => {
                let (a, b) = (meta.0.len(), meta.1.len());
                let mut all = Vec::with_capacity(a + b + self.body.len());
                all.extend_from_slice(&meta.0);
                all.extend_from_slice(&meta.1);
                all.extend_from_slice(&self.body);
                let all = Bytes::from(all);
                let meta = Meta::Serialized(all.slice(..a), all.slice(a..a + b));
                (meta, all.slice(a + b..))
            }
            (None, None) => {
                store.counters.not_stored.fetch_add(1, Ordering::Relaxed);
                return MissFinishType::Created(0);
            }
        };
        let entry = Arc::new(Entry {
            route: self.route,
            expires_ms: self.expires_ms,
            meta,
            body,
            ends,
        });
        let weight = entry.weight();
        match store.backend.put(id, entry).await {
            Ok(()) => {
                store.counters.stored.fetch_add(1, Ordering::Relaxed);
                MissFinishType::Created(weight)
            }
            Err(e) => {
                store.backend_error("write", &e);
                MissFinishType::Created(0)
            }
        }
    }
}

/// Bound a backend call; a slow backend is a failed one.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = BackendResult<T>>,
) -> BackendResult<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// The id Pingora's lock table and our backends agree on, from our digest. Its hash for
/// Pingora (the lock table's) is the digest's first half, not a Blake2 of its hex text: the
/// digest is a SHA-256 already (~1.9k instructions per hash, taken ~1.6 times a request).
pub(crate) fn cache_key(id: &Digest, route: &str) -> CacheKey {
    let mut key = CacheKey::new(crate::cache_key::hex(id), route);
    let mut bin = [0u8; 16];
    bin.copy_from_slice(&id[..16]);
    key.set_primary_bin_override(bin);
    key
}

/// The cache as the gateway holds it: the store, the lock that collapses identical requests,
/// and the settings.
pub(crate) struct Cache {
    pub store: &'static CacheStore,
    pub lock: &'static pingora_cache::lock::CacheKeyLockImpl,
    pub config: crate::config::CacheConfig,
    /// Who may use the admin endpoints (`cache.admin_key`): the gate the console and
    /// `/metrics` use, so that every admin secret is compared one way.
    pub admin: Option<crate::admin::gate::Gate>,
}

impl Cache {
    /// Open the configured backend (a directory is created and indexed now; Redis is connected
    /// on first use).
    pub(crate) fn build(
        config: &crate::config::CacheConfig,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Cache, String> {
        use crate::config::CacheBackendConfig as B;
        let budget = config.max_size as usize;
        let backend: Box<dyn Backend> = match &config.backend {
            B::Memory => Box::new(memory::MemoryBackend::new(budget)),
            B::Disk(dir) => Box::new(disk::DiskBackend::open(dir, budget)?),
            B::Redis(url) => Box::new(redis::RedisBackend::new(
                url,
                config.backend_timeout,
                ca_file,
            )?),
        };
        let store: &'static CacheStore = Box::leak(Box::new(CacheStore::new(
            backend,
            config.max_entry_size as usize,
            config.fill_after_disconnect,
        )));
        // The lock's age timeout: a writer holding it longer lets waiters compete again.
        let lock: &'static pingora_cache::lock::CacheKeyLockImpl = Box::leak(
            pingora_cache::lock::CacheLock::new_boxed(config.lock_timeout),
        );
        Ok(Cache {
            store,
            lock,
            admin: config
                .admin_key
                .as_ref()
                .map(|k| crate::admin::gate::Gate::new(&k.0)),
            config: config.clone(),
        })
    }
}
