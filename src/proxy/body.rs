//! Body phase (`request_filter`, after auth): read the JSON body before the upstream is chosen,
//! bounded by the route's `max_body` (413 above it), check it is a JSON object (400 if not),
//! take the fields later phases need (model, stream, usage request, conversation), and enforce
//! the tenant's model list (403; `model_list.rs`). A model named ambiguously — case variants of
//! the JSON key, a multipart form that parsers could read differently (`multipart.rs`), two
//! `Content-Type` headers — is refused (400) rather than guessed. The body then goes upstream from the pre-read session
//! (`preread.rs`), whatever its size, on the first attempt and on every retry — byte for byte,
//! except that a stream which did not ask for usage is made to (`stream_options.include_usage`)
//! so that it can be accounted (the stream phase removes that extra chunk again), and that the
//! cache switch `caching` is taken out (it is ours, not the upstream's). A route that caches
//! reads JSON bodies for the cache key even when it is `general`.

use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::link::Link;
use super::model_list;
use super::preread;
use crate::config::RouteKind;
use crate::openai::{include_usage_in_place, with_include_usage_at, RequestInfo, Splice};
use crate::state::Gateway;
use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;
use std::sync::Arc;

pub(super) async fn read_body(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<()> {
    let Some(route) = ctx.route().cloned() else {
        return Ok(());
    };
    let tenant = ctx.auth.tenant.clone().filter(|t| t.restricts_models());
    let restricted = tenant.is_some();
    let path_named = match &tenant {
        Some(t) => model_list::check_path(&route, ctx, t).map_err(|e| ctx.fail(e))?,
        None => false,
    };
    let kind = body_kind(session);
    // A benchmark route answers from the body's `model` and `stream` like an openai one.
    let openai = matches!(route.config.kind, RouteKind::OpenAi | RouteKind::Benchmark);
    // A route that caches needs the body for the key; see `Route::depends_on_the_body` for the
    // rest.
    let cacheable = route.cache.is_some();
    let wanted = match kind {
        BodyKind::None => false,
        BodyKind::Json => {
            let names_fallbacks = session
                .req_header()
                .headers
                .contains_key(super::forward::FALLBACK_HEADER);
            openai || restricted || cacheable || route.depends_on_the_body(names_fallbacks)
        }
        // A model list must hold for uploads too (audio transcriptions carry `model` as a
        // form field) and for bodies whose content type a client forgot to set.
        BodyKind::Multipart(_) | BodyKind::Other => restricted,
    };
    if !wanted {
        return super::client::go_ahead(session).await;
    }
    // Which of two content types an upstream honours is anyone's guess.
    let content_types = session
        .req_header()
        .headers
        .get_all(http::header::CONTENT_TYPE)
        .iter()
        .count();
    if restricted && content_types > 1 {
        return Err(ctx.fail(GatewayError::AmbiguousModel));
    }
    let max = route.config.max_body;
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ctx.fail(GatewayError::BodyTooLarge));
    }
    super::client::go_ahead(session).await?;
    // Room for the `include_usage` edit too, so that it is made in place (see `splice_usage`).
    let room = (declared.unwrap_or(8192).min(max) as usize).saturating_add(SPLICE_ROOM);
    let mut body = BytesMut::with_capacity(room);
    while let Some(chunk) = read_chunk(session, ctx).await? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(ctx.fail(GatewayError::BodyTooLarge));
        }
        body.extend_from_slice(&chunk);
    }
    let mut body = body.freeze();
    if matches!(kind, BodyKind::Json) && (openai || cacheable) {
        // The cache switch is ours, not the upstream's: read it and take it out.
        let (flag, rewritten) = crate::openai::take_caching_flag(&body);
        ctx.cache.flag = flag;
        if let Some(b) = rewritten {
            body = b.into();
            ctx.body.rewritten = true;
        }
    }
    let model = match &kind {
        BodyKind::Multipart(content_type) => {
            match crate::multipart::model_field(content_type, body.clone()) {
                Ok(model) => model,
                Err(_) => return Err(ctx.fail(GatewayError::AmbiguousModel)),
            }
        }
        _ => {
            // One pass reads the fields and judges the model key (`RequestInfo::scan`).
            let scan = RequestInfo::scan(&body);
            let ambiguous = scan.ambiguous_model;
            match scan.info.filter(|_| !scan.odd_model) {
                // `MODEL` next to `model`: a case-insensitive decoder upstream may take either.
                Some(_) if ambiguous => return Err(ctx.fail(GatewayError::AmbiguousModel)),
                Some(mut info) => {
                    // Moved, not copied: `ctx.body.model` is where the model is read from.
                    let model = info.model.take();
                    // Only an openai route reads the usage chunk; a general one passes bytes as sent.
                    if openai
                        && info.stream
                        && !info.include_usage
                        && asks_for_tokens(session.req_header().uri.path())
                    {
                        let (spliced, edit) = splice_usage(body);
                        body = spliced;
                        if let Some(splice) = edit {
                            // The conversation may come after the splice.
                            info.spliced(&splice);
                            ctx.body.strip_usage_chunk = true;
                            ctx.body.rewritten = true;
                        }
                    }
                    ctx.body.info = Some(info);
                    model
                }
                // A general route reads JSON only for its cache key; any JSON is fine there.
                None if !openai && !restricted => None,
                // A repeated `model` makes serde give up too; say why.
                None if ambiguous => return Err(ctx.fail(GatewayError::AmbiguousModel)),
                None => return Err(ctx.fail(GatewayError::InvalidJson)),
            }
        }
    };
    if let Some(tenant) = &tenant {
        model_list::check_body(&route, tenant, model.as_deref(), path_named)
            .map_err(|e| ctx.fail(e))?;
    }
    ctx.body.model = model;
    // The prompt's size in tokens (~4 bytes each), for budgets, usage and continuations.
    ctx.body.prompt_estimate = ctx
        .body
        .info
        .as_ref()
        .and_then(|i| i.input_len())
        .map(|len| len as u64 / 4);
    ctx.body.bytes = Some(body.clone());
    let link = Arc::new(Link::new(body).with_cutoff(Arc::clone(&gateway.cutoff)));
    ctx.body.link = Some(Arc::clone(&link));
    // From here the session paces stream events one by one (see `preread.rs`).
    ctx.body.preread = Some(preread::install(
        &mut session.downstream_session,
        link,
        &gateway.draining,
        ctx.limits.pacer.take(),
    ));
    Ok(())
}

/// The most bytes the `include_usage` edit adds to a body
/// (`,"stream_options":{"include_usage":true}`), rounded up.
const SPLICE_ROOM: usize = 64;

/// The body with `include_usage` spliced in, and where, if it needed it. The body is not shared
/// yet, so the edit is made in its own buffer: a large prompt is never held twice (a copy is
/// made only if it were shared).
fn splice_usage(body: Bytes) -> (Bytes, Option<Splice>) {
    match body.try_into_mut() {
        Ok(mut own) => {
            let splice = include_usage_in_place(&mut own);
            (own.freeze(), splice)
        }
        Err(body) => match with_include_usage_at(&body) {
            Some((rewritten, splice)) => (rewritten.into(), Some(splice)),
            None => (body, None),
        },
    }
}

/// The next piece of the client's body. A body that stalls past `server.body_timeout` is a 408,
/// one with broken chunking a 400; any other failure means the client is gone (no answer).
async fn read_chunk(
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<Option<bytes::Bytes>> {
    match session.read_request_body().await {
        Ok(chunk) => Ok(chunk),
        Err(e) => match GatewayError::from_client_body(&e) {
            Some(error) => Err(ctx.fail(error)),
            None => Err(e.into_down()),
        },
    }
}

/// Endpoints whose streams can carry a usage chunk when asked (`stream_options`).
fn asks_for_tokens(path: &str) -> bool {
    path.ends_with("/chat/completions") || path.ends_with("/completions")
}

enum BodyKind {
    None,
    Json,
    /// `multipart/form-data`, with the whole `Content-Type` (boundary and all).
    Multipart(String),
    Other,
}

fn body_kind(session: &mut Session) -> BodyKind {
    let req = session.req_header();
    if !matches!(
        req.method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    ) {
        return BodyKind::None;
    }
    if session.as_downstream_mut().is_body_empty() {
        return BodyKind::None;
    }
    // Compared without copying (every request with a body comes here): only a multipart
    // upload keeps its `Content-Type`.
    let content_type = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let json_suffix = mime
        .len()
        .checked_sub(5)
        .and_then(|at| mime.as_bytes().get(at..))
        .is_some_and(|tail| tail.eq_ignore_ascii_case(b"+json"));
    if mime.eq_ignore_ascii_case("application/json") || json_suffix {
        return BodyKind::Json;
    }
    if mime.eq_ignore_ascii_case("multipart/form-data") {
        return BodyKind::Multipart(content_type.to_string());
    }
    BodyKind::Other
}
