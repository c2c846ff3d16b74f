//! The per-request cost of access control: forward-key lookup (SHA-256 + constant-time compare),
//! the model allow-list check, a pool key pick, IP rules and client-IP resolution behind
//! trusted proxies.

// Test and benchmark code may unwrap, expect and panic (a failed assumption is a failed run),
// and its helpers are `pub` for the modules that share them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use llm_forward::access::{ClientIpResolver, IpRules, IpSet};
use llm_forward::config::{KeyPoolConfig, Secret, UpstreamKeyConfig};
use llm_forward::keys::forward::ForwardKeys;
use llm_forward::keys::pool::KeyPool;
use llm_forward::keys::tenant::Tenant;
use std::net::IpAddr;
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let pool = Arc::new(KeyPool::new(&KeyPoolConfig {
        name: "p".into(),
        keys: (0..8)
            .map(|i| UpstreamKeyConfig {
                key: Secret(format!("sk-live-{i:040}")),
                name: None,
                weight: 1 + i % 3,
            })
            .collect(),
    }));
    let models = Some(
        (0..50)
            .map(|i| format!("model-{i}"))
            .chain(["gpt-4o-mini".to_string()])
            .collect(),
    );
    let tenant = Arc::new(Tenant::new(
        "t".into(),
        models,
        vec![Some(Some(Arc::clone(&pool)))],
        IpRules::default(),
    ));
    let mut keys = ForwardKeys::default();
    for i in 0..10_000 {
        keys.insert(
            &format!("fk-{i:048}"),
            None,
            Arc::clone(&tenant),
            IpRules::default(),
        );
    }
    let token = format!("fk-{:048}", 4242);
    c.bench_function("auth/forward_key_lookup_10k_keys", |b| {
        b.iter(|| black_box(keys.lookup(black_box(&token)).is_some()))
    });
    c.bench_function("auth/forward_key_miss", |b| {
        b.iter(|| {
            black_box(
                keys.lookup(black_box("fk-unknown-key-of-similar-length-000000000000"))
                    .is_some(),
            )
        })
    });
    c.bench_function("auth/model_allowed_51_models", |b| {
        b.iter(|| black_box(tenant.allows_model(black_box("gpt-4o-mini"))))
    });
    c.bench_function("auth/pool_pick_8_keys", |b| {
        b.iter(|| black_box(pool.pick(None, None).ok()))
    });

    let rules = IpRules::new(
        IpSet::parse_all(
            &(0..100)
                .map(|i| format!("10.{i}.0.0/16"))
                .collect::<Vec<_>>(),
        )
        .unwrap(),
        IpSet::parse_all(&["10.99.1.0/24", "2001:db8::/32"]).unwrap(),
    );
    let ip: IpAddr = "10.99.2.7".parse().unwrap();
    c.bench_function("access/ip_rules_100_cidrs", |b| {
        b.iter(|| black_box(rules.permits(black_box(ip))))
    });
    let resolver = ClientIpResolver::new(IpSet::parse_all(&["127.0.0.1", "10.0.0.0/8"]).unwrap());
    let mut headers = http::HeaderMap::new();
    headers.insert("x-forwarded-for", "203.0.113.9, 10.1.2.3".parse().unwrap());
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    c.bench_function("access/client_ip_behind_two_proxies", |b| {
        b.iter(|| black_box(resolver.resolve(black_box(peer), &headers)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
