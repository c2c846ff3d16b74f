//! Upstream phase (`upstream_peer`, `upstream_request_filter`, `upstream_response_filter`):
//! the peer for this attempt, and the request and response heads as they cross the gateway.
//! Hop-by-hop headers stop here; `Host` and SNI are the upstream's.

use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::retry::backoff;
use crate::config::{KeyPlacement, RouteKind};
use crate::keys::pool::{parse_retry_after, KeyVerdict};
use http::header::{self, HeaderName};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::{RequestHeader, ResponseHeader};
use std::borrow::Cow;

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

/// The peer for the next attempt; waits out the retry backoff first.
pub async fn upstream_peer(ctx: &mut RequestCtx) -> pingora_core::Result<Box<HttpPeer>> {
    let Some(route) = ctx.route.clone() else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    if std::mem::take(&mut ctx.backoff_next) {
        tokio::time::sleep(backoff(&route.config.retry, ctx.connect_failures)).await;
    }
    ctx.attempts += 1;
    match route.upstream.peer().await {
        Ok(peer) => Ok(peer),
        Err(e) => {
            log::warn!(
                "route {}: upstream {} did not resolve: {e}",
                route.config.prefix,
                route.upstream.url.host
            );
            Err(ctx.fail(GatewayError::UpstreamDns))
        }
    }
}

/// Rewrite the request head for the upstream: target, `Host`, hop-by-hop headers, and the
/// credential: with a pool, every place a client key could travel is cleared and this attempt's
/// pool key is set where the upstream expects it.
pub fn upstream_request(ctx: &mut RequestCtx, req: &mut RequestHeader) -> pingora_core::Result<()> {
    let (Some(route), Some(target)) = (ctx.route.clone(), ctx.upstream_target.clone()) else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    strip_hop_by_hop_request(req);
    req.insert_header(header::HOST, route.upstream.host_header.clone())?;
    let target = match ctx.pool.clone() {
        None => Cow::Borrowed(target.as_str()),
        Some(pool) => {
            let Ok(index) = pool.pick() else {
                return Err(ctx.fail(GatewayError::NoUpstreamKey));
            };
            ctx.pool_key = Some(index);
            let key = &pool.keys[index];
            for carrier in CREDENTIAL_HEADERS {
                req.remove_header(carrier);
            }
            let (path, query) = target
                .split_once('?')
                .map_or((target.as_str(), None), |(p, q)| (p, Some(q)));
            let mut query = without_param(query, "key");
            match &route.key_placement {
                KeyPlacement::Query(param) => {
                    query = without_param(query.as_deref(), param);
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
            Cow::Owned(match query {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            })
        }
    };
    let Ok(uri) = http::Uri::try_from(target.as_ref()) else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    req.set_uri(uri);
    if let (true, Some(body)) = (ctx.body_rewritten, &ctx.request_body) {
        req.insert_header(header::CONTENT_LENGTH, body.len())?;
        req.remove_header(&header::TRANSFER_ENCODING);
    }
    if route.config.kind == RouteKind::OpenAi {
        // The response bodies of openai routes are read by the gateway (SSE events, usage), so
        // they must arrive uncompressed.
        req.remove_header(&header::ACCEPT_ENCODING);
    }
    Ok(())
}

/// Where clients put credentials; all cleared when a pool key replaces them.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "api-key", "x-goog-api-key"];

/// The query without parameter `name` (`None` when nothing is left).
fn without_param(query: Option<&str>, name: &str) -> Option<String> {
    let q = query?;
    let kept: Vec<&str> = q
        .split('&')
        .filter(|pair| pair.split('=').next() != Some(name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// What the upstream's status says about the pool key of this attempt. A rejected (401/403) or
/// throttled (429) key is reported to its pool; when another key could still serve and nothing
/// has reached the client, the attempt is abandoned for a retry with that key.
pub fn judge_key(ctx: &mut RequestCtx, resp: &ResponseHeader) -> pingora_core::Result<()> {
    let (Some(pool), Some(index)) = (ctx.pool.clone(), ctx.pool_key) else {
        return Ok(());
    };
    let verdict = match resp.status.as_u16() {
        401 | 403 => KeyVerdict::Rejected,
        429 => KeyVerdict::Throttled(
            resp.headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
        ),
        _ => return Ok(()),
    };
    pool.report(index, verdict);
    if pool.has_other_healthy(index) && ctx.attempts <= pool.keys.len() as u32 {
        ctx.rotate_key = true;
        let mut e = pingora_core::Error::explain(
            pingora_core::ErrorType::HTTPStatus(resp.status.as_u16()),
            "upstream refused the key; retrying with another",
        );
        e.set_retry(true);
        return Err(e);
    }
    Ok(())
}

/// Drop the upstream's hop-by-hop headers before the response goes to the client.
pub fn upstream_response(resp: &mut ResponseHeader) {
    let listed = connection_listed(resp.headers.get_all(header::CONNECTION));
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        resp.remove_header(name);
    }
    resp.remove_header(&header::TRAILER);
}

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
