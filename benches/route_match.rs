//! Route matching on the request path: the first thing every request does.

// Test and benchmark code may unwrap, expect and panic (a failed assumption is a failed run),
// and its helpers are `pub` for the modules that share them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use llm_forward::routing::{collapse_slashes, upstream_target, RouteTable};

fn bench(c: &mut Criterion) {
    let table = RouteTable::new([
        "/",
        "/openai",
        "/gemini",
        "/localai/v1",
        "/azure",
        "/claude",
        "/deepseek",
        "/tongyi",
    ]);
    c.bench_function("route_match/8_routes_hit", |b| {
        b.iter(|| {
            let path = collapse_slashes(black_box("/deepseek/v1/chat/completions"));
            let m = table.find(&path).map(|m| m.rest.len());
            black_box(m)
        })
    });
    c.bench_function("route_match/root_fallback", |b| {
        b.iter(|| {
            black_box(
                table
                    .find(black_box("/v1/chat/completions"))
                    .map(|m| m.index),
            )
        })
    });
    c.bench_function("route_match/target_rewrite", |b| {
        b.iter(|| {
            black_box(upstream_target(
                black_box("/compatible-mode/v1"),
                black_box("/chat/completions"),
                Some("a=1"),
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
