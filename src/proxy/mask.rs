//! Masking the pool key out of error answers (`upstream_response_filter`,
//! `upstream_response_body_filter`). Where an upstream takes its key in the query
//! (`key_header: query:key`, Gemini), an error page that echoes its URL would hand the gateway's
//! key to the client. So the error answers (non-2xx) of such attempts pass through a streaming
//! masker: every occurrence of the key (as sent, or percent-encoded) becomes `*`s of the same
//! length, so `Content-Length` stays right; a key split across chunks is caught by holding back
//! the last `len - 1` bytes of each chunk until the next one. Memory is bounded by the key's
//! length, whatever the size of the answer. Such attempts ask for uncompressed answers (see
//! `forward.rs`), or the key could not be seen.

use super::ctx::{Masker, RequestCtx};
use crate::config::KeyPlacement;
use bytes::Bytes;
use pingora_http::ResponseHeader;

/// On an error answer to an attempt that sent its pool key in the query: mask the key in the
/// response headers (a `Location` may echo the URL too) and set up the body's masker.
pub(super) fn prepare(ctx: &mut RequestCtx, resp: &mut ResponseHeader) -> pingora_core::Result<()> {
    if resp.status.is_success() {
        return Ok(());
    }
    let in_query = ctx
        .candidate()
        .is_some_and(|c| matches!(c.target.key_placement, KeyPlacement::Query(_)));
    let pool = ctx.attempt_pool();
    let (Some(pool), Some(index), true) = (pool, ctx.attempt.pool_key, in_query) else {
        return Ok(());
    };
    let Some(masker) = pool.keys.get(index).and_then(|k| Masker::new(k.secret())) else {
        return Ok(());
    };
    let echoed: Vec<http::HeaderName> = resp
        .headers
        .iter()
        .filter(|(_, v)| masker.found_in(v.as_bytes()))
        .map(|(n, _)| n.clone())
        .collect();
    for name in echoed {
        let values: Vec<Vec<u8>> = resp
            .headers
            .get_all(&name)
            .iter()
            .map(|v| {
                let mut v = v.as_bytes().to_vec();
                masker.mask(&mut v);
                v
            })
            .collect();
        resp.remove_header(&name);
        for v in values {
            if let Ok(v) = http::HeaderValue::from_bytes(&v) {
                resp.append_header(name.clone(), v)?;
            }
        }
    }
    ctx.attempt.mask = Some(masker);
    Ok(())
}

/// Mask this body chunk of an error answer, if it needs it.
pub(super) fn apply(ctx: &mut RequestCtx, body: &mut Option<Bytes>, end: bool) {
    let Some(masker) = ctx.attempt.mask.as_mut() else {
        return;
    };
    *body = masker.push(body.as_deref(), end);
}
