//! The chat-log record: one JSON line per request on a logged route — who asked (route, client
//! IP, key id, never the key), what (model, messages or prompt or input), what came back
//! (answer reassembled from the stream, tool calls, reasoning), what it cost (usage, and whether
//! it is an estimate), and how it went (status, latency, time to first token, complete or cut).

use super::ctx::RequestCtx;
use super::stream::Outcome;
use crate::openai::InputField;
use serde::Serialize;
use serde_json::value::RawValue;
use std::time::SystemTime;

/// Which API a path is, for the record (and `convert`).
pub(super) fn endpoint(path: &str) -> Option<&'static str> {
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

/// One chat-log line. Serialised straight from borrowed parts: the request's conversation goes
/// in as the raw JSON text it arrived as (validated, never rebuilt), so a long history costs a
/// copy, not a parse and a re-serialisation.
#[derive(Serialize)]
struct ChatRecord<'a> {
    time: String,
    request_id: &'a str,
    route: &'a str,
    client_ip: Option<String>,
    key_id: Option<&'a str>,
    model: Option<&'a str>,
    endpoint: &'a str,
    request: RequestPart<'a>,
    answer: Option<&'a str>,
    tool_calls: &'a [crate::openai::ToolCall],
    reasoning: Option<&'a str>,
    finish_reason: Option<&'a str>,
    usage: Option<UsagePart>,
    status: u16,
    cache: &'a str,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    stream: bool,
    complete: bool,
    /// Why the gateway ended it, when it did (`stream_interrupted`, `cut_by_shutdown` …).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    /// The answer (text, reasoning, tool calls) was longer than the gateway keeps; what is
    /// recorded is its beginning.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    /// The upstream broke the stream and another candidate finished the answer (two calls:
    /// `model` is the first, the answer and usage are both calls').
    #[serde(skip_serializing_if = "Option::is_none")]
    continued_by: Option<ContinuedBy<'a>>,
}

#[derive(Serialize)]
struct ContinuedBy<'a> {
    upstream: &'a str,
    model: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct RequestPart<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct UsagePart {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    estimated: bool,
}

pub(super) fn chat_record(
    ctx: &RequestCtx,
    path: &str,
    status: u16,
    outcome: Option<&Outcome>,
    messages: bool,
) -> Option<Vec<u8>> {
    let endpoint = endpoint(path)?;
    let route = ctx.route()?;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut request = RequestPart::default();
    if messages {
        if let (Some(info), Some(body)) = (&ctx.body.info, &ctx.body.bytes) {
            if let (Some((field, _)), Some(raw)) = (&info.input, info.input_json(body)) {
                let raw = serde_json::from_str::<&RawValue>(raw).ok();
                match field {
                    InputField::Messages => request.messages = raw,
                    InputField::Prompt => request.prompt = raw,
                    InputField::Input => request.input = raw,
                }
            }
        }
    }
    let info = outcome.and_then(|o| o.info.as_ref());
    let first = info.and_then(|i| i.choices.first());
    let text = |s: &'_ str| (messages && !s.is_empty()).then_some(());
    let record = ChatRecord {
        time: crate::chatlog::rfc3339_utc(now_ms),
        request_id: ctx.client.request_id.as_str(),
        route: &route.config.prefix,
        client_ip: ctx.client.ip.map(|ip| {
            let mut text = String::with_capacity(15);
            crate::limits::text::push_ip(&mut text, ip);
            text
        }),
        key_id: ctx.auth.key_id.as_deref(),
        model: info
            .and_then(|i| i.model.as_deref())
            .or(ctx.body.model.as_deref()),
        endpoint,
        request,
        answer: first.and_then(|c| text(&c.text).map(|_| c.text.as_str())),
        tool_calls: match first {
            Some(c) if messages => &c.tool_calls,
            _ => &[],
        },
        reasoning: first.and_then(|c| text(&c.reasoning).map(|_| c.reasoning.as_str())),
        finish_reason: first.and_then(|c| c.finish_reason.as_deref()),
        usage: outcome.and_then(|o| {
            o.usage.map(|u| UsagePart {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                total_tokens: u.total_tokens,
                cached_tokens: u.cached_tokens,
                reasoning_tokens: u.reasoning_tokens,
                estimated: o.estimated,
            })
        }),
        status,
        cache: super::cache::label(ctx),
        latency_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
        ttft_ms: ctx
            .outcome
            .first_byte
            .map(|t| t.duration_since(ctx.started).as_secs_f64() * 1000.0),
        stream: outcome.is_some_and(|o| o.stream),
        complete: outcome.is_some_and(|o| o.complete),
        error: ctx
            .outcome
            .error
            .filter(|_| !ctx.outcome.continued)
            .map(|e| e.code()),
        truncated: outcome.is_some_and(|o| o.truncated),
        continued_by: ctx
            .candidate()
            .filter(|_| ctx.outcome.continued)
            .map(|c| ContinuedBy {
                upstream: &c.target.config.name,
                model: c.breaker_model(),
            }),
    };
    // Sized up front: a long conversation is serialised once, not through a doubling buffer
    // (which briefly holds two copies of it).
    let size = request_len(&record.request)
        + record.answer.map_or(0, str::len)
        + record.reasoning.map_or(0, str::len)
        + 1024;
    let mut line = Vec::with_capacity(size + size / 8);
    serde_json::to_writer(&mut line, &record).ok()?;
    Some(line)
}

fn request_len(r: &RequestPart<'_>) -> usize {
    [r.messages, r.prompt, r.input]
        .iter()
        .flatten()
        .map(|v| v.get().len())
        .sum()
}

/// openai-forward's `PRINT_CHAT`: a readable line per chat on stderr.
pub(super) fn print_chat(ctx: &RequestCtx, outcome: Option<&Outcome>) {
    let question = ctx
        .body
        .bytes
        .as_ref()
        .zip(ctx.body.info.as_ref())
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
        ctx.route().map_or("-", |r| r.config.prefix.as_str()),
        crate::logfmt::Field(ctx.auth.key_id.as_deref().unwrap_or("-")),
        crate::logfmt::Field(ctx.body.model.as_deref().unwrap_or("-")),
        question,
        answer
    );
}
