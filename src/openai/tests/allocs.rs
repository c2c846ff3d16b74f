//! Heap allocations of the per-request readers, counted: the body phase and the answer's
//! accounting run on every request of an `openai` route, and each allocation (with its free)
//! costs ~300 instructions (callgrind, `malloc`/`free` per call). Counted per thread by
//! `crate::alloc_count`, so tests running in parallel do not mix.

use super::*;
// The crate's one counting allocator (a test binary can have only one); the other modules'
// allocation tests import it from here too.
pub(crate) use crate::alloc_count::allocations;

/// The request and answer of `bench/callgrind.sh` (and `bench/load.sh`).
const BENCH_REQUEST: &[u8] =
    br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}"#;
const BENCH_ANSWER: &[u8] = br#"{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from mock"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}}"#;

/// One pass over the body, two allocations: the model's name (kept for the request) and
/// serde_json's stack for skipping the nested `messages` array. The three passes it replaced
/// made three, and the body phase copied the name once more.
#[test]
fn the_body_phase_reads_a_request_with_two_allocations() {
    let (scan, read) = allocations(|| RequestInfo::scan(BENCH_REQUEST));
    assert_eq!(
        read.info.and_then(|i| i.model).as_deref(),
        Some("gpt-4o-mini")
    );
    assert_eq!(scan, 2);
    let (parse, _) = allocations(|| RequestInfo::parse(BENCH_REQUEST));
    let (keys, _) = allocations(|| crate::model_names::json_model_is_ambiguous(BENCH_REQUEST));
    assert_eq!(parse + keys, 3);
    let (caching, _) = allocations(|| take_caching_flag(BENCH_REQUEST));
    assert_eq!(caching, 0);
}

/// The answer's accounting: the model's name and serde_json's stack for skipping `choices`.
#[test]
fn the_answer_is_accounted_with_two_allocations() {
    let (n, info) = allocations(|| parse_response_usage(BENCH_ANSWER));
    assert_eq!(info.and_then(|i| i.usage).map(|u| u.total_tokens), Some(13));
    assert_eq!(n, 2);
}
