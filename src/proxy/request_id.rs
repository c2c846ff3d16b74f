//! Request-id phase (`early_request_filter`, `upstream_request_filter`, `response_filter` and
//! the gateway's own answers): which id this request carries (see `crate::request_id`), and the
//! headers that carry it.
//!
//! Upstream, `X-Request-Id` is always ours. Towards the client `x-request-id` is always ours
//! too; an upstream's own `x-request-id` (OpenAI's `req_…`, what its support asks for) comes
//! back renamed `x-upstream-request-id`, and the access log records both.

use super::ctx::RequestCtx;
use crate::request_id::RequestId;
use crate::state::Gateway;
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(super) const X_UPSTREAM_REQUEST_ID: HeaderName =
    HeaderName::from_static("x-upstream-request-id");

/// Keep a trusted proxy's sane `X-Request-Id`; otherwise the generated one stays.
pub(super) fn assign(gateway: &Gateway, session: &Session, ctx: &mut RequestCtx) {
    let Some(sent) = session.req_header().headers.get(&X_REQUEST_ID) else {
        return;
    };
    let trusted = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .is_some_and(|a| gateway.client_ip.is_trusted(a.ip()));
    if let Some(id) = RequestId::accept(sent.as_bytes()).filter(|_| trusted) {
        ctx.client.request_id = id;
    }
}

pub(super) fn to_upstream(ctx: &RequestCtx, req: &mut RequestHeader) -> pingora_core::Result<()> {
    req.insert_header(X_REQUEST_ID, ctx.client.request_id.as_str())
}

pub(super) fn to_client(ctx: &RequestCtx, resp: &mut ResponseHeader) -> pingora_core::Result<()> {
    if let Some(theirs) = resp.remove_header(&X_REQUEST_ID) {
        if theirs.as_bytes() != ctx.client.request_id.as_str().as_bytes() {
            resp.insert_header(X_UPSTREAM_REQUEST_ID, theirs)?;
        }
    }
    resp.insert_header(X_REQUEST_ID, ctx.client.request_id.as_str())
}

/// The header for the gateway's own answers (errors, `/healthz`, preflights).
pub(super) fn header(ctx: &RequestCtx) -> Option<(HeaderName, HeaderValue)> {
    let value = HeaderValue::from_str(ctx.client.request_id.as_str()).ok()?;
    Some((X_REQUEST_ID, value))
}
