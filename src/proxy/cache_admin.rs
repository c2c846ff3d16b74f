//! The cache's admin endpoints (`request_filter`, before routing), present only when
//! `cache.admin_key` is set and answered only with that key (`Authorization: Bearer …`,
//! checked by `admin::gate` as the console's and `/metrics`'s secrets are):
//!
//! - `GET /_llmf/cache/stats` → entries, bytes, budget, hits, misses, hit ratio (this
//!   process's counters; entries and bytes are the backend's, so shared for Redis);
//! - `POST /_llmf/cache/purge` with `{"key": "<x-cache-key>"}` (one entry), `{"route":
//!   "/prefix"}` (a route's entries) or `{"all": true}` → `{"purged": n}`.

use super::ctx::RequestCtx;
use super::error::{respond, GatewayError};
use crate::state::Gateway;
use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;
use std::sync::atomic::Ordering;

const STATS: &str = "/_llmf/cache/stats";
const PURGE: &str = "/_llmf/cache/purge";
const MAX_BODY: usize = 64 * 1024;

/// `Ok(true)`: this was an admin request and it has been answered.
pub(super) async fn serve(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<bool> {
    let Some(cache) = &gateway.cache else {
        return Ok(false);
    };
    let Some(gate) = &cache.admin else {
        return Ok(false);
    };
    let path = session.req_header().uri.path();
    if path != STATS && path != PURGE {
        return Ok(false);
    }
    // The console's and `/metrics`'s gate: digests compared in constant time.
    if !gate.admits(&session.req_header().headers) {
        return Err(ctx.fail(GatewayError::InvalidApiKey));
    }
    let method = session.req_header().method.clone();
    let answer = match (path, method) {
        (STATS, http::Method::GET) => Ok(stats(cache).await),
        (PURGE, http::Method::POST) => purge(cache, session).await?,
        _ => Err((
            405,
            "method_not_allowed",
            "use GET for stats, POST for purge",
        )),
    };
    let (status, body) = match answer {
        Ok(v) => (200, v),
        Err((status, code, message)) => (
            status,
            serde_json::json!({"error": {"message": message, "type": "invalid_request_error",
                "param": null, "code": code}}),
        ),
    };
    ctx.outcome.status = Some(status);
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let id: Vec<_> = super::request_id::header(ctx).into_iter().collect();
    respond(session, status, Some(body), &id).await?;
    Ok(true)
}

type Answer = Result<serde_json::Value, (u16, &'static str, &'static str)>;

async fn stats(cache: &crate::cache_store::Cache) -> serde_json::Value {
    let c = &cache.store.counters;
    let (hits, misses) = (
        c.hits.load(Ordering::Relaxed),
        c.misses.load(Ordering::Relaxed),
    );
    let usage = cache.store.backend().usage().await;
    let budget = match cache.config.backend {
        crate::config::CacheBackendConfig::Redis(_) => None,
        _ => Some(cache.config.max_size),
    };
    serde_json::json!({
        "backend": cache.store.backend().name(),
        "entries": usage.as_ref().ok().map(|u| u.entries),
        "bytes": usage.as_ref().ok().map(|u| u.bytes),
        "max_size": budget,
        "hits": hits,
        "misses": misses,
        "hit_ratio": if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 },
        "stored": c.stored.load(Ordering::Relaxed),
        "not_stored": c.not_stored.load(Ordering::Relaxed),
        "backend_errors": c.backend_errors.load(Ordering::Relaxed),
    })
}

async fn purge(
    cache: &crate::cache_store::Cache,
    session: &mut Session,
) -> pingora_core::Result<Answer> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Ok(Err((
                413,
                "request_too_large",
                "the purge request is too large",
            )));
        }
        body.extend_from_slice(&chunk);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Purge {
        key: Option<String>,
        route: Option<String>,
        #[serde(default)]
        all: bool,
    }
    const USAGE: &str = r#"send {"key": "<x-cache-key>"}, {"route": "/prefix"} or {"all": true}"#;
    let Ok(p) = serde_json::from_slice::<Purge>(&body) else {
        return Ok(Err((400, "invalid_json", USAGE)));
    };
    let backend = cache.store.backend();
    let done = match (p.key, p.route, p.all) {
        (Some(k), None, false) => match crate::cache_key::parse_hex(&k) {
            Some(id) => cache.store.purge_key(&id).await,
            None => return Ok(Err((400, "invalid_cache_key", "a key is 64 hex digits"))),
        },
        (None, Some(r), false) => {
            let prefix = crate::routing::normalize_prefix(&r).unwrap_or(r);
            backend.purge_route(&prefix).await
        }
        (None, None, true) => backend.purge_all().await,
        _ => return Ok(Err((400, "invalid_purge", USAGE))),
    };
    Ok(match done {
        Ok(n) => Ok(serde_json::json!({ "purged": n })),
        Err(e) => {
            log::warn!("cache purge failed: {e}");
            Err((503, "cache_unavailable", "the cache backend did not answer"))
        }
    })
}
