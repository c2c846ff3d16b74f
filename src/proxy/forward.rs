//! Upstream phase (`upstream_peer`, `upstream_request_filter`, `upstream_response_filter`):
//! the peer for this attempt, and the request and response heads as they cross the gateway.
//! Hop-by-hop headers stop here; `Host` and SNI are the upstream's.

use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::retry::backoff;
use crate::config::RouteKind;
use http::header::{self, HeaderName};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::{RequestHeader, ResponseHeader};

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
    if ctx.attempts > 0 {
        tokio::time::sleep(backoff(&route.config.retry, ctx.attempts)).await;
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

/// Rewrite the request head for the upstream: target, `Host`, hop-by-hop headers.
pub fn upstream_request(ctx: &RequestCtx, req: &mut RequestHeader) -> pingora_core::Result<()> {
    let (Some(route), Some(target)) = (&ctx.route, &ctx.upstream_target) else {
        return Err(GatewayError::Internal.into_pingora());
    };
    let uri =
        http::Uri::try_from(target.as_str()).map_err(|_| GatewayError::Internal.into_pingora())?;
    req.set_uri(uri);
    strip_hop_by_hop_request(req);
    req.insert_header(header::HOST, route.upstream.host_header.clone())?;
    if route.config.kind == RouteKind::OpenAi {
        // The response bodies of openai routes are read by the gateway (SSE events, usage), so
        // they must arrive uncompressed.
        req.remove_header(&header::ACCEPT_ENCODING);
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
