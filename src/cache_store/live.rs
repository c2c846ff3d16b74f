//! Fills in progress, readable while they arrive (`cache.fill_after_disconnect: true`).
//!
//! Pingora keeps reading the upstream into the cache after the client left only for a storage
//! that supports *streaming partial writes*: the fill's own client is then served from the
//! storage while the upstream writes into it, and a client leaving no longer stops the
//! upstream. With this mode on, every fill is a [`Fill`] here from its first byte: its own
//! client and the identical requests that arrive meanwhile (released by the cache lock at once)
//! read it live, chunk by chunk as the upstream sends them. A fill that ends complete lets its
//! readers finish cleanly; one that breaks (upstream cut, a stream without its terminal event)
//! fails them, so a reader never sees a cut stream end cleanly.

use super::CacheStore;
use crate::cache_key::Digest;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::storage::HandleHit;
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, Storage};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Fills in progress by key.
#[derive(Default)]
pub(crate) struct LiveFills(Mutex<HashMap<Digest, Arc<Fill>>>);

impl LiveFills {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Fill>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn start(&self, id: Digest, meta: (Vec<u8>, Vec<u8>)) -> Arc<Fill> {
        let fill = Arc::new(Fill {
            meta,
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        });
        self.map().insert(id, Arc::clone(&fill));
        fill
    }

    pub(crate) fn get(&self, id: &Digest) -> Option<Arc<Fill>> {
        self.map().get(id).cloned()
    }

    /// Forget `fill` (not a newer one under the same key).
    pub(crate) fn remove(&self, id: &Digest, fill: &Arc<Fill>) {
        let mut map = self.map();
        if map.get(id).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            map.remove(id);
        }
    }
}

pub(crate) struct Fill {
    /// The serialized `CacheMeta` readers answer with.
    pub meta: (Vec<u8>, Vec<u8>),
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    chunks: Vec<Bytes>,
    /// `Some(true)`: complete; `Some(false)`: broken.
    end: Option<bool>,
}

impl Fill {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, data: Bytes) {
        self.state().chunks.push(data);
        self.notify.notify_waiters();
    }

    pub(crate) fn end(&self, complete: bool) {
        self.state().end.get_or_insert(complete);
        self.notify.notify_waiters();
    }

    /// Whether the stream so far ends with its terminal event (for a fill too large to keep).
    pub(crate) fn is_complete_sse(&self) -> bool {
        super::entry::split_sse(&self.state().chunks.concat()).is_some()
    }

    pub(crate) fn reader(self: &Arc<Self>) -> LiveHit {
        LiveHit {
            fill: Arc::clone(self),
            next: 0,
        }
    }
}

/// Reads a fill as it grows.
pub(crate) struct LiveHit {
    fill: Arc<Fill>,
    next: usize,
}

#[async_trait]
impl HandleHit for LiveHit {
    async fn read_body(&mut self) -> pingora_error::Result<Option<Bytes>> {
        loop {
            // Registered before the state is read, so a push in between is not missed.
            let notified = self.fill.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.fill.state();
                if let Some(chunk) = state.chunks.get(self.next) {
                    self.next += 1;
                    return Ok(Some(chunk.clone()));
                }
                match state.end {
                    Some(true) => return Ok(None),
                    Some(false) => {
                        return pingora_error::Error::e_explain(
                            pingora_error::ErrorType::InternalError,
                            "the answer being cached broke off",
                        )
                    }
                    None => {}
                }
            }
            notified.await;
        }
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

/// A miss's share in its live fill: ends it as broken if the miss is dropped unfinished
/// (upstream cut, request aborted).
pub(crate) struct LiveShare {
    pub store: &'static CacheStore,
    pub id: Digest,
    pub fill: Arc<Fill>,
}

impl LiveShare {
    /// The fill is over: readers end cleanly (`complete`) or fail; new lookups go to the store.
    pub(crate) fn close(&self, complete: bool) {
        self.fill.end(complete);
        if let Some(live) = &self.store.live {
            live.remove(&self.id, &self.fill);
        }
    }
}

impl Drop for LiveShare {
    /// A no-op after `close` (the first end wins).
    fn drop(&mut self) {
        self.close(false);
    }
}
