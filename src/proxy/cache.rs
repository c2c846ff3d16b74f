//! Cache phase (pingora-cache's hooks, between `request_filter` and the upstream): decide
//! whether a request may use the response cache, key it, and mark hits and misses.
//!
//! A request uses the cache when its route's policy covers the path, its `caching` field (else
//! the route's default) says so and the client did not send `Cache-Control: no-store`
//! (`no-cache`: the stored answer is not served, the fresh one replaces it). The key is the
//! digest of tenant scope, route, upstream, method, path and canonical body (`cache_key.rs`).
//! Pingora then looks the key up; identical requests in flight wait on its cache lock for the
//! first one's answer (streams included) instead of each calling the upstream. A hit is written
//! by Pingora through `response_filter` and `response_body_filter` like any answer, so CORS,
//! rate-limit headers, usage accounting, pacing and logs apply to it unchanged; here it gains
//! `x-cache: HIT` (Pingora adds `age`). Only a 200 is admitted; the store decides at the end
//! whether it is complete enough to keep (`cache_store`).

use super::ctx::{CacheState, Plan, RequestCtx};
use crate::cache_key::{self, Digest, KeyParts};
use crate::cache_key::{ScopeHasher, ScopeText};
use crate::state::Gateway;
use crate::state::Route;
use http::HeaderName;
use pingora_cache::{
    CacheKey, CacheMeta, ForcedFreshness, HitHandler, NoCacheReason, RespCacheable,
};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `request_cache_filter`: enable the cache for this request, or leave it off.
pub(super) fn enable(gateway: &Gateway, session: &mut Session, ctx: &mut RequestCtx) {
    let Some(keying) = keying(gateway, session, ctx) else {
        return;
    };
    let Some(cache) = &gateway.cache else {
        return;
    };
    let id = keying.key(session.req_header(), ctx.body.bytes.as_deref());
    let mut overrides = pingora_cache::CacheOptionOverrides::default();
    overrides.wait_timeout = Some(cache.config.lock_timeout);
    session
        .cache
        .enable(cache.store, None, None, Some(cache.lock), Some(overrides));
    // Ranges make no sense for API answers; replay them whole.
    session.ignore_downstream_range = true;
    ctx.cache.state = CacheState::Miss(keying.plan(id));
}

/// Everything of a request's cache key but its body, once the request may use the cache.
pub(super) struct Keying {
    scope: Scope,
    /// The route: its prefix and its upstream list (text made once, in its cache policy).
    route: Arc<Route>,
    vary: String,
    ttl: Duration,
    refresh: bool,
}

impl Keying {
    /// The key of this request with `body` (its own, or another version of it).
    pub(super) fn key(&self, req: &pingora_http::RequestHeader, body: Option<&[u8]>) -> Digest {
        cache_key::key(&KeyParts {
            scope: self.scope.as_str(),
            route: &self.route.config.prefix,
            upstream: self
                .route
                .cache
                .as_ref()
                .map_or("", |p| p.upstreams.as_str()),
            method: req.method.as_str(),
            path_and_query: req.uri.path_and_query().map_or("/", |p| p.as_str()),
            vary: &self.vary,
            body,
        })
    }

    pub(super) fn plan(self, id: Digest) -> Plan {
        Plan {
            id,
            route: self.route.config.prefix.clone(),
            ttl: self.ttl,
            refresh: self.refresh,
        }
    }

    /// The client sent `Cache-Control: no-cache`: no stored answer may be served.
    pub(super) fn refresh(&self) -> bool {
        self.refresh
    }
}

/// A request's tenant scope in its key.
enum Scope {
    /// One cache for all tenants of the route.
    Shared,
    Hashed(ScopeText),
}

impl Scope {
    fn as_str(&self) -> &str {
        match self {
            Scope::Shared => "shared",
            Scope::Hashed(text) => text.as_str(),
        }
    }
}

/// [`crate::credentials::CREDENTIAL_HEADERS`] as header names, parsed at compile time (a
/// lookup by `&str` parses the name again each time), in its order: the order of the key
/// material. A list of another length does not compile.
static CREDENTIAL_NAMES: [HeaderName; 4] = {
    use crate::credentials::CREDENTIAL_HEADERS as NAMES;
    [
        HeaderName::from_static(NAMES[0]),
        HeaderName::from_static(NAMES[1]),
        HeaderName::from_static(NAMES[2]),
        HeaderName::from_static(NAMES[3]),
    ]
};

/// Whether the request may use the cache, and its key parts if so.
pub(super) fn keying(gateway: &Gateway, session: &mut Session, ctx: &RequestCtx) -> Option<Keying> {
    let (Some(_), Some(routed)) = (&gateway.cache, &ctx.routed) else {
        return None;
    };
    let route = &routed.route;
    let policy = route.cache.as_ref()?;
    let req = session.req_header();
    // The path after the route prefix, as the route phase found it (the path is normalised,
    // so no run of slashes is left in it).
    if !policy.covers(&req.method, &routed.rest) || !ctx.cache.flag.unwrap_or(policy.default) {
        return None;
    }
    let (no_store, no_cache) = client_directives(req);
    if no_store {
        return None;
    }
    // A body we did not read (an upload) cannot be keyed.
    if ctx.body.bytes.is_none() && !session.as_downstream_mut().is_body_empty() {
        return None;
    }
    let req = session.req_header();
    let scope = if policy.shared {
        Scope::Shared
    } else {
        Scope::Hashed(match &ctx.auth.tenant {
            Some(t) => ScopeHasher::tenant(&t.name).finish(),
            None => {
                // Every client credential carrier, hashed into the scope when there is no
                // tenant.
                let mut h = ScopeHasher::credential();
                for name in &CREDENTIAL_NAMES {
                    if let Some(v) = req.headers.get(name) {
                        h.put(name.as_str().as_bytes());
                        h.put(b"=");
                        h.put(v.as_bytes());
                        h.put(b"\n");
                    }
                }
                h.finish()
            }
        })
    };
    // A general route passes these through, so the stored representation depends on them
    // (a gzip answer must not reach a client that did not accept gzip); an openai route drops
    // Accept-Encoding upstream and answers JSON or SSE whatever they say.
    let mut vary = String::new();
    if route.config.kind == crate::config::RouteKind::General {
        for name in [http::header::ACCEPT, http::header::ACCEPT_ENCODING] {
            for v in req.headers.get_all(&name) {
                vary.push_str(name.as_str());
                vary.push('=');
                vary.push_str(v.to_str().unwrap_or(""));
                vary.push('\n');
            }
        }
    }
    Some(Keying {
        scope,
        route: Arc::clone(route),
        vary,
        ttl: policy.ttl,
        refresh: no_cache,
    })
}

/// `no-store` and `no-cache` in the client's `Cache-Control` (and `Pragma: no-cache`).
fn client_directives(req: &pingora_http::RequestHeader) -> (bool, bool) {
    let mut no_store = false;
    let mut no_cache = false;
    for v in req.headers.get_all(http::header::CACHE_CONTROL) {
        for d in v.to_str().unwrap_or("").split(',') {
            let d = d.trim();
            no_store |= d.eq_ignore_ascii_case("no-store");
            no_cache |= d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("max-age=0");
        }
    }
    if let Some(p) = req.headers.get(http::header::PRAGMA) {
        no_cache |= p.to_str().unwrap_or("").eq_ignore_ascii_case("no-cache");
    }
    (no_store, no_cache)
}

/// `cache_key_callback`.
pub(super) fn key(ctx: &RequestCtx) -> pingora_core::Result<CacheKey> {
    match ctx.cache.state.plan() {
        Some(p) => Ok(crate::cache_store::cache_key(&p.id, &p.route)),
        None => Err(pingora_core::Error::explain(
            pingora_core::ErrorType::InternalError,
            "cache enabled without a key",
        )),
    }
}

/// Largest write of an unpaced hit.
const HIT_BATCH: usize = 64 * 1024;

/// `cache_hit_filter`: serve it (and set the response up as the upstream phase would), unless
/// the client asked for a fresh answer. A paced stream replays event by event; otherwise whole
/// events go out in runs of up to 64 KiB (one write for a typical answer).
pub(super) fn on_hit(
    gateway: &Gateway,
    meta: &CacheMeta,
    handler: &mut HitHandler,
    ctx: &mut RequestCtx,
) -> Option<ForcedFreshness> {
    if ctx.cache.state.plan().is_some_and(|p| p.refresh) {
        return Some(ForcedFreshness::ForceMiss);
    }
    if ctx.limits.pacer.is_none() {
        crate::cache_store::batch_hit(handler, HIT_BATCH);
    }
    ctx.cache.state.mark_hit();
    ctx.outcome.status = Some(meta.response_header().status.as_u16());
    super::stream::tap_response(gateway, ctx, meta.response_header());
    None
}

/// `response_cache_filter`: a 200 of a request that uses the cache may be stored (the store
/// still checks that it arrives whole). No request header is stored, and no `Set-Cookie`.
pub(super) fn admit(resp: &ResponseHeader, ctx: &RequestCtx) -> RespCacheable {
    let Some(plan) = ctx.cache.state.plan() else {
        return RespCacheable::Uncacheable(NoCacheReason::NeverEnabled);
    };
    if resp.status != http::StatusCode::OK {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    // A fallback model's answer is not what was asked for: served, never stored, so that the
    // same request gets the requested model once it is back.
    if ctx.candidate().is_some_and(|c| c.model != ctx.body.model) {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("fallback model"));
    }
    let mut header = resp.clone();
    header.remove_header(&http::header::SET_COOKIE);
    let now = SystemTime::now();
    RespCacheable::Cacheable(CacheMeta::new(now + plan.ttl, now, 0, 0, header))
}

/// `response_filter`: say whether the answer came from the cache, and under which key (the
/// id the admin interface purges by; a digest, nothing secret).
pub(super) fn decorate(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora_core::Result<()> {
    if let Some(plan) = ctx.cache.state.plan() {
        let hit = ctx.cache.state.is_hit();
        resp.insert_header("x-cache", if hit { "HIT" } else { "MISS" })?;
        resp.insert_header("x-cache-key", cache_key::hex(&plan.id))?;
    }
    Ok(())
}

/// `logging`: count the outcome.
pub(super) fn account(gateway: &Gateway, ctx: &RequestCtx) {
    if let (Some(cache), Some(_)) = (&gateway.cache, ctx.cache.state.plan()) {
        let counter = if ctx.cache.state.is_hit() {
            &cache.store.counters.hits
        } else {
            &cache.store.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether this request's tokens count against token budgets: not for a hit, unless
/// `charge_hits` says so.
pub(super) fn free_of_charge(gateway: &Gateway, ctx: &RequestCtx) -> bool {
    ctx.cache.state.is_hit()
        && gateway
            .cache
            .as_ref()
            .is_some_and(|c| !c.config.charge_hits)
}

/// For logs: `hit`, `miss` or `bypass`.
pub(super) fn label(ctx: &RequestCtx) -> &'static str {
    match ctx.cache.state {
        CacheState::Hit(_) => "hit",
        CacheState::Miss(_) => "miss",
        CacheState::Bypass => "bypass",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credential_names_are_the_credential_headers() {
        let names: Vec<&str> = super::CREDENTIAL_NAMES.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, crate::credentials::CREDENTIAL_HEADERS);
    }
}
