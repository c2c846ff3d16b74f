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

pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static(X_REQUEST_ID_STR);
/// For inserting: Pingora copies the text of a `HeaderName` not in its short list of titled
/// names into a fresh buffer on every insert; a `&'static str` is used as is.
const X_REQUEST_ID_STR: &str = "x-request-id";
pub(super) const X_UPSTREAM_REQUEST_ID: HeaderName =
    HeaderName::from_static(X_UPSTREAM_REQUEST_ID_STR);
const X_UPSTREAM_REQUEST_ID_STR: &str = "x-upstream-request-id";

/// Keep a trusted proxy's sane `X-Request-Id`; otherwise the generated one stays.
/// (The peer is judged first: from an untrusted one the header is not even looked up.)
pub(super) fn assign(gateway: &Gateway, session: &Session, ctx: &mut RequestCtx) {
    let trusted = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .is_some_and(|a| gateway.client_ip.is_trusted(a.ip()));
    if !trusted {
        return;
    }
    let Some(sent) = session.req_header().headers.get(&X_REQUEST_ID) else {
        return;
    };
    if let Some(id) = RequestId::accept(sent.as_bytes()) {
        ctx.client.request_id = id;
    }
}

pub(super) fn to_upstream(
    ctx: &mut RequestCtx,
    req: &mut RequestHeader,
) -> pingora_core::Result<()> {
    match value(ctx) {
        Some(v) => req.insert_header(X_REQUEST_ID_STR, v),
        None => req.insert_header(X_REQUEST_ID_STR, ctx.client.request_id.as_str()),
    }
}

pub(super) fn to_client(
    ctx: &mut RequestCtx,
    resp: &mut ResponseHeader,
) -> pingora_core::Result<()> {
    if let Some(theirs) = resp.remove_header(&X_REQUEST_ID) {
        if theirs.as_bytes() != ctx.client.request_id.as_str().as_bytes() {
            resp.insert_header(X_UPSTREAM_REQUEST_ID_STR, theirs)?;
        }
    }
    match value(ctx) {
        Some(v) => resp.insert_header(X_REQUEST_ID_STR, v),
        None => resp.insert_header(X_REQUEST_ID_STR, ctx.client.request_id.as_str()),
    }
}

/// The id's text, owned by the bytes of its header value.
struct IdText(RequestId);

impl AsRef<[u8]> for IdText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_str().as_bytes()
    }
}

/// The id as a header value, made on first use: one allocation shared by the headers upstream
/// and back (each was a copy of the text). `None` only if the id were no valid value, which
/// ids never are (visible ASCII); the callers then insert the text and fail as before.
fn value(ctx: &mut RequestCtx) -> Option<HeaderValue> {
    if ctx.client.request_id_header.is_none() {
        let text = bytes::Bytes::from_owner(IdText(ctx.client.request_id));
        ctx.client.request_id_header = HeaderValue::from_maybe_shared(text).ok();
    }
    ctx.client.request_id_header.clone()
}

/// The header for the gateway's own answers (errors, `/healthz`, preflights).
pub(super) fn header(ctx: &RequestCtx) -> Option<(HeaderName, HeaderValue)> {
    let value = HeaderValue::from_str(ctx.client.request_id.as_str()).ok()?;
    Some((X_REQUEST_ID, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_count::allocations;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// The id goes upstream with one allocation fewer than through its `HeaderName` (whose text
    /// Pingora copies), and the head is the same.
    #[test]
    fn the_id_header_costs_no_copy_of_its_name() {
        let mut ctx = RequestCtx::new(&Arc::new(AtomicUsize::new(0)));
        let head = || RequestHeader::build("POST", b"/v1/chat/completions", Some(8)).unwrap();
        let (mut old, mut new) = (head(), head());
        let (before, r) =
            allocations(|| old.insert_header(X_REQUEST_ID, ctx.client.request_id.as_str()));
        r.unwrap();
        let (after, r) = allocations(|| to_upstream(&mut ctx, &mut new));
        r.unwrap();
        assert_eq!(format!("{old:?}"), format!("{new:?}"));
        assert_eq!((before, after), (4, 3));
        // Back to the client, the value is shared: only the name's copy and its clone remain.
        let mut resp = ResponseHeader::build(200, Some(8)).unwrap();
        let (back, r) = allocations(|| to_client(&mut ctx, &mut resp));
        r.unwrap();
        assert_eq!(back, 2);
        let sent = |h: &http::HeaderMap| h.get(&X_REQUEST_ID).cloned();
        assert_eq!(sent(&resp.headers), sent(&new.headers));
        assert_eq!(
            sent(&resp.headers).unwrap().as_bytes(),
            ctx.client.request_id.as_str().as_bytes()
        );
    }
}
