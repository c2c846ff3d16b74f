//! The chat-log record: one JSON line per request on a logged route — who asked (route, client
//! IP, key id, never the key), what (model, messages or prompt or input), what came back
//! (answer reassembled from the stream, tool calls, reasoning), what it cost (usage, and whether
//! it is an estimate), and how it went (status, latency, time to first token, complete or cut).

use super::ctx::RequestCtx;
use super::stream::Outcome;
use crate::chatlog::Line;
use crate::openai::InputField;
use bytes::Bytes;
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

/// One chat-log line, in three parts written one after the other: [`Head`], the request's
/// conversation — the raw JSON text it arrived as, a slice of the request body shared with the
/// record (serde_json read it when the body was read, and its range follows the body's edits),
/// so a long history costs neither a parse and a re-serialisation nor a copy — and [`Tail`]. The line is what one struct with
/// all their fields in this order serialises to (a test holds it to that).
#[derive(Serialize)]
struct Head<'a> {
    time: String,
    request_id: &'a str,
    route: &'a str,
    client_ip: Option<String>,
    key_id: Option<&'a str>,
    model: Option<&'a str>,
    endpoint: &'a str,
}

/// The conversation as the record's `request` holds it: `{"messages": …}` and the like.
#[derive(Clone, Copy)]
struct Conversation<'a> {
    field: InputField,
    raw: &'a str,
}

#[derive(Serialize)]
struct Tail<'a> {
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

#[derive(Serialize)]
struct UsagePart {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    estimated: bool,
}

impl Conversation<'_> {
    /// The text as it can go into the line: a whole array, object or string as read (the
    /// first and last bytes say so; anything else is checked by serde_json, as before, and
    /// left out if it does not read).
    fn checked(self) -> Option<Self> {
        let bytes = self.raw.as_bytes();
        let whole = matches!(
            (bytes.first(), bytes.last()),
            (Some(b'['), Some(b']')) | (Some(b'{'), Some(b'}')) | (Some(b'"'), Some(b'"'))
        ) && bytes.len() >= 2;
        (whole || serde_json::from_str::<&RawValue>(self.raw).is_ok()).then_some(self)
    }

    fn key(&self) -> &'static [u8] {
        match self.field {
            InputField::Messages => b"{\"messages\":",
            InputField::Prompt => b"{\"prompt\":",
            InputField::Input => b"{\"input\":",
        }
    }
}

/// `head`, `"request"` with the conversation, then `tail`, as one JSON object in three parts:
/// the conversation is the record's shared body (`bytes`, the text of `c.raw`), not a copy.
fn write_parts(
    head: &Head<'_>,
    request: Option<(Conversation<'_>, Bytes)>,
    tail: &Tail<'_>,
) -> Option<Line> {
    // Sized up front: a long answer is written once, not through a doubling buffer.
    let size = tail.answer.map_or(0, str::len) + tail.reasoning.map_or(0, str::len) + 1536;
    let mut line = Vec::with_capacity(size + size / 8);
    serde_json::to_writer(&mut line, head).ok()?;
    // `{…}` of the head: its closing brace gives way to the next member.
    line.pop();
    line.extend_from_slice(b",\"request\":");
    let (at, body) = match request {
        Some((c, bytes)) => {
            line.extend_from_slice(c.key());
            let at = line.len();
            line.push(b'}');
            (at, bytes)
        }
        None => {
            line.extend_from_slice(b"{}");
            (line.len(), Bytes::new())
        }
    };
    line.push(b',');
    // `{…}` of the tail without its opening brace.
    serde_json::to_writer(WithoutFirstByte(&mut line, true), tail).ok()?;
    Some(Line::new(line, at, body))
}

/// [`write_parts`] as one buffer, the conversation copied in.
#[cfg(test)]
fn write_line(
    head: &Head<'_>,
    request: Option<Conversation<'_>>,
    tail: &Tail<'_>,
) -> Option<Vec<u8>> {
    let request = request.map(|c| (c, Bytes::copy_from_slice(c.raw.as_bytes())));
    write_parts(head, request, tail).map(Line::into_vec)
}

/// Writes into the vector all but the first byte it is given.
struct WithoutFirstByte<'v>(&'v mut Vec<u8>, bool);

impl std::io::Write for WithoutFirstByte<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let skip = usize::from(self.1 && !buf.is_empty());
        self.1 &= buf.is_empty();
        self.0.extend_from_slice(&buf[skip..]);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) fn chat_record(
    ctx: &RequestCtx,
    path: &str,
    status: u16,
    outcome: Option<&Outcome>,
    messages: bool,
) -> Option<Line> {
    let endpoint = endpoint(path)?;
    let route = ctx.route()?;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut request = None;
    if messages {
        if let (Some(info), Some(body)) = (&ctx.body.info, &ctx.body.bytes) {
            if let (Some((field, range)), Some(raw)) = (&info.input, info.input_json(body)) {
                // `input_json` read the range from the body: it is in bounds. The record shares
                // it (a slice of the body), never copies it.
                request = Conversation { field: *field, raw }
                    .checked()
                    .map(|c| (c, body.slice(range.clone())));
            }
        }
    }
    let info = outcome.and_then(|o| o.info.as_ref());
    let first = info.and_then(|i| i.choices.first());
    let text = |s: &'_ str| (messages && !s.is_empty()).then_some(());
    let head = Head {
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
    };
    let tail = Tail {
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
    write_parts(&head, request, &tail)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The record as one struct, as it was serialised before its parts were written one after
    /// the other (the conversation as a `RawValue`, checked by serde_json).
    #[derive(Serialize)]
    struct Whole<'a> {
        #[serde(flatten)]
        head: &'a Head<'a>,
        request: Request<'a>,
        #[serde(flatten)]
        tail: &'a Tail<'a>,
    }

    #[derive(Serialize, Default)]
    struct Request<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        messages: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        prompt: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<&'a RawValue>,
    }

    fn whole(head: &Head<'_>, request: Option<Conversation<'_>>, tail: &Tail<'_>) -> Vec<u8> {
        let mut r = Request::default();
        if let Some(c) = request {
            let raw = serde_json::from_str::<&RawValue>(c.raw).ok();
            match c.field {
                InputField::Messages => r.messages = raw,
                InputField::Prompt => r.prompt = raw,
                InputField::Input => r.input = raw,
            }
        }
        serde_json::to_vec(&Whole {
            head,
            request: r,
            tail,
        })
        .unwrap()
    }

    #[test]
    fn lines_are_the_whole_records() {
        let calls = vec![crate::openai::ToolCall {
            index: 0,
            id: Some("c1".into()),
            name: "f".into(),
            arguments: "{\"a\":1}".into(),
        }];
        let head = |ip: Option<&str>, key: Option<&'static str>| Head {
            time: "2026-12-03T12:00:00.000Z".into(),
            request_id: "req-1",
            route: "/openai",
            client_ip: ip.map(Into::into),
            key_id: key,
            model: Some("gpt-4o-mini"),
            endpoint: "chat",
        };
        let plain = Tail {
            answer: Some("Hello \"there\"\n"),
            tool_calls: &[],
            reasoning: None,
            finish_reason: Some("stop"),
            usage: Some(UsagePart {
                prompt_tokens: 10,
                completion_tokens: 3,
                total_tokens: 13,
                cached_tokens: None,
                reasoning_tokens: Some(0),
                estimated: false,
            }),
            status: 200,
            cache: "miss",
            latency_ms: 12.5,
            ttft_ms: None,
            stream: false,
            complete: true,
            error: None,
            truncated: false,
            continued_by: None,
        };
        let cut = Tail {
            answer: None,
            tool_calls: &calls,
            reasoning: Some("thinking"),
            finish_reason: None,
            usage: None,
            status: 502,
            cache: "bypass",
            latency_ms: 0.001,
            ttft_ms: Some(3.25),
            stream: true,
            complete: false,
            error: Some("stream_interrupted"),
            truncated: true,
            continued_by: Some(ContinuedBy {
                upstream: "backup",
                model: None,
            }),
        };
        let conversations = [
            None,
            Some((
                InputField::Messages,
                r#"[{"role":"user","content":"Say hello.\n\u00e9"}]"#,
            )),
            Some((InputField::Messages, "[\n  {\"role\": \"user\"}\n]")),
            Some((InputField::Prompt, r#""a prompt""#)),
            Some((InputField::Input, r#"{"x":[1,2]}"#)),
            Some((InputField::Prompt, "42")),
            Some((InputField::Input, "null")),
            // Not JSON: left out, as serde_json's check always did.
            Some((InputField::Prompt, "nope")),
        ];
        for (ip, key) in [(None, None), (Some("127.0.0.1"), Some("k-1234abcd"))] {
            for tail in [&plain, &cut] {
                for c in conversations {
                    let c = c.map(|(field, raw)| Conversation { field, raw });
                    let h = head(ip, key);
                    let line = write_line(&h, c.and_then(Conversation::checked), tail).unwrap();
                    assert_eq!(
                        String::from_utf8(line).unwrap(),
                        String::from_utf8(whole(&h, c, tail)).unwrap()
                    );
                }
            }
        }
    }
}
