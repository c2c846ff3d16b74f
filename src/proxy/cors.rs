//! CORS phase (`request_filter`, first; `response_filter`): preflights are answered here and
//! never forwarded; for other requests from an allowed origin the response headers are prepared
//! once and added to whatever answers — the upstream's response or the gateway's own.

use super::ctx::RequestCtx;
use super::error::respond;
use crate::cors::CorsPolicy;
use crate::state::Gateway;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// `Ok(true)`: a preflight was answered.
pub(super) async fn preflight_or_prepare(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<bool> {
    let Some(policy) = &gateway.cors else {
        return Ok(false);
    };
    let req = session.req_header();
    if CorsPolicy::is_preflight(&req.method, &req.headers) {
        let (status, mut headers) = match policy.preflight(&req.headers) {
            Some(h) => (204, h),
            None => (403, Vec::new()),
        };
        headers.extend(super::request_id::header(ctx));
        ctx.outcome.status = Some(status);
        respond(session, status, None, &headers).await?;
        return Ok(true);
    }
    ctx.client.cors = policy.response_headers(&req.headers);
    Ok(false)
}

/// Add the prepared headers to an upstream response. `Vary` is appended to the upstream's own
/// (it may vary by `Accept-Encoding` too); the others replace whatever the upstream sent.
pub(super) fn decorate(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora_core::Result<()> {
    for (name, value) in ctx.client.cors.iter().flatten() {
        if name == http::header::VARY {
            resp.append_header(name.clone(), value.clone())?;
        } else {
            resp.insert_header(name.clone(), value.clone())?;
        }
    }
    Ok(())
}
