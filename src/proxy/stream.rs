//! Stream phase (`upstream_response_filter`, `response_body_filter`): read what flows back
//! without holding it up. SSE bodies go through the incremental parser event by event and JSON
//! bodies are copied aside (bounded) for parsing at the end; every chunk is passed on as it
//! arrives. The one change to the bytes: when the gateway asked for usage on the client's
//! behalf, the usage-only event is cut out, so the client sees exactly what it would have seen.

use super::ctx::{RequestCtx, ResponseTap};
use crate::openai::{
    cap_choices, parse_response, parse_response_usage, AccumulateMode, ChunkKind, ResponseInfo,
    StreamAccumulator, Usage,
};
use crate::sse::SseParser;
use crate::state::Gateway;
use bytes::{Bytes, BytesMut};
use pingora_http::ResponseHeader;
use std::ops::Range;
use std::time::Instant;

/// A non-streamed JSON answer larger than this is passed on but not parsed.
const MAX_JSON_COPY: usize = 16 << 20;

/// Most bytes of answer text kept for a record (chat log, token count): a longer answer is
/// passed on whole but kept cut, and the record says `truncated`.
pub(super) const MAX_ANSWER_KEPT: usize = 1 << 20;

/// What the response said, once it ended.
pub(super) struct Outcome {
    pub usage: Option<Usage>,
    /// `true` when `usage` is a tokenizer-free estimate, not the upstream's count.
    pub estimated: bool,
    pub info: Option<ResponseInfo>,
    pub stream: bool,
    /// The response ended as its protocol says a complete one ends.
    pub complete: bool,
    /// The answer text in `info` was cut at [`MAX_ANSWER_KEPT`].
    pub truncated: bool,
}

/// Start reading a successful response of an `openai` route (or a logged one): usage, and the
/// text, which chat logs record and which a stream cut before its usage is counted from.
pub(super) fn tap_response(
    gateway: &Gateway,
    ctx: &mut RequestCtx,
    resp: &pingora_http::ResponseHeader,
) {
    let Some(route) = ctx.route() else {
        return;
    };
    if route.config.kind != crate::config::RouteKind::OpenAi && !route.chat_log {
        return;
    }
    let keep_text = keeps_text(gateway, ctx);
    on_response_head(ctx, resp, keep_text);
}

/// Whether a stream's answer text is kept (up to [`MAX_ANSWER_KEPT`]) or only counted, decided
/// once at the head: kept when something records it (`Gateway::records_answer_text`), when a token
/// budget settles on a tokenizer count of it (an estimated usage, see `finish.rs`), or when a
/// broken stream may be continued from it (`continuation.rs`). Otherwise a stream holds counts
/// only, not up to 1 MiB of text, and the usage estimate reads the byte counts.
fn keeps_text(gateway: &Gateway, ctx: &RequestCtx) -> bool {
    gateway.records_answer_text(ctx.route().map(|r| &**r))
        || ctx.limits.tokens.is_some()
        || super::continuation::enabled(ctx)
}

/// Set up the tap for a successful response of an `openai` route.
fn on_response_head(ctx: &mut RequestCtx, resp: &ResponseHeader, keep_text: bool) {
    if !resp.status.is_success() {
        return;
    }
    let content_type = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ctx.attempt.response = if content_type.starts_with("text/event-stream") {
        Some(ResponseTap::Sse {
            parser: Box::new(SseParser::new()),
            acc: Box::new(match keep_text {
                true => StreamAccumulator::new(AccumulateMode::Full).with_text_cap(MAX_ANSWER_KEPT),
                false => StreamAccumulator::new(AccumulateMode::CountOnly),
            }),
            offset: 0,
            strip_usage: ctx.body.strip_usage_chunk,
            first: None,
            keep_first: super::continuation::enabled(ctx),
        })
    } else if content_type.starts_with("application/json") {
        Some(ResponseTap::Json {
            copy: Vec::new(),
            overflow: false,
        })
    } else {
        None
    };
}

/// `response_filter`: a body the gateway changes (the usage event cut out) cannot keep the
/// upstream's `Content-Length`, on a miss or on a hit replaying the stored head: the client
/// would wait for bytes that never come. It goes out chunked instead (HTTP/2 frames it by
/// itself); an HTTP/1.0 client, which knows no chunking, gets it delimited by the close.
pub(super) fn reframe(
    session: &mut pingora_proxy::Session,
    resp: &mut ResponseHeader,
    ctx: &RequestCtx,
) -> pingora_core::Result<()> {
    let changes = matches!(
        ctx.attempt.response,
        Some(ResponseTap::Sse {
            strip_usage: true,
            ..
        })
    );
    if !changes || !resp.headers.contains_key(http::header::CONTENT_LENGTH) {
        return Ok(());
    }
    resp.remove_header(&http::header::CONTENT_LENGTH);
    if resp.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return Ok(());
    }
    if session.req_header().version == http::Version::HTTP_10 {
        session.set_keepalive(None);
        return Ok(());
    }
    resp.set_version(http::Version::HTTP_11);
    resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")
}

/// A stream ran past its token budget and is to be cut (see `cut_streams`).
pub(super) struct BudgetSpent;

/// One body chunk on its way to the client; returns how long to hold it (output pacing), or
/// `BudgetSpent` when the stream must end here.
pub(super) fn on_body(
    ctx: &mut RequestCtx,
    body: &mut Option<Bytes>,
) -> Result<Option<std::time::Duration>, BudgetSpent> {
    let Some(chunk) = body.as_ref().filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    if ctx.outcome.first_byte.is_none() {
        ctx.outcome.first_byte = Some(Instant::now());
    }
    match &mut ctx.attempt.response {
        Some(ResponseTap::Sse {
            parser,
            acc,
            offset,
            strip_usage,
            first,
            keep_first,
        }) => {
            let start = *offset;
            let (bytes_before, events_before) = (acc.output_bytes(), acc.delta_events());
            let mut cut: Vec<Range<u64>> = Vec::new();
            parser.push(chunk, |event| {
                if *keep_first && first.is_none() && event.data().starts_with(b"{") {
                    *first = Some(event.data().into());
                }
                let kind = acc.observe(event.data());
                if *strip_usage && kind == ChunkKind::UsageOnly {
                    cut.push(event.span());
                }
            });
            *offset += chunk.len() as u64;
            if !cut.is_empty() {
                *body = Some(without(chunk, start, &cut));
            }
            // Tokens in this chunk: a delta event carries at least one; long ones ~4 bytes each.
            let events = acc.delta_events() - events_before;
            let tokens = events.max((acc.output_bytes() - bytes_before).div_ceil(4));
            if let Some(t) = &ctx.limits.tokens {
                let spent = t.prompt + acc.delta_events().max(acc.output_bytes().div_ceil(4));
                if t.cut_at.is_some_and(|limit| spent > limit) {
                    *body = None;
                    return Err(BudgetSpent);
                }
            }
            if let Some(pacer) = ctx.limits.pacer.as_mut() {
                return Ok(pacer.delay(tokens));
            }
        }
        Some(ResponseTap::Json { copy, overflow }) => {
            if copy.len() + chunk.len() > MAX_JSON_COPY {
                *overflow = true;
                copy.clear();
            } else if !*overflow {
                copy.extend_from_slice(chunk);
            }
        }
        None => {}
    }
    Ok(None)
}

/// `chunk` (at stream offset `start`) without the events spanning `cut`, each with the blank
/// line that ended it. An event that began in an earlier, already forwarded chunk stays.
fn without(chunk: &Bytes, start: u64, cut: &[Range<u64>]) -> Bytes {
    let mut out = BytesMut::with_capacity(chunk.len());
    let mut pos = 0usize;
    for span in cut {
        let (Some(from), Some(to)) = (span.start.checked_sub(start), span.end.checked_sub(start))
        else {
            continue;
        };
        let (from, mut to) = (from as usize, to as usize);
        if from < pos || to > chunk.len() {
            continue;
        }
        // The dispatching blank line: `\r\n`, `\n` or `\r`.
        if chunk[to..].starts_with(b"\r\n") {
            to += 2;
        } else if chunk.get(to).is_some_and(|b| *b == b'\n' || *b == b'\r') {
            to += 1;
        }
        out.extend_from_slice(&chunk[pos..from]);
        pos = to;
    }
    out.extend_from_slice(&chunk[pos..]);
    out.freeze()
}

/// The response's usage and content once it has ended (or was cut). Without usage from the
/// upstream, an estimate from byte counts (about 4 bytes a token), marked as such. The text of
/// a JSON answer is only read when `wants_text` (a chat log) or usage is missing.
pub(super) fn outcome(ctx: &mut RequestCtx, finished: bool, wants_text: bool) -> Option<Outcome> {
    let tap = ctx.attempt.response.take()?;
    let prompt_estimate = || ctx.body.prompt_estimate;
    let out = match tap {
        ResponseTap::Sse {
            mut parser, acc, ..
        } => {
            let clean = parser.finish().clean;
            let done = acc.is_done();
            let output_bytes = acc.output_bytes();
            let truncated = acc.truncated();
            let info = acc.into_response();
            Outcome {
                usage: info.usage,
                estimated: false,
                complete: finished && clean && done,
                stream: true,
                info: Some(info),
                truncated,
            }
            .or_estimate(prompt_estimate(), output_bytes)
        }
        ResponseTap::Json { copy, overflow } => {
            let mut info = match overflow {
                true => None,
                false if wants_text => parse_response(&copy),
                false => parse_response_usage(&copy).or_else(|| parse_response(&copy)),
            };
            drop(copy);
            let answer_bytes = info
                .as_ref()
                .map_or(0, |i| i.choices.iter().map(|c| c.text.len() as u64).sum());
            let truncated = info
                .as_mut()
                .is_some_and(|i| cap_choices(&mut i.choices, MAX_ANSWER_KEPT));
            Outcome {
                usage: info.as_ref().and_then(|i| i.usage),
                estimated: false,
                complete: finished && !overflow,
                stream: false,
                info,
                truncated,
            }
            .or_estimate(prompt_estimate(), answer_bytes)
        }
    };
    Some(out)
}

impl Outcome {
    /// Without reported usage, estimate it, but only for a generation: a prompt was sent or an
    /// answer came back. A model listing, a file or any other answer without either has no
    /// token usage, and counting it would load a tokenizer (tens of MiB) for nothing.
    fn or_estimate(mut self, prompt: Option<u64>, answer_bytes: u64) -> Self {
        if self.usage.is_none() && (prompt.is_some() || answer_bytes > 0) {
            let completion = answer_bytes.div_ceil(4);
            let prompt = prompt.unwrap_or(0);
            self.usage = Some(Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                cached_tokens: None,
                reasoning_tokens: None,
            });
            self.estimated = true;
        }
        self
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::{outcome, without, ResponseTap};
    use crate::proxy::RequestCtx;
    use bytes::Bytes;

    fn json_outcome(body: &[u8]) -> super::Outcome {
        let mut ctx = RequestCtx::new(&Default::default());
        ctx.attempt.response = Some(ResponseTap::Json {
            copy: body.to_vec(),
            overflow: false,
        });
        outcome(&mut ctx, true, false).unwrap()
    }

    /// The tap of an event stream, for a gateway built from `extra` (top-level YAML).
    fn sse_tap_mode(extra: &str) -> crate::openai::AccumulateMode {
        let yaml = format!("routes:\n  - prefix: /\n    upstream: http://127.0.0.1:1\n{extra}");
        let config = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
        let gateway = crate::state::Gateway::build(config).ok().unwrap();
        let mut ctx = RequestCtx::new(&Default::default());
        ctx.routed = Some(crate::proxy::ctx::Routed {
            route: std::sync::Arc::clone(&gateway.routes[0]),
            rest: "".into(),
            query: None,
        });
        let mut head = pingora_http::ResponseHeader::build(200, None).unwrap();
        head.insert_header("content-type", "text/event-stream")
            .unwrap();
        super::tap_response(&gateway, &mut ctx, &head);
        match ctx.attempt.response {
            Some(ResponseTap::Sse { acc, .. }) => acc.mode(),
            _ => panic!("no stream tap"),
        }
    }

    #[test]
    fn a_stream_keeps_its_text_only_when_something_reads_it() {
        use crate::openai::AccumulateMode;
        // Nothing records the answer: counts (usage, estimate, pacing, budgets) only.
        assert_eq!(sse_tap_mode(""), AccumulateMode::CountOnly);
        // Printed chats show the answer.
        assert_eq!(
            sse_tap_mode("log:\n  print_chat: true\n"),
            AccumulateMode::Full
        );
    }

    #[test]
    fn only_a_generation_gets_estimated_usage() {
        // A model listing: no prompt, no answer, so no usage (and no tokenizer is loaded).
        let models = json_outcome(br#"{"object":"list","data":[{"id":"gpt-4o"}]}"#);
        assert!(models.usage.is_none() && !models.estimated);
        // An answer without usage is estimated.
        let answer = json_outcome(
            br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"}}]}"#,
        );
        assert!(answer.estimated);
        assert_eq!(answer.usage.map(|u| u.completion_tokens), Some(3));
    }

    #[test]
    fn a_long_stream_keeps_at_most_the_cap_of_its_text() {
        use super::MAX_ANSWER_KEPT;
        use crate::openai::{AccumulateMode, StreamAccumulator};
        let mut acc = StreamAccumulator::new(AccumulateMode::Full).with_text_cap(MAX_ANSWER_KEPT);
        let piece = "é".repeat(2000);
        let event = format!(
            r#"{{"choices":[{{"index":0,"delta":{{"content":"{piece}"}},"finish_reason":null}}]}}"#
        );
        let events = 3 * MAX_ANSWER_KEPT / piece.len();
        for _ in 0..events {
            acc.observe(event.as_bytes());
        }
        acc.observe(br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#);
        assert!(acc.truncated());
        // Everything was counted, only the cap was kept.
        assert_eq!(acc.output_bytes(), (events * piece.len()) as u64);
        let info = acc.into_response();
        let kept = &info.choices[0].text;
        assert!(kept.len() <= MAX_ANSWER_KEPT && kept.len() > MAX_ANSWER_KEPT - 4);
        assert!(
            kept.capacity() < 2 * MAX_ANSWER_KEPT + 4096,
            "{}",
            kept.capacity()
        );
        assert_eq!(info.choices[0].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn cutting_an_event_leaves_the_rest_byte_exact() {
        let chunk = Bytes::from_static(b"data: a\n\ndata: {\"usage\":1}\n\ndata: [DONE]\n\n");
        let usage = 9..27; // `data: {"usage":1}\n`
        assert_eq!(
            &without(&chunk, 0, &[usage])[..],
            b"data: a\n\ndata: [DONE]\n\n"
        );
        let crlf = Bytes::from_static(b"data: u\r\n\r\ndata: x\r\n\r\n");
        assert_eq!(&without(&crlf, 100, &[100..109])[..], b"data: x\r\n\r\n");
        // An event that started before this chunk is left alone.
        assert_eq!(&without(&chunk, 20, &[10..30])[..], &chunk[..]);
    }
}
