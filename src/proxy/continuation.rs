//! Continuing a broken stream (`stream_errors: continue`): a chat-completions stream that breaks
//! or goes idle after part of the answer reached the client is finished by the plan's next
//! candidate (the same model on another upstream, else a fallback model), spliced into the
//! client's stream so that it reads as one answer.
//!
//! Pingora cannot run another upstream attempt once response bytes went out, so the
//! continuation is a second request the gateway makes itself, from `fail_to_proxy` (where the
//! cut stream is handled), on the real downstream session. It asks for the conversation plus the
//! text so far: as an assistant prefill on upstreams with `prefill: true`, else followed by a
//! user instruction to continue exactly where the text stopped. Each chunk of the answer is
//! rewritten to the `id`, `model` and `created` the client already saw, fed to the request's
//! accumulator (chat logs and token accounting see both calls), and written on; the usage chunk
//! is summed over both calls (the broken call's part estimated), and `[DONE]` ends it once.
//!
//! Continued only: a single-choice text answer (no tool calls, no reasoning-only stream) that was
//! cut on an event boundary, with its text kept whole. Anything else, or a continuation that
//! fails in turn, ends as a cut stream does.

use super::ctx::{RequestCtx, ResponseTap};
use crate::openai::{InputField, Usage};
use crate::sse::SseParser;
use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_proxy::Session;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What is asked of a model that takes no prefill, after the text so far as its own message.
pub(super) const INSTRUCTION: &str =
    "Your previous message was cut off. Continue it exactly where it \
stopped, without repeating anything and without any preface.";

/// The longest wait for the continuation's response head when the upstream sets no
/// `first_token` deadline (its `read` timeout applies too, whichever is shorter).
const HEAD_WAIT: Duration = Duration::from_secs(60);

/// Does this request's route continue broken streams (and is this a chat-completions stream)?
pub(super) fn enabled(ctx: &RequestCtx) -> bool {
    let continues = ctx.route().is_some_and(|r| {
        r.config.resilience.stream_errors == crate::config::StreamErrors::Continue
    });
    continues
        && ctx.body.link.is_some()
        && ctx.body.info.as_ref().is_some_and(|i| {
            i.stream && i.n.unwrap_or(1) == 1 && matches!(i.input, Some((InputField::Messages, _)))
        })
}

/// What the broken stream left: the text so far and the fields the client saw.
struct Broken {
    text: String,
    id: Value,
    model: Value,
    created: Value,
    /// The broken call's usage (estimated unless it reported one).
    usage: Usage,
}

/// Read what the broken stream left, if it can be continued.
fn broken(ctx: &mut RequestCtx) -> Option<Broken> {
    let prompt = ctx.body.prompt_estimate.unwrap_or(0);
    let Some(ResponseTap::Sse {
        parser, acc, first, ..
    }) = ctx.attempt.response.as_mut()
    else {
        return None;
    };
    if !parser.finish().clean || acc.is_done() || acc.truncated() || acc.saw_error() {
        return None;
    }
    let [choice] = acc.choices() else {
        return None;
    };
    if choice.text.is_empty() || !choice.tool_calls.is_empty() || choice.finish_reason.is_some() {
        return None;
    }
    let head: Map<String, Value> = serde_json::from_slice(first.as_deref()?).ok()?;
    let completion = acc.delta_events().max(acc.output_bytes().div_ceil(4));
    let usage = acc.usage().unwrap_or(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cached_tokens: None,
        reasoning_tokens: None,
    });
    Some(Broken {
        text: choice.text.clone(),
        id: head.get("id").cloned().unwrap_or(Value::Null),
        model: head.get("model").cloned().unwrap_or(Value::Null),
        created: head.get("created").cloned().unwrap_or(Value::Null),
        usage,
    })
}

/// The continuation request's body: the attempt's body for `model`, its conversation followed
/// by the text so far (and the instruction, without prefill).
pub(super) fn body(attempt_body: &[u8], model: &str, text: &str, prefill: bool) -> Option<Bytes> {
    let mut req: Map<String, Value> = serde_json::from_slice(attempt_body).ok()?;
    req.insert("model".into(), Value::String(model.to_string()));
    let messages = req.get_mut("messages")?.as_array_mut()?;
    messages.push(json!({"role": "assistant", "content": text}));
    if !prefill {
        messages.push(json!({"role": "user", "content": INSTRUCTION}));
    }
    serde_json::to_vec(&req).ok().map(Bytes::from)
}

fn connector() -> &'static Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR.get_or_init(|| Connector::new(None))
}

/// Try to continue the cut stream on the client's session. `true`: the client got the rest of
/// the answer and `[DONE]` (the request is `continued`); `false`: end it as a cut stream.
pub(super) async fn run(session: &mut Session, ctx: &mut RequestCtx) -> bool {
    if !enabled(ctx) {
        return false;
    }
    let Some(broken) = broken(ctx) else {
        return false;
    };
    let now = Instant::now();
    if !ctx
        .failover
        .plan
        .as_mut()
        .is_some_and(|a| a.continue_elsewhere(now))
    {
        return false;
    }
    match splice(session, ctx, &broken).await {
        Ok(()) => {
            ctx.outcome.continued = true;
            true
        }
        Err(why) => {
            log::warn!(
                "route {}: the continuation of a cut stream failed on upstream {}: {why} (request_id={})",
                ctx.route().map_or("-", |r| r.config.prefix.as_str()),
                ctx.candidate().map_or("-", |c| c.target.config.name.as_str()),
                ctx.client.request_id,
            );
            false
        }
    }
}

/// Ask the current candidate for the rest and write it to the client.
async fn splice(
    session: &mut Session,
    ctx: &mut RequestCtx,
    broken: &Broken,
) -> Result<(), String> {
    let candidate = ctx.candidate().cloned().ok_or("no candidate")?;
    let link = ctx.body.link.clone().ok_or("no pre-read body")?;
    let model = candidate
        .sent_model
        .as_deref()
        .or(candidate.model.as_deref())
        .ok_or("no model")?;
    let prefill = candidate.target.config.prefills(model);
    let req_body =
        body(&link.body(), model, &broken.text, prefill).ok_or("the body is not a chat request")?;
    link.set_body(req_body.clone());
    let mut req = Box::new(session.req_header().clone());
    super::forward::upstream_request(ctx, &mut req).map_err(|e| e.to_string())?;
    super::request_id::to_upstream(ctx, &mut req).map_err(|e| e.to_string())?;
    let upstream = &candidate.target.upstream;
    let peer = upstream.peer(None, None).await.map_err(|e| e.to_string())?;
    let (mut up, _) = connector()
        .get_http_session(&*peer)
        .await
        .map_err(|e| e.to_string())?;
    up.write_request_header(req)
        .await
        .map_err(|e| e.to_string())?;
    up.write_request_body(req_body, true)
        .await
        .map_err(|e| e.to_string())?;
    up.finish_request_body().await.map_err(|e| e.to_string())?;
    let t = upstream.timeouts;
    let head_wait = t.first_token.unwrap_or(HEAD_WAIT).min(t.read);
    tokio::time::timeout(head_wait, up.read_response_header())
        .await
        .map_err(|_| "no response head in time".to_string())?
        .map_err(|e| e.to_string())?;
    let head = up.response_header().ok_or("no response head")?;
    let is_sse = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !head.status.is_success() || !is_sse {
        return Err(format!("answered {}", head.status.as_u16()));
    }
    let gap = t.idle.unwrap_or(t.read).min(t.read);
    let mut parser = SseParser::new();
    let mut done = false;
    while !done {
        let chunk = tokio::time::timeout(gap, up.read_response_body())
            .await
            .map_err(|_| "the continuation went idle".to_string())?
            .map_err(|e| e.to_string())?;
        let Some(chunk) = chunk else {
            break;
        };
        let mut out = Vec::new();
        parser.push(&chunk, |event| {
            if event.is_done() {
                done = true;
            } else if let Some(data) = rewrite(event.data(), broken) {
                out.push(data);
            }
        });
        write_events(session, ctx, out).await?;
    }
    if !done && !parser.finish().clean {
        return Err("the continuation was cut too".into());
    }
    tap(ctx, b"[DONE]")?;
    write(session, Bytes::from_static(b"data: [DONE]\n\n")).await?;
    session
        .as_downstream_mut()
        .finish_body()
        .await
        .map_err(|e| e.to_string())
}

/// Feed the events to the request's accumulator and write them (a usage-only chunk the client
/// did not ask for is counted, not written).
async fn write_events(
    session: &mut Session,
    ctx: &mut RequestCtx,
    events: Vec<Vec<u8>>,
) -> Result<(), String> {
    if events.is_empty() {
        return Ok(());
    }
    let mut out = Vec::with_capacity(events.iter().map(|e| e.len() + 8).sum());
    for data in events {
        if tap(ctx, &data)? {
            continue;
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\n\n");
    }
    if out.is_empty() {
        return Ok(());
    }
    write(session, Bytes::from(out)).await
}

/// Observe one event; `true` when it is a usage-only chunk the gateway asked for itself. An
/// error when the answer ran past the request's token budget (cut, as `stream::on_body` cuts).
fn tap(ctx: &mut RequestCtx, data: &[u8]) -> Result<bool, String> {
    let Some(ResponseTap::Sse {
        acc, strip_usage, ..
    }) = ctx.attempt.response.as_mut()
    else {
        return Ok(false);
    };
    let kind = acc.observe(data);
    if let Some(t) = &ctx.limits.tokens {
        let spent = t.prompt + acc.delta_events().max(acc.output_bytes().div_ceil(4));
        if t.cut_at.is_some_and(|limit| spent > limit) {
            return Err("the token budget is spent".into());
        }
    }
    Ok(*strip_usage && kind == crate::openai::ChunkKind::UsageOnly)
}

async fn write(session: &mut Session, data: Bytes) -> Result<(), String> {
    session
        .write_response_body(Some(data), false)
        .await
        .map_err(|e| format!("the client: {e}"))
}

/// One chunk of the continuation as the client's stream carries it: the original `id`, `model`
/// and `created`, no second `role`, usage summed with the broken call's. `None`: not a JSON
/// object (dropped: the client's stream carries only what reads as its own answer).
fn rewrite(data: &[u8], broken: &Broken) -> Option<Vec<u8>> {
    let mut chunk: Map<String, Value> = serde_json::from_slice(data).ok()?;
    for (name, value) in [
        ("id", &broken.id),
        ("model", &broken.model),
        ("created", &broken.created),
    ] {
        if !value.is_null() {
            chunk.insert(name.into(), value.clone());
        }
    }
    if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            if let Some(delta) = c.get_mut("delta").and_then(Value::as_object_mut) {
                delta.remove("role");
            }
        }
    }
    if let Some(usage) = chunk.get_mut("usage").and_then(Value::as_object_mut) {
        let first = &broken.usage;
        for (name, add) in [
            ("prompt_tokens", first.prompt_tokens),
            ("completion_tokens", first.completion_tokens),
            ("total_tokens", first.total_tokens),
        ] {
            if let Some(n) = usage.get(name).and_then(Value::as_u64) {
                usage.insert(name.into(), Value::from(n + add));
            }
        }
    }
    serde_json::to_vec(&chunk).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_prefills_or_asks_to_continue() {
        let req = br#"{"model":"a","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let with = body(req, "b", "Hello wor", true).unwrap();
        let v: Value = serde_json::from_slice(&with).unwrap();
        assert_eq!(v["model"], "b");
        assert_eq!(
            v["messages"][1],
            json!({"role":"assistant","content":"Hello wor"})
        );
        assert_eq!(v["messages"].as_array().unwrap().len(), 2);
        let without = body(req, "b", "Hello wor", false).unwrap();
        let v: Value = serde_json::from_slice(&without).unwrap();
        let last = v["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["role"], "user");
        assert_eq!(last["content"], INSTRUCTION);
    }
}
