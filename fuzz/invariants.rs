//! The invariants of the SSE parser and the OpenAI stream readers on one input, shared by the
//! fuzz target (`fuzz_targets/sse_parser.rs`) and the corpus replay test
//! (`tests/sse_corpus.rs`). The including crate provides `crate::sse` and `crate::openai`.
//!
//! 1. Split invariance: whole, byte by byte, and in uneven chunks derived from the input,
//!    the parser yields the same events (spans included), the same end state and counters,
//!    with the default size bound and with a tiny one (which exercises dropping events).
//! 2. Bounds: no event's data exceeds the bound; spans are ordered and inside the input.
//! 3. Cutting one event's span out of the stream removes exactly that event.
//! 4. The OpenAI accumulator never panics, and counting-only agrees with full reassembly on
//!    everything they both report; a `UsageOnly` chunk is one `is_usage_only` accepts.
//! 5. The JSON readers never panic on the raw input either; a body that `with_include_usage`
//!    rewrites is still JSON, asks for usage, and is not rewritten twice.

use crate::openai::{
    is_usage_only, parse_response, with_include_usage, AccumulateMode, ChunkKind, RequestInfo,
    StreamAccumulator,
};
use crate::sse::{OwnedSseEvent, SseParser, DEFAULT_MAX_EVENT_SIZE};

/// A small bound, so that fuzz-sized inputs do hit the oversized-event path.
pub const SMALL_MAX: usize = 64;

/// Everything a parser run produces.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<OwnedSseEvent>,
    pub clean: bool,
    pub incomplete: Option<OwnedSseEvent>,
    pub comments: u64,
    pub oversized: u64,
    pub retry: Option<u64>,
    pub last_event_id: Vec<u8>,
}

/// Parses `chunks` in order with a fresh parser bounded at `max`.
pub fn parse<'a>(max: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut parser = SseParser::with_max_event_size(max);
    let mut events = Vec::new();
    for chunk in chunks {
        parser.push(chunk, |e| events.push(e.to_owned_event()));
    }
    let end = parser.finish();
    let clean = end.clean;
    let incomplete = end.incomplete.map(|e| e.to_owned_event());
    Outcome {
        events,
        clean,
        incomplete,
        comments: parser.comments(),
        oversized: parser.oversized_events(),
        retry: parser.retry(),
        last_event_id: parser.last_event_id().to_vec(),
    }
}

/// Uneven chunks whose lengths (1..=23) come from the input's own bytes.
fn uneven_chunks(input: &[u8]) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < input.len() {
        let len = usize::from(input[i % input.len()] % 23) + 1;
        let end = (at + len).min(input.len());
        chunks.push(&input[at..end]);
        at = end;
        i += 1;
    }
    chunks
}

/// Checks every invariant on `input` and returns the default-bound outcome.
pub fn check(input: &[u8]) -> Outcome {
    for max in [SMALL_MAX, DEFAULT_MAX_EVENT_SIZE] {
        let whole = parse(max, [input]);
        assert_eq!(
            parse(max, input.chunks(1)),
            whole,
            "byte by byte, max {max}"
        );
        assert_eq!(
            parse(max, uneven_chunks(input)),
            whole,
            "uneven chunks, max {max}"
        );
        let mut last_end = 0;
        for event in &whole.events {
            assert!(event.data.len() <= max, "event data over the bound");
            assert!(last_end <= event.span.start && event.span.start <= event.span.end);
            assert!(event.span.end <= input.len() as u64);
            last_end = event.span.end;
        }
    }
    let outcome = parse(DEFAULT_MAX_EVENT_SIZE, [input]);
    check_cut(input, &outcome.events);
    check_accumulators(&outcome.events);
    check_json_readers(input);
    outcome
}

fn check_cut(input: &[u8], events: &[OwnedSseEvent]) {
    if events.is_empty() {
        return;
    }
    let k = input.len() % events.len();
    let span = &events[k].span;
    let (start, end) = (span.start as usize, span.end as usize);
    let mut cut = input[..start].to_vec();
    cut.extend_from_slice(&input[end..]);
    let typed = |events: &[OwnedSseEvent]| -> Vec<(Vec<u8>, Vec<u8>)> {
        events
            .iter()
            .map(|e| (e.event_type.clone(), e.data.clone()))
            .collect()
    };
    let mut expected = typed(events);
    expected.remove(k);
    assert_eq!(
        typed(&parse(DEFAULT_MAX_EVENT_SIZE, [&cut[..]]).events),
        expected
    );
}

fn check_accumulators(events: &[OwnedSseEvent]) {
    let mut full = StreamAccumulator::new(AccumulateMode::Full);
    let mut count = StreamAccumulator::new(AccumulateMode::CountOnly);
    for event in events {
        let kind = full.observe(&event.data);
        assert_eq!(count.observe(&event.data), kind);
        if kind == ChunkKind::UsageOnly {
            assert!(is_usage_only(&event.data));
        }
    }
    assert_eq!(full.usage(), count.usage());
    assert_eq!(full.model(), count.model());
    assert_eq!(full.output_bytes(), count.output_bytes());
    assert_eq!(full.delta_events(), count.delta_events());
    assert_eq!(full.malformed_events(), count.malformed_events());
    assert_eq!(full.events(), count.events());
    assert_eq!(full.is_done(), count.is_done());
    assert_eq!(full.saw_error(), count.saw_error());
    let finishes = |acc: StreamAccumulator| -> Vec<(u32, String)> {
        acc.into_response()
            .choices
            .into_iter()
            .filter_map(|c| Some((c.index, c.finish_reason?)))
            .collect()
    };
    assert_eq!(finishes(full), finishes(count));
}

fn check_json_readers(input: &[u8]) {
    parse_response(input);
    RequestInfo::parse(input);
    if let Some(rewritten) = with_include_usage(input) {
        let body: serde_json::Value =
            serde_json::from_slice(&rewritten).expect("the rewritten body is JSON");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(with_include_usage(&rewritten), None);
    }
}
