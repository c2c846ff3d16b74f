//! Request-rate and concurrency limits over real sockets, on one node (memory) and across two
//! gateway instances sharing a Redis of the test's own: exact counts, the most specific rule
//! counted once, OpenAI's headers, concurrency released on every exit path, and a Redis that
//! dies and comes back.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::process::{gateway_command, server_yaml, Process};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn keyed(upstream: &str, limits: &str) -> String {
    format!(
        r#"
upstream_keys: {{p: [sk-1]}}
tenants: {{t: {{}}, free: {{}}}}
forward_keys:
  - {{key: fk-alice, tenant: t, name: alice}}
  - {{key: fk-bob, tenant: t, name: bob}}
  - {{key: fk-carol, tenant: free, name: carol}}
routes:
  - {{prefix: /, upstream: "{upstream}", auth: {{pool: p}}}}
limits:
{limits}
"#
    )
}

async fn get(gw: &GatewayGuard, key: &str) -> reqwest::Response {
    client()
        .get(gw.url("/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_key_gets_exactly_its_limit_then_429_with_openai_headers() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&keyed(
        &up.url(),
        r#"  rules:
    - {requests: "5/minute;100/hour", per: key}
"#,
    ))
    .await;
    for i in 0..5u64 {
        let resp = get(&gw, "fk-alice").await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["x-ratelimit-limit-requests"], "5");
        assert_eq!(
            h["x-ratelimit-remaining-requests"],
            (4 - i).to_string().as_str()
        );
        assert!(h.contains_key("x-ratelimit-reset-requests"));
    }
    let resp = get(&gw, "fk-alice").await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "rate_limit_exceeded"
    );
    // Another key has its own bucket.
    assert_eq!(get(&gw, "fk-bob").await.status(), 200);
    assert_eq!(up.request_count(), 6);
}

#[tokio::test]
async fn the_most_specific_rule_applies_and_counts_once() {
    let up = MockUpstream::start().await;
    let rules = r#"  rules:
    - {requests: "100/minute", per: all}
    - {tenant: free, requests: "3/minute"}
    - {key: alice, requests: "2/minute"}
    - {path: /v1/models, requests: "4/minute"}
"#;
    let gw = start_gateway(&keyed(&up.url(), rules)).await;
    let admitted = |key: &'static str, n: usize| {
        let gw = &gw;
        async move {
            let mut ok = 0;
            for _ in 0..n {
                if get(gw, key).await.status() == 200 {
                    ok += 1;
                }
            }
            ok
        }
    };
    assert_eq!(admitted("fk-alice", 6).await, 2, "the key's own rule");
    assert_eq!(admitted("fk-carol", 6).await, 3, "the tenant's rule");
    assert_eq!(admitted("fk-bob", 6).await, 4, "the path's rule");
    // The global rule saw none of those: a chat request of bob's falls under it.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("fk-bob")
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "99");
}

#[tokio::test]
async fn per_ip_buckets_use_the_resolved_client_address() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"access: {{trusted_proxies: ['127.0.0.1']}}
routes: [{{prefix: /, upstream: '{}'}}]
limits:
  rules:
    - {{requests: "2/minute", per: ip}}
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    let from = |ip: &'static str| {
        client()
            .get(gw.url("/v1/models"))
            .header("x-forwarded-for", ip)
            .send()
    };
    assert_eq!(from("1.1.1.1").await.unwrap().status(), 200);
    assert_eq!(from("1.1.1.1").await.unwrap().status(), 200);
    assert_eq!(from("1.1.1.1").await.unwrap().status(), 429);
    assert_eq!(from("2.2.2.2").await.unwrap().status(), 200);
}

#[tokio::test]
async fn concurrency_is_capped_and_released_on_every_exit_path() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&keyed(
        &up.url(),
        r#"  rules:
    - {concurrency: 1, per: key}
"#,
    ))
    .await;
    let chat = |key: &'static str| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "m", "stream": true, "messages": []}))
            .send()
    };
    // One stream in flight holds alice's only slot.
    up.push_behavior(Behavior::SseGated {
        events: vec!["{\"n\":0}".into(), "{\"n\":1}".into()],
    });
    let held = chat("fk-alice").await.unwrap();
    let resp = chat("fk-alice").await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "concurrency_limit_exceeded"
    );
    assert_eq!(
        chat("fk-bob").await.unwrap().status(),
        200,
        "bob has his own slot"
    );
    up.release(1);
    held.text().await.unwrap();
    // Released in `logging`, right after the response ends: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    while chat("fk-alice").await.unwrap().status() != 200 {
        assert!(
            Instant::now() < deadline,
            "not released after a complete stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A client that leaves mid-stream releases it too.
    up.push_behavior(Behavior::SseGated {
        events: vec!["{\"n\":0}".into(), "{\"n\":1}".into()],
    });
    let left = chat("fk-alice").await.unwrap();
    drop(left);
    assert!(up
        .wait_for_peer_close(Duration::from_secs(2))
        .await
        .is_some());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let status = chat("fk-alice").await.unwrap().status();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot never released after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And an upstream failure releases it. A reset after the whole POST is not retried (but
    // once for free when it hit a pooled connection), so up to two of them; a leftover one is
    // absorbed below.
    for _ in 0..2 {
        up.push_behavior(Behavior::ResetBeforeHeaders);
    }
    // The slot of the 200 above goes back in `logging`, just after its response: a request
    // right behind it may still meet it (429).
    let mut status = chat("fk-alice").await.unwrap().status();
    let deadline = Instant::now() + Duration::from_secs(2);
    while status == 429 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = chat("fk-alice").await.unwrap().status();
    }
    assert_eq!(status, 502);
    let deadline = Instant::now() + Duration::from_secs(2);
    while chat("fk-alice").await.unwrap().status() != 200 {
        assert!(
            Instant::now() < deadline,
            "not released after an upstream failure"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_nodes_sharing_redis_admit_exactly_the_limit_in_total() {
    let redis = RedisServer::start().await;
    let up = MockUpstream::start().await;
    let limits = format!(
        r#"  backend: "{}"
  backend_timeout: 500ms
  rules:
    - {{requests: "10/minute", per: key}}
"#,
        redis.url()
    );
    let a = start_gateway(&keyed(&up.url(), &limits)).await;
    let b = start_gateway(&keyed(&up.url(), &limits)).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = if i % 2 == 0 {
            a.url("/v1/models")
        } else {
            b.url("/v1/models")
        };
        tasks.push(tokio::spawn(async move {
            client()
                .get(url)
                .bearer_auth("fk-alice")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 30);
    assert_eq!(up.request_count(), 10);
    // Bob's bucket is separate, on both nodes.
    assert_eq!(get(&a, "fk-bob").await.status(), 200);
    assert_eq!(get(&b, "fk-bob").await.status(), 200);
}

#[tokio::test]
async fn a_dead_redis_follows_the_policy_and_never_hangs_a_request() {
    let redis = RedisServer::start().await;
    let port = redis.port;
    let up = MockUpstream::start().await;
    let limits = |policy: &str| {
        format!(
            r#"  backend: "redis://127.0.0.1:{port}/0"
  backend_timeout: 200ms
  on_backend_error: {policy}
  rules:
    - {{requests: "3/minute", per: key}}
"#
        )
    };
    let open = start_gateway(&keyed(&up.url(), &limits("allow"))).await;
    let closed = start_gateway(&keyed(&up.url(), &limits("deny"))).await;
    assert_eq!(get(&open, "fk-alice").await.status(), 200);
    drop(redis);
    for _ in 0..5 {
        let start = Instant::now();
        assert_eq!(
            get(&open, "fk-bob").await.status(),
            200,
            "allow: admitted without Redis"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "a dead Redis held the request"
        );
        let resp = get(&closed, "fk-bob").await;
        assert_eq!(resp.status(), 503, "deny: refused without Redis");
        assert_eq!(
            error_code(&resp.json().await.unwrap()),
            "rate_limiter_unavailable"
        );
    }
    // Redis comes back (empty): limiting resumes, exactly.
    let _redis = RedisServer::start_on(port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&closed, "fk-carol").await.status() != 200 {
        assert!(Instant::now() < deadline, "never reconnected to Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let more = [
        get(&closed, "fk-carol").await.status(),
        get(&closed, "fk-carol").await.status(),
        get(&closed, "fk-carol").await.status(),
    ];
    assert_eq!(more.map(|s| s.as_u16()), [200, 200, 429]);
}

#[tokio::test]
async fn output_pacing_releases_stream_events_at_the_token_rate() {
    let up = MockUpstream::start().await;
    // 10 events of about one token each, sent by the upstream at once.
    up.set_behavior(Behavior::chat_stream(10, Duration::ZERO));
    let yaml = format!(
        r#"routes:
  - {{prefix: /, upstream: '{}'}}
  - {{prefix: /fast, upstream: '{}'}}
limits:
  rules:
    - {{route: /, output_tokens_per_second: 10}}
"#,
        up.url(),
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    let timed = |path: &'static str| {
        let url = gw.url(path);
        async move {
            let start = Instant::now();
            let text = client()
                .post(url)
                .json(&json!({"model": "m", "stream": true, "messages": []}))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(text.contains("[DONE]"));
            start.elapsed()
        }
    };
    let paced = timed("/v1/chat/completions").await;
    // 10+ tokens at 10/s: the last event leaves no sooner than ~0.9 s after the first.
    assert!(paced >= Duration::from_millis(850), "not paced: {paced:?}");
    assert!(paced < Duration::from_secs(6), "{paced:?}");
    let unpaced = timed("/fast/v1/chat/completions").await;
    assert!(unpaced < Duration::from_millis(700), "{unpaced:?}");
}

#[tokio::test]
async fn token_budgets_reserve_before_and_settle_with_the_real_usage() {
    for backend in ["memory", "redis"] {
        let redis = RedisServer::start().await;
        let up = MockUpstream::start().await;
        let backend = if backend == "redis" {
            format!("\"{}\"", redis.url())
        } else {
            "memory".into()
        };
        // Each call reserves 8 prompt tokens (32 bytes of messages / 4) + max_tokens 15 = 23, and
        // really uses 13 (the mock's usage).
        let limits = format!(
            r#"  backend: {backend}
  backend_timeout: 500ms
  rules:
    - {{tokens: "40/minute", per: key}}
"#
        );
        let gw = start_gateway(&keyed(&up.url(), &limits)).await;
        let call = || {
            client().post(gw.url("/v1/chat/completions")).bearer_auth("fk-alice").json(&json!({"model": "m", "max_tokens": 15, "messages": [{"role": "user", "content": "hi"}]})).send()
        };
        let first = call().await.unwrap();
        assert_eq!(first.status(), 200, "{backend}");
        assert_eq!(first.headers()["x-ratelimit-limit-tokens"], "40");
        first.text().await.unwrap();
        // Without settlement 23 + 23 > 40 would refuse this one; settled, 13 + 23 fits. The
        // settlement follows the response by microseconds (it runs in `logging`), so a refusal
        // is retried briefly; without settlement it would stay refused for the whole minute.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let resp = call().await.unwrap();
            if resp.status() == 200 {
                resp.text().await.unwrap();
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{backend}: the first reservation was never settled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = call().await.unwrap();
        assert_eq!(third.status(), 429, "{backend}");
        assert!(third.headers().contains_key("retry-after"));
        assert_eq!(
            error_code(&third.json().await.unwrap()),
            "token_quota_exceeded"
        );
        assert_eq!(up.request_count(), 2);
        // Another key has its own budget.
        assert_eq!(
            client()
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth("fk-bob")
                .json(&json!({"model": "m", "max_tokens": 15, "messages": []}))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn concurrency_is_shared_across_nodes_through_redis() {
    let redis = RedisServer::start().await;
    let up = MockUpstream::start().await;
    let limits = format!(
        r#"  backend: "{}"
  backend_timeout: 500ms
  rules:
    - {{concurrency: 1, per: key}}
"#,
        redis.url()
    );
    let a = start_gateway(&keyed(&up.url(), &limits)).await;
    let b = start_gateway(&keyed(&up.url(), &limits)).await;
    let chat = |gw: &GatewayGuard| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("fk-alice")
            .json(&json!({"model": "m", "stream": true, "messages": []}))
            .send()
    };
    up.push_behavior(Behavior::SseGated {
        events: vec!["{\"n\":0}".into(), "{\"n\":1}".into()],
    });
    let held = chat(&a).await.unwrap();
    assert_eq!(held.status(), 200);
    let refused = chat(&b).await.unwrap();
    assert_eq!(refused.status(), 429, "node b must see node a's slot");
    assert_eq!(
        error_code(&refused.json().await.unwrap()),
        "concurrency_limit_exceeded"
    );
    up.release(1);
    held.text().await.unwrap();
    // The slot goes back in `logging`, right after the response: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let resp = chat(&b).await.unwrap();
        if resp.status() == 200 {
            resp.text().await.unwrap();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shared slot was never given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stream_that_runs_past_a_hard_token_budget_is_cut() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::chat_stream(60, Duration::ZERO));
    let limits = r#"  rules:
    - {tokens: "30/minute", cut_streams: true, per: key}
"#;
    let gw = start_gateway(&keyed(&up.url(), limits)).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("fk-alice")
        .json(&json!({"model": "m", "stream": true, "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut cut = false;
    while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
        match chunk {
            Ok(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "the stream must end abnormally");
    assert!(!text.contains("[DONE]"));
    assert!(
        text.contains("t20 ") && !text.contains("t40 "),
        "cut near 30 tokens: {text}"
    );
}

/// `limits:` on a shared Redis with the given backend timeout, lease, policy and one rule.
fn shared(redis: &str, timeout: &str, lease: &str, policy: &str, rule: &str) -> String {
    format!(
        r#"  backend: "{redis}"
  backend_timeout: {timeout}
  concurrency_lease: {lease}
  on_backend_error: {policy}
  rules:
    - {rule}
"#
    )
}

/// Every upstream answer is a stream that stays open until the client leaves: a request holds
/// its slot exactly as long as the test keeps its response.
fn held_streams() -> Behavior {
    Behavior::SseGated {
        events: vec!["{\"n\":0}".into(), "{\"n\":1}".into()],
    }
}

async fn stream_as(gw: &GatewayGuard, key: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap()
}

/// Whether, within `within`, the shared limiter is seen live with `key`'s single slot free:
/// one stream is admitted and, while it runs, a second request is refused. (Admitted without
/// Redis, during a back-off, both pass: try again.)
async fn one_slot_free_within(gw: &GatewayGuard, key: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let held = stream_as(gw, key).await;
        if held.status() == 200 && get(gw, key).await.status() == 429 {
            return true;
        }
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_redis_pause_leaks_no_concurrency_slot() {
    let redis = RedisServer::start().await;
    let up = MockUpstream::start().await;
    up.set_behavior(held_streams());
    let limits = shared(
        &redis.url(),
        "300ms",
        "1s",
        "allow",
        "{concurrency: 1, per: key}",
    );
    let gw = start_gateway(&keyed(&up.url(), &limits)).await;
    let held = stream_as(&gw, "fk-alice").await;
    assert_eq!(held.status(), 200);
    assert_eq!(get(&gw, "fk-alice").await.status(), 429, "limiter live");
    redis.pause();
    // Bob's slot request times out (allowed) but stays queued in Redis, which runs it once it
    // resumes: a slot taken for nobody. Alice's stream ends meanwhile; giving her slot back
    // fails.
    let started = Instant::now();
    assert_eq!(get(&gw, "fk-bob").await.status(), 200, "allow: admitted");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "Redis held a request"
    );
    drop(held);
    assert!(up
        .wait_for_peer_close(Duration::from_secs(5))
        .await
        .is_some());
    redis.resume();
    // Both come back within the lease (1 s) plus the back-off; before leases a counter stayed
    // at its limit for ten minutes.
    for key in ["fk-bob", "fk-alice"] {
        assert!(
            one_slot_free_within(&gw, key, Duration::from_secs(10)).await,
            "{key}'s slot leaked after a Redis pause"
        );
    }
}

#[tokio::test]
async fn a_slot_is_renewed_while_its_answer_runs_and_freed_when_its_node_dies() {
    let redis = RedisServer::start().await;
    let up = MockUpstream::start().await;
    up.set_behavior(held_streams());
    let limits = shared(
        &redis.url(),
        "200ms",
        "2s",
        "deny",
        "{concurrency: 1, per: key}",
    );
    let survivor = start_gateway(&keyed(&up.url(), &limits)).await;
    // The node that dies is a real process, killed with SIGKILL: nothing gives its slot back.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = server_yaml(dir.path(), port, "") + &keyed(&up.url(), &limits);
    std::fs::write(dir.path().join("c.yaml"), yaml).unwrap();
    let mut doomed = Process::spawn(
        gateway_command(dir.path())
            .args(["run", "-c", "c.yaml"])
            .stderr(std::process::Stdio::null()),
    );
    wait_listening(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await;
    let held = client()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth("fk-alice")
        .json(&json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    // For two leases the slot stays taken: its node renews it while the answer runs.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(
            get(&survivor, "fk-alice").await.status(),
            429,
            "a slot in use expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = doomed.0.kill();
    let _ = doomed.0.wait();
    drop(held);
    assert!(
        one_slot_free_within(&survivor, "fk-alice", Duration::from_secs(10)).await,
        "a dead node's slot was never freed"
    );
}

#[tokio::test]
async fn without_redis_a_concurrency_rule_under_deny_answers_503() {
    let up = MockUpstream::start().await;
    let nowhere = format!("redis://127.0.0.1:{}/0", free_port());
    let limits = shared(
        &nowhere,
        "200ms",
        "1s",
        "deny",
        "{concurrency: 1, per: key}",
    );
    let gw = start_gateway(&keyed(&up.url(), &limits)).await;
    for _ in 0..3 {
        let resp = get(&gw, "fk-alice").await;
        assert_eq!(resp.status(), 503);
        assert_eq!(
            error_code(&resp.json().await.unwrap()),
            "rate_limiter_unavailable"
        );
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn an_unresponsive_redis_costs_one_timeout_then_is_skipped() {
    let redis = RedisServer::start().await;
    let up = MockUpstream::start().await;
    // Concurrency, request rate and token budget: three Redis calls before the upstream.
    let limits = shared(
        &redis.url(),
        "500ms",
        "2s",
        "allow",
        "{concurrency: 10, requests: \"100/minute\", tokens: \"100000/minute\", per: key}",
    );
    let gw = start_gateway(&keyed(&up.url(), &limits)).await;
    let call = || async {
        let started = Instant::now();
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("fk-alice")
            .json(&json!({"model": "m", "max_tokens": 5, "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
        started.elapsed()
    };
    call().await; // connected
    redis.pause();
    let first = call().await;
    let second = call().await;
    redis.resume();
    // One timeout (500 ms) and no more: three in a row would be 1.5 s.
    assert!(
        first < Duration::from_millis(1200),
        "{first:?}: more than one backend_timeout"
    );
    // Redis is skipped for a moment after a failure.
    assert!(
        second < Duration::from_millis(250),
        "{second:?}: Redis not skipped after a failure"
    );
}

/// A JSON body without a conversation (`messages`, `prompt`, `input`) has no prompt tokens: its
/// answer's usage counts none, and its reservation counted a quarter of its size, so a large
/// body (here a fine-tuning job's) was refused a budget it would never have used. One estimate
/// now serves both: the reservation is its `max_tokens` alone, and the settlement gives it back.
#[tokio::test]
async fn a_body_without_a_conversation_reserves_no_prompt_tokens() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Json {
        status: 200,
        headers: Vec::new(),
        body: json!({"id": "ftjob-1", "object": "fine_tuning.job", "status": "queued"}),
    });
    let limits = "  rules:\n    - {tokens: \"1000/minute\", per: key}\n";
    let gw = start_gateway(&keyed(&up.url(), limits)).await;
    // 8 KB of hyperparameters: 2,000 tokens by size, over the whole budget.
    let body = json!({"model": "m", "max_tokens": 10, "training_file": "file-abc",
                      "metadata": {"notes": "x".repeat(8000)}});
    for i in 0..3 {
        let resp = client()
            .post(gw.url("/v1/fine_tuning/jobs"))
            .bearer_auth("fk-alice")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        // Reserved: max_tokens only, each settled to what was used (nothing) just after its
        // answer (an earlier one may not be settled yet on a loaded machine).
        let remaining: u64 = resp.headers()["x-ratelimit-remaining-tokens"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(remaining >= 990 - 10 * i, "request {i}: {remaining}");
        if i == 0 {
            assert_eq!(remaining, 990);
        }
        resp.text().await.unwrap();
    }
    assert_eq!(up.request_count(), 3);
}
