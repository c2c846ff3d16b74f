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

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), with those
/// `Connection` lists (`connection_listed`): the first six of [`REQUEST_STRIPPED`] and
/// [`RESPONSE_STRIPPED`], `Connection` first. `transfer-encoding` and `content-length` are left
/// to Pingora, which frames each leg itself.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What no request takes upstream, removed in this order: the hop-by-hop headers, the client's
/// fallback list, and its cookies (unless the route forwards them: [`COOKIE_BIT`]).
static REQUEST_STRIPPED: [HeaderName; 8] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::UPGRADE,
    FALLBACK_HEADER,
    header::COOKIE,
];
const COOKIE_BIT: u32 = 1 << 7;

/// What no response takes to the client, removed in this order: the hop-by-hop headers and
/// `Trailer` (Pingora frames the client's leg itself).
static RESPONSE_STRIPPED: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::UPGRADE,
    header::TRAILER,
];

/// Which of `names` (at most 32) `headers` carries, as a bit set (bit `i` for `names[i]`).
/// Nearly every candidate is absent: one pass over the head's few names, where comparing two
/// names mostly stops at their kind or length, costs less than a hash lookup (or a removal) per
/// candidate (callgrind: ~150 instructions per `remove_header`).
fn present(headers: &http::HeaderMap, names: &[HeaderName]) -> u32 {
    let mut found = 0;
    for key in headers.keys() {
        if let Some(i) = names.iter().position(|name| name == key) {
            found |= 1 << i;
        }
    }
    found
}

/// Remove those of `names` the head carries, in the order of `names`, after one pass over it.
fn remove_present(req: &mut RequestHeader, names: &[HeaderName]) {
    let found = present(&req.headers, names);
    for (i, name) in names.iter().enumerate() {
        if found & (1 << i) != 0 {
            req.remove_header(name);
        }
    }
}

/// The names to remove, in order: what `Connection` lists (when bit 0, `Connection`, is set),
/// then `names[i]` for each bit `i` of `found`.
fn to_remove(
    headers: &http::HeaderMap,
    names: &'static [HeaderName],
    found: u32,
) -> impl Iterator<Item = HeaderName> + use<> {
    let listed = match found & 1 {
        0 => Vec::new(),
        _ => connection_listed(headers.get_all(header::CONNECTION)),
    };
    // Cloning a static name copies it (no allocation).
    let fixed = names.iter().enumerate();
    listed.into_iter().chain(
        fixed
            .filter(move |(i, _)| found & (1 << i) != 0)
            .map(|(_, n)| n.clone()),
    )
}

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
    // Not a clone of the candidate: its model names are two strings (the error path below
    // clones it, the rare case).
    let Some(target) = plan.current().map(|c| Arc::clone(&c.target)) else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    // A fresh attempt: what the last one left behind no longer applies (its wait was taken
    // above).
    ctx.outcome.error = None;
    ctx.attempt = super::ctx::AttemptState::default();
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
            let current = ctx.failover.plan.as_ref().and_then(|p| p.current());
            let body = match current.and_then(|c| c.sent_model.as_deref()) {
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
            let current = ctx.failover.plan.as_ref().and_then(|p| p.current());
            let Some(candidate) = current.cloned() else {
                return Err(ctx.fail(GatewayError::Internal));
            };
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
pub(super) const FALLBACK_HEADER: HeaderName = HeaderName::from_static("x-fallback-models");

/// Headers that pick the OpenAI organization and project a key bills to. A pool key belongs to
/// the gateway's organization: a client's value would only get the key refused.
static ORG_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
];

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
    // Usually the path goes upstream as the client sent it (a route at `/`, an upstream without
    // a base path): then nothing is built, parsed or copied.
    let base = &upstream.config.url.base_path;
    let path = (!joins_to(req.uri.path(), base, rest)).then(|| upstream_target(base, rest, None));
    let mut query = query.clone();
    let Some(route) = ctx.route().cloned() else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    strip_request(req, route.config.forward_cookies);
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
            remove_present(req, &ORG_HEADERS);
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
                let Some(value) = key.header_value(placement) else {
                    return Err(ctx.fail(GatewayError::Internal));
                };
                match &upstream.key_header {
                    // The name built with the upstream: no copy of it per request.
                    Some(name) => req.insert_header(name.clone(), value)?,
                    // A static name: no copy of it per request.
                    None => req.insert_header("authorization", value)?,
                }
            }
        }
    }
    if path.is_some() || !is_origin_form(req, query.as_deref()) {
        let mut target = path.unwrap_or_else(|| req.uri.path().to_string());
        if let Some(q) = query {
            target.push('?');
            target.push_str(&q);
        }
        let Ok(uri) = http::Uri::try_from(target) else {
            return Err(ctx.fail(GatewayError::Internal));
        };
        req.set_uri(uri);
    }
    // The pre-read body may differ from what the client sent (usage requested, a fallback's
    // model): its length is this attempt's.
    if let Some(link) = &ctx.body.link {
        let len = link.body().len();
        if (len > 0 || ctx.body.rewritten) && !declares_length(req, len) {
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

/// Whether `upstream_target(base, rest, None)` is `path`, without building it.
fn joins_to(path: &str, base: &str, rest: &str) -> bool {
    if base.is_empty() && rest.is_empty() {
        return path == "/";
    }
    path.len() == base.len() + rest.len() && path.starts_with(base) && path.ends_with(rest)
}

/// Whether the head already goes out as its path and `query`, in origin form: no scheme or
/// authority in its URI (an HTTP/2 request's, which Pingora would turn into `Host`), and a raw
/// target that is the URI's own (not an absolute-form one kept verbatim).
fn is_origin_form(req: &RequestHeader, query: Option<&str>) -> bool {
    let uri = &req.uri;
    uri.scheme().is_none()
        && uri.authority().is_none()
        && uri.query() == query
        && uri
            .path_and_query()
            .is_some_and(|pq| pq.as_str().as_bytes() == req.raw_path())
}

/// Whether the head already says exactly this length (one `Content-Length` of these digits, no
/// `Transfer-Encoding`): setting it again would change nothing but cost a formatted value and
/// two map updates.
fn declares_length(req: &RequestHeader, len: usize) -> bool {
    let mut values = req.headers.get_all(header::CONTENT_LENGTH).iter();
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = len;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    values.next().is_some_and(|v| v.as_bytes() == &digits[at..])
        && values.next().is_none()
        && !req.headers.contains_key(header::TRANSFER_ENCODING)
}

/// Remove every place a client could have sent a key on this route: the usual carriers and
/// each header or query parameter the route's upstreams take keys in. Returns the query left.
fn clear_credentials(
    route: &crate::state::Route,
    req: &mut RequestHeader,
    query: Option<&str>,
) -> Option<String> {
    let carriers = crate::credentials::credential_header_names();
    remove_present(req, carriers);
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
    let found = present(&resp.headers, &RESPONSE_STRIPPED);
    if found != 0 {
        for name in to_remove(&resp.headers, &RESPONSE_STRIPPED, found) {
            resp.remove_header(&name);
        }
    }
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

/// The hop-by-hop headers (those `Connection` lists first), the fallback list and, unless
/// forwarded, cookies: removed in that order, only those present.
fn strip_request(req: &mut RequestHeader, forward_cookies: bool) {
    let mut found = present(&req.headers, &REQUEST_STRIPPED);
    if forward_cookies {
        found &= !COOKIE_BIT;
    }
    if found != 0 {
        for name in to_remove(&req.headers, &REQUEST_STRIPPED, found) {
            req.remove_header(&name);
        }
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

#[cfg(test)]
mod tests;
