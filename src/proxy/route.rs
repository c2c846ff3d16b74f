//! Route phase (`request_filter`): local endpoints (`/healthz`), then the longest matching route
//! prefix; the path after the prefix goes onto the base path of each attempt's upstream. Before
//! anything else in `request_filter`, the path is normalised (`routing::normalize_path`) and
//! the request head rewritten to it, so that every phase (cache admin, routing, limits, cache,
//! logs) sees the path that is routed and forwarded.

use super::ctx::{RequestCtx, Routed};
use super::error::{respond, GatewayError};
use crate::routing::normalize_path;
use crate::state::Gateway;
use bytes::Bytes;
use pingora_proxy::Session;
use std::borrow::Cow;
use std::sync::Arc;

/// Rewrite the request head to its normalised path (`routing::normalize_path`), first thing in
/// `request_filter`, so that every phase — the cache admin endpoints, routing, limits, the
/// cache, logs — judges the path that is forwarded. 400 for an encoded slash or backslash.
pub(super) fn normalize(session: &mut Session, ctx: &mut RequestCtx) -> pingora_core::Result<()> {
    let normalised = match normalize_path(session.req_header().uri.path()) {
        Ok(Cow::Borrowed(_)) => None,
        Ok(Cow::Owned(path)) => Some(path),
        Err(_) => return Err(ctx.fail(GatewayError::InvalidPath)),
    };
    if let Some(mut target) = normalised {
        if let Some(q) = session.req_header().uri.query() {
            target.push('?');
            target.push_str(q);
        }
        let Ok(uri) = http::Uri::try_from(target) else {
            return Err(ctx.fail(GatewayError::InvalidPath));
        };
        session.req_header_mut().set_uri(uri);
    }
    Ok(())
}

/// Answer local endpoints or pick the route (the path is already normalised). `Ok(true)`: a
/// response was sent, stop here.
pub(super) async fn route_request(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<bool> {
    let req = session.req_header();
    if req.uri.path() == "/healthz" && req.method == http::Method::GET {
        ctx.outcome.status = Some(200);
        // openai-forward answers the JSON string "OK"; health checkers rely on it.
        let mut headers: Vec<_> = ctx
            .client
            .cors
            .take()
            .unwrap_or_default()
            .into_iter()
            .collect();
        headers.extend(super::request_id::header(ctx));
        respond(session, 200, Some(Bytes::from_static(b"\"OK\"")), &headers).await?;
        return Ok(true);
    }
    let uri = &session.req_header().uri;
    let Some(found) = gateway.table.find(uri.path()) else {
        return Err(ctx.fail(GatewayError::RouteNotFound));
    };
    let route = Arc::clone(&gateway.routes[found.index]);
    ctx.routed = Some(Routed {
        route,
        rest: found.rest.into(),
        query: uri.query().map(str::to_string),
    });
    Ok(false)
}
