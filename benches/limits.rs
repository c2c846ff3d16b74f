//! The local limiter on the request path: one check against pingora-limits estimators (target:
//! under 200 ns, no allocation), a concurrency enter/leave, and choosing the rule and bucket.

// Test and benchmark code may unwrap, expect and panic (a failed assumption is a failed run),
// and its helpers are `pub` for the modules that share them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use llm_forward::limits::local::LocalLimiter;
use llm_forward::limits::rules::{select, LimitRule, Per, Subject};
use llm_forward::limits::spec::parse_limit;

fn bench(c: &mut Criterion) {
    let one = parse_limit("1000000000/minute").unwrap();
    let two = parse_limit("1000000000/minute;1000000000/hour").unwrap();
    let l = LocalLimiter::new(two.0.iter().map(|w| w.window));
    c.bench_function("limits/local_check_1_window", |b| {
        b.iter(|| black_box(l.check(black_box("0:key:key:alice"), &one)))
    });
    c.bench_function("limits/local_check_2_windows", |b| {
        b.iter(|| black_box(l.check(black_box("0:key:key:alice"), &two)))
    });
    c.bench_function("limits/concurrency_enter_leave", |b| {
        b.iter(|| black_box(l.enter(black_box("0:key:key:alice"), 100).is_some()))
    });

    let rule = |tenant: Option<&str>, key: Option<&str>| LimitRule {
        route: None,
        path: None,
        tenant: tenant.map(Into::into),
        key: key.map(Into::into),
        per: Per::Key,
        requests: Some(parse_limit("60/minute").unwrap()),
        tokens: None,
        cut_streams: false,
        concurrency: None,
        output_rate: None,
    };
    let rules: Vec<LimitRule> = (0..20)
        .map(|i| rule(Some(&format!("t{i}")), None))
        .chain([rule(None, None), rule(None, Some("alice"))])
        .collect();
    let subject = Subject {
        route: "/openai",
        path: "/openai/v1/chat/completions",
        tenant: Some("t7"),
        key: Some("alice"),
        ip: "10.1.2.3".parse().unwrap(),
    };
    c.bench_function("limits/select_rule_and_bucket_22_rules", |b| {
        b.iter(|| {
            let (rate, _) = select(black_box(&rules), &subject);
            black_box(rate.map(|(i, r)| r.bucket(i, &subject)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
