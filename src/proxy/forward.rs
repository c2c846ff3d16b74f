//! Upstream phase (`upstream_peer`, `upstream_request_filter`, `upstream_response_filter`):
//! the peer for this attempt, and the request and response heads as they cross the gateway.
//! Hop-by-hop headers stop here; `Host` and SNI are the upstream's.

use super::attempts::Attempts;
use super::ctx::{RequestCtx, Routed};
use super::error::GatewayError;
use crate::config::{KeyPlacement, RouteKind};
use crate::openai::with_model;
use crate::routing::upstream_target;
use bytes::Bytes;
use http::header::{self, HeaderName};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use std::sync::Arc;
use std::time::Instant;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1). `transfer-encoding`
/// and `content-length` are left to Pingora, which frames each leg itself.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::UPGRADE,
];

/// The peer for the next attempt: the plan is made on the first one; later ones wait out the
/// backoff or `Retry-After` the retry phase decided, then go to the plan's current candidate.
pub(super) async fn upstream_peer(
    session: &Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<Box<HttpPeer>> {
    let Some(route) = ctx.route().cloned() else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    if ctx.failover.plan.is_none() {
        let requested = route
            .config
            .resilience
            .fallbacks
            .from_request
            .then(|| requested_fallbacks(session.req_header()))
            .flatten();
        let tenant = ctx.auth.tenant.clone();
        let allows = |m: &str| tenant.as_ref().is_none_or(|t| t.allows_model(m));
        let plan = Attempts::plan(
            &route,
            ctx.body.model.as_deref(),
            ctx.body.info.is_some(),
            requested,
            ctx.auth.swap_credentials,
            allows,
            ctx.started,
        );
        if plan.is_empty() {
            return Err(ctx.fail(GatewayError::ModelNotServed));
        }
        ctx.failover.plan = Some(plan);
    }
    if let Some(wait) = ctx.attempt.wait_next.take().filter(|w| !w.is_zero()) {
        tokio::time::sleep(wait).await;
    }
    let now = Instant::now();
    let Some(plan) = ctx.failover.plan.as_mut() else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    let budget = plan.remaining(now);
    if budget.is_some_and(|b| b.is_zero()) {
        return Err(ctx.fail(GatewayError::UpstreamTimeout));
    }
    plan.made += 1;
    let deadline = plan.deadline;
    let Some(candidate) = plan.current().cloned() else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    // A fresh attempt: what the last one left behind no longer applies (its wait was taken
    // above).
    ctx.outcome.error = None;
    ctx.attempt = super::ctx::AttemptState::default();
    let target = &candidate.target;
    if let Some(link) = &ctx.body.link {
        let stream = ctx.body.info.as_ref().is_some_and(|i| i.stream);
        let t = target.upstream.timeouts;
        link.arm(
            t.first_token.filter(|_| stream),
            t.idle.filter(|_| stream),
            deadline,
            t.max_duration.map(|d| ctx.started + d),
            now,
        );
        if let Some(body) = ctx.body.bytes.as_ref() {
            let body = match candidate.sent_model.as_deref() {
                Some(sent) if ctx.body.model.as_deref() != Some(sent) => {
                    with_model(body, sent).map_or_else(|| body.clone(), Bytes::from)
                }
                _ => body.clone(),
            };
            link.set_body(body);
        }
    }
    // With the pre-read session the budget is kept by its timer, up to the first byte only; the
    // per-read timeout must not cap a stream's gaps by it.
    let read_budget = budget.filter(|_| ctx.body.link.is_none());
    match target.upstream.peer(budget, read_budget).await {
        Ok(peer) => Ok(peer),
        Err(e) => {
            log::warn!(
                "route {}: upstream {} did not resolve: {e}",
                route.config.prefix,
                target.config.name
            );
            // Like a failed connect: nothing reached the upstream, so the plan may go on.
            let retry = super::failover::on_resolve_failure(ctx, &candidate, now);
            let mut err = ctx.fail(GatewayError::UpstreamDns);
            err.set_retry(retry);
            Err(err)
        }
    }
}

/// At most this many client-named fallbacks are considered (and the header at most 4 KiB):
/// each becomes candidates, and a request head may be a megabyte.
const MAX_REQUESTED_FALLBACKS: usize = 8;

/// The client's own fallback models: `x-fallback-models: ["a","b"]` (JSON) or `a, b`.
fn requested_fallbacks(req: &RequestHeader) -> Option<Vec<String>> {
    let value = req.headers.get(FALLBACK_HEADER)?.to_str().ok()?.trim();
    if value.len() > 4096 {
        return None;
    }
    let mut list: Vec<String> = if value.starts_with('[') {
        serde_json::from_str(value).ok()?
    } else {
        value
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect()
    };
    list.truncate(MAX_REQUESTED_FALLBACKS);
    (!list.is_empty()).then_some(list)
}

/// The header a client names its fallback models in; never forwarded.
pub(super) const FALLBACK_HEADER: &str = "x-fallback-models";

/// Headers that pick the OpenAI organization and project a key bills to. A pool key belongs to
/// the gateway's organization: a client's value would only get the key refused.
const ORG_HEADERS: [&str; 2] = ["openai-organization", "openai-project"];

/// Rewrite the request head for the upstream: target, `Host`, hop-by-hop headers, and the
/// credential: with a pool, every place a client key could travel is cleared and this attempt's
/// pool key is set where the upstream expects it.
pub(super) fn upstream_request(
    ctx: &mut RequestCtx,
    req: &mut RequestHeader,
) -> pingora_core::Result<()> {
    let (Some(candidate), Some(Routed { rest, query, .. })) =
        (ctx.candidate(), ctx.routed.as_ref())
    else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    let upstream = Arc::clone(&candidate.target);
    let path = upstream_target(&upstream.config.url.base_path, rest, None);
    let mut query = query.clone();
    let Some(route) = ctx.route().cloned() else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    strip_hop_by_hop_request(req);
    req.remove_header(FALLBACK_HEADER);
    if !route.config.forward_cookies {
        req.remove_header(&header::COOKIE);
    }
    req.insert_header(header::HOST, upstream.upstream.host_header.clone())?;
    let takes_no_key = upstream.key_placement == KeyPlacement::None;
    let pool = ctx.attempt_pool().filter(|_| !takes_no_key);
    // With a pool key to set, or no key at all for this upstream, nothing the client sent as a
    // key goes there.
    if takes_no_key || pool.is_some() {
        query = clear_credentials(&route, req, query.as_deref());
    }
    if let Some(pool) = pool {
        if !route.config.auth.forward_org_headers {
            for name in ORG_HEADERS {
                req.remove_header(name);
            }
        }
        let model = ctx.attempt_model();
        let avoid = ctx
            .failover
            .avoid_key
            .as_ref()
            .filter(|(p, _)| Arc::ptr_eq(p, &pool))
            .map(|(_, i)| *i);
        let Ok(index) = pool.pick(model, avoid) else {
            return Err(ctx.fail(GatewayError::NoUpstreamKey));
        };
        ctx.attempt.pool_key = Some(index);
        let key = &pool.keys[index];
        match &upstream.key_placement {
            KeyPlacement::Query(param) => {
                // An error answer may echo the URL: it must arrive uncompressed for the key to
                // be masked out of it (see `mask.rs`).
                req.remove_header(&header::ACCEPT_ENCODING);
                let q = query.get_or_insert_with(String::new);
                if !q.is_empty() {
                    q.push('&');
                }
                q.push_str(param);
                q.push('=');
                q.push_str(key.secret());
            }
            placement => {
                let name = match placement {
                    KeyPlacement::Header(name) => name.as_str(),
                    _ => "authorization",
                };
                let Some(value) = key.header_value(placement) else {
                    return Err(ctx.fail(GatewayError::Internal));
                };
                req.insert_header(name.to_string(), value)?;
            }
        }
    }
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let Ok(uri) = http::Uri::try_from(target.as_str()) else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    req.set_uri(uri);
    // The pre-read body may differ from what the client sent (usage requested, a fallback's
    // model): its length is this attempt's.
    if let Some(link) = &ctx.body.link {
        let len = link.body().len();
        if len > 0 || ctx.body.rewritten {
            req.insert_header(header::CONTENT_LENGTH, len)?;
            req.remove_header(&header::TRANSFER_ENCODING);
        }
    }
    if route.config.kind == RouteKind::OpenAi {
        // The response bodies of openai routes are read by the gateway (SSE events, usage), so
        // they must arrive uncompressed.
        req.remove_header(&header::ACCEPT_ENCODING);
    }
    Ok(())
}

/// Remove every place a client could have sent a key on this route: the usual carriers and
/// each header or query parameter the route's upstreams take keys in. Returns the query left.
fn clear_credentials(
    route: &crate::state::Route,
    req: &mut RequestHeader,
    query: Option<&str>,
) -> Option<String> {
    for carrier in crate::credentials::credential_header_names() {
        req.remove_header(carrier);
    }
    let mut query = without_param(query, "key");
    let placements = route.upstreams.iter().map(|u| &u.key_placement);
    for placement in placements.chain([&route.config.auth.key_placement]) {
        match placement {
            KeyPlacement::Header(name) => {
                req.remove_header(name.as_str());
            }
            KeyPlacement::Query(param) => query = without_param(query.as_deref(), param),
            KeyPlacement::Bearer | KeyPlacement::None => {}
        }
    }
    query
}

/// The query without parameter `name` (`None` when nothing is left).
fn without_param(query: Option<&str>, name: &str) -> Option<String> {
    let q = query?;
    let kept: Vec<&str> = q
        .split('&')
        .filter(|pair| pair.split('=').next() != Some(name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Drop the upstream's hop-by-hop headers before the response goes to the client, and name the
/// upstream that answered (`x-llm-forward-upstream`: its configured name) on routes with several.
pub(super) fn upstream_response(
    resp: &mut pingora_http::ResponseHeader,
    ctx: &RequestCtx,
) -> pingora_core::Result<()> {
    let listed = connection_listed(resp.headers.get_all(header::CONNECTION));
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        resp.remove_header(name);
    }
    resp.remove_header(&header::TRAILER);
    // Only where there is a choice: a single-upstream route has nothing to report.
    let several = ctx.route().is_some_and(|r| r.upstreams.len() > 1);
    if let Some(c) = ctx.candidate().filter(|_| several) {
        if let Ok(v) = http::HeaderValue::from_str(&c.target.config.name) {
            resp.insert_header(UPSTREAM_HEADER, v)?;
        }
    }
    Ok(())
}

/// Names the upstream that answered.
pub(super) const UPSTREAM_HEADER: &str = "x-llm-forward-upstream";

fn strip_hop_by_hop_request(req: &mut RequestHeader) {
    let listed = connection_listed(req.headers.get_all(header::CONNECTION));
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        req.remove_header(name);
    }
}

/// Header names listed in `Connection` (they are hop-by-hop too), except framing headers.
fn connection_listed(values: http::header::GetAll<'_, http::HeaderValue>) -> Vec<HeaderName> {
    values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING)
        .collect()
}
