//! Benchmark routes (`type: benchmark`; openai-forward's `BENCHMARK_MODE`): `POST
//! …/chat/completions` is answered here with a canned chat completion, streamed or not, in
//! openai-forward's shape, and nothing goes upstream. Keys, IP rules, request limits and output
//! pacing apply as on any route, so a client (or the gateway itself) can be load-tested at no
//! cost. Unlike openai-forward, a non-streamed answer does not sleep first.

use super::ctx::RequestCtx;
use super::error::{respond, GatewayError};
use crate::config::RouteKind;
use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The answers, in turn: each a saying in Chinese with its English rendering.
const ANSWERS: [&str; 5] = [
    "千里之行，始于足下。\n\"A journey of a thousand miles begins with a single step.\"\n",
    "学而不思则罔，思而不学则殆。\n\"Learning without thought is labour lost; thought without learning is perilous.\"\n",
    "知之为知之，不知为不知，是知也。\n\"To know what you know and to know what you do not know, that is knowledge.\"\n",
    "三人行，必有我师焉。\n\"When three walk together, one of them can be my teacher.\"\n",
    "欲穷千里目，更上一层楼。\n\"To see a thousand miles further, climb one more storey.\"\n",
];

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The model named when the request names none (openai-forward's default).
const DEFAULT_MODEL: &str = "robot";
const FINGERPRINT: &str = "fp_0123456789";

/// `Ok(true)`: the request was answered here.
pub(super) async fn serve(
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<bool> {
    if ctx
        .route()
        .is_none_or(|r| r.config.kind != RouteKind::Benchmark)
    {
        return Ok(false);
    }
    let is_chat = ctx
        .routed
        .as_ref()
        .is_some_and(|r| r.rest.ends_with("/chat/completions"));
    if session.req_header().method != http::Method::POST || !is_chat {
        return Err(ctx.fail(GatewayError::RouteNotFound));
    }
    let Some(info) = ctx.body.info.as_ref() else {
        return Err(ctx.fail(GatewayError::InvalidJson));
    };
    let model = ctx
        .body
        .model
        .clone()
        .unwrap_or_else(|| DEFAULT_MODEL.into());
    let (stream, include_usage) = (info.stream, info.include_usage);
    let input = ctx
        .body
        .bytes
        .as_ref()
        .and_then(|b| info.input_json(b).map(str::to_string));
    let text = ANSWERS[NEXT.fetch_add(1, Ordering::Relaxed) % ANSWERS.len()];
    // Tokenizers load and count off the worker threads (see tokens.rs); counted as
    // openai-forward did, for gpt-3.5-turbo.
    let usage = tokio::task::spawn_blocking(move || {
        let prompt = input.map_or(0, |i| crate::tokens::count_input("gpt-3.5-turbo", &i));
        let completion = crate::tokens::count("gpt-3.5-turbo", text);
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        })
    })
    .await
    .unwrap_or(Value::Null);
    let id = format!("chatcmpl-{:032x}", rand::random::<u128>());
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ctx.outcome.status = Some(200);
    let cors = ctx.client.cors.take().unwrap_or_default();
    if !stream {
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "tool_calls": null},
                "finish_reason": "stop",
            }],
            "usage": usage,
            "system_fingerprint": FINGERPRINT,
        });
        respond(session, 200, Some(Bytes::from(body.to_string())), &cors).await?;
        return Ok(true);
    }
    let stream = ChunkStream {
        id: &id,
        model: &model,
        created,
        fingerprint: Some(FINGERPRINT),
    };
    let mut events = vec![stream.delta(0, json!({"role": "assistant", "content": ""}), None)];
    events.extend(pieces(text).map(|p| stream.delta(0, json!({ "content": p }), None)));
    events.push(stream.delta(0, json!({}), Some("stop")));
    if include_usage {
        events.push(stream.usage(usage));
    }
    write_sse(session, ctx, cors.iter(), events).await?;
    Ok(true)
}

/// The fields every `chat.completion.chunk` of one answer repeats.
pub(super) struct ChunkStream<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub created: u64,
    pub fingerprint: Option<&'a str>,
}

impl ChunkStream<'_> {
    fn chunk(&self, choices: Value) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "model": self.model,
            "choices": choices,
            "object": "chat.completion.chunk",
            "created": self.created,
        });
        if let Some(fp) = self.fingerprint {
            chunk["system_fingerprint"] = fp.into();
        }
        chunk
    }

    /// A chunk with one choice's `delta`, and its `finish_reason` when it is the last.
    pub(super) fn delta(&self, index: u64, delta: Value, finish: Option<&str>) -> Value {
        self.chunk(json!([{"index": index, "delta": delta, "finish_reason": finish}]))
    }

    /// The usage chunk (`stream_options.include_usage`): no choices.
    pub(super) fn usage(&self, usage: Value) -> Value {
        let mut last = self.chunk(json!([]));
        last["usage"] = usage;
        last
    }
}

/// Answer with an event stream of `events` and `data: [DONE]`: the head (`text/event-stream`,
/// chunked, plus `headers`), then one write per event. The pre-read session paces them like
/// a live stream when the route has output pacing, and each goes through the stream phase's tap
/// (usage accounting, chat logs, token budgets) when the request set one up.
pub(super) async fn write_sse<'h>(
    session: &mut Session,
    ctx: &mut RequestCtx,
    headers: impl Iterator<Item = &'h (http::HeaderName, http::HeaderValue)>,
    events: Vec<Value>,
) -> pingora_core::Result<()> {
    let mut head = ResponseHeader::build(200, Some(8))?;
    head.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
    head.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
    // The length is not known up front: HTTP/1.1 needs chunking, or Pingora ends the body by
    // closing the connection (while the head says keep-alive). HTTP/2 frames it itself.
    if !session.is_http2() {
        head.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    for (name, value) in headers {
        head.append_header(name.clone(), value.clone())?;
    }
    session.write_response_header(Box::new(head), false).await?;
    for event in events {
        let mut body = Some(Bytes::from(format!("data: {event}\n\n")));
        if super::stream::on_body(ctx, &mut body).is_err() {
            return Err(ctx.fail(GatewayError::TokensExhausted));
        }
        if let Some(bytes) = body.filter(|b| !b.is_empty()) {
            session.write_response_body(Some(bytes), false).await?;
        }
    }
    let mut done = Some(Bytes::from_static(b"data: [DONE]\n\n"));
    let _ = super::stream::on_body(ctx, &mut done);
    session
        .write_response_body(Some(Bytes::from_static(b"data: [DONE]\n\n")), true)
        .await
}

/// The text as openai-forward streams it: each CJK character, punctuation mark and whitespace
/// character alone, runs of anything else together.
pub(super) fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let mut chars = rest.char_indices();
        let (_, first) = chars.next()?;
        let end = if stands_alone(first) {
            first.len_utf8()
        } else {
            chars
                .find(|(_, c)| stands_alone(*c))
                .map_or(rest.len(), |(i, _)| i)
        };
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

fn stands_alone(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(c as u32, 0x3000..=0x303F | 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xFF00..=0xFFEF)
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn pieces_split_like_openai_forward() {
        let p: Vec<_> = pieces("千里，\n\"A step.\"").collect();
        assert_eq!(
            p,
            ["千", "里", "，", "\n", "\"", "A", " ", "step", ".", "\""]
        );
        assert_eq!(pieces("").count(), 0);
    }
}
