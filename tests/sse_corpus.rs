//! Replays every file of the fuzz corpus (`fuzz/corpus/sse_parser`) through the SSE parser and
//! the OpenAI stream readers and checks the fuzz target's invariants on it (split invariance,
//! bounds, span cuts, count-only vs full agreement; see `fuzz/invariants.rs`), so plain
//! `cargo test` covers the corpus without nightly or cargo-fuzz. The hand-written seeds also
//! have their expected results pinned here, so a corpus that silently stopped parsing fails.
use std::path::Path;

use llm_forward::openai::{self, AccumulateMode, StreamAccumulator};
use llm_forward::sse;

#[path = "../fuzz/invariants.rs"]
mod invariants;

/// What a seed must give: events dispatched, clean end, `[DONE]`/terminal event seen, total
/// tokens reported, assistant text of choice 0.
struct Expect {
    file: &'static str,
    events: usize,
    clean: bool,
    done: bool,
    total_tokens: Option<u64>,
    text: &'static str,
}

const SEEDS: &[Expect] = &[
    Expect {
        file: "openai_chat.sse",
        events: 12,
        clean: true,
        done: true,
        total_tokens: None,
        text: "Hello! How can I help you today?",
    },
    Expect {
        file: "openai_tool_calls_usage.sse",
        events: 8,
        clean: true,
        done: true,
        total_tokens: Some(97),
        text: "",
    },
    Expect {
        file: "responses_api.sse",
        events: 6,
        clean: true,
        done: true,
        total_tokens: Some(48),
        text: "Hi there!",
    },
    Expect {
        file: "deepseek_reasoning_crlf.sse",
        events: 5,
        clean: true,
        done: true,
        total_tokens: Some(263),
        text: "9.8 is larger.",
    },
    Expect {
        file: "vllm_cr_only.sse",
        events: 4,
        clean: true,
        done: true,
        total_tokens: Some(12),
        text: "Hi there",
    },
    Expect {
        file: "cut_mid_event.sse",
        events: 1,
        clean: false,
        done: false,
        total_tokens: None,
        text: "",
    },
    Expect {
        file: "two_choices.sse",
        events: 7,
        clean: true,
        done: true,
        total_tokens: None,
        text: "Aa",
    },
];

#[test]
fn every_corpus_file_keeps_the_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sse_parser");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= SEEDS.len(),
        "corpus missing from {}",
        dir.display()
    );
    for path in &files {
        let input = std::fs::read(path).expect("read corpus file");
        let outcome = std::panic::catch_unwind(|| invariants::check(&input))
            .unwrap_or_else(|_| panic!("invariant broken by {}", path.display()));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(expect) = SEEDS.iter().find(|s| s.file == name) else {
            continue;
        };
        let mut acc = StreamAccumulator::new(AccumulateMode::Full);
        for event in &outcome.events {
            acc.observe(&event.data);
        }
        let got = (
            outcome.events.len(),
            outcome.clean,
            acc.is_done(),
            acc.usage().map(|u| u.total_tokens),
        );
        let want = (
            expect.events,
            expect.clean,
            expect.done,
            expect.total_tokens,
        );
        assert_eq!(got, want, "{name}: (events, clean, done, total_tokens)");
        let response = acc.into_response();
        let text = response.choices.first().map_or("", |c| c.text.as_str());
        assert_eq!(text, expect.text, "{name}: text");
    }
}

#[test]
fn tool_call_seed_reassembles_the_call() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/sse_parser/openai_tool_calls_usage.sse");
    let input = std::fs::read(path).expect("seed");
    let mut parser = sse::SseParser::new();
    let mut acc = StreamAccumulator::new(AccumulateMode::Full);
    let mut usage_only = 0;
    // In TCP-sized pieces, as the gateway sees it.
    for chunk in input.chunks(1400) {
        parser.push(chunk, |e| {
            if openai::is_usage_only(e.data()) {
                usage_only += 1;
            }
            acc.observe(e.data());
        });
    }
    assert!(parser.finish().clean);
    assert_eq!(usage_only, 1);
    let response = acc.into_response();
    let call = &response.choices[0].tool_calls[0];
    assert_eq!(
        (call.name.as_str(), call.arguments.as_str()),
        ("get_weather", "{\"location\": \"Paris\"}")
    );
    assert_eq!(response.usage.and_then(|u| u.cached_tokens), Some(64));
}
