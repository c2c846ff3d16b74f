//! The chat-log record: one JSON line per request on a logged route — who asked (route, client
//! IP, key id, never the key), what (model, messages or prompt or input), what came back
//! (answer reassembled from the stream, tool calls, reasoning), what it cost (usage, and whether
//! it is an estimate), and how it went (status, latency, time to first token, complete or cut).

use super::ctx::RequestCtx;
use super::stream::Outcome;
use serde_json::{json, Map, Value};
use std::time::SystemTime;

/// Which API a path is, for the record (and `convert`).
pub fn endpoint(path: &str) -> Option<&'static str> {
    [
        ("/chat/completions", "chat"),
        ("/completions", "completions"),
        ("/embeddings", "embeddings"),
        ("/responses", "responses"),
    ]
    .into_iter()
    .find(|(suffix, _)| path.ends_with(suffix))
    .map(|(_, name)| name)
}

pub fn chat_record(
    ctx: &RequestCtx,
    path: &str,
    status: u16,
    outcome: Option<&Outcome>,
    messages: bool,
) -> Option<Vec<u8>> {
    let endpoint = endpoint(path)?;
    let route = ctx.route.as_ref()?;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut request = Map::new();
    if messages {
        if let (Some(info), Some(body)) = (&ctx.request_info, &ctx.request_body) {
            if let (Some((field, _)), Some(raw)) = (&info.input, info.input_json(body)) {
                let key = match field {
                    crate::openai::InputField::Messages => "messages",
                    crate::openai::InputField::Prompt => "prompt",
                    crate::openai::InputField::Input => "input",
                };
                // Embedding inputs can be large; their text is kept, their vectors never are
                // (responses' vectors are not read at all).
                let value = serde_json::from_str::<Value>(raw).unwrap_or(Value::Null);
                request.insert(key.into(), value);
            }
        }
    }
    let info = outcome.and_then(|o| o.info.as_ref());
    let first = info.and_then(|i| i.choices.first());
    let text = |s: &str| (messages && !s.is_empty()).then(|| s.to_string());
    let usage = outcome
        .and_then(|o| o.usage.map(|u| (u, o.estimated)))
        .map(|(u, estimated)| {
            json!({
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens,
                "cached_tokens": u.cached_tokens,
                "reasoning_tokens": u.reasoning_tokens,
                "estimated": estimated,
            })
        });
    let model = info
        .and_then(|i| i.model.clone())
        .or_else(|| ctx.model.clone());
    let record = json!({
        "time": crate::chatlog::rfc3339_utc(now_ms),
        "request_id": format!("{:016x}", ctx.request_id),
        "route": route.config.prefix,
        "client_ip": ctx.client_ip.map(|ip| ip.to_string()),
        "key_id": ctx.key_id,
        "model": model,
        "endpoint": endpoint,
        "request": request,
        "answer": first.and_then(|c| text(&c.text)),
        "tool_calls": first.map(|c| if messages { json!(c.tool_calls) } else { json!([]) }).unwrap_or(json!([])),
        "reasoning": first.and_then(|c| text(&c.reasoning)),
        "finish_reason": first.and_then(|c| c.finish_reason.clone()),
        "usage": usage,
        "status": status,
        "cache": "bypass",
        "latency_ms": ctx.started.elapsed().as_secs_f64() * 1000.0,
        "ttft_ms": ctx.first_byte.map(|t| t.duration_since(ctx.started).as_secs_f64() * 1000.0),
        "stream": outcome.is_some_and(|o| o.stream),
        "complete": outcome.is_some_and(|o| o.complete),
    });
    serde_json::to_vec(&record).ok()
}

/// openai-forward's `PRINT_CHAT`: a readable line per chat on stderr.
pub fn print_chat(ctx: &RequestCtx, outcome: Option<&Outcome>) {
    let question = ctx
        .request_body
        .as_ref()
        .zip(ctx.request_info.as_ref())
        .and_then(|(b, i)| {
            i.input_json(b)
                .map(|s| s.chars().take(200).collect::<String>())
        })
        .unwrap_or_default();
    let answer = outcome
        .and_then(|o| o.info.as_ref())
        .and_then(|i| i.choices.first())
        .map(|c| c.text.chars().take(400).collect::<String>())
        .unwrap_or_default();
    eprintln!(
        "[chat] {} {} {}\n  > {}\n  < {}",
        ctx.route.as_ref().map_or("-", |r| r.config.prefix.as_str()),
        ctx.key_id.as_deref().unwrap_or("-"),
        ctx.model.as_deref().unwrap_or("-"),
        question,
        answer
    );
}
