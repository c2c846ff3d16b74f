//! Streams served from a cached non-stream answer (`request_filter`, after the body phase).
//!
//! A `stream: true` chat completion whose twin — the same request with `stream` absent or
//! `false` (and no `stream_options`), same tenant scope, route, upstreams and path — has a
//! complete answer in the cache is answered here from that answer, as openai-forward does:
//! a synthesized event stream (a `role` chunk, the content in word-sized pieces, tool calls, the
//! `finish_reason` chunk, the usage chunk when the client asked, `data: [DONE]`), with the
//! cached answer's id, model and created time, paced like a live stream when the route paces
//! output. It is a hit like any other (`x-cache: HIT`, `x-cache-key` of the entry served, no
//! charge unless `charge_hits`), and goes through the stream tap (usage, chat logs, budgets).
//! Nothing goes upstream and nothing is stored. Without a twin (or with one we cannot replay
//! faithfully, e.g. with `logprobs`) the request goes on as before and its own stream is cached
//! under its own key. The reverse — a non-stream request served from a cached stream — is not
//! done.

use super::benchmark::{pieces, write_sse, ChunkStream};
use super::cache::Keying;
use super::ctx::{CacheState, RequestCtx};
use crate::cache_key::Digest;
use crate::config::RouteKind;
use crate::state::Gateway;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use serde_json::{json, Map, Value};

/// `Ok(true)`: the request was answered from its non-stream twin.
pub(super) async fn serve(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<bool> {
    let Some(cache) = &gateway.cache else {
        return Ok(false);
    };
    let wanted = ctx.body.info.as_ref().is_some_and(|i| i.stream)
        && ctx
            .route()
            .is_some_and(|r| r.config.kind == RouteKind::OpenAi)
        && session.req_header().method == http::Method::POST
        && session
            .req_header()
            .uri
            .path()
            .ends_with("/chat/completions");
    if !wanted {
        return Ok(false);
    }
    let Some(keying) = super::cache::keying(gateway, session, ctx).filter(|k| !k.refresh()) else {
        return Ok(false);
    };
    let Some(twins) = twin_keys(&keying, session.req_header(), ctx.body.bytes.as_deref()) else {
        return Ok(false);
    };
    // Both looked up at once: one round trip on Redis.
    let [absent, off] = twins;
    let found = futures_util::join!(cache.store.stored(&absent), cache.store.stored(&off));
    for (id, stored) in [(absent, found.0), (off, found.1)] {
        let Some((meta, entry)) = stored else {
            continue;
        };
        let head = meta.response_header();
        let json = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if head.status != http::StatusCode::OK
            || !json
            || head.headers.contains_key(http::header::CONTENT_ENCODING)
        {
            continue;
        }
        let Ok(answer) = serde_json::from_slice::<Value>(&entry.body) else {
            continue;
        };
        let usage_asked =
            ctx.body.info.as_ref().is_some_and(|i| i.include_usage) || ctx.body.strip_usage_chunk;
        let Some(events) = synthesize(&answer, usage_asked) else {
            continue;
        };
        let age = meta
            .created()
            .elapsed()
            .map_or(0, |d| d.as_secs())
            .to_string();
        replay(gateway, session, ctx, keying, id, &age, events).await?;
        return Ok(true);
    }
    Ok(false)
}

/// The keys of the request's non-stream versions: without `stream` and `stream_options`, then
/// with `"stream": false`.
fn twin_keys(
    keying: &Keying,
    req: &pingora_http::RequestHeader,
    body: Option<&[u8]>,
) -> Option<[Digest; 2]> {
    let mut map = serde_json::from_slice::<Map<String, Value>>(body?).ok()?;
    map.remove("stream");
    map.remove("stream_options");
    let absent = serde_json::to_vec(&map).ok()?;
    map.insert("stream".into(), Value::Bool(false));
    let off = serde_json::to_vec(&map).ok()?;
    Some([keying.key(req, Some(&absent)), keying.key(req, Some(&off))])
}

/// The chunks of a cached `chat.completion` (before `[DONE]`), or `None` when it is not one
/// that a stream can say exactly (log probabilities, content that is not text).
fn synthesize(answer: &Value, usage_asked: bool) -> Option<Vec<Value>> {
    if answer.get("object")?.as_str()? != "chat.completion" {
        return None;
    }
    let stream = ChunkStream {
        id: answer.get("id")?.as_str()?,
        model: answer.get("model")?.as_str()?,
        created: answer.get("created")?.as_u64()?,
        fingerprint: answer.get("system_fingerprint").and_then(Value::as_str),
    };
    let mut events = Vec::new();
    for (i, choice) in answer.get("choices")?.as_array()?.iter().enumerate() {
        if choice.get("logprobs").is_some_and(|l| !l.is_null()) {
            return None;
        }
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(i as u64);
        let message = choice.get("message")?;
        let content = match message.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return None,
        };
        if message.get("audio").is_some_and(|a| !a.is_null()) {
            return None;
        }
        events.push(stream.delta(
            index,
            json!({"role": "assistant", "content": if content.is_some() { json!("") } else { Value::Null }}),
            None,
        ));
        for piece in content.into_iter().flat_map(pieces) {
            events.push(stream.delta(index, json!({ "content": piece }), None));
        }
        if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
            events.push(stream.delta(index, json!({ "refusal": refusal }), None));
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            for (n, call) in calls.iter().enumerate() {
                let mut call = call.clone();
                call.as_object_mut()?.insert("index".into(), json!(n));
                events.push(stream.delta(index, json!({ "tool_calls": [call] }), None));
            }
        }
        let finish = choice.get("finish_reason").and_then(Value::as_str);
        events.push(stream.delta(index, json!({}), Some(finish.unwrap_or("stop"))));
    }
    if let Some(usage) = answer.get("usage").filter(|u| usage_asked && !u.is_null()) {
        events.push(stream.usage(usage.clone()));
    }
    Some(events)
}

/// Answer with the synthesized stream, as a hit of entry `id`.
async fn replay(
    gateway: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    keying: Keying,
    id: Digest,
    age: &str,
    events: Vec<Value>,
) -> pingora_core::Result<()> {
    ctx.cache.state = CacheState::Hit(keying.plan(id));
    ctx.outcome.status = Some(200);
    // The stream tap and metrics read the head's content type only.
    let mut sse = ResponseHeader::build(200, Some(1))?;
    sse.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
    super::stream::tap_response(gateway, ctx, &sse);
    super::observe::on_response(gateway, &sse, ctx);
    let mut headers: Vec<(http::HeaderName, http::HeaderValue)> = Vec::with_capacity(12);
    let cache_headers = [
        ("x-cache", "HIT".to_string()),
        ("x-cache-key", crate::cache_key::hex(&id)),
        ("age", age.to_string()),
    ];
    for (name, value) in cache_headers {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            headers.push((http::HeaderName::from_static(name), value));
        }
    }
    headers.extend(super::limits::headers(ctx));
    headers.extend(super::request_id::header(ctx));
    if let Some(cors) = ctx.client.cors.take() {
        headers.extend(cors.iter().cloned());
    }
    write_sse(session, ctx, headers.iter(), events).await
}
