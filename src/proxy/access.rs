//! Access phase (`early_request_filter`): who is the client (the socket peer, or the right-most
//! untrusted hop when the peer is a trusted proxy), and may that address use the gateway at all.
//! Runs before anything else reads the request, so a blocked client costs nothing more.
//! `GET /healthz` is the exception: it reveals nothing, and monitors probe it from addresses no
//! list names (openai-forward never filtered it either), so the lists do not apply to it.

use super::ctx::RequestCtx;
use super::error::GatewayError;
use crate::state::Gateway;
use pingora_proxy::Session;
use std::net::{IpAddr, Ipv4Addr};

pub(super) fn check_client(
    gateway: &Gateway,
    session: &Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<()> {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let ip = gateway
        .client_ip
        .resolve(peer, &session.req_header().headers);
    ctx.client.ip = Some(ip);
    if gateway.access.permits(ip) || is_health_check(session.req_header()) {
        Ok(())
    } else {
        Err(ctx.fail(GatewayError::IpForbidden))
    }
}

/// `GET /healthz` (answered by the route phase, before any limit or key check), judged on the
/// path as that phase will see it.
fn is_health_check(req: &pingora_http::RequestHeader) -> bool {
    req.method == http::Method::GET
        && crate::routing::normalize_path(req.uri.path()).is_ok_and(|p| p == "/healthz")
}
