//! Prometheus metrics on the admin listener: exact values after known traffic, the listener
//! apart from the proxy port, and label values that never carry a key or a client address.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// `/metrics` once every request has been recorded (`logging` runs after the client has its
/// answer, so a scrape right after a response could miss it: wait for nothing in flight).
async fn scrape(gw: &GatewayGuard) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = client().get(gw.admin_url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        let text = resp.text().await.unwrap();
        if value(&text, "llm_forward_requests_in_flight") == Some(0.0) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "requests stay in flight:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the sample written exactly `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn expect(text: &str, series: &str, want: f64) {
    assert_eq!(value(text, series), Some(want), "{series} in\n{text}");
}

#[tokio::test]
async fn metrics_count_known_traffic_exactly() {
    let up = MockUpstream::start().await;
    let broken = MockUpstream::start().await;
    broken.set_behavior(Behavior::Json {
        status: 500,
        headers: vec![],
        body: json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}),
    });
    let yaml = format!(
        r#"
routes:
  - {{prefix: /openai, upstreams: [{{url: '{0}', name: mock}}]}}
  - {{prefix: /broken, upstreams: [{{url: '{1}', name: bad}}], retry: {{retries: 0, backoff: 1ms}}}}
  - {{prefix: /cached, upstreams: [{{url: '{0}', name: mock}}]}}
  - {{prefix: /limited, upstreams: [{{url: '{0}', name: mock}}]}}
cache:
  backend: memory
  default: true
  routes: [{{route: /cached}}]
limits:
  rules:
    - {{route: /limited, requests: "1/minute"}}
"#,
        up.url(),
        broken.url()
    );
    let gw = start_gateway(&yaml).await;
    let c = client();
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..3 {
        let r = c
            .post(gw.url("/openai/v1/chat/completions"))
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    // A model nobody configured, answered with an error: never becomes a label.
    let junk = json!({"model": "junk-model-x", "messages": []});
    let r = c
        .post(gw.url("/broken/v1/chat/completions"))
        .json(&junk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    r.bytes().await.unwrap();
    let stream =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = c
        .post(gw.url("/openai/v1/chat/completions"))
        .json(&stream)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(String::from_utf8_lossy(&r.bytes().await.unwrap()).contains("[DONE]"));
    let emb = json!({"model": "emb", "input": "x"});
    for want in ["MISS", "HIT"] {
        let r = c
            .post(gw.url("/cached/v1/embeddings"))
            .json(&emb)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-cache"], want);
        r.bytes().await.unwrap();
    }
    for want in [200, 429] {
        let r = c.get(gw.url("/limited/v1/models")).send().await.unwrap();
        assert_eq!(r.status(), want);
        r.bytes().await.unwrap();
    }
    let text = scrape(&gw).await;

    let req = |route: &str, class: &str, outcome: &str| {
        format!("llm_forward_requests_total{{route=\"{route}\",status_class=\"{class}\",outcome=\"{outcome}\"}}")
    };
    expect(&text, &req("/openai", "2xx", "ok"), 4.0);
    expect(&text, &req("/broken", "5xx", "upstream_error"), 1.0);
    expect(&text, &req("/cached", "2xx", "ok"), 2.0);
    expect(&text, &req("/limited", "2xx", "ok"), 1.0);
    expect(&text, &req("/limited", "4xx", "rate_limit_exceeded"), 1.0);
    assert_eq!(
        text.matches("llm_forward_requests_total{").count(),
        5,
        "{text}"
    );
    expect(
        &text,
        "llm_forward_retries_total{route=\"/broken\"}",
        broken.request_count() as f64 - 1.0,
    );
    expect(&text, "llm_forward_retries_total{route=\"/openai\"}", 0.0);

    let series = "route=\"/openai\",upstream=\"mock\",model=\"gpt-4o\"";
    expect(
        &text,
        &format!("gen_ai_server_request_duration_seconds_count{{{series}}}"),
        4.0,
    );
    // Only the stream has a time to first token (and, with 3 output tokens, a time per token).
    expect(
        &text,
        &format!("gen_ai_server_time_to_first_token_seconds_count{{{series}}}"),
        1.0,
    );
    expect(
        &text,
        &format!("gen_ai_server_time_per_output_token_seconds_count{{{series}}}"),
        1.0,
    );
    // The mock reports 10 input and 3 output tokens per answer, the stream included.
    expect(
        &text,
        &format!("llm_forward_tokens_total{{{series},type=\"input\",estimated=\"false\"}}"),
        40.0,
    );
    expect(
        &text,
        &format!("llm_forward_tokens_total{{{series},type=\"output\",estimated=\"false\"}}"),
        12.0,
    );
    expect(
        &text,
        &format!("gen_ai_client_token_usage_sum{{{series},gen_ai_token_type=\"output\"}}"),
        12.0,
    );
    expect(
        &text,
        &format!("gen_ai_client_token_usage_count{{{series},gen_ai_token_type=\"input\"}}"),
        4.0,
    );
    expect(
        &text,
        &format!(
            "gen_ai_client_token_usage_bucket{{{series},gen_ai_token_type=\"input\",le=\"16\"}}"
        ),
        4.0,
    );
    expect(
        &text,
        &format!(
            "gen_ai_client_token_usage_bucket{{{series},gen_ai_token_type=\"input\",le=\"4\"}}"
        ),
        0.0,
    );

    assert!(!text.contains("junk-model-x"), "{text}");
    expect(
        &text,
        "gen_ai_server_request_duration_seconds_count{route=\"/broken\",upstream=\"bad\",model=\"other\"}",
        1.0,
    );
    // The hit is filed under the cache, the miss under the upstream that answered it.
    expect(
        &text,
        "gen_ai_server_request_duration_seconds_count{route=\"/cached\",upstream=\"cache\",model=\"emb\"}",
        1.0,
    );
    expect(
        &text,
        "gen_ai_server_request_duration_seconds_count{route=\"/cached\",upstream=\"mock\",model=\"emb\"}",
        1.0,
    );
    expect(
        &text,
        "llm_forward_cache_requests_total{route=\"/cached\",result=\"hit\"}",
        1.0,
    );
    expect(
        &text,
        "llm_forward_cache_requests_total{route=\"/cached\",result=\"miss\"}",
        1.0,
    );
    assert!(
        value(
            &text,
            "llm_forward_cache_hit_bytes_total{route=\"/cached\"}"
        )
        .unwrap()
            > 0.0
    );
    expect(&text, "llm_forward_cache_stored_total", 1.0);
    expect(&text, "llm_forward_cache_entries", 1.0);
    let limited = |d: &str| {
        format!("llm_forward_limiter_decisions_total{{route=\"/limited\",kind=\"requests\",decision=\"{d}\"}}")
    };
    expect(&text, &limited("allowed"), 1.0);
    expect(&text, &limited("denied"), 1.0);
    expect(&text, "llm_forward_streams_in_flight", 0.0);
    expect(
        &text,
        "llm_forward_upstream_breaker_state{route=\"/broken\",upstream=\"bad\"}",
        0.0,
    );
}

#[tokio::test]
async fn the_admin_listener_is_not_the_proxy_port() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/openai", &up.url(), "")).await;
    assert_ne!(gw.admin, Some(gw.addr));
    let r = client().get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404, "the proxy port must not serve metrics");
    let r = client()
        .get(gw.admin_url("/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the admin port must not proxy");
    assert_eq!(up.request_count(), 0);
    let r = client().get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn the_admin_listener_can_be_turned_off() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&format!(
        "{}admin: {{enabled: false}}\n",
        one_route("/", &up.url(), "")
    ))
    .await;
    assert_eq!(gw.admin, None);
}

#[tokio::test]
async fn metrics_name_no_key_and_no_client_address() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"
access: {{trusted_proxies: ['127.0.0.1/32']}}
upstream_keys:
  main: [{{key: sk-live-POOLKEY-0001-abcdef, name: primary}}, {{key: sk-live-POOLKEY-0002-fedcba}}]
tenants: {{t: {{models: [gpt-4o]}}}}
forward_keys:
  - {{key: fk-FORWARD-alice-123456, tenant: t, name: alice}}
routes:
  - {{prefix: /, upstreams: [{{url: '{}', name: mock}}], auth: {{pool: main}}}}
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    let c = client();
    for (key, model) in [
        ("fk-FORWARD-alice-123456", "gpt-4o"),
        ("fk-FORWARD-alice-123456", "sk-live-POOLKEY-0001-abcdef"),
        ("sk-not-a-forward-key-999", "gpt-4o"),
    ] {
        let r = c
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-forwarded-for", "203.0.113.77")
            .json(&json!({"model": model, "messages": []}))
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap();
    }
    let text = scrape(&gw).await;
    for secret in [
        "sk-live-POOLKEY",
        "fk-FORWARD",
        "sk-not-a-forward",
        "203.0.113.77",
        "alice",
    ] {
        assert!(!text.contains(secret), "{secret} in\n{text}");
    }
    expect(
        &text,
        "llm_forward_upstream_key_state{pool=\"main\",key=\"primary\"}",
        0.0,
    );
    assert_eq!(
        text.matches("llm_forward_upstream_key_state{pool=\"main\",key=\"k-")
            .count(),
        1
    );
    expect(
        &text,
        "llm_forward_requests_total{route=\"/\",status_class=\"4xx\",outcome=\"invalid_api_key\"}",
        1.0,
    );
}

#[tokio::test]
async fn redis_errors_are_counted() {
    let up = MockUpstream::start().await;
    let dead = free_port();
    let yaml = format!(
        r#"{}limits:
  backend: 'redis://127.0.0.1:{dead}/0'
  backend_timeout: 200ms
  on_backend_error: allow
  rules:
    - {{requests: "10/minute"}}
"#,
        one_route("/", &up.url(), "")
    );
    let gw = start_gateway(&yaml).await;
    let r = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the policy admits when Redis is down");
    r.bytes().await.unwrap();
    let text = scrape(&gw).await;
    expect(
        &text,
        "llm_forward_redis_errors_total{component=\"limits\"}",
        1.0,
    );
}

#[tokio::test]
async fn an_open_breaker_shows_in_its_gauge() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Json {
        status: 503,
        headers: vec![],
        body: json!({"error": {"message": "down", "type": "server_error", "param": null, "code": null}}),
    });
    let yaml = format!(
        r#"routes:
  - {{prefix: /, upstreams: [{{url: '{}', name: flaky}}], retry: {{retries: 0, backoff: 1ms}}, breaker: {{failures: 1, open_for: 60s}}}}
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    let r = client().get(gw.url("/v1/models")).send().await.unwrap();
    r.bytes().await.unwrap();
    let text = scrape(&gw).await;
    expect(
        &text,
        "llm_forward_upstream_breaker_state{route=\"/\",upstream=\"flaky\"}",
        2.0,
    );
}

#[tokio::test]
async fn a_throttled_key_shows_as_cooling() {
    let up = MockUpstream::start().await;
    up.push_behavior(Behavior::Json {
        status: 429,
        headers: vec![("retry-after".into(), "60".into())],
        body: json!({"error": {"message": "slow down", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
    });
    let yaml = format!(
        r#"
upstream_keys:
  main: [{{key: sk-one-0001, name: one}}, {{key: sk-two-0002, name: two}}]
tenants: {{t: {{}}}}
forward_keys: [{{key: fk-metrics-1, tenant: t}}]
routes:
  - {{prefix: /, upstreams: [{{url: '{}', name: mock}}], auth: {{pool: main}}}}
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    let r = client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth("fk-metrics-1")
        .json(&json!({"input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the other key answered");
    r.bytes().await.unwrap();
    let text = scrape(&gw).await;
    let state = |k: &str| {
        value(
            &text,
            &format!("llm_forward_upstream_key_state{{pool=\"main\",key=\"{k}\"}}"),
        )
    };
    let mut states = [state("one").unwrap(), state("two").unwrap()];
    states.sort_by(f64::total_cmp);
    assert_eq!(states, [0.0, 1.0], "{text}");
}

/// `admin.metrics_token`: the real binary (at `RUST_LOG=trace`) answers `/metrics` only with
/// `Authorization: Bearer <token>`, else 401 in OpenAI's error shape; `/healthz` stays open;
/// the token appears nowhere in what the process writes.
#[tokio::test]
async fn metrics_can_require_a_bearer_token_that_is_never_logged() {
    use common::process::{admin_addr, gateway_command, server_yaml, Process};
    const TOKEN: &str = "mtok-SCRAPE-0123-4567-89ab";
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "{}routes: [{{prefix: /, upstream: '{}'}}]\n",
        server_yaml(dir.path(), port, ""),
        up.url()
    )
    .replace(
        "admin:\n",
        "admin:\n  metrics_token: \"${LF_TEST_METRICS}\"\n",
    );
    let admin = admin_addr(&yaml);
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let mut gw = Process::spawn(
        gateway_command(dir.path())
            .args(["run", "-c"])
            .arg(&file)
            .env("RUST_LOG", "trace")
            .env("LF_TEST_METRICS", TOKEN),
    );
    wait_listening(admin).await;
    let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(proxy).await;
    let ok = client()
        .get(format!("http://{proxy}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let metrics = format!("http://{admin}/metrics");
    let c = client();
    let refusals = [
        c.get(&metrics),
        c.get(&metrics).bearer_auth("wrong"),
        c.get(&metrics).bearer_auth(&TOKEN[..TOKEN.len() - 1]),
        c.get(&metrics).bearer_auth(format!("{TOKEN}x")),
        c.get(&metrics).basic_auth(TOKEN, Some(TOKEN)),
        c.get(&metrics).header("authorization", TOKEN),
        c.head(&metrics),
    ];
    for (i, req) in refusals.into_iter().enumerate() {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "refusal {i}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer", "refusal {i}");
        let text = resp.text().await.unwrap();
        if i < 6 {
            let body: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["error"]["type"], "authentication_error", "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
            assert!(!text.contains(TOKEN), "{text}");
        }
    }
    let resp = c.get(&metrics).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("llm_forward_requests_in_flight"), "{text}");
    let health = c
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    gw.signal("INT");
    let log = gw.wait_for_stderr();
    assert!(log.contains("GET"), "the trace log was written: {log}");
    assert!(
        !log.contains(TOKEN) && !log.contains(&TOKEN[5..17]),
        "{log}"
    );
}
