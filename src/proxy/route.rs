//! Route phase (`request_filter`): local endpoints (`/healthz`), then the longest matching route
//! prefix; the path after the prefix goes onto the base path of each attempt's upstream.

use super::ctx::RequestCtx;
use super::error::{respond, GatewayError};
use crate::routing::collapse_slashes;
use crate::state::Gateway;
use bytes::Bytes;
use pingora_proxy::Session;
use std::sync::Arc;

/// Answer local endpoints or pick the route. `Ok(true)`: a response was sent, stop here.
pub async fn route_request(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<bool> {
    let uri = &session.req_header().uri;
    let path = collapse_slashes(uri.path());
    if path == "/healthz" && session.req_header().method == http::Method::GET {
        ctx.status = 200;
        // openai-forward answers the JSON string "OK"; health checkers rely on it.
        let cors = ctx.cors.take().unwrap_or_default();
        respond(session, 200, Some(Bytes::from_static(b"\"OK\"")), &cors).await?;
        return Ok(true);
    }
    let Some(found) = gateway.table.find(&path) else {
        return Err(ctx.fail(GatewayError::RouteNotFound));
    };
    let route = Arc::clone(&gateway.routes[found.index]);
    ctx.forward_path = Some((found.rest.to_string(), uri.query().map(str::to_string)));
    ctx.route = Some(route);
    Ok(false)
}
