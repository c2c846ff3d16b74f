//! The response cache over real sockets: hits and misses, the per-request switch, client
//! directives, tenant isolation, exact stream replay, what is never stored, collapsing of
//! identical requests, admin purge and stats, usage on hits.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn config(upstream: &str, extra: &str) -> String {
    format!(
        r#"routes:
  - prefix: /
    upstream: "{upstream}"
cache:
  backend: memory
  default: true
{extra}"#
    )
}

async fn post(gw: &GatewayGuard, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("authorization", "Bearer sk-client")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn chat(content: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})
}

#[tokio::test]
async fn a_repeated_request_is_a_hit_with_the_same_bytes() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = start_gateway(&config(&up.url(), "")).await;
    let first = post(&gw, "/v1/chat/completions", &chat("hi")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-cache").as_deref(), Some("MISS"));
    let key = header(&first, "x-cache-key").unwrap();
    assert_eq!(key.len(), 64);
    let first_bytes = first.bytes().await.unwrap();
    // Key order, whitespace, `user` and `caching` do not change the key.
    let same = json!({"messages": [{"content": "hi", "role": "user"}], "user": "u-2",
        "caching": true, "model": "gpt-4o-mini"});
    let second = post(&gw, "/v1/chat/completions", &same).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-cache").as_deref(), Some("HIT"));
    assert_eq!(header(&second, "x-cache-key"), Some(key));
    assert!(header(&second, "age").is_some());
    assert_eq!(
        header(&second, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(second.bytes().await.unwrap(), first_bytes);
    assert_eq!(up.request_count(), 1);
    // The `caching` field never reaches the upstream.
    let sent = up.requests()[0].json().unwrap();
    assert!(sent.get("caching").is_none());
    // A sampling parameter is part of the key.
    let mut warmer = chat("hi");
    warmer["temperature"] = json!(0.9);
    let third = post(&gw, "/v1/chat/completions", &warmer).await;
    assert_eq!(header(&third, "x-cache").as_deref(), Some("MISS"));
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn the_caching_field_and_client_directives_switch_it() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    // Off by default here; a request turns it on with `caching: true`.
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstream: "{}"
cache:
  backend: memory
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    let plain = post(&gw, "/v1/embeddings", &json!({"model": "e", "input": "x"})).await;
    assert_eq!(header(&plain, "x-cache"), None);
    let on = json!({"model": "e", "input": "x", "caching": true});
    assert_eq!(
        header(&post(&gw, "/v1/embeddings", &on).await, "x-cache").as_deref(),
        Some("MISS")
    );
    assert_eq!(
        header(&post(&gw, "/v1/embeddings", &on).await, "x-cache").as_deref(),
        Some("HIT")
    );
    assert_eq!(up.request_count(), 2);
    for (directive, expect) in [("no-store", None), ("no-cache", Some("MISS"))] {
        let r = client()
            .post(gw.url("/v1/embeddings"))
            .header("authorization", "Bearer sk-client")
            .header("cache-control", directive)
            .json(&on)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-cache").as_deref(), expect, "{directive}");
    }
    assert_eq!(up.request_count(), 4);
    // no-cache stored the fresh answer: a plain request hits it.
    assert_eq!(
        header(&post(&gw, "/v1/embeddings", &on).await, "x-cache").as_deref(),
        Some("HIT")
    );
    // Paths outside the defaults never cache.
    let models = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(header(&models, "x-cache"), None);
}

#[tokio::test]
async fn tenants_never_share_entries_unless_the_route_says_so() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let keys = r#"upstream_keys:
  main: [sk-real]
tenants:
  a: {pool: main}
  b: {pool: main}
forward_keys:
  - {key: fk-aaaaaaaaaaaa, tenant: a}
  - {key: fk-a2a2a2a2a2a2, tenant: a}
  - {key: fk-bbbbbbbbbbbb, tenant: b}
"#;
    let gw = start_gateway(&format!(
        r#"routes:
  - prefix: /
    upstream: "{}"
  - prefix: /shared
    upstream: "{}"
{keys}cache:
  default: true
  routes:
    - route: /
    - route: /shared
      shared: true
"#,
        up.url(),
        up.url()
    ))
    .await;
    let ask = |key: &'static str, path: &'static str| {
        let gw = &gw;
        async move {
            let r = client()
                .post(gw.url(path))
                .header("authorization", format!("Bearer {key}"))
                .json(&chat("who"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            header(&r, "x-cache").unwrap()
        }
    };
    assert_eq!(ask("fk-aaaaaaaaaaaa", "/v1/chat/completions").await, "MISS");
    // Another key of the same tenant shares the tenant's entries …
    assert_eq!(ask("fk-a2a2a2a2a2a2", "/v1/chat/completions").await, "HIT");
    // … another tenant does not.
    assert_eq!(ask("fk-bbbbbbbbbbbb", "/v1/chat/completions").await, "MISS");
    assert_eq!(up.request_count(), 2);
    // A shared route: one entry for everyone.
    assert_eq!(
        ask("fk-aaaaaaaaaaaa", "/shared/v1/chat/completions").await,
        "MISS"
    );
    assert_eq!(
        ask("fk-bbbbbbbbbbbb", "/shared/v1/chat/completions").await,
        "HIT"
    );
    assert_eq!(up.request_count(), 3);
}

#[tokio::test]
async fn pass_through_clients_are_scoped_by_their_own_key() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = start_gateway(&config(&up.url(), "")).await;
    let ask = |key: &'static str| {
        let gw = &gw;
        async move {
            let r = client()
                .post(gw.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {key}"))
                .json(&chat("x"))
                .send()
                .await
                .unwrap();
            header(&r, "x-cache").unwrap()
        }
    };
    assert_eq!(ask("sk-one").await, "MISS");
    assert_eq!(ask("sk-one").await, "HIT");
    assert_eq!(ask("sk-two").await, "MISS");
}

#[tokio::test]
async fn a_stream_replays_event_by_event_with_the_original_bytes() {
    let up = MockUpstream::start().await;
    // Events split across chunks at odd places: the replay is cut at event boundaries instead.
    let events: String = (0..5).map(common::mock::chat_stream_event).collect();
    let all = format!("{events}data: [DONE]\n\n");
    let (a, b) = all.split_at(37);
    let (b, c) = b.split_at(200);
    up.set_behavior(Behavior::Sse {
        chunks: vec![
            a.to_string().into(),
            b.to_string().into(),
            c.to_string().into(),
        ],
        delay: Duration::ZERO,
        done: false,
    });
    let gw = start_gateway(&config(&up.url(), "")).await;
    let body = json!({"model": "m", "messages": [], "stream": true});
    let first = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(header(&first, "x-cache").as_deref(), Some("MISS"));
    let original = first.bytes().await.unwrap();
    assert_eq!(original, all.as_bytes());
    let mut second = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(header(&second, "x-cache").as_deref(), Some("HIT"));
    assert_eq!(
        header(&second, "content-type").as_deref(),
        Some("text/event-stream")
    );
    let mut chunks = Vec::new();
    while let Some(c) = second.chunk().await.unwrap() {
        chunks.push(c);
    }
    assert_eq!(chunks.concat(), original.to_vec());
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn truncated_streams_and_errors_are_not_stored() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), "")).await;
    let body = json!({"model": "m", "messages": [], "stream": true});
    // A clean end of the HTTP body, but no terminal event.
    up.set_behavior(Behavior::Sse {
        chunks: vec![common::mock::chat_stream_event(0).into()],
        delay: Duration::ZERO,
        done: false,
    });
    let r = post(&gw, "/v1/chat/completions", &body).await;
    let _ = r.bytes().await;
    // Cut mid-stream.
    up.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 2,
    });
    let r = post(&gw, "/v1/chat/completions", &body).await;
    let _ = r.bytes().await;
    // An error answer.
    up.set_behavior(Behavior::Json {
        status: 500,
        headers: vec![],
        body: json!({"error": {"message": "boom"}}),
    });
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 500);
    // Then a good one is a miss (nothing was stored), and the next a hit.
    up.set_behavior(Behavior::OpenAi);
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(header(&r, "x-cache").as_deref(), Some("MISS"));
    let _ = r.bytes().await;
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(header(&r, "x-cache").as_deref(), Some("HIT"));
    // The 500 was retried once (resilience), so five upstream calls in all.
    assert_eq!(up.request_count(), 5);
}

#[tokio::test]
async fn answers_over_the_entry_size_pass_through_uncached() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Json {
        status: 200,
        headers: vec![],
        body: json!({"data": "x".repeat(4096)}),
    });
    let gw = start_gateway(&config(&up.url(), "  max_entry_size: 1KiB\n")).await;
    for _ in 0..2 {
        let r = post(&gw, "/v1/embeddings", &json!({"input": "big"})).await;
        assert_eq!(header(&r, "x-cache").as_deref(), Some("MISS"));
        assert_eq!(r.bytes().await.unwrap().len(), 4096 + 11);
    }
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn identical_requests_in_flight_make_one_upstream_call() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::chat_stream(5, Duration::from_millis(40)));
    let gw = start_gateway(&config(&up.url(), "")).await;
    let body = json!({"model": "m", "messages": [], "stream": true});
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (url, body) = (gw.url("/v1/chat/completions"), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = client()
                .post(url)
                .header("authorization", "Bearer sk-client")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert!(bodies[0].ends_with(b"data: [DONE]\n\n"));
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn admin_purges_and_reports() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = start_gateway(&config(&up.url(), "  admin_key: admin-secret-0123456789\n")).await;
    let admin = |method: reqwest::Method, path: &'static str, body: Option<Value>| {
        let gw = &gw;
        async move {
            let mut r = client()
                .request(method, gw.url(path))
                .header("authorization", "Bearer admin-secret-0123456789");
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let first = post(&gw, "/v1/chat/completions", &chat("a")).await;
    let key = header(&first, "x-cache-key").unwrap();
    post(&gw, "/v1/chat/completions", &chat("b")).await;
    post(&gw, "/v1/chat/completions", &chat("b")).await;
    let (status, stats) = admin(reqwest::Method::GET, "/_llmf/cache/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["entries"], 2);
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(stats["bytes"].as_u64().unwrap() > 0);
    assert!((stats["hit_ratio"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    // Without the key: refused in OpenAI's shape.
    let denied = client()
        .get(gw.url("/_llmf/cache/stats"))
        .header("authorization", "Bearer sk-client")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(error_code(&denied.json().await.unwrap()), "invalid_api_key");
    let (_, purged) = admin(
        reqwest::Method::POST,
        "/_llmf/cache/purge",
        Some(json!({ "key": key })),
    )
    .await;
    assert_eq!(purged["purged"], 1);
    let again = post(&gw, "/v1/chat/completions", &chat("a")).await;
    assert_eq!(header(&again, "x-cache").as_deref(), Some("MISS"));
    let (_, purged) = admin(
        reqwest::Method::POST,
        "/_llmf/cache/purge",
        Some(json!({"route": "/"})),
    )
    .await;
    assert_eq!(purged["purged"], 2);
    post(&gw, "/v1/chat/completions", &chat("c")).await;
    let (_, purged) = admin(
        reqwest::Method::POST,
        "/_llmf/cache/purge",
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!(purged["purged"], 1);
    let (status, bad) = admin(
        reqwest::Method::POST,
        "/_llmf/cache/purge",
        Some(json!({"everything": 1})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&bad), "invalid_json");
}

/// The admin key is checked by the gate the console and `/metrics` use: only the exact key as
/// a bearer token opens it; a wrong key of the same length, a near miss or another scheme is
/// refused with 401 `invalid_api_key`, and nothing reaches the upstream.
#[tokio::test]
async fn the_cache_admin_key_opens_only_as_its_exact_bearer_token() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = start_gateway(&config(&up.url(), "  admin_key: admin-secret-0123456789\n")).await;
    let stats = |auth: Option<&'static str>| {
        let gw = &gw;
        async move {
            let mut r = client().get(gw.url("/_llmf/cache/stats"));
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            r.send().await.unwrap()
        }
    };
    let right = stats(Some("Bearer admin-secret-0123456789")).await;
    assert_eq!(right.status(), 200);
    assert_eq!(right.json::<Value>().await.unwrap()["backend"], "memory");
    for wrong in [
        Some("Bearer admin-secret-0123456780"),
        Some("Bearer xdmin-secret-0123456789"),
        Some("Bearer admin-secret-012345678"),
        Some("Bearer admin-secret-01234567890"),
        Some("bearer admin-secret-0123456789"),
        Some("Basic admin-secret-0123456789"),
        Some("admin-secret-0123456789"),
        Some("Bearer "),
        None,
    ] {
        let denied = stats(wrong).await;
        assert_eq!(denied.status(), 401, "{wrong:?}");
        assert_eq!(
            error_code(&denied.json().await.unwrap()),
            "invalid_api_key",
            "{wrong:?}"
        );
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn general_routes_opt_in_keyed_by_method_path_query_body_and_representation() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let gw = start_gateway(&format!(
        r#"routes:
  - prefix: /g
    upstream: "{}"
    type: general
cache:
  routes:
    - route: /g
      default: true
"#,
        up.url()
    ))
    .await;
    let get = |path: &'static str, encoding: Option<&'static str>| {
        let gw = &gw;
        async move {
            let mut r = client().get(gw.url(path));
            if let Some(e) = encoding {
                r = r.header("accept-encoding", e);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let cache = header(&r, "x-cache").unwrap();
            let echo: Value = r.json().await.unwrap();
            (cache, echo)
        }
    };
    assert_eq!(get("/g/items?page=1", Some("gzip")).await.0, "MISS");
    let (cache, echo) = get("/g/items?page=1", Some("gzip")).await;
    assert_eq!(cache, "HIT");
    assert_eq!(echo["headers"]["accept-encoding"], "gzip");
    // Another representation, another query, another path: other entries.
    let (cache, echo) = get("/g/items?page=1", None).await;
    assert_eq!(cache, "MISS");
    assert!(echo["headers"].get("accept-encoding").is_none());
    assert_eq!(get("/g/items?page=2", None).await.0, "MISS");
    assert_eq!(get("/g/other?page=1", None).await.0, "MISS");
    // POST bodies of any JSON (not just objects) are keyed too.
    let post_raw = |body: &'static str| {
        let gw = &gw;
        async move {
            let r = client()
                .post(gw.url("/g/search"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            header(&r, "x-cache").unwrap()
        }
    };
    assert_eq!(post_raw("[1, 2]").await, "MISS");
    assert_eq!(post_raw("[1, 2]").await, "HIT");
    assert_eq!(post_raw("[2, 1]").await, "MISS");
    assert_eq!(up.request_count(), 6);
}

#[tokio::test]
async fn entries_expire_after_their_routes_ttl() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = start_gateway(&format!(
        r#"routes:
  - prefix: /
    upstream: "{}"
cache:
  default: true
  ttl: 1h
  routes:
    - route: /
      ttl: 1s
"#,
        up.url()
    ))
    .await;
    let body = json!({"model": "e", "input": "t"});
    let ask = || post(&gw, "/v1/embeddings", &body);
    assert_eq!(header(&ask().await, "x-cache").as_deref(), Some("MISS"));
    assert_eq!(header(&ask().await, "x-cache").as_deref(), Some("HIT"));
    // Waiting out the TTL is the point here (nothing to poll for).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(header(&ask().await, "x-cache").as_deref(), Some("MISS"));
    assert_eq!(up.request_count(), 2);
}

/// An upstream that sends its stream with a Content-Length (not chunked): when the gateway cuts
/// the usage event it asked for, the length it declares must be the one it sends, on the miss
/// and on the hit. A stale length leaves every client waiting for bytes that never come.
#[tokio::test]
async fn a_stream_with_a_content_length_arrives_whole_after_the_usage_event_is_cut() {
    let up = MockUpstream::start().await;
    let word = |w: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w}\"}},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let expected = format!(
        "{}{}data: [DONE]\n\n",
        word("Hi", "null"),
        word("!", "\"stop\"")
    );
    let usage = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";
    let sent = format!(
        "{}{}{usage}data: [DONE]\n\n",
        word("Hi", "null"),
        word("!", "\"stop\"")
    );
    up.set_behavior(Behavior::Raw {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: sent.into(),
    });
    let gw = start_gateway(&config(&up.url(), "")).await;
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    for expect_cache in ["MISS", "HIT"] {
        let resp = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-cache").as_deref(), Some(expect_cache));
        let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
            .await
            .unwrap_or_else(|_| panic!("{expect_cache}: the stream never ended"))
            .unwrap_or_else(|e| panic!("{expect_cache}: the stream broke: {e}"));
        assert_eq!(text, expected, "{expect_cache}");
    }
    assert_eq!(up.request_count(), 1);
}
