//! The streaming hot path: every byte of every streamed response goes through the SSE parser,
//! and every event through the usage accumulator. A 1 MiB OpenAI-style chat stream
//! (`chat.completion.chunk` events of ~200 bytes) fed in 1400-byte chunks, roughly what one
//! TCP segment delivers:
//! (a) parser only, (b) parser + accumulator counting usage, (c) parser + full reassembly
//! for chat logs.
//!
//! `cargo bench --bench sse -- --warm-up-time 1 --measurement-time 3`

// Test and benchmark code may unwrap, expect and panic (a failed assumption is a failed run),
// and its helpers are `pub` for the modules that share them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use llm_forward::openai::{AccumulateMode, StreamAccumulator};
use llm_forward::sse::SseParser;

/// Words of varied length, some needing JSON escapes, one multi-byte.
const WORDS: &[&str] = &[
    " the",
    " gateway",
    " forwards",
    " each",
    " chunk",
    "\\n",
    " as",
    " it",
    " arrives",
    ",",
    " \\\"quoted\\\"",
    " tokens",
    " per",
    " second",
    " caf\u{e9}",
    ".",
    " Streaming",
    " works",
];

/// A realistic stream of about `size` bytes: role chunk, content deltas, finish chunk,
/// usage chunk, `[DONE]`.
fn chat_stream(size: usize) -> Vec<u8> {
    let head = r#"{"id":"chatcmpl-AzRtEXAMPLEa1b2c3d4e5f6g7h8","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"#;
    let tail = r#"},"logprobs":null,"finish_reason":null}],"usage":null}"#;
    let mut out = Vec::with_capacity(size + 1024);
    let event = |delta: &str, out: &mut Vec<u8>| {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(delta.as_bytes());
        out.extend_from_slice(tail.as_bytes());
        out.extend_from_slice(b"\n\n");
    };
    event(
        r#""role":"assistant","content":"","refusal":null"#,
        &mut out,
    );
    let mut i = 0;
    while out.len() < size - 700 {
        event(
            &format!(r#""content":"{}""#, WORDS[i % WORDS.len()]),
            &mut out,
        );
        i += 1;
    }
    out.extend_from_slice(br#"data: {"id":"chatcmpl-AzRtEXAMPLEa1b2c3d4e5f6g7h8","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#);
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(br#"data: {"id":"chatcmpl-AzRtEXAMPLEa1b2c3d4e5f6g7h8","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":5000,"total_tokens":5019,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#);
    out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
    out
}

fn bench(c: &mut Criterion) {
    let stream = chat_stream(1 << 20);
    let chunks: Vec<&[u8]> = stream.chunks(1400).collect();
    let mut group = c.benchmark_group("sse_1MiB_in_1400B_chunks");
    group.throughput(Throughput::Bytes(stream.len() as u64));

    group.bench_function("a_parser_only", |b| {
        let mut parser = SseParser::new();
        b.iter(|| {
            parser.reset();
            let mut data_bytes = 0;
            for chunk in &chunks {
                parser.push(black_box(chunk), |e| data_bytes += e.data().len());
            }
            black_box((data_bytes, parser.finish().clean))
        })
    });

    for (name, mode) in [
        ("b_parser_count_only", AccumulateMode::CountOnly),
        ("c_parser_full_reassembly", AccumulateMode::Full),
    ] {
        group.bench_function(name, |b| {
            let mut parser = SseParser::new();
            b.iter(|| {
                parser.reset();
                let mut acc = StreamAccumulator::new(mode);
                for chunk in &chunks {
                    parser.push(black_box(chunk), |e| {
                        acc.observe(e.data());
                    });
                }
                assert!(acc.is_done() && acc.usage().is_some());
                black_box(acc.into_response())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
