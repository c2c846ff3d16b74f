//! `GET /metrics`: the per-request families (`metrics/`), then gauges and counters read from the
//! gateway's live state at scrape time — requests and streams in flight, circuit breakers, pool
//! keys' health, the cache's counters and size, the chat-log queue, Redis errors. Label values
//! are config names (route prefixes, upstream, pool and key names); never a key, an address or
//! anything a client sent.

use super::text;
use crate::cache_store::Cache;
use crate::metrics::exposition::{Exposition, CONTENT_TYPE};
use crate::state::Gateway;
use crate::upstream::breaker::BreakerState;
use http::{Response, StatusCode};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A cache size lookup must not hold a scrape for long.
const USAGE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn serve(gateway: &Gateway) -> Response<Vec<u8>> {
    let mut e = Exposition::default();
    gateway.metrics.render(&mut e);
    live_state(gateway, &mut e);
    if let Some(cache) = &gateway.cache {
        cache_state(cache, &mut e).await;
    }
    text(StatusCode::OK, CONTENT_TYPE, e.into_string().into_bytes())
}

fn live_state(gateway: &Gateway, e: &mut Exposition) {
    e.family(
        "llm_forward_requests_in_flight",
        "gauge",
        "Requests being handled by the proxy right now.",
    );
    let n = gateway.in_flight.load(Ordering::Relaxed);
    e.sample("llm_forward_requests_in_flight", &[], n);
    e.family(
        "llm_forward_streams_in_flight",
        "gauge",
        "Server-sent-event responses being sent right now.",
    );
    let n = gateway.metrics.streams_in_flight();
    e.sample("llm_forward_streams_in_flight", &[], n);

    e.family(
        "llm_forward_upstream_breaker_state",
        "gauge",
        "Circuit breaker of each upstream: 0 closed, 1 half-open, 2 open.",
    );
    let now = Instant::now();
    for route in &gateway.routes {
        for u in &route.upstreams {
            let state = match u.breaker.state(now) {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            let labels = [
                ("route", route.config.prefix.as_str()),
                ("upstream", u.config.name.as_str()),
            ];
            e.sample("llm_forward_upstream_breaker_state", &labels, state);
        }
    }
    e.family(
        "llm_forward_upstream_model_breakers_open",
        "gauge",
        "Models whose own circuit breaker on this upstream is open or half-open (a model failing there while the upstream serves others).",
    );
    for route in &gateway.routes {
        for u in &route.upstreams {
            let labels = [
                ("route", route.config.prefix.as_str()),
                ("upstream", u.config.name.as_str()),
            ];
            let n = u.model_breakers.open_count(now);
            e.sample("llm_forward_upstream_model_breakers_open", &labels, n);
        }
    }

    e.family(
        "llm_forward_upstream_key_state",
        "gauge",
        "Each pool key, by its id (never the key): 0 in rotation, 1 cooling down after a 429, 2 rejected by the upstream.",
    );
    for pool in &gateway.pools {
        for key in &pool.keys {
            let labels = [("pool", pool.name.as_str()), ("key", key.id.as_str())];
            e.sample("llm_forward_upstream_key_state", &labels, key.health());
        }
    }

    if let Some(log) = &gateway.chat_log {
        for (name, help, value) in [
            (
                "llm_forward_chat_log_dropped_total",
                "Chat-log records dropped (queue full, or the writer stopped).",
                log.dropped(),
            ),
            (
                "llm_forward_chat_log_errors_total",
                "Chat-log write errors.",
                log.errors(),
            ),
            (
                "llm_forward_chat_log_written_total",
                "Chat-log records written.",
                log.written(),
            ),
        ] {
            e.family(name, "counter", help);
            e.sample(name, &[], value);
        }
        e.family(
            "llm_forward_chat_log_queued",
            "gauge",
            "Chat-log records waiting for the writer.",
        );
        e.sample("llm_forward_chat_log_queued", &[], log.queued());
    }

    let limits = gateway.limits.backend_errors();
    let cache = gateway
        .cache
        .as_ref()
        .filter(|c| {
            matches!(
                c.config.backend,
                crate::config::CacheBackendConfig::Redis(_)
            )
        })
        .map(|c| c.store.counters.backend_errors.load(Ordering::Relaxed));
    if limits.is_some() || cache.is_some() {
        e.family(
            "llm_forward_redis_errors_total",
            "counter",
            "Redis calls that failed or timed out, by component (limits, cache).",
        );
        for (component, n) in [("limits", limits), ("cache", cache)] {
            if let Some(n) = n {
                e.sample(
                    "llm_forward_redis_errors_total",
                    &[("component", component)],
                    n,
                );
            }
        }
    }
}

async fn cache_state(cache: &Cache, e: &mut Exposition) {
    let c = &cache.store.counters;
    for (name, help, counter) in [
        (
            "llm_forward_cache_stored_total",
            "Responses stored in the cache.",
            &c.stored,
        ),
        (
            "llm_forward_cache_not_stored_total",
            "Responses not stored (incomplete streams, bodies over the entry size).",
            &c.not_stored,
        ),
        (
            "llm_forward_cache_backend_errors_total",
            "Cache backend operations that failed.",
            &c.backend_errors,
        ),
    ] {
        e.family(name, "counter", help);
        e.sample(name, &[], counter.load(Ordering::Relaxed));
    }
    // Redis would have to scan every entry: its size is left to `/_llmf/cache/stats`.
    if matches!(
        cache.config.backend,
        crate::config::CacheBackendConfig::Redis(_)
    ) {
        return;
    }
    let backend = cache.store.backend();
    if let Ok(Ok(usage)) = tokio::time::timeout(USAGE_TIMEOUT, backend.usage()).await {
        e.family(
            "llm_forward_cache_bytes",
            "gauge",
            "Bytes held by the cache (memory or disk backend).",
        );
        e.sample("llm_forward_cache_bytes", &[], usage.bytes);
        e.family(
            "llm_forward_cache_entries",
            "gauge",
            "Entries held by the cache (memory or disk backend).",
        );
        e.sample("llm_forward_cache_entries", &[], usage.entries);
    }
}
