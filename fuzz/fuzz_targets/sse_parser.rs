//! Fuzzes the SSE parser with arbitrary bytes: every split of the input must give the same
//! events, memory must stay bounded, and the OpenAI readers must never panic on the events
//! (see `../invariants.rs`, which `tests/sse_corpus.rs` also runs on every corpus file).
//!
//! `cargo +nightly fuzz run sse_parser` (from the repository root; seeds in
//! `fuzz/corpus/sse_parser`).
#![no_main]
// The library modules are compiled in whole; the fuzz target uses only part of them.
#![allow(dead_code)]

#[path = "../invariants.rs"]
mod invariants;
#[path = "../../src/openai.rs"]
mod openai;
#[path = "../../src/sse.rs"]
mod sse;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    invariants::check(data);
});
