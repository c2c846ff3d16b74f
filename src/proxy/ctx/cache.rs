//! The response cache's view of one request (`cache.rs` fills it).

use crate::cache_key::Digest;
use std::time::Duration;

/// Body phase sets `flag`; the cache phase `state`.
#[derive(Default)]
pub(crate) struct CacheCtx {
    /// The request's `caching` field, when it had one (removed from the body sent upstream).
    pub flag: Option<bool>,
    pub state: CacheState,
}

/// Whether the request uses the cache, and how it went.
#[derive(Default)]
pub(crate) enum CacheState {
    /// The cache is not used for this request.
    #[default]
    Bypass,
    /// The cache is used and the answer comes from the upstream (stored if admitted).
    Miss(Plan),
    /// The answer came from the cache.
    Hit(Plan),
}

impl CacheState {
    /// The key and policy, when the request uses the cache.
    pub(crate) fn plan(&self) -> Option<&Plan> {
        match self {
            CacheState::Bypass => None,
            CacheState::Miss(p) | CacheState::Hit(p) => Some(p),
        }
    }

    pub(crate) fn is_hit(&self) -> bool {
        matches!(self, CacheState::Hit(_))
    }

    /// A miss becomes a hit (the lookup found the answer).
    pub(crate) fn mark_hit(&mut self) {
        if let CacheState::Miss(p) = std::mem::take(self) {
            *self = CacheState::Hit(p);
        }
    }
}

pub(crate) struct Plan {
    pub id: Digest,
    /// The route prefix (purge by route).
    pub route: String,
    pub ttl: Duration,
    /// The client sent `Cache-Control: no-cache`: do not serve a stored answer, store the fresh.
    pub refresh: bool,
}
